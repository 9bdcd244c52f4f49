package loadgen

import (
	"encoding/binary"
	"math"

	"github.com/wanwu-iot/wanwu/internal/senml"
)

// SenML CBOR labels (RFC 8428 §6 Table 4).
const (
	senmlBN = -2
	senmlN  = 0
	senmlV  = 2
	senmlT  = 6
)

func appendCBORInt(b []byte, v int64) []byte {
	if v < 0 {
		return senml.AppendCBORHead(b, 1, uint64(-1-v))
	}
	return senml.AppendCBORHead(b, 0, uint64(v))
}

func appendCBORText(b []byte, s string) []byte {
	return append(senml.AppendCBORHead(b, 3, uint64(len(s))), s...)
}

func appendCBORFloat(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xfb), math.Float64bits(f))
}

// appendSenMLCBOR appends the application/senml+cbor message of (code, seq)
// at tsMs (unix milliseconds) to b: the same two records as the JSON
// payload,
//
//	[{bn: "<code>/", n: "temperature", v: 21.5, t: <seconds>}, {n: "seq", v: <seq>}]
//
// padded to size bytes, when shorter, with an unknown text label "pad" in
// the first record, which SenML receivers ignore (RFC 8428 §4.4: only labels
// ending in "_" must be understood).
func appendSenMLCBOR(b []byte, code string, seq int, tsMs int64, size int) []byte {
	start := len(b)
	body := func(b []byte, pad int) []byte {
		b = append(b, 0x82) // array(2)
		n := uint64(4)
		if pad >= 0 {
			n = 5
		}
		b = senml.AppendCBORHead(b, 5, n)
		b = appendCBORInt(b, senmlBN)
		b = appendCBORText(b, code+"/")
		b = appendCBORInt(b, senmlN)
		b = appendCBORText(b, "temperature")
		b = appendCBORInt(b, senmlV)
		b = appendCBORFloat(b, 21.5)
		b = appendCBORInt(b, senmlT)
		b = appendCBORFloat(b, float64(tsMs)/1000)
		if pad >= 0 {
			b = appendCBORText(b, "pad")
			b = senml.AppendCBORHead(b, 3, uint64(pad))
			for range pad {
				b = append(b, ' ')
			}
		}
		b = append(b, 0xa2) // map(2)
		b = appendCBORInt(b, senmlN)
		b = appendCBORText(b, "seq")
		b = appendCBORInt(b, senmlV)
		return appendCBORInt(b, int64(seq))
	}
	b = body(b, -1)
	short := size - (len(b) - start)
	// "pad" label (4 bytes) + the text head (1 or 2 bytes): pad only when
	// that fits; the result may then be a byte over size where the head
	// grows from 1 to 2 bytes.
	if short < 5 {
		return b
	}
	p := short - 5
	if p >= 24 {
		p-- // two-byte text head
	}
	return body(b[:start], p)
}

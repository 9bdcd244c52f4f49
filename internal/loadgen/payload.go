package loadgen

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// appendPayload appends the SenML JSON message of (code, seq) with timestamp
// tsMs (unix milliseconds) to b, padded with spaces before the closing
// bracket to size bytes when it is shorter.
func appendPayload(b []byte, code string, seq int, tsMs int64, size int) []byte {
	start := len(b)
	b = append(b, `[{"bn":"`...)
	b = append(b, code...)
	b = append(b, `/","n":"temperature","v":21.5,"t":`...)
	b = strconv.AppendInt(b, tsMs/1000, 10)
	b = append(b, '.')
	ms := tsMs % 1000
	b = append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	b = append(b, `},{"n":"seq","v":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, '}')
	for len(b)-start < size-1 {
		b = append(b, ' ')
	}
	return append(b, ']')
}

// PayloadLen is the length of the unpadded message of (code, seq) at a
// current timestamp: the smallest size that needs no padding.
func PayloadLen(code string, seq int) int {
	return len(appendPayload(nil, code, seq, 1_760_000_000_000, 0))
}

var (
	bnKey  = []byte(`"bn":"`)
	seqKey = []byte(`{"n":"seq","v":`)
)

// parsePayload extracts the base name (without its trailing '/' or ':')
// and the seq of a message. The fast path reads the generator's own layout;
// anything else (a broker that re-encodes SenML) is decoded as JSON.
func parsePayload(p []byte) (code string, seq int, ok bool) {
	if i := bytes.Index(p, bnKey); i >= 0 {
		rest := p[i+len(bnKey):]
		if j := bytes.IndexByte(rest, '"'); j > 0 {
			bn := rest[:j]
			if k := bytes.Index(rest[j:], seqKey); k >= 0 {
				num := rest[j+k+len(seqKey):]
				n, digits := 0, 0
				for digits < len(num) && num[digits] >= '0' && num[digits] <= '9' && digits < 10 {
					n = n*10 + int(num[digits]-'0')
					digits++
				}
				if digits > 0 && digits < len(num) && (num[digits] == '}' || num[digits] == ',') {
					return trimBN(string(bn)), n, true
				}
			}
		}
	}
	return parseSenML(p)
}

func trimBN(bn string) string {
	return strings.TrimRight(bn, "/:")
}

// parseSenML is the slow path: any SenML JSON array with a base name and a
// record named "seq" (or ending in "/seq").
func parseSenML(p []byte) (string, int, bool) {
	var recs []struct {
		BN string   `json:"bn"`
		N  string   `json:"n"`
		V  *float64 `json:"v"`
	}
	if err := json.Unmarshal(p, &recs); err != nil {
		return "", 0, false
	}
	var bn string
	seq := -1
	for _, r := range recs {
		if r.BN != "" {
			bn = r.BN
		}
		name := bn + r.N
		if (r.N == "seq" || strings.HasSuffix(name, "/seq") || strings.HasSuffix(name, ":seq")) && r.V != nil {
			seq = int(*r.V)
		}
	}
	if bn == "" || seq < 0 {
		return "", 0, false
	}
	return trimBN(bn), seq, true
}

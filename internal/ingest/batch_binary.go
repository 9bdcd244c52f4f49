package ingest

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Batch format version 2 is a hand-written binary encoding: no reflection,
// no field names, and decoding allocates three times per batch (the
// strings, the messages, the records) whatever its size.
//
//	batch   = version(0x02) messages:uvarint records:uvarint message*
//	message = fields:uvarint device:str received:varint
//	          [tenant:str] [model:str] [kind:byte] [event:str]
//	          [event-data:bytes] [source:str] [n:uvarint record*n]
//	record  = fields:uvarint property:str time:varint
//	          [float:f64] [unit:str] [kind:byte] [string:str] [data:bytes]
//	          [lat:f64] [lon:f64] [alt:f64]
//	str, bytes = length:uvarint octets
//	f64     = IEEE 754 bits, 8 bytes little-endian
//
// fields is a bit set (the msg* and rec* constants below) of the optional
// fields present, in the order listed; a field is left out when it holds
// its zero value, as the CBOR form's omitempty did, except that a float is
// left out only when it is +0 (so -0 survives). Bool and HasAlt are fields
// without content: present means true. A record's time is written as the
// difference from its message's Received (wrapping int64 arithmetic), which
// is small for live data. The batch header counts the records of all
// messages so that the decoder sizes one record array for the batch; both
// counts are checked against the bytes left before anything is allocated.
//
// Strings are octets, as in Go strings: the decoder does not require UTF-8
// (the stores check what they need, e.g. the TSDB refuses a label value
// that is not UTF-8, per sample rather than per batch).
//
// Adding a field takes a new bit and a new version number: a decoder
// refuses bits it does not know, so an old hub says "unsupported version"
// rather than dropping data.

// Message field bits of batch format version 2.
const (
	msgTenant = 1 << iota
	msgModel
	msgKind
	msgEvent
	msgEventData
	msgSource
	msgRecords
	msgKnown = 1<<iota - 1
)

// Record field bits of batch format version 2, the most frequent first so
// that a float record's field set takes one byte.
const (
	recFloat = 1 << iota
	recUnit
	recKind
	recString
	recBool
	recData
	recLat
	recLon
	recAlt
	recHasAlt
	recKnown = 1<<iota - 1
)

// Smallest encodings, to bound counts by the bytes left: a message is at
// least its field set, a one-octet device and a received time; a record its
// field set, a one-octet property and a time.
const (
	minMessageBytes = 4
	minRecordBytes  = 4
)

// batchSizeV2 estimates the encoded size of msgs, to size the buffer:
// short strings and times close to Received, one float per record.
func batchSizeV2(msgs []Message) int {
	n := 16
	for i := range msgs {
		m := &msgs[i]
		n += 16 + len(m.Device) + len(m.Tenant) + len(m.Model) + len(m.Event) + len(m.EventData) + len(m.Source)
		for j := range m.Records {
			r := &m.Records[j]
			n += 20 + len(r.Property) + len(r.Unit) + len(r.String) + len(r.Data)
		}
	}
	return n
}

// appendBatchV2 appends the binary form of msgs, which check has accepted.
func appendBatchV2(dst []byte, msgs []Message) []byte {
	nrec := 0
	for i := range msgs {
		nrec += len(msgs[i].Records)
	}
	dst = append(dst, batchV2)
	dst = binary.AppendUvarint(dst, uint64(len(msgs)))
	dst = binary.AppendUvarint(dst, uint64(nrec))
	for i := range msgs {
		m := &msgs[i]
		var f uint64
		if m.Tenant != "" {
			f |= msgTenant
		}
		if m.Model != "" {
			f |= msgModel
		}
		if m.Kind != 0 {
			f |= msgKind
		}
		if m.Event != "" {
			f |= msgEvent
		}
		if len(m.EventData) > 0 {
			f |= msgEventData
		}
		if m.Source != "" {
			f |= msgSource
		}
		if len(m.Records) > 0 {
			f |= msgRecords
		}
		dst = binary.AppendUvarint(dst, f)
		dst = appendString(dst, m.Device)
		dst = binary.AppendVarint(dst, m.Received)
		if f&msgTenant != 0 {
			dst = appendString(dst, m.Tenant)
		}
		if f&msgModel != 0 {
			dst = appendString(dst, m.Model)
		}
		if f&msgKind != 0 {
			dst = append(dst, byte(m.Kind))
		}
		if f&msgEvent != 0 {
			dst = appendString(dst, m.Event)
		}
		if f&msgEventData != 0 {
			dst = binary.AppendUvarint(dst, uint64(len(m.EventData)))
			dst = append(dst, m.EventData...)
		}
		if f&msgSource != 0 {
			dst = appendString(dst, m.Source)
		}
		if f&msgRecords == 0 {
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(len(m.Records)))
		for j := range m.Records {
			dst = appendRecord(dst, &m.Records[j], m.Received)
		}
	}
	return dst
}

func appendRecord(dst []byte, r *Record, received int64) []byte {
	var f uint64
	if math.Float64bits(r.Float) != 0 {
		f |= recFloat
	}
	if r.Unit != "" {
		f |= recUnit
	}
	if r.Kind != 0 {
		f |= recKind
	}
	if r.String != "" {
		f |= recString
	}
	if r.Bool {
		f |= recBool
	}
	if len(r.Data) > 0 {
		f |= recData
	}
	if math.Float64bits(r.Lat) != 0 {
		f |= recLat
	}
	if math.Float64bits(r.Lon) != 0 {
		f |= recLon
	}
	if math.Float64bits(r.Alt) != 0 {
		f |= recAlt
	}
	if r.HasAlt {
		f |= recHasAlt
	}
	dst = binary.AppendUvarint(dst, f)
	dst = appendString(dst, r.Property)
	dst = binary.AppendVarint(dst, r.Time-received)
	if f&recFloat != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(r.Float))
	}
	if f&recUnit != 0 {
		dst = appendString(dst, r.Unit)
	}
	if f&recKind != 0 {
		dst = append(dst, byte(r.Kind))
	}
	if f&recString != 0 {
		dst = appendString(dst, r.String)
	}
	if f&recData != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(r.Data)))
		dst = append(dst, r.Data...)
	}
	if f&recLat != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(r.Lat))
	}
	if f&recLon != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(r.Lon))
	}
	if f&recAlt != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(r.Alt))
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// v2Reader reads batch format version 2. b and s hold the same octets: the
// bounds and numbers are read from b, strings are cut from s so that all
// strings of a batch share one allocation.
type v2Reader struct {
	b   []byte
	s   string
	off int
	err error
}

func (r *v2Reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("offset %d: "+format, append([]any{r.off}, args...)...)
	}
}

func (r *v2Reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("bad varint (%s)", what)
		return 0
	}
	r.off += n
	return v
}

func (r *v2Reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail("bad varint (%s)", what)
		return 0
	}
	r.off += n
	return v
}

// span reads a length and returns the offsets of the octets it announces.
func (r *v2Reader) span(what string) (int, int) {
	n := r.uvarint(what)
	if r.err != nil {
		return 0, 0
	}
	if n > uint64(len(r.b)-r.off) {
		r.fail("%s of %d bytes, %d left", what, n, len(r.b)-r.off)
		return 0, 0
	}
	start := r.off
	r.off += int(n)
	return start, r.off
}

func (r *v2Reader) str(what string) string {
	start, end := r.span(what)
	return r.s[start:end]
}

func (r *v2Reader) bytes(what string) []byte {
	start, end := r.span(what)
	if start == end {
		return nil
	}
	return []byte(r.s[start:end])
}

func (r *v2Reader) byte1(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("no %s", what)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *v2Reader) float(what string) float64 {
	if r.err != nil {
		return 0
	}
	if len(r.b)-r.off < 8 {
		r.fail("short %s", what)
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b[r.off:]))
	r.off += 8
	return v
}

// count reads a count of items of at least min bytes each and checks it
// against the bytes left and the limit.
func (r *v2Reader) count(what string, min int, limit uint64) int {
	n := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if n > limit || n > uint64((len(r.b)-r.off)/min) {
		r.fail("%d %s in %d bytes", n, what, len(r.b)-r.off)
		return 0
	}
	return int(n)
}

// decodeBatchV2 decodes b, whose first byte is batchV2, into msgs and recs
// when they are large enough, else into new arrays; it returns the arrays
// it used for both.
func decodeBatchV2(b []byte, msgs []Message, recs []Record) ([]Message, []Record, error) {
	r := &v2Reader{b: b, s: string(b), off: 1}
	nmsg := r.count("messages", minMessageBytes, maxBatchMessages)
	nrec := r.count("records", minRecordBytes, math.MaxInt32)
	if r.err != nil {
		return nil, nil, r.err
	}
	if msgs != nil && cap(msgs) >= nmsg {
		msgs = msgs[:nmsg]
		clear(msgs)
	} else {
		msgs = make([]Message, nmsg)
	}
	switch {
	case nrec == 0:
		recs = recs[:0]
	case cap(recs) >= nrec:
		recs = recs[:nrec]
		clear(recs)
	default:
		recs = make([]Record, nrec)
	}
	all := recs
	for i := range msgs {
		m := &msgs[i]
		f := r.uvarint("message fields")
		if f&^msgKnown != 0 {
			r.fail("message %d: unknown fields %#x", i, f&^msgKnown)
		}
		m.Device = r.str("device")
		m.Received = r.varint("received time")
		if f&msgTenant != 0 {
			m.Tenant = r.str("tenant")
		}
		if f&msgModel != 0 {
			m.Model = r.str("model")
		}
		if f&msgKind != 0 {
			m.Kind = MessageKind(r.byte1("message kind"))
		}
		if f&msgEvent != 0 {
			m.Event = r.str("event")
		}
		if f&msgEventData != 0 {
			m.EventData = r.bytes("event data")
		}
		if f&msgSource != 0 {
			m.Source = r.str("source")
		}
		if f&msgRecords != 0 {
			n := r.count("records", minRecordBytes, uint64(len(recs)))
			if r.err != nil {
				return nil, nil, r.err
			}
			m.Records = recs[:n:n]
			recs = recs[n:]
			for j := range m.Records {
				r.record(&m.Records[j], m.Received)
			}
		}
		if r.err != nil {
			return nil, nil, r.err
		}
	}
	if len(recs) != 0 {
		r.fail("%d records announced but not present", len(recs))
	}
	if r.err == nil && r.off != len(b) {
		r.fail("%d bytes after the last message", len(b)-r.off)
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	for i := range msgs {
		if err := msgs[i].normalize(); err != nil {
			return nil, nil, fmt.Errorf("message %d: %w", i, err)
		}
	}
	return msgs, all, nil
}

func (r *v2Reader) record(rec *Record, received int64) {
	f := r.uvarint("record fields")
	if f&^recKnown != 0 {
		r.fail("unknown record fields %#x", f&^recKnown)
	}
	rec.Property = r.str("property")
	rec.Time = received + r.varint("record time")
	if f&recFloat != 0 {
		rec.Float = r.float("float")
	}
	if f&recUnit != 0 {
		rec.Unit = r.str("unit")
	}
	if f&recKind != 0 {
		rec.Kind = Kind(r.byte1("record kind"))
	}
	if f&recString != 0 {
		rec.String = r.str("string")
	}
	rec.Bool = f&recBool != 0
	if f&recData != 0 {
		rec.Data = r.bytes("data")
	}
	if f&recLat != 0 {
		rec.Lat = r.float("latitude")
	}
	if f&recLon != 0 {
		rec.Lon = r.float("longitude")
	}
	if f&recAlt != 0 {
		rec.Alt = r.float("altitude")
	}
	rec.HasAlt = f&recHasAlt != 0
}

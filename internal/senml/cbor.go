package senml

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// wellformed gates every CBOR input before our own walk of it. fxamacker's
// Wellformed pass checks the encoding and these resource bounds without
// allocating or decoding; the walk that follows can then be simple. It does
// not check duplicate keys or UTF-8 (those happen while decoding into Go
// values), so DupMapKey and UTF8 state intent and the walk checks both
// itself; for duplicates it must anyway, since "v" and 2 are one label.
var wellformed = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  maxDepth,
		MaxArrayElements: maxCBORArray,
		MaxMapPairs:      maxFields,
		IndefLength:      cbor.IndefLengthForbidden, // SensML streams only (RFC 8428 §6)
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic("senml: CBOR decoder options: " + err.Error()) // constant options: a programming error
	}
	return dm
}()

// maxCBORArray bounds every array, the pack included; the pack's own count
// is checked against Limits.MaxRecords first, for a precise error.
const maxCBORArray = 1 << 20

// DecodeCBOR decodes an application/senml+cbor pack: a definite-length
// array of maps keyed by the integer labels of RFC 8428 §6 Table 4, or by
// the text labels of JSON. Tags and indefinite lengths are refused, as are
// duplicate labels; unknown text labels are ignored unless they end in "_".
// The pack is checked as Resolve would check it before it is returned.
func DecodeCBOR(b []byte, lim Limits) (Pack, error) { return decodeCBOR(b, lim, nil) }

func decodeCBOR(b []byte, lim Limits, bf *Buffers) (Pack, error) {
	lim = lim.withDefaults()
	if len(b) > lim.MaxBytes {
		return nil, tooLarge(-1, "", fmt.Sprintf("payload is %d bytes, limit %d", len(b), lim.MaxBytes))
	}
	d := cborDecoder{b: b, rec: -1, lim: lim}
	major, _, n, err := d.head()
	if err != nil {
		return nil, err
	}
	if major != 4 {
		return nil, malformed(-1, "", "pack must be a CBOR array")
	}
	if n > uint64(lim.MaxRecords) {
		return nil, tooLarge(-1, "", fmt.Sprintf("pack has %d records, limit %d", n, lim.MaxRecords))
	}
	if n == 0 {
		if len(b) != d.i {
			return nil, malformed(-1, "", "data after the pack")
		}
		return nil, invalid(-1, "", "pack has no records")
	}
	if err := wellformed.Wellformed(b); err != nil {
		var nl *cbor.MaxNestedLevelError
		var ae *cbor.MaxArrayElementsError
		var mp *cbor.MaxMapPairsError
		if errors.As(err, &nl) || errors.As(err, &ae) || errors.As(err, &mp) {
			return nil, tooLarge(-1, "", err.Error())
		}
		return nil, malformed(-1, "", err.Error())
	}
	// As for JSON: one copy, and every text string is a substring of it.
	d.s = string(b)
	p := bf.packFor(int(n))[:n]
	stores := bf.storesFor(int(n))
	var rs resets
	for i := range p {
		d.rec = i
		rb := recBuilder{st: &stores[i]}
		if err := d.record(&rb); err != nil {
			return nil, err
		}
		if err := rs.apply(i, &rb); err != nil {
			return nil, err
		}
		p[i] = rb.r
	}
	if err := p.check(lim.MaxNameLen); err != nil {
		return nil, err
	}
	return p, nil
}

type cborDecoder struct {
	b   []byte
	s   string // string(b), once Wellformed has passed
	i   int
	rec int
	lim Limits
}

// head reads a data item's initial byte and argument. For major type 7 the
// argument is the raw bits of a float, or the simple value. Wellformed has
// vetted the input by the time records are walked, but head still checks
// bounds so that no input can make it index out of range.
func (d *cborDecoder) head() (major, ai byte, arg uint64, err error) {
	if d.i >= len(d.b) {
		return 0, 0, 0, malformed(d.rec, "", "unexpected end of CBOR data")
	}
	ib := d.b[d.i]
	d.i++
	major, ai = ib>>5, ib&0x1f
	var n int
	switch {
	case ai < 24:
		return major, ai, uint64(ai), nil
	case ai == 24:
		n = 1
	case ai == 25:
		n = 2
	case ai == 26:
		n = 4
	case ai == 27:
		n = 8
	default:
		return 0, 0, 0, malformed(d.rec, "", "indefinite-length or reserved CBOR encoding")
	}
	if len(d.b)-d.i < n {
		return 0, 0, 0, malformed(d.rec, "", "unexpected end of CBOR data")
	}
	for _, c := range d.b[d.i : d.i+n] {
		arg = arg<<8 | uint64(c)
	}
	d.i += n
	return major, ai, arg, nil
}

// bytes returns the n bytes of a string item's content as a substring.
func (d *cborDecoder) bytes(n uint64) (string, error) {
	if n > uint64(len(d.b)-d.i) {
		return "", malformed(d.rec, "", "unexpected end of CBOR data")
	}
	s := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return s, nil
}

func (d *cborDecoder) record(b *recBuilder) error {
	major, _, n, err := d.head()
	if err != nil {
		return err
	}
	if major != 5 {
		return malformed(d.rec, "", "record must be a CBOR map")
	}
	if n > maxFields {
		return tooLarge(d.rec, "", fmt.Sprintf("record has more than %d fields", maxFields))
	}
	for k := uint64(0); k < n; k++ {
		major, _, arg, err := d.head()
		if err != nil {
			return err
		}
		li := -1
		switch major {
		case 0, 1:
			if arg <= 8 {
				l := int64(arg)
				if major == 1 {
					l = -1 - l
				}
				li = cborLabelIndex(l)
			}
			if li < 0 {
				neg := ""
				if major == 1 {
					neg = "-1-"
				}
				return malformed(d.rec, "", fmt.Sprintf("unknown integer label %s%d: RFC 8428 Table 4 is conclusive", neg, arg))
			}
		case 3:
			if arg > uint64(d.lim.MaxNameLen) {
				return tooLarge(d.rec, "", fmt.Sprintf("label longer than %d bytes", d.lim.MaxNameLen))
			}
			key, err := d.bytes(arg)
			if err != nil {
				return err
			}
			if !utf8.ValidString(key) {
				return malformed(d.rec, "", "label is not valid UTF-8")
			}
			if li = labelIndex(key); li < 0 {
				if len(key) > 0 && key[len(key)-1] == '_' {
					return invalid(d.rec, key, "label ends in \"_\" so must be understood (RFC 8428 §4.4), and is not")
				}
				if err := b.markUnknown(d.rec, key); err != nil {
					return err
				}
				if err := d.skip(2); err != nil {
					return err
				}
				continue
			}
		default:
			return malformed(d.rec, "", "label must be an integer or a text string")
		}
		if err := b.mark(d.rec, li); err != nil {
			return err
		}
		if err := d.field(b, li); err != nil {
			return err
		}
	}
	return nil
}

func (d *cborDecoder) field(b *recBuilder, li int) error {
	label := labelNames[li]
	major, ai, arg, err := d.head()
	if err != nil {
		return err
	}
	switch {
	case li == lVd:
		if major != 2 {
			return malformed(d.rec, label, "must be a byte string")
		}
		raw, err := d.bytes(arg)
		if err != nil {
			return err
		}
		if n := base64.RawURLEncoding.EncodedLen(len(raw)); n > d.lim.MaxStringLen {
			return tooLarge(d.rec, label, fmt.Sprintf("%d bytes, %d as base64url, limit %d", len(raw), n, d.lim.MaxStringLen))
		}
		return b.setString(d.rec, li, base64.RawURLEncoding.EncodeToString([]byte(raw)), &d.lim)
	case isStringLabel(li):
		if major != 3 {
			return malformed(d.rec, label, "must be a text string")
		}
		s, err := d.bytes(arg)
		if err != nil {
			return err
		}
		if !utf8.ValidString(s) {
			return malformed(d.rec, label, "text string is not valid UTF-8")
		}
		return b.setString(d.rec, li, s, &d.lim)
	case li == lVb:
		if major != 7 || (ai != 20 && ai != 21) {
			return malformed(d.rec, label, "must be true or false")
		}
		b.setBool(ai == 21)
		return nil
	case li == lBver:
		// RFC 8428 §6: "For the version number, only an unsigned
		// integer is allowed."
		if major != 0 {
			return malformed(d.rec, label, "must be an unsigned integer")
		}
		return b.setVersion(d.rec, arg)
	}
	var f float64
	switch {
	case major == 0:
		f = float64(arg)
	case major == 1:
		f = -1 - float64(arg)
	case major == 7 && ai == 25:
		f = halfToFloat64(uint16(arg))
	case major == 7 && ai == 26:
		f = float64(math.Float32frombits(uint32(arg)))
	case major == 7 && ai == 27:
		f = math.Float64frombits(arg)
	default:
		return malformed(d.rec, label, "must be a number")
	}
	return b.setNumber(d.rec, li, f)
}

// skip passes over one data item. depth is the nesting of its container.
func (d *cborDecoder) skip(depth int) error {
	major, _, arg, err := d.head()
	if err != nil {
		return err
	}
	if (major == 2 || major == 3) && arg > uint64(d.lim.MaxStringLen) {
		// As in JSON: an ignored value is still bounded.
		return tooLarge(d.rec, "", fmt.Sprintf("string in an extension value longer than %d bytes", d.lim.MaxStringLen))
	}
	switch major {
	case 2:
		_, err := d.bytes(arg)
		return err
	case 3:
		// Ignored or not, text must be text (RFC 8949 §3.1): a
		// downstream consumer of the raw payload may not be as careful.
		s, err := d.bytes(arg)
		if err == nil && !utf8.ValidString(s) {
			err = malformed(d.rec, "", "text string is not valid UTF-8")
		}
		return err
	case 4, 5:
		if depth+1 > maxDepth {
			return tooLarge(d.rec, "", fmt.Sprintf("nested deeper than %d levels", maxDepth))
		}
		items := arg
		if major == 5 {
			if arg > maxFields {
				return tooLarge(d.rec, "", fmt.Sprintf("map has more than %d pairs", maxFields))
			}
			items *= 2
		}
		if items > uint64(len(d.b)-d.i) {
			return malformed(d.rec, "", "unexpected end of CBOR data")
		}
		for k := uint64(0); k < items; k++ {
			if err := d.skip(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case 6:
		return malformed(d.rec, "", "CBOR tags are not accepted")
	}
	return nil // integers, simple values, floats: the head was all
}

// halfToFloat64 converts an IEEE 754 binary16 value.
func halfToFloat64(h uint16) float64 {
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	var f float64
	switch exp {
	case 0:
		f = math.Ldexp(frac, -24)
	case 0x1f:
		if frac == 0 {
			f = math.Inf(1)
		} else {
			f = math.NaN()
		}
	default:
		f = math.Ldexp(frac+1024, exp-25)
	}
	if h&0x8000 != 0 {
		f = -f
	}
	return f
}

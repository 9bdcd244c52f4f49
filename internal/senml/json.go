package senml

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/wanwu-iot/wanwu/internal/jsontext"
)

// DecodeJSON decodes an application/senml+json pack: a JSON array of
// objects (RFC 8428 §5). Labels are matched byte for byte. Unknown labels
// are ignored unless they end in "_", which RFC 8428 §4.4 makes
// must-understand; a label given twice is refused. The pack is checked as
// Resolve would check it before it is returned.
func DecodeJSON(b []byte, lim Limits) (Pack, error) { return decodeJSON(b, lim, nil) }

func decodeJSON(b []byte, lim Limits, bf *Buffers) (Pack, error) {
	lim = lim.withDefaults()
	if len(b) > lim.MaxBytes {
		return nil, tooLarge(-1, "", fmt.Sprintf("payload is %d bytes, limit %d", len(b), lim.MaxBytes))
	}
	// One copy of the input lets every string without escapes be a
	// substring of it: one allocation for all names, units and values.
	d := jsonDecoder{s: string(b), lim: lim, bf: bf}
	p, err := d.pack()
	if err != nil {
		return nil, err
	}
	if err := p.check(lim.MaxNameLen); err != nil {
		return nil, err
	}
	return p, nil
}

type jsonDecoder struct {
	s   string
	i   int
	lim Limits
	rec int // record being decoded, for errors; -1 outside records
	bf  *Buffers
}

func (d *jsonDecoder) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the next byte, or 0 at the end (never valid where peeked).
func (d *jsonDecoder) peek() byte {
	if d.i < len(d.s) {
		return d.s[d.i]
	}
	return 0
}

func (d *jsonDecoder) pack() (Pack, error) {
	d.rec = -1
	d.ws()
	if d.peek() != '[' {
		return nil, malformed(-1, "", "pack must be a JSON array")
	}
	d.i++
	d.ws()
	if d.peek() == ']' {
		d.i++
		if err := d.end(); err != nil {
			return nil, err
		}
		return nil, invalid(-1, "", "pack has no records")
	}
	// Every record opens with '{' and takes at least 8 bytes ({"v":0},),
	// so both bound the pack's length from above: the pack is allocated
	// once, and input like "[{{{{" cannot make it large.
	n := min(strings.Count(d.s[d.i:], "{"), (len(d.s)-d.i)/8+1, d.lim.MaxRecords)
	p := d.bf.packFor(n)
	stores := d.bf.storesFor(n)
	var rs resets
	for {
		d.rec = len(p)
		if len(p) == d.lim.MaxRecords {
			return nil, tooLarge(len(p), "", fmt.Sprintf("pack has more than %d records", d.lim.MaxRecords))
		}
		var b recBuilder
		if len(p) < len(stores) {
			b.st = &stores[len(p)]
		}
		if err := d.record(&b); err != nil {
			return nil, err
		}
		if err := rs.apply(d.rec, &b); err != nil {
			return nil, err
		}
		p = append(p, b.r)
		d.ws()
		switch d.peek() {
		case ',':
			d.i++
			d.ws()
			continue
		case ']':
			d.i++
		default:
			return nil, malformed(d.rec, "", "expected ',' or ']' after the record")
		}
		break
	}
	d.rec = -1
	if err := d.end(); err != nil {
		return nil, err
	}
	return p, nil
}

func (d *jsonDecoder) end() error {
	d.ws()
	if d.i != len(d.s) {
		return malformed(-1, "", fmt.Sprintf("data after the pack at byte %d", d.i))
	}
	return nil
}

func (d *jsonDecoder) record(b *recBuilder) error {
	if d.peek() != '{' {
		return malformed(d.rec, "", "record must be a JSON object")
	}
	d.i++
	d.ws()
	if d.peek() == '}' {
		d.i++
		return nil
	}
	for nf := 0; ; nf++ {
		if nf == maxFields {
			return tooLarge(d.rec, "", fmt.Sprintf("record has more than %d fields", maxFields))
		}
		if d.peek() != '"' {
			return malformed(d.rec, "", "expected a label string")
		}
		key, err := d.str("", d.lim.MaxNameLen)
		if err != nil {
			return err
		}
		d.ws()
		if d.peek() != ':' {
			return malformed(d.rec, key, "expected ':' after the label")
		}
		d.i++
		d.ws()
		if err := d.field(b, key); err != nil {
			return err
		}
		d.ws()
		switch d.peek() {
		case ',':
			d.i++
			d.ws()
			continue
		case '}':
			d.i++
			return nil
		}
		return malformed(d.rec, key, "expected ',' or '}' after the value")
	}
}

func (d *jsonDecoder) field(b *recBuilder, key string) error {
	li := labelIndex(key)
	if li < 0 {
		if strings.HasSuffix(key, "_") {
			return invalid(d.rec, key, "label ends in \"_\" so must be understood (RFC 8428 §4.4), and is not")
		}
		if err := b.markUnknown(d.rec, key); err != nil {
			return err
		}
		return d.skip(key, 2)
	}
	if err := b.mark(d.rec, li); err != nil {
		return err
	}
	label := labelNames[li]
	switch c := d.peek(); {
	case isStringLabel(li):
		if c != '"' {
			return malformed(d.rec, label, "must be a string")
		}
		max := d.lim.MaxNameLen
		if li == lVs || li == lVd {
			max = d.lim.MaxStringLen
		}
		s, err := d.str(label, max)
		if err != nil {
			return err
		}
		return b.setString(d.rec, li, s, &d.lim)
	case li == lVb:
		switch {
		case strings.HasPrefix(d.s[d.i:], "true"):
			d.i += 4
			b.setBool(true)
		case strings.HasPrefix(d.s[d.i:], "false"):
			d.i += 5
			b.setBool(false)
		default:
			return malformed(d.rec, label, "must be true or false")
		}
		return d.afterLiteral(label)
	default: // numbers, bver included
		if c != '-' && (c < '0' || c > '9') {
			return malformed(d.rec, label, "must be a number")
		}
		f, err := d.num(label)
		if err != nil {
			return err
		}
		if li == lBver {
			if f != math.Trunc(f) || f < 0 || f > math.MaxInt32 {
				if f > math.MaxInt32 {
					return invalid(d.rec, label, "unsupported version")
				}
				return invalid(d.rec, label, "version must be a positive integer")
			}
			return b.setVersion(d.rec, uint64(f))
		}
		return b.setNumber(d.rec, li, f)
	}
}

// afterLiteral refuses "truex" and the like: a literal must end at a
// delimiter.
func (d *jsonDecoder) afterLiteral(label string) error {
	if d.i < len(d.s) {
		switch d.s[d.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
		default:
			return malformed(d.rec, label, "invalid literal")
		}
	}
	return nil
}

// num scans a JSON number (RFC 8259 §6 grammar, strictly: no leading
// zeros, no '+', no bare '.') and parses it.
func (d *jsonDecoder) num(label string) (float64, error) {
	start := d.i
	s := d.s
	i := d.i
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return 0, malformed(d.rec, label, "invalid number")
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return 0, malformed(d.rec, label, "invalid number")
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return 0, malformed(d.rec, label, "invalid number")
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i-start > maxNumLen {
		return 0, tooLarge(d.rec, label, fmt.Sprintf("number longer than %d bytes", maxNumLen))
	}
	d.i = i
	if err := d.afterLiteral(label); err != nil {
		return 0, err
	}
	if f, ok := exactDecimal(s[start:i]); ok {
		return f, nil
	}
	f, err := strconv.ParseFloat(s[start:i], 64)
	if err != nil {
		// The grammar is checked, so only range errors get here.
		return 0, invalid(d.rec, label, "number out of the float64 range")
	}
	return f, nil
}

// exactPow10 are the powers of ten a float64 holds exactly.
var exactPow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// exactDecimal converts a number the grammar has checked that has at most
// 15 digits and no exponent, the numbers devices send: its digits as an
// integer and the power of ten are both exact in a float64, so one IEEE
// division gives the correctly rounded result, as strconv.ParseFloat would,
// at a fraction of its cost. ok is false for anything else.
func exactDecimal(num string) (f float64, ok bool) {
	neg := num[0] == '-'
	if neg {
		num = num[1:]
	}
	var mant uint64
	digits, frac := 0, -1
	for j := 0; j < len(num); j++ {
		c := num[j]
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
			if frac >= 0 {
				frac++
			}
		case c == '.':
			frac = 0
		default: // an exponent
			return 0, false
		}
	}
	if digits > 15 {
		return 0, false
	}
	f = float64(mant)
	if frac > 0 {
		f /= exactPow10[frac]
	}
	if neg {
		f = -f
	}
	return f, true
}

// str decodes a JSON string starting at the opening quote. Without escapes
// it is a substring of the input and costs nothing. max bounds the decoded
// length; field names the label for errors ("" while reading a label).
func (d *jsonDecoder) str(field string, max int) (string, error) {
	d.i++ // opening quote
	start := d.i
	s := d.s
	i := start
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			if i-start > max {
				return "", tooLarge(d.rec, field, fmt.Sprintf("string of %d bytes, limit %d", i-start, max))
			}
			d.i = i + 1
			return s[start:i], nil
		case c == '\\':
			return d.strSlow(field, max, start, i)
		case c < 0x20:
			return "", malformed(d.rec, field, "control character in string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return "", malformed(d.rec, field, "string is not valid UTF-8")
			}
			i += n
		}
		if i-start > max+1 {
			// Stop early: a string over the limit need not be scanned
			// to its end to be refused.
			return "", tooLarge(d.rec, field, fmt.Sprintf("string longer than %d bytes", max))
		}
	}
	return "", malformed(d.rec, field, "unterminated string")
}

// strSlow continues str once an escape is seen at i, building the decoded
// string in a buffer.
func (d *jsonDecoder) strSlow(field string, max, start, i int) (string, error) {
	s := d.s
	buf := make([]byte, 0, i-start+16)
	buf = append(buf, s[start:i]...)
	for i < len(s) {
		if len(buf) > max {
			return "", tooLarge(d.rec, field, fmt.Sprintf("string longer than %d bytes", max))
		}
		c := s[i]
		switch {
		case c == '"':
			d.i = i + 1
			return string(buf), nil
		case c == '\\':
			var eerr *jsontext.EscapeError
			if buf, i, eerr = jsontext.AppendEscape(buf, s, i); eerr != nil {
				return "", malformed(d.rec, field, eerr.Reason)
			}
		case c < 0x20:
			return "", malformed(d.rec, field, "control character in string")
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return "", malformed(d.rec, field, "string is not valid UTF-8")
			}
			buf = append(buf, s[i:i+n]...)
			i += n
		}
	}
	return "", malformed(d.rec, field, "unterminated string")
}

// skip passes over the value of an unknown label, checking that it is valid
// JSON within the nesting bound. depth is the nesting of the value's
// container (the record is at 2).
func (d *jsonDecoder) skip(label string, depth int) error {
	switch c := d.peek(); {
	case c == '"':
		_, err := d.str(label, d.lim.MaxStringLen)
		return err
	case c == '-' || c >= '0' && c <= '9':
		_, err := d.num(label)
		// An unknown label may carry any number; only its syntax is ours
		// to check.
		if err != nil && !isInvalid(err) {
			return err
		}
		return nil
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range [...]string{"true", "false", "null"} {
			if strings.HasPrefix(d.s[d.i:], lit) {
				d.i += len(lit)
				return d.afterLiteral(label)
			}
		}
		return malformed(d.rec, label, "invalid literal")
	case c == '[' || c == '{':
		if depth+1 > maxDepth {
			return tooLarge(d.rec, label, fmt.Sprintf("nested deeper than %d levels", maxDepth))
		}
		d.i++
		d.ws()
		closer := byte(']')
		if c == '{' {
			closer = '}'
		}
		if d.peek() == closer {
			d.i++
			return nil
		}
		for {
			if c == '{' {
				if d.peek() != '"' {
					return malformed(d.rec, label, "expected a member name")
				}
				if _, err := d.str(label, d.lim.MaxStringLen); err != nil {
					return err
				}
				d.ws()
				if d.peek() != ':' {
					return malformed(d.rec, label, "expected ':'")
				}
				d.i++
				d.ws()
			}
			if err := d.skip(label, depth+1); err != nil {
				return err
			}
			d.ws()
			switch d.peek() {
			case ',':
				d.i++
				d.ws()
				continue
			case closer:
				d.i++
				return nil
			}
			return malformed(d.rec, label, "expected ',' or a closing bracket")
		}
	}
	return malformed(d.rec, label, "expected a JSON value")
}

func isInvalid(err error) bool {
	e, ok := err.(*Error)
	return ok && e.Err == ErrInvalid
}

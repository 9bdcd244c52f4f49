package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file implements the JSON Canonicalization Scheme (RFC 8785, "JCS"):
// object members sorted by their names' UTF-16 code units, no whitespace,
// numbers in ECMAScript form, strings with the minimal escaping. Leaves are
// JCS so that anyone with a JCS library (they exist for most languages) can
// recompute a leaf from an exported entry.

// maxJSONDepth bounds recursion on hostile input; audit details nest little.
const maxJSONDepth = 64

var errJSONDepth = errors.New("JSON nested too deeply")

// jvalue is a decoded JSON value. Objects keep their members as a slice so
// that duplicates can be detected (I-JSON, which JCS requires, forbids them).
type jvalue struct {
	kind  byte // 'o' object, 'a' array, 's' string, 'n' number, 't' true, 'f' false, 'z' null
	keys  []string
	vals  []*jvalue
	elems []*jvalue
	str   string
	num   float64
}

// parseJSON decodes exactly one JSON value, rejecting duplicate member names,
// invalid UTF-8 and numbers outside IEEE 754 double range.
func parseJSON(data []byte) (*jvalue, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("JSON is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readJSON(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			return nil, errors.New("unexpected data after the JSON value")
		}
		return nil, err
	}
	return v, nil
}

func readJSON(dec *json.Decoder, depth int) (*jvalue, error) {
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxJSONDepth {
			return nil, errJSONDepth
		}
		switch t {
		case '{':
			v := &jvalue{kind: 'o'}
			seen := make(map[string]bool)
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is %T", kt)
				}
				if seen[k] {
					return nil, fmt.Errorf("duplicate member %q", k)
				}
				seen[k] = true
				e, err := readJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				v.keys = append(v.keys, k)
				v.vals = append(v.vals, e)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return v, nil
		case '[':
			v := &jvalue{kind: 'a'}
			for dec.More() {
				e, err := readJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				v.elems = append(v.elems, e)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return v, nil
		}
		return nil, fmt.Errorf("unexpected %q", rune(t))
	case string:
		return &jvalue{kind: 's', str: t}, nil
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil {
			return nil, fmt.Errorf("number %s is outside IEEE 754 double range", t)
		}
		return &jvalue{kind: 'n', num: f}, nil
	case bool:
		if t {
			return &jvalue{kind: 't'}, nil
		}
		return &jvalue{kind: 'f'}, nil
	case nil:
		return &jvalue{kind: 'z'}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// appendJCS appends the canonical form of v.
func appendJCS(b []byte, v *jvalue) []byte {
	switch v.kind {
	case 'o':
		order := make([]int, len(v.keys))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(i, j int) int { return compareUTF16(v.keys[i], v.keys[j]) })
		b = append(b, '{')
		for n, i := range order {
			if n > 0 {
				b = append(b, ',')
			}
			b = appendJCSString(b, v.keys[i])
			b = append(b, ':')
			b = appendJCS(b, v.vals[i])
		}
		return append(b, '}')
	case 'a':
		b = append(b, '[')
		for i, e := range v.elems {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJCS(b, e)
		}
		return append(b, ']')
	case 's':
		return appendJCSString(b, v.str)
	case 'n':
		return appendJCSNumber(b, v.num)
	case 't':
		return append(b, "true"...)
	case 'f':
		return append(b, "false"...)
	}
	return append(b, "null"...)
}

// appendJCSNumber formats f as ECMAScript's Number.prototype.toString does,
// which is what encoding/json implements for float64, except that JCS writes
// negative zero as 0.
func appendJCSNumber(b []byte, f float64) []byte {
	if f == 0 {
		return append(b, '0')
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

func appendJCSString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// compareUTF16 orders strings by UTF-16 code units, as RFC 8785 §3.2.3 requires.
// It differs from byte order only when a supplementary-plane character meets
// one in U+E000..U+FFFF.
func compareUTF16(a, b string) int {
	ua := utf16.Encode([]rune(a))
	ub := utf16.Encode([]rune(b))
	return slices.Compare(ua, ub)
}

// canonicalObject returns the JCS form of raw, which must be a JSON object.
// Empty input means an empty object.
func canonicalObject(raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return []byte("{}"), nil
	}
	v, err := parseJSON(raw)
	if err != nil {
		return nil, err
	}
	if v.kind != 'o' {
		return nil, errors.New("must be a JSON object")
	}
	return appendJCS(nil, v), nil
}

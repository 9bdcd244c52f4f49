package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/wanwu-iot/wanwu/internal/jsontext"
)

// A small JSON parser for plain-JSON telemetry, vendor payloads and event
// data. encoding/json would do, but it allocates a map per object and an
// interface per value, silently keeps the last of duplicate keys (two parsers
// could then honestly disagree about what a device sent), and cannot bound
// the number of values. This one parses into a flat slice of nodes in
// document order, with strings as substrings of one copy of the payload, so a
// flat object costs three allocations however many members it has.

type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNum
	jStr
	jObj
	jArr
)

func (k jkind) String() string {
	switch k {
	case jBool:
		return "boolean"
	case jNum:
		return "number"
	case jStr:
		return "string"
	case jObj:
		return "object"
	case jArr:
		return "array"
	}
	return "null"
}

// jnode is one JSON value. An object's or array's children follow it
// directly; a node's next sibling is at its end index.
type jnode struct {
	key  string  // member name, when the parent is an object
	str  string  // jStr: the value; jNum: the number as sent
	num  float64 // jNum
	end  int32   // index one past this node's last descendant
	n    int32   // jObj, jArr: number of direct children
	kind jkind
	b    bool // jBool
}

// Bounds on a JSON document beyond the payload size. A value count bound
// keeps a 64 KiB payload of "[0,0,0,..." from costing megabytes of nodes;
// depth is bounded because the validators and the CEL conversion recurse.
const (
	maxJSONNodes = 8192
	maxJSONDepth = 32
	maxNumLen    = 64 // bytes of one number; RFC 8428 §5 asks for under 25
)

var (
	errJSONTooLarge = errors.New("too many JSON values")
	errJSONSyntax   = errors.New("invalid JSON")
)

// jsonError is a syntax error at a byte offset; it unwraps to errJSONSyntax
// or errJSONTooLarge.
type jsonError struct {
	off int
	msg string
	err error
}

func (e *jsonError) Error() string { return fmt.Sprintf("offset %d: %s", e.off, e.msg) }
func (e *jsonError) Unwrap() error { return e.err }

type jparser struct {
	s     string
	i     int
	nodes []jnode
}

// parseJSON parses exactly one JSON value. b is copied once; every string in
// the result is a substring of that copy or, when it had escapes, its own.
func parseJSON(b []byte) ([]jnode, error) {
	p := jparser{s: string(b)}
	// A guess that saves regrowing for typical small objects, capped so a
	// long string does not reserve nodes it will never fill.
	p.nodes = make([]jnode, 0, min(len(b)/8+2, 64))
	if err := p.value(0); err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, p.fail("unexpected data after the JSON value")
	}
	return p.nodes, nil
}

func (p *jparser) fail(msg string) error {
	return &jsonError{off: p.i, msg: msg, err: errJSONSyntax}
}

func (p *jparser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jparser) add(n jnode) (int, error) {
	if len(p.nodes) >= maxJSONNodes {
		return 0, &jsonError{off: p.i, msg: fmt.Sprintf("more than %d JSON values", maxJSONNodes), err: errJSONTooLarge}
	}
	p.nodes = append(p.nodes, n)
	return len(p.nodes) - 1, nil
}

func (p *jparser) value(depth int) error {
	p.ws()
	if p.i >= len(p.s) {
		return p.fail("unexpected end of input")
	}
	switch c := p.s[p.i]; {
	case c == '{' || c == '[':
		if depth >= maxJSONDepth {
			return &jsonError{off: p.i, msg: fmt.Sprintf("nested deeper than %d levels", maxJSONDepth), err: errJSONTooLarge}
		}
		if c == '{' {
			return p.object(depth)
		}
		return p.array(depth)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return err
		}
		_, err = p.add(jnode{kind: jStr, str: s, end: int32(len(p.nodes) + 1)})
		return err
	case c == 't':
		return p.literal("true", jnode{kind: jBool, b: true})
	case c == 'f':
		return p.literal("false", jnode{kind: jBool})
	case c == 'n':
		return p.literal("null", jnode{kind: jNull})
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return p.fail(fmt.Sprintf("unexpected byte %q", p.s[p.i]))
}

func (p *jparser) literal(lit string, n jnode) error {
	if len(p.s)-p.i < len(lit) || p.s[p.i:p.i+len(lit)] != lit {
		return p.fail("invalid literal")
	}
	p.i += len(lit)
	n.end = int32(len(p.nodes) + 1)
	_, err := p.add(n)
	return err
}

func (p *jparser) object(depth int) error {
	idx, err := p.add(jnode{kind: jObj})
	if err != nil {
		return err
	}
	p.i++ // '{'
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		p.nodes[idx].end = int32(len(p.nodes))
		return nil
	}
	var n int32
	for {
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return p.fail("expected a member name")
		}
		key, err := p.str()
		if err != nil {
			return err
		}
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return p.fail("expected ':'")
		}
		p.i++
		child := len(p.nodes)
		if err := p.value(depth + 1); err != nil {
			return err
		}
		p.nodes[child].key = key
		n++
		p.ws()
		if p.i >= len(p.s) {
			return p.fail("unexpected end of input in an object")
		}
		if p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.s[p.i] != '}' {
			return p.fail("expected ',' or '}'")
		}
		p.i++
		break
	}
	p.nodes[idx].n = n
	p.nodes[idx].end = int32(len(p.nodes))
	if k, dup := duplicateKey(p.nodes, idx); dup {
		return p.fail(fmt.Sprintf("duplicate member %q", truncate(k)))
	}
	return nil
}

// duplicateKey finds a member name that appears twice in object idx. Small
// objects (the common case) compare pairwise, which beats hashing.
func duplicateKey(nodes []jnode, idx int) (string, bool) {
	if nodes[idx].n <= 16 {
		for c := idx + 1; c < int(nodes[idx].end); c = int(nodes[c].end) {
			for d := int(nodes[c].end); d < int(nodes[idx].end); d = int(nodes[d].end) {
				if nodes[c].key == nodes[d].key {
					return nodes[c].key, true
				}
			}
		}
		return "", false
	}
	seen := make(map[string]struct{}, nodes[idx].n)
	for c := idx + 1; c < int(nodes[idx].end); c = int(nodes[c].end) {
		if _, ok := seen[nodes[c].key]; ok {
			return nodes[c].key, true
		}
		seen[nodes[c].key] = struct{}{}
	}
	return "", false
}

func (p *jparser) array(depth int) error {
	idx, err := p.add(jnode{kind: jArr})
	if err != nil {
		return err
	}
	p.i++ // '['
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		p.nodes[idx].end = int32(len(p.nodes))
		return nil
	}
	var n int32
	for {
		if err := p.value(depth + 1); err != nil {
			return err
		}
		n++
		p.ws()
		if p.i >= len(p.s) {
			return p.fail("unexpected end of input in an array")
		}
		if p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.s[p.i] != ']' {
			return p.fail("expected ',' or ']'")
		}
		p.i++
		break
	}
	p.nodes[idx].n = n
	p.nodes[idx].end = int32(len(p.nodes))
	return nil
}

// number scans the JSON number grammar exactly (strconv.ParseFloat alone
// would also take "0x1p3", "Inf", "1_000" and leading zeros).
func (p *jparser) number() error {
	start := p.i
	s := p.s
	i := p.i
	if s[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - j
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		p.i = i
		return p.fail("invalid number")
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			p.i = i
			return p.fail("invalid number: no digits after '.'")
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			p.i = i
			return p.fail("invalid number: no digits in the exponent")
		}
	}
	p.i = i
	text := s[start:i]
	if len(text) > maxNumLen {
		return p.fail(fmt.Sprintf("number longer than %d bytes", maxNumLen))
	}
	f, err := strconv.ParseFloat(text, 64)
	// ParseFloat reports underflow to zero as a range error too; only
	// overflow to ±Inf makes the number unusable.
	if err != nil && !finite(f) {
		p.i = start
		return p.fail("number out of range")
	}
	_, err = p.add(jnode{kind: jNum, num: f, str: text, end: int32(len(p.nodes) + 1)})
	return err
}

// str scans a string starting at the opening quote. Strings without escapes
// are substrings of the payload.
func (p *jparser) str() (string, error) {
	s := p.s
	start := p.i + 1
	ascii := true
	for i := start; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			p.i = i + 1
			v := s[start:i]
			if !ascii && !utf8.ValidString(v) {
				p.i = start
				return "", p.fail("string is not valid UTF-8")
			}
			return v, nil
		case c == '\\':
			return p.strSlow(start, i)
		case c < 0x20:
			p.i = i
			return "", p.fail("control character in a string")
		case c >= 0x80:
			ascii = false
		}
	}
	p.i = len(s)
	return "", p.fail("unterminated string")
}

func (p *jparser) strSlow(start, i int) (string, error) {
	s := p.s
	buf := make([]byte, 0, i-start+16)
	buf = append(buf, s[start:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			p.i = i + 1
			if !utf8.Valid(buf) {
				p.i = start
				return "", p.fail("string is not valid UTF-8")
			}
			return string(buf), nil
		case c < 0x20:
			p.i = i
			return "", p.fail("control character in a string")
		case c != '\\':
			buf = append(buf, c)
			i++
			continue
		}
		var eerr *jsontext.EscapeError
		if buf, i, eerr = jsontext.AppendEscape(buf, s, i); eerr != nil {
			p.i = eerr.At
			return "", p.fail(eerr.Reason)
		}
	}
	p.i = len(s)
	return "", p.fail("unterminated string")
}

// member returns the index of object idx's member key, or -1.
func member(nodes []jnode, idx int, key string) int {
	for c := idx + 1; c < int(nodes[idx].end); c = int(nodes[c].end) {
		if nodes[c].key == key {
			return c
		}
	}
	return -1
}

// appendJSON writes node idx and its descendants as compact JSON, members in
// the order sent and numbers as sent.
func appendJSON(dst []byte, nodes []jnode, idx int) []byte {
	n := &nodes[idx]
	switch n.kind {
	case jNull:
		return append(dst, "null"...)
	case jBool:
		if n.b {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case jNum:
		return append(dst, n.str...)
	case jStr:
		return jsontext.AppendString(dst, n.str)
	case jObj:
		dst = append(dst, '{')
		for c := idx + 1; c < int(n.end); c = int(nodes[c].end) {
			if c != idx+1 {
				dst = append(dst, ',')
			}
			dst = jsontext.AppendString(dst, nodes[c].key)
			dst = append(dst, ':')
			dst = appendJSON(dst, nodes, c)
		}
		return append(dst, '}')
	case jArr:
		dst = append(dst, '[')
		for c := idx + 1; c < int(n.end); c = int(nodes[c].end) {
			if c != idx+1 {
				dst = append(dst, ',')
			}
			dst = appendJSON(dst, nodes, c)
		}
		return append(dst, ']')
	}
	return dst
}

// toNative converts node idx to the values encoding/json would produce
// (map[string]any, []any, float64, string, bool, nil), which CEL adapts
// without reflection.
func toNative(nodes []jnode, idx int) any {
	n := &nodes[idx]
	switch n.kind {
	case jBool:
		return n.b
	case jNum:
		return n.num
	case jStr:
		return n.str
	case jObj:
		m := make(map[string]any, n.n)
		for c := idx + 1; c < int(n.end); c = int(nodes[c].end) {
			m[nodes[c].key] = toNative(nodes, c)
		}
		return m
	case jArr:
		a := make([]any, 0, n.n)
		for c := idx + 1; c < int(n.end); c = int(nodes[c].end) {
			a = append(a, toNative(nodes, c))
		}
		return a
	}
	return nil
}

// truncate shortens what a device sent before it is quoted back in a
// message: a rejection names the offender, it does not echo a payload.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

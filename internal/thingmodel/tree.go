package thingmodel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
)

// node is a generic JSON value that keeps object keys in document order and
// remembers duplicates. encoding/json's struct decoding cannot do either, and it
// stops at the first unknown field, while model authors need every problem at
// once, each with its path.
type node struct {
	kind  nodeKind
	keys  []string // object keys, in order
	vals  []*node  // object values, parallel to keys
	elems []*node  // array elements
	str   string
	num   json.Number
	b     bool
}

type nodeKind uint8

const (
	kindNull nodeKind = iota
	kindObject
	kindArray
	kindString
	kindNumber
	kindBool
)

func (k nodeKind) String() string {
	switch k {
	case kindObject:
		return "object"
	case kindArray:
		return "array"
	case kindString:
		return "string"
	case kindNumber:
		return "number"
	case kindBool:
		return "boolean"
	}
	return "null"
}

// maxNesting bounds recursion while building the tree. A valid model nests far
// less (schemas are at most 4 deep); the bound only keeps hostile input from
// costing stack.
const maxNesting = 32

var errTooDeep = errors.New("JSON nesting too deep")

// parseTree decodes exactly one JSON value from data.
func parseTree(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := readValue(dec, 0)
	if err != nil {
		return nil, positioned(data, dec.InputOffset(), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("unexpected data after the top-level value")
		}
		return nil, positioned(data, dec.InputOffset(), err)
	}
	return n, nil
}

// positioned says where in data a syntax error is, as line and column (from
// 1), so that an editor finds it: a SyntaxError's own offset, the end of
// the document for one that ended early, else where the decoder stopped.
func positioned(data []byte, at int64, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		at = se.Offset
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		at = int64(len(data))
		err = errors.New("the document ends before its value does")
	}
	at = min(max(at, 0), int64(len(data)))
	line, col := 1, 1
	for _, b := range data[:at] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Errorf("line %d, column %d: %w", line, col, err)
}

func readValue(dec *json.Decoder, depth int) (*node, error) {
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxNesting {
			return nil, errTooDeep
		}
		switch t {
		case '{':
			n := &node{kind: kindObject}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is %T, not a string", kt)
				}
				v, err := readValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k)
				n.vals = append(n.vals, v)
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, err
			}
			return n, nil
		case '[':
			n := &node{kind: kindArray}
			for dec.More() {
				v, err := readValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.elems = append(n.elems, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return n, nil
		}
		return nil, fmt.Errorf("unexpected %q", rune(t))
	case string:
		return &node{kind: kindString, str: t}, nil
	case json.Number:
		return &node{kind: kindNumber, num: t}, nil
	case bool:
		return &node{kind: kindBool, b: t}, nil
	case nil:
		return &node{kind: kindNull}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// child returns the JSONPath of member key under path. Keys that are not plain
// identifiers use bracket notation so the path stays unambiguous.
func child(path, key string) string {
	if plainKey.MatchString(key) {
		return path + "." + key
	}
	q, _ := json.Marshal(key)
	return path + "[" + string(q) + "]"
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

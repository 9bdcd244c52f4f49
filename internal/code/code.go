// Package code defines the grammar of object codes, asset hierarchy paths and
// tags: the human-readable names every wanwu object is known by.
//
// A code is "<namespace>:<local id>", for example "acme:pump-1". The grammar is
// deliberately narrow so that a code can be used verbatim as one MQTT topic
// level or one NATS subject token, and printed in logs or on a label, without
// escaping: it never contains '/', '+', '#', '.', '*', '>', whitespace, NUL or
// non-ASCII bytes, and its only ':' separates the namespace from the local id.
//
//	namespace = [a-z][a-z0-9-]*     1–32 bytes, no trailing "-", no "--"
//	local id  = [A-Za-z0-9][A-Za-z0-9_-]*   1–64 bytes, case sensitive
//
// Namespaces are lowercase because they name tenants and appear in DNS-like
// places; local ids keep their case because devices arrive with serial numbers
// whose case is significant to their owners.
//
// Every validation failure is an *Error, which matches ErrInvalid with
// errors.Is and says what is wrong and at which byte.
package code

import (
	"errors"
	"fmt"
	"strings"
)

// Limits of the grammar, in bytes.
const (
	MaxNamespaceLen = 32
	MaxLocalLen     = 64
	MaxSegmentLen   = 64
	MaxPathDepth    = 16
	MaxTagKeyLen    = 32
	MaxTagValueLen  = 128
)

// ErrInvalid is matched (via errors.Is) by every error this package returns:
// callers that only need to know "bad input" test for it, and callers that
// want to show the user why unwrap an *Error.
var ErrInvalid = errors.New("invalid code")

// Error describes what is wrong with an input and where; errors.Is(err,
// ErrInvalid) is true for every *Error.
type Error struct {
	Input  string // the whole input that was rejected
	Pos    int    // byte offset in Input where the problem is; -1 when it is not about one place
	Reason string // human-readable reason, without the input
	// What names the kind of input ("code", "path", "tag key", ...); empty
	// means "code", so that an Error built with only the contract fields
	// still prints sensibly.
	What string
}

// maxQuoted keeps error messages readable and bounded when the input is
// attacker-sized (a multi-megabyte topic, say).
const maxQuoted = 100

func (e *Error) Error() string {
	what := e.What
	if what == "" {
		what = "code"
	}
	in := e.Input
	if len(in) > maxQuoted {
		in = in[:maxQuoted] + "..."
	}
	if e.Pos < 0 {
		return fmt.Sprintf("invalid %s %q: %s", what, in, e.Reason)
	}
	return fmt.Sprintf("invalid %s %q: %s (at byte %d)", what, in, e.Reason, e.Pos)
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Code is a parsed object code. The zero Code is not a valid code; it stands
// for "no code".
type Code struct {
	Namespace string
	Local     string
}

// Parse parses s as "<namespace>:<local id>".
func Parse(s string) (Code, error) {
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return Code{}, &Error{Input: s, Pos: -1, Reason: `missing ":" between namespace and local id`}
	}
	if r := checkNamespace(s[:i]); r != nil {
		r.Input = s
		return Code{}, r.err()
	}
	if r := checkLocal(s[i+1:]); r != nil {
		r.Input = s
		if r.Pos >= 0 {
			r.Pos += i + 1
		}
		return Code{}, r.err()
	}
	return Code{Namespace: s[:i], Local: s[i+1:]}, nil
}

// MustParse is Parse for codes written in source (tests, fixtures); it panics
// on an invalid code.
func MustParse(s string) Code {
	c, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return c
}

// New builds a Code from its parts, validating both.
func New(namespace, local string) (Code, error) {
	c := Code{Namespace: namespace, Local: local}
	if err := ValidNamespace(namespace); err != nil {
		return Code{}, err
	}
	if err := ValidLocal(local); err != nil {
		return Code{}, err
	}
	return c, nil
}

// String returns "<namespace>:<local id>", the form Parse accepts; the zero
// Code prints as the empty string.
func (c Code) String() string {
	if c.IsZero() {
		return ""
	}
	return c.Namespace + ":" + c.Local
}

// IsZero reports whether c is the zero Code.
func (c Code) IsZero() bool { return c.Namespace == "" && c.Local == "" }

// ValidNamespace reports whether ns is a valid namespace.
func ValidNamespace(ns string) error {
	if r := checkNamespace(ns); r != nil {
		r.Input = ns
		r.What = "namespace"
		return r.err()
	}
	return nil
}

// ValidLocal reports whether id is a valid local id.
func ValidLocal(id string) error {
	if r := checkLocal(id); r != nil {
		r.Input = id
		r.What = "local id"
		return r.err()
	}
	return nil
}

// problem is an *Error under construction: the checkers find the reason and
// position, their callers fill in the input and what it was.
type problem Error

func (p *problem) err() error { return (*Error)(p) }

func fail(pos int, format string, args ...any) *problem {
	return &problem{Pos: pos, Reason: fmt.Sprintf(format, args...)}
}

func isLower(b byte) bool  { return 'a' <= b && b <= 'z' }
func isDigit(b byte) bool  { return '0' <= b && b <= '9' }
func isAlnum(b byte) bool  { return isLower(b) || isDigit(b) || ('A' <= b && b <= 'Z') }
func isIDByte(b byte) bool { return isAlnum(b) || b == '_' || b == '-' }

func checkNamespace(ns string) *problem {
	switch {
	case ns == "":
		return fail(0, "namespace is empty")
	case len(ns) > MaxNamespaceLen:
		return fail(MaxNamespaceLen, "namespace is longer than %d bytes", MaxNamespaceLen)
	case !isLower(ns[0]):
		return fail(0, "namespace must start with a lowercase letter")
	}
	for i := 1; i < len(ns); i++ {
		b := ns[i]
		switch {
		case isLower(b) || isDigit(b):
		case b == '-':
			if ns[i-1] == '-' {
				return fail(i, `namespace must not contain "--"`)
			}
		default:
			return fail(i, "namespace may contain only a-z, 0-9 and '-', not %s", describe(b))
		}
	}
	if ns[len(ns)-1] == '-' {
		return fail(len(ns)-1, "namespace must not end with '-'")
	}
	return nil
}

func checkLocal(id string) *problem {
	switch {
	case id == "":
		return fail(0, "local id is empty")
	case len(id) > MaxLocalLen:
		return fail(MaxLocalLen, "local id is longer than %d bytes", MaxLocalLen)
	case !isAlnum(id[0]):
		return fail(0, "local id must start with a letter or digit, not %s", describe(id[0]))
	}
	for i := 1; i < len(id); i++ {
		if !isIDByte(id[i]) {
			return fail(i, "local id may contain only A-Z, a-z, 0-9, '_' and '-', not %s", describe(id[i]))
		}
	}
	return nil
}

// describe names a byte for an error message; bytes outside printable ASCII
// are shown in hex because quoting them as runes would print a different
// character than the one in the input.
func describe(b byte) string {
	if b < 0x20 || b > 0x7e {
		return fmt.Sprintf("byte 0x%02x", b)
	}
	return fmt.Sprintf("%q", rune(b))
}

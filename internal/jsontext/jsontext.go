// Package jsontext holds the byte-level JSON string rules that wanwu's two
// hand-written decoders (SenML and plain device JSON) and their encoders
// share: decoding one escape sequence, and quoting a string.
//
// Both decoders refuse what encoding/json would silently repair (a lone
// UTF-16 surrogate becomes U+FFFD there), so that two spellings of a payload
// never decode to the same value.
package jsontext

import (
	"unicode/utf16"
	"unicode/utf8"
)

// EscapeError says why an escape sequence is refused and where (byte offset in s).
type EscapeError struct {
	At     int
	Reason string
}

func (e *EscapeError) Error() string { return e.Reason }

// AppendEscape decodes the escape sequence that starts at s[i] (a backslash)
// onto dst and returns dst and the offset just after the sequence.
func AppendEscape(dst []byte, s string, i int) ([]byte, int, *EscapeError) {
	if i+1 >= len(s) {
		return dst, i, &EscapeError{At: len(s), Reason: "unterminated string"}
	}
	e := s[i+1]
	i += 2
	switch e {
	case '"', '\\', '/':
		return append(dst, e), i, nil
	case 'b':
		return append(dst, '\b'), i, nil
	case 'f':
		return append(dst, '\f'), i, nil
	case 'n':
		return append(dst, '\n'), i, nil
	case 'r':
		return append(dst, '\r'), i, nil
	case 't':
		return append(dst, '\t'), i, nil
	case 'u':
	default:
		return dst, i, &EscapeError{At: i - 1, Reason: "invalid escape"}
	}
	r, ok := Hex4(s, i)
	if !ok {
		return dst, i, &EscapeError{At: i, Reason: `invalid \u escape`}
	}
	i += 4
	if utf16.IsSurrogate(r) {
		// Only a high surrogate followed by an escaped low one makes a
		// character; a lone half is refused rather than replaced.
		r2 := rune(-1)
		if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
			if v, ok := Hex4(s, i+2); ok {
				r2 = v
			}
		}
		dec := utf16.DecodeRune(r, r2)
		if dec == utf8.RuneError {
			return dst, i, &EscapeError{At: i, Reason: `unpaired UTF-16 surrogate in a \u escape`}
		}
		r = dec
		i += 6
	}
	return utf8.AppendRune(dst, r), i, nil
}

// Hex4 reads four hex digits at s[i].
func Hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

const hexDigits = "0123456789abcdef"

// AppendString appends s (valid UTF-8) as a JSON string, escaping only what
// JSON requires.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

package code

import "fmt"

// ValidTagKey reports whether k is a valid tag key: [a-z][a-z0-9_]{0,31}.
// Keys are lowercase identifiers so that they can become label names in
// metrics and query languages unchanged.
func ValidTagKey(k string) error {
	p := func(pos int, format string, args ...any) error {
		return &Error{Input: k, Pos: pos, Reason: fmt.Sprintf(format, args...), What: "tag key"}
	}
	switch {
	case k == "":
		return p(0, "tag key is empty")
	case len(k) > MaxTagKeyLen:
		return p(MaxTagKeyLen, "tag key is longer than %d bytes", MaxTagKeyLen)
	case !isLower(k[0]):
		return p(0, "tag key must start with a lowercase letter")
	}
	for i := 1; i < len(k); i++ {
		if b := k[i]; !isLower(b) && !isDigit(b) && b != '_' {
			return p(i, "tag key may contain only a-z, 0-9 and '_', not %s", describe(b))
		}
	}
	return nil
}

// ValidTagValue reports whether v is a valid tag value: 0–128 bytes of
// printable ASCII other than ',', ';' and '='. Those three are excluded
// because tags travel as "k=v;k2=v2" (CSV import) and "k=v,k2=v2" (query
// strings) without any escaping.
func ValidTagValue(v string) error {
	if len(v) > MaxTagValueLen {
		return &Error{Input: v, Pos: MaxTagValueLen, Reason: fmt.Sprintf("tag value is longer than %d bytes", MaxTagValueLen), What: "tag value"}
	}
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b < 0x20 || b > 0x7e || b == ',' || b == ';' || b == '=' {
			return &Error{Input: v, Pos: i, Reason: fmt.Sprintf("tag value may contain only printable ASCII other than ',', ';' and '=', not %s", describe(b)), What: "tag value"}
		}
	}
	return nil
}

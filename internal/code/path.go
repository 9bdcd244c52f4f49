package code

import (
	"fmt"
	"strings"
)

// ValidPathSegment reports whether seg is a valid asset hierarchy path
// segment: 1–64 bytes of [A-Za-z0-9][A-Za-z0-9_-]*, the local id grammar, so
// that a segment, like a code, can stand alone as a topic level or subject
// token.
func ValidPathSegment(seg string) error {
	if r := checkSegment(seg); r != nil {
		r.Input = seg
		r.What = "path segment"
		return r.err()
	}
	return nil
}

// ParsePath splits an asset hierarchy path such as
// "plant-1/area-a/line-3/cell-2" into its 1–16 segments. Leading, trailing and
// doubled slashes are errors rather than being tolerated, so that each path
// has exactly one spelling and compares equal as a string.
func ParsePath(s string) ([]string, error) {
	if s == "" {
		return nil, &Error{Input: s, Pos: 0, Reason: "path is empty", What: "path"}
	}
	// Count before splitting so that an attacker-sized path costs no
	// allocation proportional to its number of slashes.
	if n := strings.Count(s, "/") + 1; n > MaxPathDepth {
		return nil, &Error{Input: s, Pos: -1, Reason: fmt.Sprintf("path has %d levels, more than %d", n, MaxPathDepth), What: "path"}
	}
	segs := strings.Split(s, "/")
	start := 0
	for i, seg := range segs {
		if r := checkSegment(seg); r != nil {
			r.Input = s
			r.What = "path"
			r.Reason = fmt.Sprintf("segment %d %q: %s", i+1, truncate(seg), r.Reason)
			if r.Pos >= 0 {
				r.Pos += start
			}
			return nil, r.err()
		}
		start += len(seg) + 1
	}
	return segs, nil
}

// JoinPath is the inverse of ParsePath for valid segments.
func JoinPath(segs []string) string { return strings.Join(segs, "/") }

func truncate(s string) string {
	if len(s) > maxQuoted {
		return s[:maxQuoted] + "..."
	}
	return s
}

func checkSegment(seg string) *problem {
	switch {
	case seg == "":
		return fail(0, "segment is empty")
	case len(seg) > MaxSegmentLen:
		return fail(MaxSegmentLen, "segment is longer than %d bytes", MaxSegmentLen)
	case !isAlnum(seg[0]):
		return fail(0, "segment must start with a letter or digit, not %s", describe(seg[0]))
	}
	for i := 1; i < len(seg); i++ {
		if !isIDByte(seg[i]) {
			return fail(i, "segment may contain only A-Z, a-z, 0-9, '_' and '-', not %s", describe(seg[i]))
		}
	}
	return nil
}

package audit

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Entry is one audited event.
type Entry struct {
	Index   uint64          // assigned on append
	Time    time.Time       // set on append if zero; stored in UTC with millisecond precision
	Actor   string          // who: a token name, "system", or "claim:<token id>"
	Tenant  string          // "" for deployment-wide events
	Kind    string          // what, e.g. "object.registered", "credential.issued", "key.rotated"
	Subject string          // on what, e.g. the object code
	Data    json.RawMessage // details: a JSON object, stored in canonical (JCS) form
}

// Limits on an entry. A leaf is hashed, stored and exported in full, so it
// must stay small; details too large for it belong in the object they describe.
const (
	MaxFieldLen = 1024     // actor, tenant, kind, subject, in bytes
	MaxDataLen  = 64 << 10 // canonical details, in bytes
	// maxIndex keeps the index exactly representable as a JSON number (an
	// IEEE double), which JCS requires.
	maxIndex = 1 << 53
)

// timeLayout is RFC 3339 in UTC with exactly three fractional digits, so
// that each instant has one spelling.
const timeLayout = "2006-01-02T15:04:05.000Z"

// normalize fixes up an entry for appending: time in UTC at millisecond
// precision, details in canonical form. It rejects what would not encode.
func (e *Entry) normalize() error {
	if e.Kind == "" {
		return fmt.Errorf("%w: kind is required", ErrInvalidEntry)
	}
	if e.Actor == "" {
		return fmt.Errorf("%w: actor is required", ErrInvalidEntry)
	}
	for _, f := range []struct{ name, v string }{
		{"actor", e.Actor}, {"tenant", e.Tenant}, {"kind", e.Kind}, {"subject", e.Subject},
	} {
		if len(f.v) > MaxFieldLen {
			return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrInvalidEntry, f.name, len(f.v), MaxFieldLen)
		}
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidEntry, f.name)
		}
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC().Truncate(time.Millisecond)
	if y := e.Time.Year(); y < 1 || y > 9999 {
		return fmt.Errorf("%w: time %v is outside years 0001-9999", ErrInvalidEntry, e.Time)
	}
	data, err := canonicalObject(e.Data)
	if err != nil {
		return fmt.Errorf("%w: data: %w", ErrInvalidEntry, err)
	}
	if len(data) > MaxDataLen {
		return fmt.Errorf("%w: data is %d bytes, more than %d", ErrInvalidEntry, len(data), MaxDataLen)
	}
	e.Data = data
	return nil
}

// encodeLeaf returns the leaf bytes of a normalized entry: the JCS form of
// {"actor","data","index","kind","subject","tenant","time"}, members in that
// (sorted) order. See README.md.
func encodeLeaf(e Entry) []byte {
	b := make([]byte, 0, 128+len(e.Actor)+len(e.Tenant)+len(e.Kind)+len(e.Subject)+len(e.Data))
	b = append(b, `{"actor":`...)
	b = appendJCSString(b, e.Actor)
	b = append(b, `,"data":`...)
	b = append(b, e.Data...)
	b = append(b, `,"index":`...)
	b = appendJCSNumber(b, float64(e.Index))
	b = append(b, `,"kind":`...)
	b = appendJCSString(b, e.Kind)
	b = append(b, `,"subject":`...)
	b = appendJCSString(b, e.Subject)
	b = append(b, `,"tenant":`...)
	b = appendJCSString(b, e.Tenant)
	b = append(b, `,"time":`...)
	b = appendJCSString(b, e.Time.Format(timeLayout))
	return append(b, '}')
}

// DecodeLeaf parses leaf bytes back into an entry. It accepts only the exact
// canonical encoding that Append writes, so a leaf that decodes is also a
// leaf whose bytes a third party can reproduce from the entry.
func DecodeLeaf(b []byte) (Entry, error) {
	v, err := parseJSON(b)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrBadLeaf, err)
	}
	if v.kind != 'o' {
		return Entry{}, fmt.Errorf("%w: not a JSON object", ErrBadLeaf)
	}
	var e Entry
	have := 0
	for i, k := range v.keys {
		val := v.vals[i]
		var dst *string
		switch k {
		case "actor":
			dst = &e.Actor
		case "tenant":
			dst = &e.Tenant
		case "kind":
			dst = &e.Kind
		case "subject":
			dst = &e.Subject
		case "time":
			if val.kind != 's' {
				return Entry{}, fmt.Errorf("%w: time is not a string", ErrBadLeaf)
			}
			t, err := time.Parse(timeLayout, val.str)
			if err != nil {
				return Entry{}, fmt.Errorf("%w: time: %w", ErrBadLeaf, err)
			}
			e.Time = t
		case "index":
			if val.kind != 'n' || val.num < 0 || val.num > maxIndex || val.num != float64(uint64(val.num)) {
				return Entry{}, fmt.Errorf("%w: index is not an integer in [0, 2^53]", ErrBadLeaf)
			}
			e.Index = uint64(val.num)
		case "data":
			if val.kind != 'o' {
				return Entry{}, fmt.Errorf("%w: data is not an object", ErrBadLeaf)
			}
			e.Data = appendJCS(nil, val)
		default:
			return Entry{}, fmt.Errorf("%w: unknown member %q", ErrBadLeaf, k)
		}
		if dst != nil {
			if val.kind != 's' {
				return Entry{}, fmt.Errorf("%w: %s is not a string", ErrBadLeaf, k)
			}
			*dst = val.str
		}
		have++
	}
	if have != 7 {
		return Entry{}, fmt.Errorf("%w: %d members, want 7", ErrBadLeaf, have)
	}
	if string(encodeLeaf(e)) != string(b) {
		return Entry{}, fmt.Errorf("%w: not in canonical form", ErrBadLeaf)
	}
	return e, nil
}

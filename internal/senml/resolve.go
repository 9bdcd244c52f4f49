package senml

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

const (
	// relativeLimit is 2^28 s: smaller times are relative to "now" (RFC 8428
	// §4.5.3). We also refuse relative times further than this in the past,
	// where the RFC sets no bound: a device that cannot tell the time but
	// claims a reading from 8.5 years ago is sending noise, and the bound
	// keeps now+offset far from time.Duration's ±292-year range.
	relativeLimit = 1 << 28
	// maxAbsTime is 10000-01-01T00:00:00Z: times must print as four-digit
	// years everywhere downstream (RFC 3339, PromQL, the console), and a
	// millisecond Unix time sent as seconds lands far beyond it.
	maxAbsTime = 253402300800
	// maxUpdateTime bounds ut (about 31.7 years), far inside time.Duration,
	// with microseconds still exact in a float64.
	maxUpdateTime = 1e9
	// currentVersion is the SenML version this package implements; RFC 8428
	// §4.4 requires refusing packs that declare a newer one.
	currentVersion = 10
)

// base is the base-field state carried from record to record (RFC 8428 §4).
type base struct {
	bn, bu  string
	bt      float64
	bv, bs  float64
	hasBv   bool
	hasBs   bool
	version int
}

// step applies record i's base fields and checks it against RFC 8428. It
// reports whether the record carries a measurement; one that only sets base
// fields does not. maxName bounds len(bn+n); 0 means no bound.
func (s *base) step(p Pack, i, maxName int) (bool, error) {
	r := &p[i]
	if r.BaseVersion != nil {
		v := *r.BaseVersion
		switch {
		case v < 1:
			return false, invalid(i, "bver", "version must be a positive integer")
		case v > currentVersion:
			return false, invalid(i, "bver", fmt.Sprintf("unsupported version %d (this decoder implements %d)", v, currentVersion))
		case i > 0 && v != s.version:
			return false, invalid(i, "bver", fmt.Sprintf("version %d differs from the pack's version %d: all records must have the same version", v, s.version))
		}
		s.version = v
	} else if i == 0 {
		s.version = currentVersion
	}
	if r.BaseName != "" {
		if err := checkNameChars(i, "bn", r.BaseName, true); err != nil {
			return false, err
		}
		s.bn = r.BaseName
	}
	if r.BaseUnit != "" {
		s.bu = r.BaseUnit
	}
	if r.BaseTime != 0 {
		if !finite(r.BaseTime) {
			return false, invalid(i, "bt", "must be a finite number")
		}
		s.bt = r.BaseTime
	}
	if r.BaseValue != nil {
		if !finite(*r.BaseValue) {
			return false, invalid(i, "bv", "must be a finite number")
		}
		s.bv, s.hasBv = *r.BaseValue, true
	}
	if r.BaseSum != nil {
		if !finite(*r.BaseSum) {
			return false, invalid(i, "bs", "must be a finite number")
		}
		s.bs, s.hasBs = *r.BaseSum, true
	}

	nv, last := 0, ""
	if r.Value != nil {
		nv, last = nv+1, "v"
	}
	if r.StringValue != nil {
		nv, last = nv+1, "vs"
	}
	if r.BoolValue != nil {
		nv, last = nv+1, "vb"
	}
	if r.DataValue != nil {
		nv, last = nv+1, "vd"
	}
	if nv > 1 {
		return false, invalid(i, last, "a record carries exactly one of v, vs, vb, vd")
	}
	if nv == 0 && r.Sum == nil {
		if r.Name == "" && r.Unit == "" && r.Time == 0 && r.UpdateTime == nil && hasBase(r) {
			return false, nil
		}
		return false, invalid(i, "v", "record has no value (v, vs, vb, vd) and no sum (s)")
	}

	if r.Name != "" {
		if err := checkNameChars(i, "n", r.Name, s.bn == ""); err != nil {
			return false, err
		}
	} else if s.bn == "" {
		return false, invalid(i, "n", "name is empty: the record has no n and no bn is in effect")
	}
	if maxName > 0 && len(s.bn)+len(r.Name) > maxName {
		return false, tooLarge(i, "n", fmt.Sprintf("resolved name bn+n is %d bytes, limit %d", len(s.bn)+len(r.Name), maxName))
	}

	tf := "t"
	if r.Time == 0 {
		tf = "bt"
	}
	if !finite(r.Time) {
		return false, invalid(i, "t", "must be a finite number")
	}
	if x := s.bt + r.Time; !(x > -relativeLimit && x < maxAbsTime) {
		return false, invalid(i, tf, "time bt+t out of range: relative times must lie within 2^28 s of now, absolute times before year 10000")
	}
	if r.Value != nil {
		if !finite(*r.Value) || !finite(s.bv+*r.Value) {
			return false, invalid(i, "v", "value bv+v must be a finite number")
		}
	}
	if r.Sum != nil {
		if !finite(*r.Sum) || !finite(s.bs+*r.Sum) {
			return false, invalid(i, "s", "sum bs+s must be a finite number")
		}
	}
	if r.UpdateTime != nil {
		if ut := *r.UpdateTime; !(ut >= 0 && ut <= maxUpdateTime) {
			return false, invalid(i, "ut", "update time must be between 0 and 1e9 seconds")
		}
	}
	return true, nil
}

func hasBase(r *Record) bool {
	return r.BaseName != "" || r.BaseTime != 0 || r.BaseUnit != "" ||
		r.BaseValue != nil || r.BaseSum != nil || r.BaseVersion != nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// check validates the pack as Resolve would, without building records.
func (p Pack) check(maxName int) error {
	if len(p) == 0 {
		return invalid(-1, "", "pack has no records")
	}
	var s base
	measures := false
	for i := range p {
		ok, err := s.step(p, i, maxName)
		if err != nil {
			return err
		}
		measures = measures || ok
	}
	if !measures {
		return errNoMeasurement
	}
	return nil
}

// errNoMeasurement: a pack of base fields alone says nothing, and is more
// likely a broken device than a deliberate no-op.
var errNoMeasurement = invalid(-1, "", "pack has only base fields and no measurement")

// Resolve applies base fields (RFC 8428 §4.6) and returns one Resolved per
// record that carries a measurement, in pack order. Relative times (below
// 2^28 s) are taken relative to now. The error, an *Error, names the first
// offending record and field.
func (p Pack) Resolve(now time.Time) ([]Resolved, error) { return p.resolve(now, nil) }

func (p Pack) resolve(now time.Time, bf *Buffers) ([]Resolved, error) {
	if len(p) == 0 {
		return nil, invalid(-1, "", "pack has no records")
	}
	out := bf.resolvedFor(len(p))
	var s base
	// Consecutive records usually share bn and n (a series of one sensor),
	// or have no n at all; reusing the last concatenation saves an
	// allocation per record.
	var lastBn, lastN, lastName string
	for i := range p {
		ok, err := s.step(p, i, 0)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		r := &p[i]
		var name string
		switch {
		case r.Name == "":
			name = s.bn
		case s.bn == "":
			name = r.Name
		case s.bn == lastBn && r.Name == lastN:
			name = lastName
		default:
			name = s.bn + r.Name
			lastBn, lastN, lastName = s.bn, r.Name, name
		}
		res := Resolved{Name: name, Unit: r.Unit, Time: resolveTime(s.bt+r.Time, now)}
		if res.Unit == "" {
			res.Unit = s.bu
		}
		if !utf8.ValidString(res.Unit) {
			f := "u"
			if r.Unit == "" {
				f = "bu"
			}
			return nil, invalid(i, f, "unit is not valid UTF-8")
		}
		if r.UpdateTime != nil {
			res.UpdateTime = time.Duration(math.Round(*r.UpdateTime*1e6)) * time.Microsecond
		}
		switch {
		case r.Value != nil:
			res.Kind, res.Float = KindFloat, *r.Value
			if s.hasBv {
				res.Float += s.bv
			}
		case r.StringValue != nil:
			if !utf8.ValidString(*r.StringValue) {
				return nil, invalid(i, "vs", "string value is not valid UTF-8")
			}
			res.Kind, res.String = KindString, *r.StringValue
		case r.BoolValue != nil:
			res.Kind, res.Bool = KindBool, *r.BoolValue
		case r.DataValue != nil:
			d, err := decodeData(*r.DataValue)
			if err != nil {
				return nil, invalid(i, "vd", err.Error())
			}
			res.Kind, res.Data = KindData, d
		default:
			res.Kind = KindSum
		}
		if r.Sum != nil || s.hasBs {
			res.HasSum = true
			if r.Sum != nil {
				res.Sum = *r.Sum
			}
			res.Sum += s.bs
		}
		out = append(out, res)
	}
	if len(out) == 0 {
		return nil, errNoMeasurement
	}
	return out, nil
}

// resolveTime turns SenML seconds into a time, rounded to the microsecond
// (see the package documentation). x has been range-checked by step.
func resolveTime(x float64, now time.Time) time.Time {
	us := int64(math.Round(x * 1e6))
	if x >= relativeLimit {
		return time.UnixMicro(us).UTC()
	}
	return now.Add(time.Duration(us) * time.Microsecond).UTC()
}

// checkNameChars enforces RFC 8428 §4.5.1 on one part of a name: only
// A-Z a-z 0-9 - : . / _, and, when this part starts the resolved name, an
// alphanumeric first character. The reason quotes the offending byte, never
// the name, which is the sender's and may be long or hostile.
func checkNameChars(rec int, field, s string, first bool) error {
	if first && s != "" && !isAlnum(s[0]) {
		return invalid(rec, field, fmt.Sprintf("name must start with a letter or digit, not %q", s[0]))
	}
	for j := 0; j < len(s); j++ {
		if c := s[j]; !isAlnum(c) && c != '-' && c != ':' && c != '.' && c != '/' && c != '_' {
			return invalid(rec, field, fmt.Sprintf("byte %q at offset %d is not allowed in a name (A-Z a-z 0-9 - : . / _)", c, j))
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// dataEncoding is RFC 8428 §5's vd alphabet: base64url, no padding. Strict
// refuses non-zero trailing bits, so each byte string has one spelling.
var dataEncoding = base64.RawURLEncoding.Strict()

// decodeData decodes vd. encoding/base64 skips CR and LF anywhere in its
// input; checking the alphabet first keeps one byte string to one spelling.
func decodeData(s string) ([]byte, error) {
	if err := checkData(s); err != nil {
		return nil, err
	}
	return dataEncoding.DecodeString(s)
}

func checkData(s string) error {
	for j := 0; j < len(s); j++ {
		if c := s[j]; !isAlnum(c) && c != '-' && c != '_' {
			return fmt.Errorf("byte %q at offset %d is not base64url without padding", c, j)
		}
	}
	// The last character of a partial group carries bits past the data,
	// which Strict decoding refuses unless zero; checking here spares the
	// decoders a decode (and an allocation) just to validate.
	switch len(s) % 4 {
	case 1:
		return fmt.Errorf("base64url data of length %d is truncated", len(s))
	case 2:
		if b64val(s[len(s)-1])&0x0f != 0 {
			return errors.New("base64url data has non-zero padding bits")
		}
	case 3:
		if b64val(s[len(s)-1])&0x03 != 0 {
			return errors.New("base64url data has non-zero padding bits")
		}
	}
	return nil
}

// b64val is the 6-bit value of a base64url character already checked to be
// in the alphabet.
func b64val(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c - 'A'
	case c >= 'a' && c <= 'z':
		return c - 'a' + 26
	case c >= '0' && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	}
	return 63
}

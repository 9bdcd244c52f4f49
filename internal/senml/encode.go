package senml

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wanwu-iot/wanwu/internal/jsontext"
)

// The encoders write what the simulator and load generator send, so they
// aim for small packs: the first record carries bn (when baseName is set)
// and bt (the first record's time), every record carries n as the rest of
// its name after baseName and t relative to bt. Units are sent per record:
// bu could not express "no unit" on a later record. A zero Time means "now"
// and is sent as a relative time of 0 (as t = -bt once bt is in use).
//
// Whatever they return, DecodeJSON/DecodeCBOR followed by Resolve accepts
// and turns back into the same records: the encoders refuse what the
// decoders would (bad names, non-finite numbers, times SenML cannot carry)
// with the same *Error, naming the record.

// EncodeJSON encodes resolved records as a compact application/senml+json
// pack. Every Name must start with baseName, which may be empty.
func EncodeJSON(rs []Resolved, baseName string) ([]byte, error) {
	bt, hasBt, err := prepare(rs, baseName)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 16+len(baseName)+48*len(rs))
	b = append(b, '[')
	for i := range rs {
		r := &rs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		first := true
		if i == 0 && baseName != "" {
			b = appendKey(b, &first, "bn")
			b = jsontext.AppendString(b, baseName)
		}
		if i == 0 && hasBt {
			b = appendKey(b, &first, "bt")
			b = strconv.AppendFloat(b, bt, 'g', -1, 64)
		}
		if n := r.Name[len(baseName):]; n != "" {
			b = appendKey(b, &first, "n")
			b = jsontext.AppendString(b, n)
		}
		if r.Unit != "" {
			b = appendKey(b, &first, "u")
			b = jsontext.AppendString(b, r.Unit)
		}
		switch r.Kind {
		case KindFloat:
			b = appendKey(b, &first, "v")
			b = strconv.AppendFloat(b, r.Float, 'g', -1, 64)
		case KindString:
			b = appendKey(b, &first, "vs")
			b = jsontext.AppendString(b, r.String)
		case KindBool:
			b = appendKey(b, &first, "vb")
			b = strconv.AppendBool(b, r.Bool)
		case KindData:
			b = appendKey(b, &first, "vd")
			b = append(b, '"')
			b = dataEncoding.AppendEncode(b, r.Data)
			b = append(b, '"')
		}
		if r.HasSum {
			b = appendKey(b, &first, "s")
			b = strconv.AppendFloat(b, r.Sum, 'g', -1, 64)
		}
		if t, ok := relTime(r.Time, bt, hasBt); ok {
			b = appendKey(b, &first, "t")
			b = strconv.AppendFloat(b, t, 'g', -1, 64)
		}
		if r.UpdateTime != 0 {
			b = appendKey(b, &first, "ut")
			b = strconv.AppendFloat(b, r.UpdateTime.Seconds(), 'g', -1, 64)
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// EncodeCBOR encodes resolved records as a compact application/senml+cbor
// pack with the integer labels of RFC 8428 §6, map keys in RFC 8949 §4.2.1
// deterministic order, and each number in the shortest form that converts
// back to the same float64 (an integer, or a half, single or double float).
func EncodeCBOR(rs []Resolved, baseName string) ([]byte, error) {
	bt, hasBt, err := prepare(rs, baseName)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 16+len(baseName)+32*len(rs))
	b = AppendCBORHead(b, 4, uint64(len(rs)))
	for i := range rs {
		r := &rs[i]
		n := r.Name[len(baseName):]
		t, hasT := relTime(r.Time, bt, hasBt)
		pairs := 1 // the value (or, for KindSum, the sum)
		if r.HasSum && r.Kind != KindSum {
			pairs++
		}
		for _, has := range [...]bool{n != "", r.Unit != "", hasT, r.UpdateTime != 0, i == 0 && baseName != "", i == 0 && hasBt} {
			if has {
				pairs++
			}
		}
		b = AppendCBORHead(b, 5, uint64(pairs))
		// Deterministic order sorts keys by their encoding: 0..8, then
		// -1 (0x20), -2 (0x21), -3 (0x22).
		if n != "" {
			b = appendLabel(b, lN)
			b = AppendCBORHead(b, 3, uint64(len(n)))
			b = append(b, n...)
		}
		if r.Unit != "" {
			b = appendLabel(b, lU)
			b = AppendCBORHead(b, 3, uint64(len(r.Unit)))
			b = append(b, r.Unit...)
		}
		switch r.Kind {
		case KindFloat:
			b = appendLabel(b, lV)
			b = appendNumber(b, r.Float)
		case KindString:
			b = appendLabel(b, lVs)
			b = AppendCBORHead(b, 3, uint64(len(r.String)))
			b = append(b, r.String...)
		case KindBool:
			b = appendLabel(b, lVb)
			if r.Bool {
				b = append(b, 0xf5)
			} else {
				b = append(b, 0xf4)
			}
		}
		if r.HasSum {
			b = appendLabel(b, lS)
			b = appendNumber(b, r.Sum)
		}
		if hasT {
			b = appendLabel(b, lT)
			b = appendNumber(b, t)
		}
		if r.UpdateTime != 0 {
			b = appendLabel(b, lUt)
			b = appendNumber(b, r.UpdateTime.Seconds())
		}
		if r.Kind == KindData {
			b = appendLabel(b, lVd)
			b = AppendCBORHead(b, 2, uint64(len(r.Data)))
			b = append(b, r.Data...)
		}
		if i == 0 && baseName != "" {
			b = appendLabel(b, lBn)
			b = AppendCBORHead(b, 3, uint64(len(baseName)))
			b = append(b, baseName...)
		}
		if i == 0 && hasBt {
			b = appendLabel(b, lBt)
			b = appendNumber(b, bt)
		}
	}
	return b, nil
}

// prepare checks rs for encoding and returns the base time to use.
func prepare(rs []Resolved, baseName string) (bt float64, hasBt bool, err error) {
	if len(rs) == 0 {
		return 0, false, invalid(-1, "", "nothing to encode: a pack needs at least one record")
	}
	if err := checkNameChars(-1, "bn", baseName, true); err != nil {
		return 0, false, err
	}
	for i := range rs {
		r := &rs[i]
		if r.Name == "" {
			return 0, false, invalid(i, "n", "name is empty")
		}
		if !strings.HasPrefix(r.Name, baseName) {
			return 0, false, invalid(i, "n", "name does not start with the base name")
		}
		if err := checkNameChars(i, "n", r.Name, true); err != nil {
			return 0, false, err
		}
		if !utf8.ValidString(r.Unit) {
			return 0, false, invalid(i, "u", "unit is not valid UTF-8")
		}
		switch r.Kind {
		case KindFloat:
			if !finite(r.Float) {
				return 0, false, invalid(i, "v", "must be a finite number")
			}
		case KindString:
			if !utf8.ValidString(r.String) {
				return 0, false, invalid(i, "vs", "string value is not valid UTF-8")
			}
		case KindBool, KindData:
		case KindSum:
			if !r.HasSum {
				return 0, false, invalid(i, "s", "KindSum record without HasSum")
			}
		default:
			return 0, false, invalid(i, "", fmt.Sprintf("unknown kind %v", r.Kind))
		}
		if r.HasSum && !finite(r.Sum) {
			return 0, false, invalid(i, "s", "must be a finite number")
		}
		if r.UpdateTime < 0 || r.UpdateTime > maxUpdateTime*time.Second {
			return 0, false, invalid(i, "ut", "update time must be between 0 and 1e9 seconds")
		}
		if !r.Time.IsZero() {
			if x := unixSeconds(r.Time); !(x >= relativeLimit && x < maxAbsTime) {
				return 0, false, invalid(i, "t", "time must lie between 1978-07-04T21:24:16Z and year 10000 to be sent as absolute SenML time")
			}
		}
	}
	if rs[0].Time.IsZero() {
		return 0, false, nil
	}
	// A decoder computes bt+t; use bt only if that gives back every time
	// exactly, so that no time moves, nor crosses 2^28 into relative time.
	// Times within a factor of two of bt always do (Sterbenz: x-bt is
	// exact); a pack spanning decades might not.
	bt = unixSeconds(rs[0].Time)
	for i := range rs {
		if t, ok := relTime(rs[i].Time, bt, true); ok {
			x := unixSeconds(rs[i].Time)
			if rs[i].Time.IsZero() {
				x = 0
			}
			if bt+t != x {
				return 0, false, nil
			}
		}
	}
	return bt, true, nil
}

// relTime returns the t to send for time tm, and whether to send it.
func relTime(tm time.Time, bt float64, hasBt bool) (float64, bool) {
	switch {
	case tm.IsZero() && hasBt:
		return -bt, true // bt + t = 0: "now"
	case tm.IsZero():
		return 0, false
	case hasBt:
		t := unixSeconds(tm) - bt
		return t, t != 0
	}
	return unixSeconds(tm), true
}

func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

func appendKey(b []byte, first *bool, k string) []byte {
	if !*first {
		b = append(b, ',')
	}
	*first = false
	b = append(b, '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

// AppendCBORHead appends a CBOR head (RFC 8949 §3) of major type major with
// argument n, in its shortest form.
func AppendCBORHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= math.MaxUint8:
		return append(b, m|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), n)
}

func appendLabel(b []byte, li int) []byte {
	if l := cborLabelOf[li]; l < 0 {
		return AppendCBORHead(b, 1, uint64(-1-l))
	}
	return AppendCBORHead(b, 0, uint64(cborLabelOf[li]))
}

// appendNumber writes f in the shortest CBOR form that decodes to exactly f
// (RFC 8428 §6 asks for exactness; NB-IoT links pay for every byte).
func appendNumber(b []byte, f float64) []byte {
	if f == math.Trunc(f) && math.Abs(f) <= 1<<53 && !(f == 0 && math.Signbit(f)) {
		if f >= 0 {
			return AppendCBORHead(b, 0, uint64(f))
		}
		return AppendCBORHead(b, 1, uint64(-f)-1)
	}
	if h, ok := float64ToHalf(f); ok {
		return binary.BigEndian.AppendUint16(append(b, 0xf9), h)
	}
	if f32 := float32(f); float64(f32) == f {
		return binary.BigEndian.AppendUint32(append(b, 0xfa), math.Float32bits(f32))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xfb), math.Float64bits(f))
}

// float64ToHalf returns f as IEEE 754 binary16 if that is exact. f is finite.
func float64ToHalf(f float64) (uint16, bool) {
	var sign uint16
	if math.Signbit(f) {
		sign, f = 0x8000, -f
	}
	if f == 0 {
		return sign, true
	}
	if f < 0x1p-14 { // subnormal: k * 2^-24 with k < 1024
		k := f * 0x1p24
		if k != math.Trunc(k) {
			return 0, false
		}
		return sign | uint16(k), true
	}
	fr, e := math.Frexp(f) // f = fr * 2^e, fr in [0.5, 1)
	exp := e - 1
	if exp > 15 {
		return 0, false
	}
	m := (2*fr - 1) * 1024 // exact: scaling and subtracting 1 within [1, 2)
	if m != math.Trunc(m) {
		return 0, false
	}
	return sign | uint16(exp+15)<<10 | uint16(m), true
}

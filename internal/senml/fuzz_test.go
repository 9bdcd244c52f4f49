package senml

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// jsonSeeds are the f.Add seeds of FuzzDecodeJSON; testdata/fuzz holds more,
// including inputs the fuzzer found interesting.
var jsonSeeds = []string{
	`[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]`,
	rfc512b,
	rfc513,
	`[{"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},{"n":"label","vs":"Machine Room"},{"n":"open","vb":false},{"n":"nfv-reader","vd":"aGkgCg"}]`,
	`[{"bn":"urn:dev:ow:10e2073a01080063:"},{"n":"temp","u":"Cel","v":23.1},{"n":"heat","u":"/","v":1}]`,
	`[{"bn":"m:","bv":100,"bs":1000,"bu":"W","n":"a","v":1,"s":5,"ut":1.5},{"n":"c","s":1,"t":-3}]`,
	`[{"n":"a","vs":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","x":{"y":[1,true,null,"z",{}]},"_k":-0.0e-0}]`,
	`[{"bver":10,"n":"a","v":1e308},{"bver":10,"n":"b","v":-1E-300,"t":1.7e9}]`,
	`[{"n":"a","v":1,"foo_":1}]`,
	`[{"n":"a","v":1,"vs":"x"}]`,
	`[{"bn":"a","bt":1.7e9,"n":"b","v":1},{"bt":0,"n":"c","v":2}]`,
	`[]`,
	`[{"n":"a","v":1e400}]`,
}

// cborSeeds are hex-encoded seeds of FuzzDecodeCBOR.
var cborSeeds = []string{
	rfcCBOR,
	benchCBOR,
	cborTextLabels,
	"82" + "a3" + "21" + "6361623a" + "00" + "6178" + "05" + "fa3fc00000" + "a3" + "00" + "6179" + "08" + "4401020304" + "07" + "fb3ff8000000000000",
	"81a3" + "0061" + "61" + "0201" + "627a5f" + "01",
	"9f" + "a2006161" + "0201" + "ff",
	"81a2" + "0061" + "61" + "02c4822203",
	"80",
}

// fuzzNow is microsecond-aligned so that "now"-relative times survive a
// round trip exactly.
var fuzzNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fuzzBuffers is reused from input to input, as a busy decoder reuses its
// Buffers: what an earlier pack left in them must never show in a later one.
var fuzzBuffers Buffers

// sameWithBuffers checks that decoding and resolving through fuzzBuffers
// gives what the plain functions give.
func sameWithBuffers(t *testing.T, p Pack, err error, bp Pack, berr error) {
	t.Helper()
	if (err == nil) != (berr == nil) || (err != nil && err.Error() != berr.Error()) {
		t.Fatalf("with Buffers the error is %v, without %v", berr, err)
	}
	if err != nil {
		return
	}
	rs, err := p.Resolve(fuzzNow)
	brs, berr := fuzzBuffers.Resolve(bp, fuzzNow)
	if (err == nil) != (berr == nil) || !reflect.DeepEqual(rs, brs) || !reflect.DeepEqual(p, bp) {
		t.Fatalf("with Buffers: %+v %v, without: %+v %v", brs, berr, rs, err)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeJSON(data, Limits{})
		bp, berr := fuzzBuffers.DecodeJSON(data, Limits{})
		sameWithBuffers(t, p, err, bp, berr)
		if err != nil {
			checkClassified(t, err)
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		compareWithStdlib(t, data, p)
		rs, err := p.Resolve(fuzzNow)
		if err != nil {
			t.Fatalf("decoded pack fails Resolve: %v", err)
		}
		fuzzRoundTrip(t, rs)
	})
}

// fuzzCBOR is fxamacker's full decoder under the same bounds, but quiet
// about duplicate keys: the walk refuses duplicate labels itself, and
// duplicates deep inside an ignored extension value are nobody's business.
var fuzzCBOR, _ = cbor.DecOptions{
	MaxNestedLevels:  maxDepth,
	MaxArrayElements: maxCBORArray,
	MaxMapPairs:      maxFields,
	IndefLength:      cbor.IndefLengthForbidden,
	TagsMd:           cbor.TagsForbidden,
}.DecMode()

func FuzzDecodeCBOR(f *testing.F) {
	for _, s := range cborSeeds {
		b, err := hex.DecodeString(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeCBOR(data, Limits{})
		bp, berr := fuzzBuffers.DecodeCBOR(data, Limits{})
		sameWithBuffers(t, p, err, bp, berr)
		if err != nil {
			checkClassified(t, err)
			return
		}
		// A second, general decoder must agree that this is one CBOR
		// array of as many maps. (Values stay raw: an ignored extension
		// value may be a map keyed by arrays, which no Go map can hold.)
		var v []map[any]cbor.RawMessage
		if err := fuzzCBOR.Unmarshal(data, &v); err != nil || len(v) != len(p) {
			t.Fatalf("accepted CBOR that fxamacker decodes as %d records, %v", len(v), err)
		}
		rs, err := p.Resolve(fuzzNow)
		if err != nil {
			t.Fatalf("decoded pack fails Resolve: %v", err)
		}
		fuzzRoundTrip(t, rs)
	})
}

func checkClassified(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v has no class", err)
	}
	if e.Record < -1 || e.Record >= DefaultMaxRecords+1 {
		t.Fatalf("error %v names record %d", err, e.Record)
	}
}

// compareWithStdlib checks our scanner against encoding/json on the labels
// both understand: a differential test of the hand-written parser. (Raw
// messages, because an ignored unknown label may hold a number no float64
// can, which encoding/json would refuse.)
func compareWithStdlib(t *testing.T, data []byte, p Pack) {
	t.Helper()
	var std []map[string]json.RawMessage
	if err := json.Unmarshal(data, &std); err != nil {
		t.Fatalf("encoding/json refuses accepted input: %v", err)
	}
	if len(std) != len(p) {
		t.Fatalf("encoding/json sees %d records, we %d", len(std), len(p))
	}
	for i, m := range std {
		r := &p[i]
		get := func(label string, v any) bool {
			raw, ok := m[label]
			if ok {
				if err := json.Unmarshal(raw, v); err != nil {
					t.Fatalf("record %d %s: encoding/json: %v", i, label, err)
				}
			}
			return ok
		}
		str := func(label, got string) {
			var v string
			if get(label, &v); v != got {
				t.Fatalf("record %d %s: encoding/json %q, we %q", i, label, v, got)
			}
		}
		num := func(label string, got float64) {
			var v float64
			if get(label, &v); v != got {
				t.Fatalf("record %d %s: encoding/json %v, we %v", i, label, v, got)
			}
		}
		numPtr := func(label string, got *float64) {
			var v float64
			if ok := get(label, &v); ok != (got != nil) || ok && v != *got {
				t.Fatalf("record %d %s: encoding/json %v, we %v", i, label, v, got)
			}
		}
		strPtr := func(label string, got *string) {
			var v string
			if ok := get(label, &v); ok != (got != nil) || ok && v != *got {
				t.Fatalf("record %d %s: encoding/json %q, we %v", i, label, v, got)
			}
		}
		str("bn", r.BaseName)
		str("bu", r.BaseUnit)
		str("n", r.Name)
		str("u", r.Unit)
		num("bt", r.BaseTime)
		num("t", r.Time)
		numPtr("v", r.Value)
		numPtr("bv", r.BaseValue)
		numPtr("bs", r.BaseSum)
		numPtr("s", r.Sum)
		numPtr("ut", r.UpdateTime)
		strPtr("vs", r.StringValue)
		strPtr("vd", r.DataValue)
		var vb bool
		if ok := get("vb", &vb); ok != (r.BoolValue != nil) || ok && vb != *r.BoolValue {
			t.Fatalf("record %d vb: encoding/json %v, we %v", i, vb, r.BoolValue)
		}
		var bver float64 // "10.0" is a fine 10
		if ok := get("bver", &bver); ok != (r.BaseVersion != nil) || ok && bver != float64(*r.BaseVersion) {
			t.Fatalf("record %d bver: encoding/json %v, we %v", i, bver, r.BaseVersion)
		}
	}
}

// fuzzRoundTrip: whatever decodes and resolves must encode, decode and
// resolve to the same records in both forms. Times may move by what a
// float64 of seconds can carry at their magnitude (far-future times) and
// microsecond rounding.
func fuzzRoundTrip(t *testing.T, rs []Resolved) {
	t.Helper()
	for _, bn := range []string{"", commonPrefix(rs)} {
		for _, form := range []struct {
			name   string
			encode func([]Resolved, string) ([]byte, error)
			decode func([]byte, Limits) (Pack, error)
		}{{"JSON", EncodeJSON, DecodeJSON}, {"CBOR", EncodeCBOR, DecodeCBOR}} {
			b, err := form.encode(rs, bn)
			if err != nil {
				t.Fatalf("Encode%s(bn %q) of resolved records: %v", form.name, bn, err)
			}
			p, err := form.decode(b, Limits{MaxBytes: 1 << 24})
			if err != nil {
				t.Fatalf("Decode%s of encoded %q: %v", form.name, b, err)
			}
			got, err := p.Resolve(fuzzNow)
			if err != nil {
				t.Fatalf("Resolve of encoded %q: %v", b, err)
			}
			if d := diffResolved(got, rs, time.Microsecond); d != "" {
				t.Fatalf("%s round trip (bn %q) through %q: %s", form.name, bn, b, d)
			}
		}
	}
}

// TestFuzzSeedsDecode keeps the fuzz seeds meaningful: the first ones are
// valid and reach the round trip.
func TestFuzzSeedsDecode(t *testing.T) {
	for _, s := range cborSeeds[:4] {
		b, _ := hex.DecodeString(s)
		if _, err := DecodeCBOR(b, Limits{}); err != nil {
			t.Errorf("CBOR seed %s: %v", s, err)
		}
	}
	for _, s := range jsonSeeds[:8] {
		if _, err := DecodeJSON([]byte(s), Limits{}); err != nil {
			t.Errorf("JSON seed %s: %v", s, err)
		}
	}
}

// TestBuffersForgetThePreviousPack: a record decoded into memory that held
// another pack's record carries only its own fields.
func TestBuffersForgetThePreviousPack(t *testing.T) {
	var bf Buffers
	for _, in := range []string{
		`[{"n":"a","v":1,"u":"Cel","s":2,"ut":5},{"n":"b","vb":true},{"n":"c","vd":"AQI"}]`,
		`[{"n":"a","vs":"on"}]`,
		`[{"n":"x","v":3},{"n":"y","vs":"z"},{"n":"w","v":4}]`,
	} {
		p, err := bf.DecodeJSON([]byte(in), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		want, err := DecodeJSON([]byte(in), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("%s: with Buffers %+v, want %+v", in, p, want)
		}
		rs, err := bf.Resolve(p, fuzzNow)
		wantRS, _ := want.Resolve(fuzzNow)
		if err != nil || !reflect.DeepEqual(rs, wantRS) {
			t.Fatalf("%s: resolved with Buffers %+v %v, want %+v", in, rs, err, wantRS)
		}
	}
}

// FuzzExactDecimal: whenever the fast path answers, it answers what
// strconv.ParseFloat does, to the bit (negative zero included).
func FuzzExactDecimal(f *testing.F) {
	for _, s := range []string{"0", "-0", "21.5", "0.1", "-0.3", "1760000000.123", "999999999999999",
		"99999999999999.9", "0.00000000000001", "9007199254740993", "123456789012345.6", "1e5", "-2.5E-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !jsonNumber.MatchString(s) {
			return
		}
		got, ok := exactDecimal(s)
		if !ok {
			return
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("exactDecimal(%q) = %v, strconv: %v %v", s, got, want, err)
		}
	})
}

var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

func TestExactDecimalLeavesTheRestToStrconv(t *testing.T) {
	for _, s := range []string{"9007199254740993", "1234567890123456", "1e5", "-2.5E-3", "0.0000000000000001"} {
		if f, ok := exactDecimal(s); ok {
			t.Errorf("exactDecimal(%q) = %v, want no answer", s, f)
		}
	}
	for s, want := range map[string]float64{"21.5": 21.5, "-0.3": -0.3, "1760000000.123": 1760000000.123, "999999999999999": 999999999999999} {
		if f, ok := exactDecimal(s); !ok || f != want {
			t.Errorf("exactDecimal(%q) = %v %v, want %v", s, f, ok, want)
		}
	}
}

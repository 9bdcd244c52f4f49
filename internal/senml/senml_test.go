package senml

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// now is the reception time used for relative SenML times in these tests.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fptr(f float64) *float64 { return &f }
func sptr(s string) *string   { return &s }
func bptr(b bool) *bool       { return &b }
func iptr(i int) *int         { return &i }

// at converts SenML seconds the way the RFC text spells them.
func at(sec float64) time.Time {
	return time.UnixMicro(int64(math.Round(sec * 1e6))).UTC()
}

const urn = "urn:dev:ow:10e2073a01080063"

// rfcCBOR is the RFC 8428 §6 example: the second §5.1.2 pack, as the hex
// dump given there.
const rfcCBOR = "87a721781b75726e3a6465763a6f773a3130653230373361303130383030363a22fb41d303a15b0010622361412005" +
	"0067766f6c7461676501615602fb405e066666666666a3006763757272656e74062402fb3ff3333333333333a30067637572" +
	"72656e74062302fb3ff4cccccccccccda3006763757272656e74062202fb3ff6666666666666a3006763757272656e7406" +
	"2102f93e00a3006763757272656e74062002fb3ff999999999999aa3006763757272656e74060002fb3ffb333333333333"

const rfc512b = `[
     {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]`

const rfc513 = `[
     {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
      "bu":"%RH","v":20},
     {"u":"lon","v":24.30621},
     {"u":"lat","v":60.07965},
     {"t":60,"v":20.3},
     {"u":"lon","t":60,"v":24.30622},
     {"u":"lat","t":60,"v":60.07965},
     {"t":120,"v":20.7},
     {"u":"lon","t":120,"v":24.30623},
     {"u":"lat","t":120,"v":60.07966},
     {"u":"%EL","t":150,"v":98},
     {"t":180,"v":21.2},
     {"u":"lon","t":180,"v":24.30628},
     {"u":"lat","t":180,"v":60.07967}
   ]`

const rfc514 = `[
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,
      "v":20},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,
      "v":24.30621},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,
      "v":60.07965},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,
      "v":20.3},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,
      "v":24.30622},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,
      "v":60.07965},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,
      "v":20.7},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,
      "v":24.30623},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,
      "v":60.07966},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,
      "v":98},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,
      "v":21.2},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,
      "v":24.30628},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,
      "v":60.07967}
   ]`

func fl(name, unit string, tm time.Time, v float64) Resolved {
	return Resolved{Name: name, Unit: unit, Time: tm, Kind: KindFloat, Float: v}
}

func TestRFCExamplesJSON(t *testing.T) {
	const bn512 = "urn:dev:ow:10e2073a0108006:"
	tests := []struct {
		name string
		in   string
		want []Resolved
	}{
		{"5.1.1 single datapoint", `[
     {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}
   ]`, []Resolved{fl(urn, "Cel", now, 23.1)}},
		{"5.1.2 multiple datapoints now", `[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]`, []Resolved{fl(urn+":voltage", "V", now, 120.1), fl(urn+":current", "A", now, 1.2)}},
		{"5.1.2 multiple datapoints timed", rfc512b, []Resolved{
			fl(bn512+"voltage", "V", at(1276020076.001), 120.1),
			fl(bn512+"current", "A", at(1276020071.001), 1.2),
			fl(bn512+"current", "A", at(1276020072.001), 1.3),
			fl(bn512+"current", "A", at(1276020073.001), 1.4),
			fl(bn512+"current", "A", at(1276020074.001), 1.5),
			fl(bn512+"current", "A", at(1276020075.001), 1.6),
			fl(bn512+"current", "A", at(1276020076.001), 1.7),
		}},
		{"5.1.4 resolved data", rfc514, nil}, // compared with 5.1.3 below
		{"5.1.5 multiple data types", `[
    {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
    {"n":"label","vs":"Machine Room"},
    {"n":"open","vb":false},
    {"n":"nfv-reader","vd":"aGkgCg"}
  ]`, []Resolved{
			fl(urn+":temp", "Cel", now, 23.1),
			{Name: urn + ":label", Time: now, Kind: KindString, String: "Machine Room"},
			{Name: urn + ":open", Time: now, Kind: KindBool, Bool: false},
			{Name: urn + ":nfv-reader", Time: now, Kind: KindData, Data: []byte("hi \n")},
		}},
		{"5.1.6 collection of resources", `[
     {"bn":"2001:db8::2/","bt":1.320078429e+09,
      "n":"temperature","u":"Cel","v":25.2},
     {"n":"humidity","u":"%RH","v":30},
     {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
     {"n":"humidity","u":"%RH","v":67}
   ]`, []Resolved{
			fl("2001:db8::2/temperature", "Cel", at(1320078429), 25.2),
			fl("2001:db8::2/humidity", "%RH", at(1320078429), 30),
			fl("2001:db8::1/temperature", "Cel", at(1320078429), 12.3),
			fl("2001:db8::1/humidity", "%RH", at(1320078429), 67),
		}},
		{"5.1.7 setting an actuator (base-only record)", `[
     {"bn":"urn:dev:ow:10e2073a01080063:"},
     {"n":"temp","u":"Cel","v":23.1},
     {"n":"heat","u":"/","v":1},
     {"n":"fan","u":"/","v":0}
   ]`, []Resolved{
			fl(urn+":temp", "Cel", now, 23.1),
			fl(urn+":heat", "/", now, 1),
			fl(urn+":fan", "/", now, 0),
		}},
		{"5.1.7 lights off in 100 ms", `[
     {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
     {"n":"2001:db8::4","v":0.5},
     {"n":"2001:db8::3","t":0.1,"v":0},
     {"n":"2001:db8::4","t":0.1,"v":0}
   ]`, []Resolved{
			fl("2001:db8::3", "/", at(1320078429), 0.5),
			fl("2001:db8::4", "/", at(1320078429), 0.5),
			fl("2001:db8::3", "/", at(1320078429.1), 0),
			fl("2001:db8::4", "/", at(1320078429.1), 0),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodeJSON([]byte(tt.in), Limits{})
			if err != nil {
				t.Fatalf("DecodeJSON: %v", err)
			}
			got, err := p.Resolve(now)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Resolve:\n got %+v\nwant %+v", got, tt.want)
			}
			roundTrip(t, got)
		})
	}
}

// TestRFCResolvedForm checks base resolution against the RFC's own
// resolved form of the same data (§5.1.3 resolves to §5.1.4).
func TestRFCResolvedForm(t *testing.T) {
	resolve := func(s string) []Resolved {
		t.Helper()
		p, err := DecodeJSON([]byte(s), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		rs, err := p.Resolve(now)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	got, want := resolve(rfc513), resolve(rfc514)
	if len(got) != 13 || !reflect.DeepEqual(got, want) {
		t.Fatalf("§5.1.3 resolved:\n got %+v\nwant %+v", got, want)
	}
	if r := got[9]; r.Name != urn || r.Unit != "%EL" || r.Float != 98 || !r.Time.Equal(at(1320067614)) {
		t.Fatalf("record 9 = %+v", r)
	}
}

func TestRFCExampleCBOR(t *testing.T) {
	b, err := hex.DecodeString(rfcCBOR)
	if err != nil || len(b) != 0xc3 {
		t.Fatalf("hex: %v, %d bytes", err, len(b))
	}
	pc, err := DecodeCBOR(b, Limits{})
	if err != nil {
		t.Fatalf("DecodeCBOR: %v", err)
	}
	pj, err := DecodeJSON([]byte(rfc512b), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pc, pj) {
		t.Fatalf("CBOR and JSON forms of §5.1.2 differ:\ncbor %+v\njson %+v", pc, pj)
	}
	if pc[0].BaseVersion == nil || *pc[0].BaseVersion != 5 || pc[5].Value == nil || *pc[5].Value != 1.6 {
		t.Fatalf("decoded %+v", pc)
	}
	rc, err := pc.Resolve(now)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, rc)
}

// TestCBORTextLabels: text labels are accepted as a fallback for the
// integer ones and mean the same.
const cborTextLabels = "82" +
	"a4" + "62626e" + "62613a" + "616e" + "6178" + "02" + "f93e00" + "63657874" + "8201a1616bf6" +
	"a2" + "00" + "6179" + "627664" + "420102"

func TestCBORTextLabels(t *testing.T) {
	// [{"bn": "a:", "n": "x", 2: 1.5, "vd": h'0102', "ext": [1, {"k": null}]}]
	// ("vd" next to "v" would be two values; use a second record.)
	b, _ := hex.DecodeString(cborTextLabels)
	p, err := DecodeCBOR(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := Pack{
		{BaseName: "a:", Name: "x", Value: fptr(1.5)},
		{Name: "y", DataValue: sptr("AQI")},
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got %+v want %+v", p, want)
	}
}

type wantErr struct {
	class error
	rec   int
	field string
}

func checkErr(t *testing.T, err error, w wantErr) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if !errors.Is(err, w.class) || e.Record != w.rec || e.Field != w.field {
		t.Fatalf("error %q: got class %v record %d field %q, want %v record %d field %q",
			err, e.Unwrap(), e.Record, e.Field, w.class, w.rec, w.field)
	}
	n := 0
	for _, c := range []error{ErrMalformed, ErrTooLarge, ErrInvalid} {
		if errors.Is(err, c) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %q matches %d classes", err, n)
	}
}

func TestDecodeJSONErrors(t *testing.T) {
	long := strings.Repeat("a", 256)
	tests := []struct {
		name string
		in   string
		lim  Limits
		want wantErr
	}{
		{"empty input", ``, Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"not an array", `{"n":"a","v":1}`, Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"empty pack", `[]`, Limits{}, wantErr{ErrInvalid, -1, ""}},
		{"record not an object", `[{"n":"a","v":1},2]`, Limits{}, wantErr{ErrMalformed, 1, ""}},
		{"truncated", `[{"n":"a","v":1}`, Limits{}, wantErr{ErrMalformed, 0, ""}},
		{"trailing data", `[{"n":"a","v":1}] x`, Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"trailing comma", `[{"n":"a","v":1},]`, Limits{}, wantErr{ErrMalformed, 1, ""}},
		{"BOM", "\xef\xbb\xbf[{\"n\":\"a\",\"v\":1}]", Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"v is a string", `[{"n":"a","v":"1"}]`, Limits{}, wantErr{ErrMalformed, 0, "v"}},
		{"n is a number", `[{"n":1,"v":1}]`, Limits{}, wantErr{ErrMalformed, 0, "n"}},
		{"vb is a number", `[{"n":"a","vb":1}]`, Limits{}, wantErr{ErrMalformed, 0, "vb"}},
		{"vb truex", `[{"n":"a","vb":truex}]`, Limits{}, wantErr{ErrMalformed, 0, "vb"}},
		{"leading zero", `[{"n":"a","v":01}]`, Limits{}, wantErr{ErrMalformed, 0, "v"}},
		{"plus sign", `[{"n":"a","v":+1}]`, Limits{}, wantErr{ErrMalformed, 0, "v"}},
		{"bare fraction", `[{"n":"a","v":1.}]`, Limits{}, wantErr{ErrMalformed, 0, "v"}},
		{"NaN literal", `[{"n":"a","v":NaN}]`, Limits{}, wantErr{ErrMalformed, 0, "v"}},
		{"overflow", `[{"n":"a","v":1e400}]`, Limits{}, wantErr{ErrInvalid, 0, "v"}},
		{"overflow via bv", `[{"bv":1e308,"n":"a","v":1e308}]`, Limits{}, wantErr{ErrInvalid, 0, "v"}},
		{"duplicate label", `[{"n":"a","v":1},{"n":"b","v":1,"v":2}]`, Limits{}, wantErr{ErrMalformed, 1, "v"}},
		{"duplicate unknown label", `[{"n":"a","v":1,"x":1,"x":2}]`, Limits{}, wantErr{ErrMalformed, 0, "x"}},
		{"duplicate third unknown label", `[{"n":"a","v":1,"x":1,"y":2,"z":3,"w":4,"z":5}]`, Limits{}, wantErr{ErrMalformed, 0, "z"}},
		{"duplicate of a first unknown label", `[{"n":"a","v":1,"x":1,"y":2,"z":3,"y":4}]`, Limits{}, wantErr{ErrMalformed, 0, "y"}},
		{"duplicate via escape", `[{"n":"a","\u0076":1,"v":2}]`, Limits{}, wantErr{ErrMalformed, 0, "v"}},
		{"label case matters", `[{"N":"a","v":1}]`, Limits{}, wantErr{ErrInvalid, 0, "n"}},
		{"must-understand label", `[{"n":"a","v":1},{"n":"b","v":2,"foo_":3}]`, Limits{}, wantErr{ErrInvalid, 1, "foo_"}},
		{"no value", `[{"n":"a","v":1},{"n":"b","u":"V"}]`, Limits{}, wantErr{ErrInvalid, 1, "v"}},
		{"only base fields", `[{"bn":"a:"},{"bu":"V"}]`, Limits{}, wantErr{ErrInvalid, -1, ""}},
		{"empty record", `[{}]`, Limits{}, wantErr{ErrInvalid, 0, "v"}},
		{"only unknown labels", `[{"x":1}]`, Limits{}, wantErr{ErrInvalid, 0, "v"}},
		{"two values", `[{"n":"a","v":1,"vs":"x"}]`, Limits{}, wantErr{ErrInvalid, 0, "vs"}},
		{"three values", `[{"n":"a","vb":true,"v":1,"vd":""}]`, Limits{}, wantErr{ErrInvalid, 0, "vd"}},
		{"bad name char", `[{"n":"a b","v":1}]`, Limits{}, wantErr{ErrInvalid, 0, "n"}},
		{"bad base name char", `[{"bn":"dev#1/","n":"a","v":1}]`, Limits{}, wantErr{ErrInvalid, 0, "bn"}},
		{"name starts with dash", `[{"n":"-a","v":1}]`, Limits{}, wantErr{ErrInvalid, 0, "n"}},
		{"base name starts with slash", `[{"bn":"/a","n":"b","v":1}]`, Limits{}, wantErr{ErrInvalid, 0, "bn"}},
		{"n may start with / after bn", `[{"bn":"a","n":"/b","v":1},{"n":"é","v":1}]`, Limits{}, wantErr{ErrInvalid, 1, "n"}},
		{"name resolves empty", `[{"v":1}]`, Limits{}, wantErr{ErrInvalid, 0, "n"}},
		{"bver unsupported", `[{"bver":11,"n":"a","v":1}]`, Limits{}, wantErr{ErrInvalid, 0, "bver"}},
		{"bver zero", `[{"bver":0,"n":"a","v":1}]`, Limits{}, wantErr{ErrInvalid, 0, "bver"}},
		{"bver fraction", `[{"bver":9.5,"n":"a","v":1}]`, Limits{}, wantErr{ErrInvalid, 0, "bver"}},
		{"bver huge", `[{"bver":1e300,"n":"a","v":1}]`, Limits{}, wantErr{ErrInvalid, 0, "bver"}},
		{"bver differs", `[{"bver":10,"n":"a","v":1},{"bver":9,"n":"b","v":1}]`, Limits{}, wantErr{ErrInvalid, 1, "bver"}},
		{"bver late and not default", `[{"n":"a","v":1},{"bver":5,"n":"b","v":1}]`, Limits{}, wantErr{ErrInvalid, 1, "bver"}},
		{"bn reset", `[{"bn":"a:","n":"x","v":1},{"bn":"","n":"b","v":1}]`, Limits{}, wantErr{ErrInvalid, 1, "bn"}},
		{"bt reset", `[{"bt":1.7e9,"n":"x","v":1},{"bt":0,"n":"b","v":1}]`, Limits{}, wantErr{ErrInvalid, 1, "bt"}},
		{"bu reset", `[{"bu":"V","n":"x","v":1},{"bu":"","n":"b","v":1}]`, Limits{}, wantErr{ErrInvalid, 1, "bu"}},
		{"time in ms", `[{"n":"a","v":1,"t":1.7e12}]`, Limits{}, wantErr{ErrInvalid, 0, "t"}},
		{"base time in ms", `[{"bt":1.7e12,"n":"a","v":1}]`, Limits{}, wantErr{ErrInvalid, 0, "bt"}},
		{"relative too far back", `[{"n":"a","v":1,"t":-268435456}]`, Limits{}, wantErr{ErrInvalid, 0, "t"}},
		{"negative ut", `[{"n":"a","v":1,"ut":-1}]`, Limits{}, wantErr{ErrInvalid, 0, "ut"}},
		{"vd padding", `[{"n":"a","vd":"aGk="}]`, Limits{}, wantErr{ErrInvalid, 0, "vd"}},
		{"vd std alphabet", `[{"n":"a","vd":"a+/a"}]`, Limits{}, wantErr{ErrInvalid, 0, "vd"}},
		{"vd raw newline", "[{\"n\":\"a\",\"vd\":\"aG\nk\"}]", Limits{}, wantErr{ErrMalformed, 0, "vd"}},
		{"vd escaped newline", `[{"n":"a","vd":"aG\nk"}]`, Limits{}, wantErr{ErrInvalid, 0, "vd"}},
		{"vd truncated", `[{"n":"a","vd":"aGkgC"}]`, Limits{}, wantErr{ErrInvalid, 0, "vd"}},
		{"vd trailing bits", `[{"n":"a","vd":"aGkgCh"}]`, Limits{}, wantErr{ErrInvalid, 0, "vd"}},
		{"invalid UTF-8", "[{\"n\":\"a\",\"vs\":\"\xff\"}]", Limits{}, wantErr{ErrMalformed, 0, "vs"}},
		{"lone surrogate", `[{"n":"a","vs":"\ud800"}]`, Limits{}, wantErr{ErrMalformed, 0, "vs"}},
		{"reversed surrogates", `[{"n":"a","vs":"\udc00\ud800"}]`, Limits{}, wantErr{ErrMalformed, 0, "vs"}},
		{"bad escape", `[{"n":"a","vs":"\x"}]`, Limits{}, wantErr{ErrMalformed, 0, "vs"}},
		{"raw control char", "[{\"n\":\"a\",\"vs\":\"\t\"}]", Limits{}, wantErr{ErrMalformed, 0, "vs"}},
		{"unknown value bad", `[{"n":"a","v":1,"x":[1,}]`, Limits{}, wantErr{ErrMalformed, 0, "x"}},
		{"unknown value too deep", `[{"n":"a","v":1,"x":[[[[[[[1]]]]]]]}]`, Limits{}, wantErr{ErrTooLarge, 0, "x"}},
		{"too many bytes", `[{"n":"a","v":1}]`, Limits{MaxBytes: 10}, wantErr{ErrTooLarge, -1, ""}},
		{"too many records", `[{"n":"a","v":1},{"n":"a","v":2},{"n":"a","v":3}]`, Limits{MaxRecords: 2}, wantErr{ErrTooLarge, 2, ""}},
		{"name too long", `[{"n":"` + long + `","v":1}]`, Limits{}, wantErr{ErrTooLarge, 0, "n"}},
		{"resolved name too long", `[{"bn":"` + long[:200] + `","n":"` + long[:100] + `","v":1}]`, Limits{}, wantErr{ErrTooLarge, 0, "n"}},
		{"escaped name too long", `[{"n":"\u0061` + long[1:] + `b","v":1}]`, Limits{}, wantErr{ErrTooLarge, 0, "n"}},
		{"string too long", `[{"n":"a","vs":"abcdef"}]`, Limits{MaxStringLen: 5}, wantErr{ErrTooLarge, 0, "vs"}},
		{"number too long", `[{"n":"a","v":1.` + strings.Repeat("0", 70) + `}]`, Limits{}, wantErr{ErrTooLarge, 0, "v"}},
		{"too many fields", `[{"n":"a","v":1` + manyFields(63) + `}]`, Limits{}, wantErr{ErrTooLarge, 0, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodeJSON([]byte(tt.in), tt.lim)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			checkErr(t, err, tt.want)
		})
	}
}

func manyFields(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `,"x%d":1`, i)
	}
	return b.String()
}

func TestDecodeJSONAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Pack
	}{
		{"whitespace everywhere", " \n[ {\t\"n\" : \"a\" , \"v\" : -0.5e-3 } ]\r\n", Pack{{Name: "a", Value: fptr(-0.5e-3)}}},
		{"escapes", `[{"n":"a","vs":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}]`, Pack{{Name: "a", StringValue: sptr("\"\\/\b\f\n\r\t\u00e9\U0001F600")}}},
		{"unknown labels ignored", `[{"n":"a","x":{"y":[1,true,null,"z",{}]},"v":1,"_x":2}]`, Pack{{Name: "a", Value: fptr(1)}}},
		{"upper-case exponent", `[{"n":"a","v":1E2}]`, Pack{{Name: "a", Value: fptr(100)}}},
		{"sum only", `[{"n":"a","s":5,"u":"J"}]`, Pack{{Name: "a", Unit: "J", Sum: fptr(5)}}},
		{"bver 10 then same", `[{"bver":10,"n":"a","v":1},{"bver":10,"n":"b","v":2}]`, Pack{{BaseVersion: iptr(10), Name: "a", Value: fptr(1)}, {BaseVersion: iptr(10), Name: "b", Value: fptr(2)}}},
		{"bt 0 first", `[{"bt":0,"n":"a","v":1}]`, Pack{{Name: "a", Value: fptr(1)}}},
		{"63 unknown fields", `[{"n":"a"` + manyFields(62) + `,"v":1}]`, Pack{{Name: "a", Value: fptr(1)}}},
		{"all fields", `[{"bn":"d:","bt":1.7e9,"bu":"V","bv":1,"bs":2,"bver":10,"n":"x","u":"A","v":3,"s":4,"t":5,"ut":6}]`,
			Pack{{BaseName: "d:", BaseTime: 1.7e9, BaseUnit: "V", BaseValue: fptr(1), BaseSum: fptr(2), BaseVersion: iptr(10),
				Name: "x", Unit: "A", Value: fptr(3), Sum: fptr(4), Time: 5, UpdateTime: fptr(6)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodeJSON([]byte(tt.in), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p, tt.want) {
				t.Fatalf("got %+v\nwant %+v", p, tt.want)
			}
		})
	}
}

func TestDecodeCBORErrors(t *testing.T) {
	// Record 0 below is always {0:"a", 2:1}: a3 would be 3 pairs.
	const ok = "a2" + "0061" + "61" + "0201"
	tests := []struct {
		name string
		hex  string
		lim  Limits
		want wantErr
	}{
		{"empty input", "", Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"not an array", "a0", Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"empty pack", "80", Limits{}, wantErr{ErrInvalid, -1, ""}},
		{"indefinite array", "9f" + ok + "ff", Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"indefinite map", "81" + "bf006161" + "0201ff", Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"indefinite string", "81a2" + "007f6161ff" + "0201", Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"tag", "81a2" + "0061" + "61" + "02c11a5f5e1000", Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"decimal fraction tag", "81a2" + "0061" + "61" + "02c4822203", Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"truncated", "82" + ok, Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"trailing data", "81" + ok + "00", Limits{}, wantErr{ErrMalformed, -1, ""}},
		{"array claims 2^32 records", "9b0000000100000000", Limits{}, wantErr{ErrTooLarge, -1, ""}},
		{"too many records", "83" + ok + ok + ok, Limits{MaxRecords: 2}, wantErr{ErrTooLarge, -1, ""}},
		{"too many bytes", "81" + ok, Limits{MaxBytes: 3}, wantErr{ErrTooLarge, -1, ""}},
		{"deep nesting", "81a3" + "0061" + "61" + "0201" + "6178" + "818181818181818100", Limits{}, wantErr{ErrTooLarge, -1, ""}},
		{"record not a map", "82" + ok + "01", Limits{}, wantErr{ErrMalformed, 1, ""}},
		{"v is text", "82" + ok + "a2" + "0061" + "61" + "026131", Limits{}, wantErr{ErrMalformed, 1, "v"}},
		{"n is bytes", "81a2" + "004161" + "0201", Limits{}, wantErr{ErrMalformed, 0, "n"}},
		{"vd is text", "81a2" + "0061" + "61" + "08626869", Limits{}, wantErr{ErrMalformed, 0, "vd"}},
		{"vb is int", "81a2" + "0061" + "61" + "0401", Limits{}, wantErr{ErrMalformed, 0, "vb"}},
		{"bver is float", "81a3" + "0061" + "61" + "0201" + "20f94900", Limits{}, wantErr{ErrMalformed, 0, "bver"}},
		{"bver unsupported", "81a3" + "0061" + "61" + "0201" + "200b", Limits{}, wantErr{ErrInvalid, 0, "bver"}},
		{"v is NaN", "81a2" + "0061" + "61" + "02f97e00", Limits{}, wantErr{ErrInvalid, 0, "v"}},
		{"t is +Inf", "81a3" + "0061" + "61" + "0201" + "06fa7f800000", Limits{}, wantErr{ErrInvalid, 0, "t"}},
		{"duplicate int label", "81a3" + "0061" + "61" + "0201" + "0202", Limits{}, wantErr{ErrMalformed, 0, "v"}},
		{"duplicate int and text label", "81a3" + "0061" + "61" + "0201" + "617602", Limits{}, wantErr{ErrMalformed, 0, "v"}},
		{"duplicate unknown text label", "81a4" + "0061" + "61" + "0201" + "617801" + "617801", Limits{}, wantErr{ErrMalformed, 0, "x"}},
		{"unknown int label", "81a3" + "0061" + "61" + "0201" + "09" + "01", Limits{}, wantErr{ErrMalformed, 0, ""}},
		{"unknown negative label", "81a3" + "0061" + "61" + "0201" + "26" + "01", Limits{}, wantErr{ErrMalformed, 0, ""}},
		{"float label", "81a3" + "0061" + "61" + "0201" + "f93c00" + "01", Limits{}, wantErr{ErrMalformed, 0, ""}},
		{"must-understand label", "81a3" + "0061" + "61" + "0201" + "627a5f" + "01", Limits{}, wantErr{ErrInvalid, 0, "z_"}},
		{"two values", "81a3" + "0061" + "61" + "0201" + "03617a", Limits{}, wantErr{ErrInvalid, 0, "vs"}},
		{"no value", "82" + ok + "a1" + "0061" + "62", Limits{}, wantErr{ErrInvalid, 1, "v"}},
		{"bad name", "81a2" + "0061" + "20" + "0201", Limits{}, wantErr{ErrInvalid, 0, "n"}},
		{"invalid UTF-8 name", "81a2" + "0061" + "ff" + "0201", Limits{}, wantErr{ErrMalformed, 0, "n"}},
		{"invalid UTF-8 vs", "81a2" + "0061" + "61" + "0361ff", Limits{}, wantErr{ErrMalformed, 0, "vs"}},
		{"vd too long", "81a2" + "0061" + "61" + "0844" + "01020304", Limits{MaxStringLen: 5}, wantErr{ErrTooLarge, 0, "vd"}},
		{"reserved additional info", "81a2" + "0061" + "61" + "021c", Limits{}, wantErr{ErrMalformed, -1, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			p, err := DecodeCBOR(b, tt.lim)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			checkErr(t, err, tt.want)
		})
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name string
		p    Pack
		want []Resolved
	}{
		{"base value and sum", Pack{
			{BaseName: "m:", BaseValue: fptr(100), BaseSum: fptr(1000), Name: "a", Value: fptr(1), Sum: fptr(5)},
			{Name: "b", Value: fptr(-1)},                    // bs in effect: HasSum with Sum = bs
			{Name: "c", Sum: fptr(1)},                       // sum only
			{Name: "d", StringValue: sptr("x")},             // bv applies to v only
			{BaseValue: fptr(0), Name: "e", Value: fptr(2)}, // bv reset by an explicit 0
		}, []Resolved{
			{Name: "m:a", Time: now, Kind: KindFloat, Float: 101, Sum: 1005, HasSum: true},
			{Name: "m:b", Time: now, Kind: KindFloat, Float: 99, Sum: 1000, HasSum: true},
			{Name: "m:c", Time: now, Kind: KindSum, Sum: 1001, HasSum: true},
			{Name: "m:d", Time: now, Kind: KindString, String: "x", Sum: 1000, HasSum: true},
			{Name: "m:e", Time: now, Kind: KindFloat, Float: 2, Sum: 1000, HasSum: true},
		}},
		{"relative and absolute times, update time", Pack{
			{BaseTime: -60, Name: "a", Value: fptr(1), UpdateTime: fptr(1.5)},
			{Name: "a", Time: 30, Value: fptr(2)},
			{Name: "a", Time: 1.7e9 + 60.25, Value: fptr(3)}, // bt+t crosses 2^28: absolute
		}, []Resolved{
			{Name: "a", Time: now.Add(-60 * time.Second), UpdateTime: 1500 * time.Millisecond, Kind: KindFloat, Float: 1},
			{Name: "a", Time: now.Add(-30 * time.Second), Kind: KindFloat, Float: 2},
			{Name: "a", Time: at(1.7e9 + 0.25), Kind: KindFloat, Float: 3},
		}},
		{"base unit and unit", Pack{
			{BaseUnit: "Cel", Name: "a", Value: fptr(1)},
			{Name: "b", Unit: "K", Value: fptr(2)},
			{Name: "c", BoolValue: bptr(true)},
		}, []Resolved{
			{Name: "a", Unit: "Cel", Time: now, Kind: KindFloat, Float: 1},
			{Name: "b", Unit: "K", Time: now, Kind: KindFloat, Float: 2},
			{Name: "c", Unit: "Cel", Time: now, Kind: KindBool, Bool: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.Resolve(now)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
			roundTrip(t, got)
		})
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name string
		p    Pack
		want wantErr
	}{
		{"empty", Pack{}, wantErr{ErrInvalid, -1, ""}},
		{"only base fields", Pack{{BaseName: "a"}}, wantErr{ErrInvalid, -1, ""}},
		{"NaN value", Pack{{Name: "a", Value: fptr(math.NaN())}}, wantErr{ErrInvalid, 0, "v"}},
		{"Inf bv", Pack{{Name: "a", Value: fptr(1)}, {BaseValue: fptr(math.Inf(1)), Name: "a", Value: fptr(1)}}, wantErr{ErrInvalid, 1, "bv"}},
		{"NaN time", Pack{{Name: "a", Value: fptr(1), Time: math.NaN()}}, wantErr{ErrInvalid, 0, "t"}},
		{"NaN base time", Pack{{BaseTime: math.NaN(), Name: "a", Value: fptr(1)}}, wantErr{ErrInvalid, 0, "bt"}},
		{"Inf sum", Pack{{Name: "a", Sum: fptr(math.Inf(-1))}}, wantErr{ErrInvalid, 0, "s"}},
		{"huge ut", Pack{{Name: "a", Value: fptr(1), UpdateTime: fptr(2e9)}}, wantErr{ErrInvalid, 0, "ut"}},
		{"bad vd", Pack{{Name: "a", DataValue: sptr("!!")}}, wantErr{ErrInvalid, 0, "vd"}},
		{"bad vs UTF-8", Pack{{Name: "a", StringValue: sptr("\xff")}}, wantErr{ErrInvalid, 0, "vs"}},
		{"bad unit UTF-8", Pack{{BaseUnit: "\xff", Name: "a", Value: fptr(1)}}, wantErr{ErrInvalid, 0, "bu"}},
		{"negative version", Pack{{BaseVersion: iptr(-1), Name: "a", Value: fptr(1)}}, wantErr{ErrInvalid, 0, "bver"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := tt.p.Resolve(now)
			if err == nil {
				t.Fatalf("accepted: %+v", rs)
			}
			checkErr(t, err, tt.want)
		})
	}
}

// roundTrip checks that rs survives Encode→Decode→Resolve in both forms,
// with and without a base name.
func roundTrip(t *testing.T, rs []Resolved) {
	t.Helper()
	for _, bn := range []string{"", commonPrefix(rs)} {
		for _, form := range []struct {
			name   string
			encode func([]Resolved, string) ([]byte, error)
			decode func([]byte, Limits) (Pack, error)
		}{{"JSON", EncodeJSON, DecodeJSON}, {"CBOR", EncodeCBOR, DecodeCBOR}} {
			b, err := form.encode(rs, bn)
			if err != nil {
				t.Fatalf("Encode%s(bn %q): %v", form.name, bn, err)
			}
			p, err := form.decode(b, Limits{MaxBytes: 1 << 24})
			if err != nil {
				t.Fatalf("Decode%s of encoded %q: %v", form.name, b, err)
			}
			got, err := p.Resolve(now)
			if err != nil {
				t.Fatalf("Resolve of encoded %q: %v", b, err)
			}
			if d := diffResolved(got, rs, 0); d != "" {
				t.Fatalf("%s round trip (bn %q) through %q: %s", form.name, bn, b, d)
			}
		}
	}
}

// commonPrefix returns the longest prefix of every name that is itself a
// valid base name (its first byte is alphanumeric).
func commonPrefix(rs []Resolved) string {
	if len(rs) == 0 {
		return ""
	}
	p := rs[0].Name
	for _, r := range rs[1:] {
		for !strings.HasPrefix(r.Name, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}

// diffResolved compares resolved records; times may differ by tol (plus
// what float64 seconds can carry at their magnitude), for inputs whose times
// are not representable exactly.
func diffResolved(got, want []Resolved, tol time.Duration) string {
	if len(got) != len(want) {
		return "different lengths"
	}
	for i := range got {
		g, w := got[i], want[i]
		if w.Time.IsZero() {
			w.Time = now // what Encode sends as "now" comes back as now
		}
		dt := g.Time.Sub(w.Time)
		if dt < 0 {
			dt = -dt
		}
		slack := tol
		if tol > 0 {
			slack += time.Duration(math.Abs(unixSeconds(w.Time)) * 0x1p-50 * 1e9)
		}
		gt, wt := g.Time, w.Time
		g.Time, w.Time = time.Time{}, time.Time{}
		if !bytes.Equal(g.Data, w.Data) {
			return fmt.Sprintf("record %d: data %x, want %x", i, g.Data, w.Data)
		}
		g.Data, w.Data = nil, nil
		if dt > slack {
			return fmt.Sprintf("record %d: time %v, want %v", i, gt, wt)
		}
		if !reflect.DeepEqual(g, w) {
			return fmt.Sprintf("record %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	return ""
}

func TestEncode(t *testing.T) {
	t0 := at(1320067464)
	rs := []Resolved{
		fl("dev:1/temp", "Cel", t0, 23.5),
		fl("dev:1/temp", "Cel", t0.Add(60*time.Second), 20),
		{Name: "dev:1/state", Kind: KindString, String: "ok \"quoted\"\n"},
		{Name: "dev:1/raw", Time: t0, Kind: KindData, Data: []byte{0xfb, 0xff}},
		{Name: "dev:1", Time: t0, Kind: KindSum, Sum: 5.5, HasSum: true, UpdateTime: 30 * time.Second},
	}
	j, err := EncodeJSON(rs, "dev:1")
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `[{"bn":"dev:1","bt":1.320067464e+09,"n":"/temp","u":"Cel","v":23.5},` +
		`{"n":"/temp","u":"Cel","v":20,"t":60},` +
		`{"n":"/state","vs":"ok \"quoted\"\n","t":-1.320067464e+09},` +
		`{"n":"/raw","vd":"-_8"},` +
		`{"s":5.5,"ut":30}]`
	if string(j) != wantJSON {
		t.Fatalf("EncodeJSON:\n got %s\nwant %s", j, wantJSON)
	}
	c, err := EncodeCBOR(rs[:2], "dev:1")
	if err != nil {
		t.Fatal(err)
	}
	// [{0:"/temp", 1:"Cel", 2:23.5 (half), -2:"dev:1", -3:1320067464},
	//  {0:"/temp", 1:"Cel", 2:20, 6:60}]
	const wantCBOR = "82" +
		"a5" + "00652f74656d70" + "016343656c" + "02f94de0" + "2165646576 3a31" + "221a4eaea188" +
		"a4" + "00652f74656d70" + "016343656c" + "0214" + "06183c"
	if got, want := hex.EncodeToString(c), strings.ReplaceAll(wantCBOR, " ", ""); got != want {
		t.Fatalf("EncodeCBOR:\n got %s\nwant %s", got, want)
	}
	roundTrip(t, rs)
}

// TestEncodeFarApartTimes: when bt+t would not give a time back exactly,
// the encoder sends absolute times instead of moving them.
func TestEncodeFarApartTimes(t *testing.T) {
	rs := []Resolved{fl("a", "", at(4000000000.140891), 1), fl("a", "", at(268435456.596853), 2)}
	b, err := EncodeJSON(rs, "")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(`"bt"`)) {
		t.Fatalf("used bt: %s", b)
	}
	roundTrip(t, rs)
	// Near each other, bt is used.
	rs[1].Time = rs[0].Time.Add(-time.Hour)
	if b, _ = EncodeJSON(rs, ""); !bytes.Contains(b, []byte(`"bt"`)) {
		t.Fatalf("did not use bt: %s", b)
	}
	roundTrip(t, rs)
}

func TestEncodeErrors(t *testing.T) {
	ok := fl("a", "", time.Time{}, 1)
	tests := []struct {
		name string
		rs   []Resolved
		bn   string
		want wantErr
	}{
		{"nothing", nil, "", wantErr{ErrInvalid, -1, ""}},
		{"bad base name", []Resolved{ok}, "-a", wantErr{ErrInvalid, -1, "bn"}},
		{"name outside base name", []Resolved{fl("a:x", "", time.Time{}, 1), fl("b:x", "", time.Time{}, 1)}, "a:", wantErr{ErrInvalid, 1, "n"}},
		{"empty name", []Resolved{ok, {Kind: KindBool}}, "", wantErr{ErrInvalid, 1, "n"}},
		{"bad name", []Resolved{fl("a b", "", time.Time{}, 1)}, "", wantErr{ErrInvalid, 0, "n"}},
		{"NaN", []Resolved{fl("a", "", time.Time{}, math.NaN())}, "", wantErr{ErrInvalid, 0, "v"}},
		{"Inf sum", []Resolved{{Name: "a", Kind: KindSum, HasSum: true, Sum: math.Inf(1)}}, "", wantErr{ErrInvalid, 0, "s"}},
		{"KindSum without sum", []Resolved{{Name: "a", Kind: KindSum}}, "", wantErr{ErrInvalid, 0, "s"}},
		{"unknown kind", []Resolved{{Name: "a", Kind: 9}}, "", wantErr{ErrInvalid, 0, ""}},
		{"time before 2^28", []Resolved{fl("a", "", time.Unix(1000, 0), 1)}, "", wantErr{ErrInvalid, 0, "t"}},
		{"time after 9999", []Resolved{fl("a", "", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), 1)}, "", wantErr{ErrInvalid, 0, "t"}},
		{"negative ut", []Resolved{{Name: "a", Kind: KindBool, UpdateTime: -1}}, "", wantErr{ErrInvalid, 0, "ut"}},
		{"bad UTF-8", []Resolved{{Name: "a", Kind: KindString, String: "\xff"}}, "", wantErr{ErrInvalid, 0, "vs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, enc := range []func([]Resolved, string) ([]byte, error){EncodeJSON, EncodeCBOR} {
				b, err := enc(tt.rs, tt.bn)
				if err == nil {
					t.Fatalf("encoded: %q", b)
				}
				checkErr(t, err, tt.want)
			}
		})
	}
}

func TestHalfFloats(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := halfToFloat64(uint16(h))
		if !finite(f) {
			continue
		}
		got, ok := float64ToHalf(f)
		if !ok || got != uint16(h) {
			t.Fatalf("half %#04x = %v encodes back as %#04x, %v", h, f, got, ok)
		}
	}
	for _, f := range []float64{0.1, 65520, 1 + 0x1p-11, 0x1p-25, 1e10} {
		if h, ok := float64ToHalf(f); ok {
			t.Fatalf("%v is not a half float, got %#04x", f, h)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	_, err := DecodeJSON([]byte(`[{"n":"a","v":1},{"n":"b","v":1,"vs":"x"}]`), Limits{})
	if got, want := err.Error(), `senml: record 1: field "vs": a record carries exactly one of v, vs, vb, vd`; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
	if got := (&Error{Record: -1, Reason: "r"}).Error(); got != "senml: pack: r" || !errors.Is(&Error{}, ErrInvalid) {
		t.Fatalf("got %q", got)
	}
}

// TestDecodeAllocs keeps the hot path honest: one copy of the input, the
// pack, one store per record.
func TestDecodeAllocs(t *testing.T) {
	in := []byte(benchJSON)
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeJSON(in, Limits{}) }); n > 5 {
		t.Errorf("DecodeJSON allocates %v times, want ≤ 5", n)
	}
	c, _ := hex.DecodeString(benchCBOR)
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeCBOR(c, Limits{}) }); n > 5 {
		t.Errorf("DecodeCBOR allocates %v times, want ≤ 5", n)
	}
	// A vendor's extra label or two per record is ignored at no cost.
	plain := []byte(`[{"n":"a","v":1},{"n":"b","v":2}]`)
	extra := []byte(`[{"n":"a","v":1,"pad":"xx","x":{}},{"n":"b","v":2,"pad":"yy"}]`)
	if p, e := testing.AllocsPerRun(100, func() { _, _ = DecodeJSON(plain, Limits{}) }),
		testing.AllocsPerRun(100, func() { _, _ = DecodeJSON(extra, Limits{}) }); e > p {
		t.Errorf("unknown labels add allocations: %v, without them %v", e, p)
	}
}

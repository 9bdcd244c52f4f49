package ingest

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/senml"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// testNow is the fake hub clock: 2026-01-01T00:00:00Z.
var testNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	nowMs = 1767225600000
)

func loadModel(t testing.TB, file string) *thingmodel.Model {
	t.Helper()
	b, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := thingmodel.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return m
}

func newTestDecoder(o Options) *Decoder {
	if o.Now == nil {
		o.Now = func() time.Time { return testNow }
	}
	return NewDecoder(o)
}

func TestReasonCodes(t *testing.T) {
	tests := []struct {
		r    Reason
		mqtt byte
		coap uint8
		http int
	}{
		{Malformed, 0x99, 0x80, 400},
		{UnsupportedFormat, 0x99, 0x8f, 415},
		{TooLarge, 0x97, 0x8d, 413},
		{UnknownProperty, 0x99, 0x96, 422},
		{TypeMismatch, 0x99, 0x96, 422},
		{OutOfRange, 0x99, 0x96, 422},
		{UnitMismatch, 0x99, 0x96, 422},
		{TimeInFuture, 0x99, 0x96, 422},
		{TimeTooOld, 0x99, 0x96, 422},
		{NoModel, 0x99, 0x96, 422},
		{MappingFailed, 0x99, 0x96, 422},
		{NotAuthorized, 0x87, 0x83, 403},
		{RateLimited, 0x97, 0x9d, 429},
		{Unavailable, 0x80, 0xa3, 503},
		{StorageFull, 0x97, 0xa3, 507},
		{StoreRefused, 0x80, 0xa0, 500},
		{Reason("bogus"), 0x80, 0xa0, 500},
	}
	if len(tests)-1 != len(AllReasons) {
		t.Fatalf("table covers %d reasons, AllReasons has %d", len(tests)-1, len(AllReasons))
	}
	for i, tt := range tests {
		if i < len(AllReasons) && AllReasons[i] != tt.r {
			t.Errorf("AllReasons[%d] = %s, want %s", i, AllReasons[i], tt.r)
		}
		if got := tt.r.MQTTCode(); got != tt.mqtt {
			t.Errorf("%s.MQTTCode() = %#x, want %#x", tt.r, got, tt.mqtt)
		}
		if got := tt.r.CoAPCode(); got != tt.coap {
			t.Errorf("%s.CoAPCode() = %d.%02d, want %d.%02d", tt.r, got>>5, got&31, tt.coap>>5, tt.coap&31)
		}
		if got := tt.r.HTTPStatus(); got != tt.http {
			t.Errorf("%s.HTTPStatus() = %d, want %d", tt.r, got, tt.http)
		}
		if got, want := tt.r.Valid(), i < len(AllReasons); got != want {
			t.Errorf("%s.Valid() = %v", tt.r, got)
		}
	}
	r := &Rejection{Reason: OutOfRange, Message: "temperature=300 above maximum 125"}
	if got := r.Error(); got != "out_of_range: temperature=300 above maximum 125" {
		t.Errorf("Error() = %q", got)
	}
}

func float(p string, ms int64, v float64, unit string) Record {
	return Record{Property: p, Time: ms, Kind: KindFloat, Float: v, Unit: unit}
}

type telemetryCase struct {
	name    string
	dev     string // "pump", "vendor", "none"
	ct      string
	payload string
	want    []Record // nil when rejected
	reason  Reason
	msg     string // the exact rejection message, or a prefix ending in "…"
}

func checkCase(t *testing.T, tt telemetryCase, msg Message, rej *Rejection) {
	t.Helper()
	if tt.reason != "" {
		if rej == nil {
			t.Fatalf("accepted %+v, want %s", msg.Records, tt.reason)
		}
		if rej.Reason != tt.reason {
			t.Fatalf("reason %s (%s), want %s", rej.Reason, rej.Message, tt.reason)
		}
		if p, ok := strings.CutSuffix(tt.msg, "…"); ok {
			if !strings.HasPrefix(rej.Message, p) {
				t.Fatalf("message %q, want prefix %q", rej.Message, p)
			}
		} else if rej.Message != tt.msg {
			t.Fatalf("message %q, want %q", rej.Message, tt.msg)
		}
		if !reflect.DeepEqual(msg, Message{}) {
			t.Errorf("rejected message is not zero: %+v", msg)
		}
		return
	}
	if rej != nil {
		t.Fatalf("rejected: %v", rej)
	}
	if !reflect.DeepEqual(msg.Records, tt.want) {
		t.Fatalf("records\n got %+v\nwant %+v", msg.Records, tt.want)
	}
}

func devices(t testing.TB) map[string]Device {
	return map[string]Device{
		"pump":   {Code: "acme:pump-0001", Tenant: "acme", Model: loadModel(t, "pump.json")},
		"vendor": {Code: "acme:v-1", Tenant: "acme", Model: loadModel(t, "vendor.json")},
		"none":   {Code: "acme:raw-1", Tenant: "acme"},
	}
}

func TestTelemetrySenMLJSON(t *testing.T) {
	tests := []telemetryCase{
		{name: "protocol example", dev: "pump", ct: ContentSenMLJSON,
			payload: `[{"bn":"acme:pump-0001/","bt":1767225000,"n":"temperature","u":"Cel","v":71.5},
				{"n":"speed","u":"m/s","v":3.2},{"n":"mode","vs":"auto"},{"n":"running","vb":true}]`,
			want: []Record{
				float("temperature", 1767225000000, 71.5, "Cel"),
				float("speed", 1767225000000, 3.2, "m/s"),
				{Property: "mode", Time: 1767225000000, Kind: KindString, String: "auto"},
				{Property: "running", Time: 1767225000000, Kind: KindBool, Bool: true},
			}},
		{name: "no base name, no time is now", dev: "pump", payload: `[{"n":"temperature","v":20}]`,
			want: []Record{float("temperature", nowMs, 20, "Cel")}},
		{name: "base name code colon", dev: "pump", payload: `[{"bn":"acme:pump-0001:","n":"level","v":1}]`,
			want: []Record{float("level", nowMs, 1, "")}},
		{name: "base name any slash prefix", dev: "pump", payload: `[{"bn":"urn:dev:mac:0024befffe804ff1/","n":"level","v":1}]`,
			want: []Record{float("level", nowMs, 1, "")}},
		{name: "base-only record then values", dev: "pump", payload: `[{"bn":"x/","bt":1767225000},{"n":"level","v":1,"t":-10},{"n":"level","v":2}]`,
			want: []Record{float("level", 1767224990000, 1, ""), float("level", 1767225000000, 2, "")}},
		{name: "relative time", dev: "pump", payload: `[{"n":"level","v":1,"t":-60}]`,
			want: []Record{float("level", nowMs-60000, 1, "")}},
		{name: "base value", dev: "pump", payload: `[{"bv":100,"n":"level","v":1},{"n":"count","v":2,"t":1}]`,
			want: []Record{float("level", nowMs, 101, ""), float("count", nowMs+1000, 102, "")}},
		{name: "integer", dev: "pump", payload: `[{"n":"rpm","v":1500}]`,
			want: []Record{float("rpm", nowMs, 1500, "1/min")}},
		{name: "integer converted", dev: "pump", payload: `[{"n":"rpm","u":"Hz","v":25}]`,
			want: []Record{float("rpm", nowMs, 1500, "1/min")}},
		{name: "enum", dev: "pump", payload: `[{"n":"mode","vs":"manual"}]`,
			want: []Record{{Property: "mode", Time: nowMs, Kind: KindString, String: "manual"}}},
		{name: "free string", dev: "pump", payload: `[{"n":"label","vs":"Pump \"A\" ✓"}]`,
			want: []Record{{Property: "label", Time: nowMs, Kind: KindString, String: `Pump "A" ✓`}}},
		{name: "base unit ignored where the model has none", dev: "pump",
			payload: `[{"bu":"Cel","n":"temperature","v":20},{"n":"level","v":3},{"n":"mode","vs":"auto"}]`,
			want: []Record{float("temperature", nowMs, 20, "Cel"), float("level", nowMs, 3, ""),
				{Property: "mode", Time: nowMs, Kind: KindString, String: "auto"}}},
		{name: "position", dev: "pump",
			payload: `[{"bn":"acme:pump-0001/","n":"location/lat","u":"lat","v":31.2},{"n":"location/lon","u":"lon","v":121.5},{"n":"location/alt","u":"cm","v":1200}]`,
			want:    []Record{{Property: "location", Time: nowMs, Kind: KindPosition, Lat: 31.2, Lon: 121.5, Alt: 12, HasAlt: true}}},
		{name: "two positions by time", dev: "pump",
			payload: `[{"n":"location/lat","v":1,"t":-1},{"n":"location/lon","v":2,"t":-1},{"n":"location/lon","v":4},{"n":"location/lat","v":3},{"n":"level","v":0}]`,
			want: []Record{float("level", nowMs, 0, ""),
				{Property: "location", Time: nowMs - 1000, Kind: KindPosition, Lat: 1, Lon: 2},
				{Property: "location", Time: nowMs, Kind: KindPosition, Lat: 3, Lon: 4}}},
		{name: "sniffed", dev: "pump", payload: " \n[{\"n\":\"level\",\"v\":1}]",
			want: []Record{float("level", nowMs, 1, "")}},
		{name: "content type with parameters", dev: "pump", ct: "Application/SenML+JSON; charset=utf-8", payload: `[{"n":"level","v":1}]`,
			want: []Record{float("level", nowMs, 1, "")}},
		{name: "time window edges", dev: "pump", payload: `[{"n":"level","v":1,"t":300},{"n":"level","v":2,"t":-86400}]`,
			want: []Record{float("level", nowMs+300000, 1, ""), float("level", nowMs-86400000, 2, "")}},

		// Devices without a model: SenML stored as sent.
		{name: "no model", dev: "none",
			payload: `[{"bn":"acme:raw-1/","n":"t","u":"Far","v":70},{"n":"s","vs":"x"},{"n":"b","vb":false},{"n":"d","vd":"AQI"},{"n":"a/b","v":1}]`,
			want: []Record{float("t", nowMs, 70, "Far"), {Property: "s", Time: nowMs, Kind: KindString, String: "x"},
				{Property: "b", Time: nowMs, Kind: KindBool}, {Property: "d", Time: nowMs, Kind: KindData, Data: []byte{1, 2}},
				float("a/b", nowMs, 1, "")}},

		// Rejections, one or more per reason.
		{name: "malformed JSON", dev: "pump", payload: `[{"n":"level","v":1}`, reason: Malformed, msg: "record 0: …"},
		{name: "malformed NaN-ish", dev: "pump", payload: `[{"n":"level","v":NaN}]`, reason: Malformed, msg: "…"},
		{name: "malformed empty pack", dev: "pump", payload: `[]`, reason: Malformed, msg: "pack: pack has no records"},
		{name: "malformed empty payload with type", dev: "pump", ct: ContentSenMLJSON, payload: ``, reason: Malformed, msg: "…"},
		{name: "malformed empty payload sniffed", dev: "pump", payload: ``, reason: Malformed, msg: "empty payload"},
		{name: "malformed base name", dev: "pump", payload: `[{"bn":"pump-0001.","n":"level","v":1}]`, reason: Malformed,
			msg: `record 0: base name "pump-0001." must be the device code followed by ":" or "/", or end in "/"`},
		{name: "base name of another device with a colon", dev: "pump", payload: `[{"bn":"acme:other-1:","n":"level","v":1}]`, reason: NotAuthorized,
			msg: `record 0: base name "acme:other-1:" names device acme:other-1; a device sends only its own data`},
		{name: "base name of another device", dev: "pump", payload: `[{"bn":"acme:other-1/","n":"level","v":1}]`, reason: NotAuthorized,
			msg: `record 0: base name "acme:other-1/" names device acme:other-1; a device sends only its own data`},
		{name: "base name of another tenant's device", dev: "pump", payload: `[{"bn":"beta:pump-0001/","n":"level","v":1}]`, reason: NotAuthorized,
			msg: `record 0: base name "beta:pump-0001/" names device beta:pump-0001; a device sends only its own data`},
		{name: "malformed name is only base name", dev: "pump", payload: `[{"bn":"acme:pump-0001/","v":1}]`, reason: Malformed,
			msg: "record 0: name is empty once the base name is stripped; send n"},
		{name: "malformed duplicate", dev: "pump", payload: `[{"n":"level","v":1},{"n":"level","v":2}]`, reason: Malformed,
			msg: "level has two values for time 2026-01-01T00:00:00Z"},
		{name: "malformed duplicate coordinate", dev: "pump", payload: `[{"n":"location/lat","v":1},{"n":"location/lat","v":2},{"n":"location/lon","v":2}]`,
			reason: Malformed, msg: "location has two values for one coordinate at time 2026-01-01T00:00:00Z"},
		{name: "unsupported content type", dev: "pump", ct: "text/plain", payload: `[]`, reason: UnsupportedFormat,
			msg: `content type "text/plain" is not one of application/senml+json, application/senml+cbor, application/json`},
		{name: "unsupported first byte", dev: "pump", payload: `<xml/>`, reason: UnsupportedFormat,
			msg: "no content type, and the payload starts with byte 0x3c, not '[' (SenML JSON), '{' (JSON) or a CBOR array (SenML CBOR)"},
		{name: "unknown property", dev: "pump", payload: `[{"n":"colour","vs":"red"}]`, reason: UnknownProperty,
			msg: `"colour" is not a property of acme:pump@1.2.0`},
		{name: "unknown property under base name", dev: "pump", payload: `[{"bn":"acme:pump-0001/","n":"x","v":1}]`, reason: UnknownProperty,
			msg: `"x" is not a property of acme:pump@1.2.0`},
		{name: "unknown position axis", dev: "pump", payload: `[{"n":"location/speed","v":1}]`, reason: UnknownProperty,
			msg: `"location/speed" is not a property of acme:pump@1.2.0`},
		{name: "type string for number", dev: "pump", payload: `[{"n":"temperature","vs":"hot"}]`, reason: TypeMismatch,
			msg: "temperature is a number: send v, not vs"},
		{name: "type number for bool", dev: "pump", payload: `[{"n":"running","v":1}]`, reason: TypeMismatch,
			msg: "running is a boolean: send vb, not v"},
		{name: "type bool for string", dev: "pump", payload: `[{"n":"mode","vb":true}]`, reason: TypeMismatch,
			msg: "mode is a string: send vs, not vb"},
		{name: "type data for integer", dev: "pump", payload: `[{"n":"rpm","vd":"AQI"}]`, reason: TypeMismatch,
			msg: "rpm is an integer: send v, not vd"},
		{name: "type fractional integer", dev: "pump", payload: `[{"n":"rpm","v":2.5}]`, reason: TypeMismatch,
			msg: "rpm=2.5 is not an integer"},
		{name: "type position whole", dev: "pump", payload: `[{"n":"location","v":1}]`, reason: TypeMismatch,
			msg: "location is a position: send location/lat, location/lon and optionally location/alt"},
		{name: "type position incomplete", dev: "pump", payload: `[{"n":"location/lat","v":1}]`, reason: TypeMismatch,
			msg: "location at 2026-01-01T00:00:00Z needs both location/lat and location/lon"},
		{name: "type object in SenML", dev: "pump", payload: `[{"n":"config","vs":"{}"}]`, reason: TypeMismatch,
			msg: "config is an object: send it as JSON (application/json)"},
		{name: "type sum", dev: "pump", payload: `[{"n":"energy","s":5}]`, reason: TypeMismatch,
			msg: "energy: sums (s, bs) are not supported; send the value in v"},
		{name: "type sum beside value", dev: "pump", payload: `[{"n":"energy","v":1,"s":5}]`, reason: TypeMismatch,
			msg: "energy: sums (s, bs) are not supported; send the value in v"},
		{name: "type sum without model", dev: "none", payload: `[{"n":"energy","s":5}]`, reason: TypeMismatch, msg: "…"},
		{name: "out of range max", dev: "pump", payload: `[{"n":"temperature","v":300}]`, reason: OutOfRange,
			msg: "temperature=300 above maximum 125"},
		{name: "out of range min", dev: "pump", payload: `[{"n":"temperature","v":-41}]`, reason: OutOfRange,
			msg: "temperature=-41 below minimum -40"},
		{name: "out of range after conversion", dev: "pump", payload: `[{"n":"temperature","u":"degF","v":300}]`, reason: OutOfRange,
			msg: "temperature=148.888888889 (from 300 degF) above maximum 125"},
		{name: "out of range enum", dev: "pump", payload: `[{"n":"mode","vs":"turbo"}]`, reason: OutOfRange,
			msg: `mode="turbo" is not one of "auto", "manual"`},
		{name: "out of range latitude", dev: "pump", payload: `[{"n":"location/lat","v":91},{"n":"location/lon","v":0}]`, reason: OutOfRange,
			msg: "location/lat=91 above maximum 90"},
		{name: "unit unknown", dev: "pump", payload: `[{"n":"temperature","u":"furlong","v":1}]`, reason: UnitMismatch,
			msg: `temperature: unit "furlong" does not convert to "Cel"`},
		{name: "unit other quantity", dev: "pump", payload: `[{"n":"temperature","u":"m","v":1}]`, reason: UnitMismatch,
			msg: `temperature: unit "m" does not convert to "Cel"`},
		{name: "unit on unitless number", dev: "pump", payload: `[{"n":"level","u":"m","v":1}]`, reason: UnitMismatch,
			msg: `level has no unit in the model; got "m"`},
		{name: "base unit on property with unit", dev: "pump", payload: `[{"bu":"m","n":"temperature","v":1}]`, reason: UnitMismatch,
			msg: `temperature: unit "m" does not convert to "Cel"`},
		{name: "unit on boolean", dev: "pump", payload: `[{"n":"running","u":"V","vb":true}]`, reason: UnitMismatch,
			msg: `running is a boolean and takes no unit; got "V"`},
		{name: "unit on latitude", dev: "pump", payload: `[{"n":"location/lat","u":"m","v":1},{"n":"location/lon","v":0}]`, reason: UnitMismatch,
			msg: `location/lat: unit "m" does not convert to "lat"`},
		{name: "future", dev: "pump", payload: `[{"bt":1767229200,"n":"level","v":1}]`, reason: TimeInFuture,
			msg: "level at 2026-01-01T01:00:00Z is 1h0m0s ahead of the hub clock (limit 5m0s)"},
		{name: "future just beyond skew", dev: "pump", payload: `[{"n":"level","v":1,"t":300.001}]`, reason: TimeInFuture, msg: "…"},
		{name: "far future", dev: "pump", payload: `[{"n":"level","v":1,"t":253402300000}]`, reason: TimeInFuture,
			msg: "level at 9999-12-31T23:46:40Z is 7973 years ahead of the hub clock (limit 5m0s)"},
		{name: "too old", dev: "pump", payload: `[{"n":"level","v":1,"t":1767139199}]`, reason: TimeTooOld,
			msg: "level at 2025-12-30T23:59:59Z is older than 24h0m0s"},
		{name: "too old position", dev: "pump", payload: `[{"n":"location/lat","v":1,"t":1000000000},{"n":"location/lon","v":1,"t":1000000000}]`,
			reason: TimeTooOld, msg: "location/lat at 2001-09-09T01:46:40Z is older than 24h0m0s"},
		{name: "too large", dev: "pump", payload: `[{"n":"label","vs":"` + strings.Repeat("x", 64<<10) + `"}]`, reason: TooLarge,
			msg: "payload is 65559 bytes, more than the limit of 65536"},
		{name: "string over senml limit", dev: "pump", payload: `[{"n":"label","vs":"` + strings.Repeat("x", 5000) + `"}]`, reason: TooLarge,
			msg: "record 0: field \"vs\": …"},
	}
	devs := devices(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDecoder(Options{})
			msg, rej := d.Telemetry(devs[tt.dev], tt.ct, []byte(tt.payload), "mqtt")
			checkCase(t, tt, msg, rej)
			if rej == nil {
				dev := devs[tt.dev]
				want := Message{Device: dev.Code, Tenant: dev.Tenant, Kind: Telemetry, Received: nowMs, Source: "mqtt", Records: msg.Records}
				if dev.Model != nil {
					want.Model = dev.Model.Key()
				}
				if !reflect.DeepEqual(msg, want) {
					t.Errorf("message %+v, want %+v", msg, want)
				}
			}
		})
	}
}

func TestTelemetryMaxRecords(t *testing.T) {
	d := newTestDecoder(Options{MaxRecords: 2})
	dev := devices(t)["pump"]
	_, rej := d.Telemetry(dev, "", []byte(`[{"n":"level","v":1},{"n":"count","v":1},{"n":"rpm","v":1}]`), "")
	if rej == nil || rej.Reason != TooLarge {
		t.Fatalf("3 SenML records with MaxRecords 2: %v", rej)
	}
	_, rej = d.Telemetry(dev, "", []byte(`{"level":1,"count":1,"rpm":1}`), "")
	if rej == nil || rej.Reason != TooLarge || rej.Message != "3 members, more than the limit of 2" {
		t.Fatalf("3 JSON members with MaxRecords 2: %v", rej)
	}
	d = newTestDecoder(Options{MaxPayload: 10})
	_, rej = d.Telemetry(dev, "", []byte(`{"level":1.0}`), "")
	if rej == nil || rej.Reason != TooLarge || rej.Message != "payload is 13 bytes, more than the limit of 10" {
		t.Fatalf("MaxPayload: %v", rej)
	}
}

func TestTelemetrySenMLCBOR(t *testing.T) {
	d := newTestDecoder(Options{})
	devs := devices(t)
	at := testNow.Add(-time.Minute)
	enc := func(bn string, rs ...senml.Resolved) []byte {
		t.Helper()
		b, err := senml.EncodeCBOR(rs, bn)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		payload []byte
		want    []Record
		reason  Reason
	}{
		{"values", enc("acme:pump-0001/",
			senml.Resolved{Name: "acme:pump-0001/temperature", Unit: "K", Time: at, Kind: senml.KindFloat, Float: 300},
			senml.Resolved{Name: "acme:pump-0001/mode", Time: at, Kind: senml.KindString, String: "auto"},
			senml.Resolved{Name: "acme:pump-0001/running", Time: at, Kind: senml.KindBool, Bool: true},
			senml.Resolved{Name: "acme:pump-0001/location/lat", Time: at, Kind: senml.KindFloat, Float: -33.9},
			senml.Resolved{Name: "acme:pump-0001/location/lon", Time: at, Kind: senml.KindFloat, Float: 151.2},
		), []Record{
			float("temperature", at.UnixMilli(), 26.85, "Cel"),
			{Property: "mode", Time: at.UnixMilli(), Kind: KindString, String: "auto"},
			{Property: "running", Time: at.UnixMilli(), Kind: KindBool, Bool: true},
			{Property: "location", Time: at.UnixMilli(), Kind: KindPosition, Lat: -33.9, Lon: 151.2},
		}, ""},
		// [{0: "humidity", 2: 0.5, 1: "/"}] by hand: %RH from a ratio.
		{"handmade", []byte("\x81\xa3\x00\x68humidity\x01\x61/\x02\xf9\x38\x00"),
			[]Record{float("humidity", nowMs, 50, "%RH")}, ""},
		{"unknown", enc("", senml.Resolved{Name: "nope", Kind: senml.KindFloat}), nil, UnknownProperty},
		{"out of range", enc("", senml.Resolved{Name: "humidity", Unit: "/", Kind: senml.KindFloat, Float: 1.5}), nil, OutOfRange},
		{"truncated", []byte("\x81\xa3\x00\x68humidity"), nil, Malformed},
		{"tag", []byte("\xc1\x81\xa1\x00\x61x"), nil, UnsupportedFormat}, // sniffed: 0xc1 is no array
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, ct := range []string{ContentSenMLCBOR, ""} {
				if tt.name == "tag" && ct != "" {
					continue
				}
				d.stamps = newArrivalStamps() // each message is its device's first: stamped with the clock
				msg, rej := d.Telemetry(devs["pump"], ct, tt.payload, "coap")
				if tt.reason != "" {
					if rej == nil || rej.Reason != tt.reason {
						t.Fatalf("ct %q: got %v, %v; want %s", ct, msg.Records, rej, tt.reason)
					}
					continue
				}
				if rej != nil {
					t.Fatalf("ct %q: %v", ct, rej)
				}
				if !reflect.DeepEqual(msg.Records, tt.want) {
					t.Fatalf("ct %q:\n got %+v\nwant %+v", ct, msg.Records, tt.want)
				}
			}
		})
	}
	// A CBOR payload declared as JSON is malformed, not sniffed.
	if _, rej := d.Telemetry(devs["pump"], ContentSenMLJSON, tests[1].payload, ""); rej == nil || rej.Reason != Malformed {
		t.Errorf("CBOR as senml+json: %v", rej)
	}
}

func TestTelemetryPlainJSON(t *testing.T) {
	tests := []telemetryCase{
		{name: "protocol example", dev: "pump", payload: `{"temperature": 71.5, "mode": "auto", "ts": 1767225000}`,
			want: []Record{float("temperature", 1767225000000, 71.5, "Cel"), {Property: "mode", Time: 1767225000000, Kind: KindString, String: "auto"}}},
		{name: "explicit type", dev: "pump", ct: ContentJSON, payload: `{"level": -1e3}`,
			want: []Record{float("level", nowMs, -1000, "")}},
		{name: "rfc3339 ts", dev: "pump", payload: `{"ts":"2025-12-31T23:59:00.5+00:00","running":false}`,
			want: []Record{{Property: "running", Time: nowMs - 59500, Kind: KindBool}}},
		{name: "fractional ts", dev: "pump", payload: `{"ts":1767225599.9994,"count":7}`,
			want: []Record{float("count", nowMs-1, 7, "")}},
		{name: "position", dev: "pump", payload: `{"location": {"lat": 31.2, "lon": 121.5, "alt": 12}}`,
			want: []Record{{Property: "location", Time: nowMs, Kind: KindPosition, Lat: 31.2, Lon: 121.5, Alt: 12, HasAlt: true}}},
		{name: "position without alt", dev: "pump", payload: `{"location": {"lon": 1, "lat": 2}}`,
			want: []Record{{Property: "location", Time: nowMs, Kind: KindPosition, Lat: 2, Lon: 1}}},
		{name: "object property", dev: "pump", payload: `{"config": {"name": "a\u00e9\"", "limit": 3}}`,
			want: []Record{{Property: "config", Time: nowMs, Kind: KindData, Data: []byte(`{"name":"aé\"","limit":3}`)}}},
		{name: "array property", dev: "pump", payload: `{"samples": [ 1, 2.50, 0 ]}`,
			want: []Record{{Property: "samples", Time: nowMs, Kind: KindData, Data: []byte(`[1,2.50,0]`)}}},
		{name: "escaped key", dev: "pump", payload: `{"lev\u0065l": 1}`,
			want: []Record{float("level", nowMs, 1, "")}},

		{name: "no model", dev: "none", payload: `{"level": 1}`, reason: NoModel,
			msg: "device acme:raw-1 has no thing model, so plain JSON cannot be mapped; send SenML"},
		{name: "malformed", dev: "pump", payload: `{"level": 1,}`, reason: Malformed, msg: "invalid JSON: offset 12: expected a member name"},
		{name: "malformed duplicate key", dev: "pump", payload: `{"level": 1, "level": 2}`, reason: Malformed,
			msg: `invalid JSON: offset 24: duplicate member "level"`},
		{name: "malformed array", dev: "pump", ct: ContentJSON, payload: `[1]`, reason: Malformed,
			msg: "plain JSON must be an object of property values, not an array"},
		{name: "malformed leading zero", dev: "pump", payload: `{"level": 01}`, reason: Malformed, msg: "invalid JSON: …"},
		{name: "malformed huge number", dev: "pump", payload: `{"level": 1e999}`, reason: Malformed, msg: "invalid JSON: offset 10: number out of range"},
		{name: "malformed bad utf8", dev: "pump", payload: "{\"label\": \"\xff\"}", reason: Malformed, msg: "invalid JSON: …"},
		{name: "malformed lone surrogate", dev: "pump", payload: `{"label": "\ud800"}`, reason: Malformed, msg: "invalid JSON: …"},
		{name: "malformed empty", dev: "pump", payload: `{}`, reason: Malformed, msg: "no property values"},
		{name: "malformed only ts", dev: "pump", payload: `{"ts": 1767225600}`, reason: Malformed, msg: "no property values"},
		{name: "malformed ts", dev: "pump", payload: `{"ts": "yesterday", "level": 1}`, reason: Malformed,
			msg: `ts "yesterday" is not an RFC 3339 time`},
		{name: "malformed ts type", dev: "pump", payload: `{"ts": true, "level": 1}`, reason: Malformed,
			msg: "ts must be seconds since the epoch or an RFC 3339 string, not a boolean"},
		{name: "too deep", dev: "pump", payload: `{"config":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, reason: TooLarge,
			msg: "invalid JSON: offset 41: nested deeper than 32 levels"},
		{name: "too many values", dev: "pump", payload: `{"samples":[` + strings.Repeat("0,", 9000) + `0]}`, reason: TooLarge,
			msg: "invalid JSON: …"},
		{name: "unknown", dev: "pump", payload: `{"level": 1, "colour": "red"}`, reason: UnknownProperty,
			msg: `"colour" is not a property of acme:pump@1.2.0`},
		{name: "unknown object member", dev: "pump", payload: `{"config": {"size": 1}}`, reason: UnknownProperty,
			msg: "config.size is not declared by the model"},
		{name: "type", dev: "pump", payload: `{"temperature": "71.5"}`, reason: TypeMismatch,
			msg: "temperature must be a number, not a string"},
		{name: "type null", dev: "pump", payload: `{"temperature": null}`, reason: TypeMismatch,
			msg: "temperature must be a number, not null"},
		{name: "type bool", dev: "pump", payload: `{"running": "yes"}`, reason: TypeMismatch, msg: "running must be a boolean, not a string"},
		{name: "type string", dev: "pump", payload: `{"mode": 1}`, reason: TypeMismatch, msg: "mode must be a string, not a number"},
		{name: "type integer", dev: "pump", payload: `{"count": 1.5}`, reason: TypeMismatch, msg: "count=1.5 is not an integer"},
		{name: "type integer too big", dev: "pump", payload: `{"count": 1e300}`, reason: TypeMismatch, msg: "count=1e+300 is not an integer"},
		{name: "type position", dev: "pump", payload: `{"location": [1, 2]}`, reason: TypeMismatch,
			msg: "location must be a position {lat, lon, alt}, not an array"},
		{name: "type position member", dev: "pump", payload: `{"location": {"lat": 1, "lon": 2, "x": 3}}`, reason: TypeMismatch,
			msg: "location.x is not part of a position (lat, lon, alt)"},
		{name: "type position lacks lon", dev: "pump", payload: `{"location": {"lat": 1}}`, reason: TypeMismatch,
			msg: "location needs both lat and lon"},
		{name: "type position string lat", dev: "pump", payload: `{"location": {"lat": "1", "lon": 2}}`, reason: TypeMismatch,
			msg: "location.lat must be a number, not a string"},
		{name: "type nested", dev: "pump", payload: `{"config": {"limit": 2.5}}`, reason: TypeMismatch, msg: "config.limit=2.5 is not an integer"},
		{name: "type array item", dev: "pump", payload: `{"samples": [1, "2"]}`, reason: TypeMismatch, msg: "samples[1] must be a number, not a string"},
		{name: "range", dev: "pump", payload: `{"temperature": 300}`, reason: OutOfRange, msg: "temperature=300 above maximum 125"},
		{name: "range enum", dev: "pump", payload: `{"mode": "Auto"}`, reason: OutOfRange, msg: `mode="Auto" is not one of "auto", "manual"`},
		{name: "range nested", dev: "pump", payload: `{"config": {"limit": 11}}`, reason: OutOfRange, msg: "config.limit=11 above maximum 10"},
		{name: "range array item", dev: "pump", payload: `{"samples": [1, -2]}`, reason: OutOfRange, msg: "samples[1]=-2 below minimum 0"},
		{name: "range longitude", dev: "pump", payload: `{"location": {"lat": 1, "lon": -181}}`, reason: OutOfRange,
			msg: "location.lon=-181 below minimum -180"},
		{name: "future", dev: "pump", payload: `{"ts": 1767226000, "level": 1}`, reason: TimeInFuture,
			msg: "ts at 2026-01-01T00:06:40Z is 6m40s ahead of the hub clock (limit 5m0s)"},
		{name: "milliseconds as seconds", dev: "pump", payload: `{"ts": 1767225600000, "level": 1}`, reason: TimeInFuture,
			msg: "ts=1767225600000 is after the year 9999: seconds expected, not milliseconds"},
		{name: "too old", dev: "pump", payload: `{"ts": "2025-12-30T00:00:00Z", "level": 1}`, reason: TimeTooOld,
			msg: "ts at 2025-12-30T00:00:00Z is older than 24h0m0s"},
		{name: "negative", dev: "pump", payload: `{"ts": -1, "level": 1}`, reason: TimeTooOld, msg: "ts=-1 is before 1970"},
	}
	d := newTestDecoder(Options{})
	devs := devices(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.stamps = newArrivalStamps() // each case is its device's first message: stamped with the clock
			msg, rej := d.Telemetry(devs[tt.dev], tt.ct, []byte(tt.payload), "http")
			checkCase(t, tt, msg, rej)
		})
	}
}

func TestUnitConversion(t *testing.T) {
	tests := []struct {
		v        float64
		from, to string
		want     float64
		ok       bool
	}{
		{20, "Cel", "Cel", 20, true},
		{3, "count", "count", 3, true},
		{0, "Cel", "K", 273.15, true},
		{300, "K", "Cel", 26.85, true},
		{212, "degF", "Cel", 100, true},
		{32, "Far", "Cel", 0, true},
		{20, "Cel", "degF", 68, true},
		{-40, "degF", "Cel", -40, true},
		{36, "km/h", "m/s", 10, true},
		{10, "m/s", "km/h", 36, true},
		{1, "bar", "hPa", 1000, true},
		{101.325, "kPa", "hPa", 1013.25, true},
		{55, "%RH", "/", 0.55, true},
		{0.55, "/", "%RH", 55, true},
		{1500, "mV", "V", 1.5, true},
		{250, "mA", "A", 0.25, true},
		{1, "kWh", "J", 3.6e6, true},
		{1500, "Wh", "kWh", 1.5, true},
		{90, "min", "h", 1.5, true},
		{1500, "ms", "s", 1.5, true},
		{2500, "g", "kg", 2.5, true},
		{1200, "cm", "m", 12, true},
		{1.5, "km", "m", 1500, true},
		{1000, "l", "m3", 1, true},
		{60, "l/min", "l/s", 1, true},
		{1, "m3/h", "l/min", 16.6666666667, true},
		{3000, "rpm", "1/min", 3000, true},
		{25, "Hz", "1/min", 1500, true},
		{0, "dBm", "dBW", -30, true},
		{180, "deg", "rad", 3.14159265359, true},
		{1, "KiB", "bit", 8192, true},
		{1, "Cel", "m", 0, false},
		{1, "furlong", "m", 0, false},
		{1, "m", "furlong", 0, false},
		{1, "lat", "lon", 0, false},
	}
	for _, tt := range tests {
		got, ok := ConvertUnit(tt.v, tt.from, tt.to)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ConvertUnit(%v, %q, %q) = %v, %v; want %v, %v", tt.v, tt.from, tt.to, got, ok, tt.want, tt.ok)
		}
		if Convertible(tt.from, tt.to) != tt.ok {
			t.Errorf("Convertible(%q, %q) != %v", tt.from, tt.to, tt.ok)
		}
	}
	// A unit the table converts must be one a device can name: a SenML
	// unit, or one of the documented field aliases.
	aliases := map[string]bool{"degF": true, "Far": true, "um": true, "ft": true, "in": true, "mg": true, "t": true, "lb": true,
		"us": true, "d": true, "mph": true, "kn": true, "kPa": true, "MPa": true, "bar": true, "mbar": true, "psi": true,
		"mmHg": true, "atm": true, "ppb": true, "uV": true, "kV": true, "uA": true, "kA": true, "kJ": true, "MJ": true,
		"MWh": true, "cal": true, "kcal": true, "mW": true, "MW": true, "VAh": true, "mAh": true, "kHz": true, "GHz": true,
		"rpm": true, "1/h": true, "L": true, "ml": true, "mL": true, "cm3": true, "L/s": true, "l/min": true, "L/min": true,
		"m3/h": true, "l/h": true, "L/h": true, "kB": true, "MB": true, "MiB": true, "GiB": true, "kbit/s": true,
		"Gbit/s": true, "kB/s": true, "g/m3": true, "mg/m3": true}
	for u := range unitTable {
		if !thingmodel.KnownUnit(u) && !aliases[u] {
			t.Errorf("unit %q converts but is neither a SenML unit nor a listed alias", u)
		}
	}
}

func TestEvent(t *testing.T) {
	d := newTestDecoder(Options{})
	devs := devices(t)
	tests := []struct {
		name, dev, event, ct, payload string
		want                          []byte
		reason                        Reason
		msg                           string
	}{
		{"object", "pump", "overheat", "", `{ "temp": 130.5, "zone": "a" }`, []byte(`{"temp":130.5,"zone":"a"}`), "", ""},
		{"partial object", "pump", "overheat", ContentJSON, `{"zone":"b"}`, []byte(`{"zone":"b"}`), "", ""},
		{"string", "pump", "alarm", "", `"door \u0022open\u0022"`, []byte(`"door \"open\""`), "", ""},
		{"no data", "pump", "started", "", ``, nil, "", ""},
		{"no data null", "pump", "started", "", ` null `, nil, "", ""},
		{"no data empty object", "pump", "started", "", `{}`, nil, "", ""},
		{"no model", "none", "boot", "", `{"a":[1, true, null]}`, []byte(`{"a":[1,true,null]}`), "", ""},
		{"no model empty", "none", "boot", "", ``, nil, "", ""},

		{"unknown event", "pump", "exploded", "", `{}`, nil, UnknownProperty, `event "exploded" is not declared by acme:pump@1.2.0`},
		{"data on data-less event", "pump", "started", "", `{"x":1}`, nil, TypeMismatch, "event started carries no data, got 7 bytes"},
		{"missing data", "pump", "overheat", "", ``, nil, TypeMismatch, "event overheat needs data (object)"},
		{"wrong type", "pump", "overheat", "", `[1]`, nil, TypeMismatch, "overheat must be an object, not an array"},
		{"undeclared member", "pump", "overheat", "", `{"tmp":1}`, nil, UnknownProperty, "overheat.tmp is not declared by the model"},
		{"range", "pump", "overheat", "", `{"temp":501}`, nil, OutOfRange, "overheat.temp=501 above maximum 500"},
		{"enum", "pump", "overheat", "", `{"zone":"c"}`, nil, OutOfRange, `overheat.zone="c" is not one of "a", "b"`},
		{"malformed", "pump", "overheat", "", `{"temp":}`, nil, Malformed, "invalid JSON: offset 8: unexpected byte '}'"},
		{"bad name without model", "none", "bad name", "", `{}`, nil, Malformed, `event name "bad name" must match [a-zA-Z][a-zA-Z0-9_]{0,63}`},
		{"unsupported", "pump", "overheat", ContentSenMLJSON, `[]`, nil, UnsupportedFormat,
			`content type "application/senml+json": event data is application/json`},
		{"too large", "pump", "overheat", "", `"` + strings.Repeat("x", 70000) + `"`, nil, TooLarge, "payload is 70002 bytes, more than the limit of 65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.stamps = newArrivalStamps() // each case is its device's first message: stamped with the clock
			msg, rej := d.Event(devs[tt.dev], tt.event, tt.ct, []byte(tt.payload), "mqtt")
			if tt.reason != "" {
				if rej == nil || rej.Reason != tt.reason || rej.Message != tt.msg {
					t.Fatalf("got %v, want %s: %s", rej, tt.reason, tt.msg)
				}
				return
			}
			if rej != nil {
				t.Fatal(rej)
			}
			dev := devs[tt.dev]
			want := Message{Device: dev.Code, Tenant: dev.Tenant, Kind: Event, Event: tt.event, EventData: tt.want, Received: nowMs, Source: "mqtt"}
			if dev.Model != nil {
				want.Model = dev.Model.Key()
			}
			if !reflect.DeepEqual(msg, want) {
				t.Fatalf("got %+v\nwant %+v", msg, want)
			}
		})
	}
}

func TestRejectionUnwrap(t *testing.T) {
	d := newTestDecoder(Options{})
	_, rej := d.Telemetry(devices(t)["pump"], "", []byte(`[{"n":"level"}]`), "")
	if rej == nil || !errors.Is(rej, senml.ErrInvalid) {
		t.Fatalf("rejection %v does not unwrap to senml.ErrInvalid", rej)
	}
	var err error = rej
	var r *Rejection
	if !errors.As(err, &r) || r.Reason != Malformed {
		t.Fatalf("errors.As: %v", err)
	}
}

func TestCoAPContentType(t *testing.T) {
	for cf, want := range map[uint16]string{50: ContentJSON, 110: ContentSenMLJSON, 112: ContentSenMLCBOR, 60: "coap/60"} {
		if got := CoAPContentType(cf); got != want {
			t.Errorf("CoAPContentType(%d) = %q, want %q", cf, got, want)
		}
	}
	d := newTestDecoder(Options{})
	if _, rej := d.Telemetry(devices(t)["pump"], CoAPContentType(60), []byte{0x80}, "coap"); rej == nil || rej.Reason != UnsupportedFormat {
		t.Errorf("coap/60: %v", rej)
	}
}

// TestConcurrent runs every path from several goroutines at once; with
// -race it checks that one Decoder may serve all adapters.
func TestConcurrent(t *testing.T) {
	d := newTestDecoder(Options{MappingCache: 1})
	devs := devices(t)
	other := mappedModel(t, "acme:o@1.0.0", map[string]string{"mode": "payload.m"}, "")
	inputs := []struct {
		dev     Device
		payload string
	}{
		{devs["pump"], `[{"n":"temperature","u":"degF","v":70},{"n":"location/lat","v":1},{"n":"location/lon","v":2}]`},
		{devs["pump"], `{"temperature": 20, "config": {"limit": 1}}`},
		{devs["none"], `[{"n":"x","v":1}]`},
		{devs["vendor"], `{"t": 215, "st": 1, "gps": [1, 2]}`},
		{Device{Code: "acme:o", Model: other}, `{"m": "x"}`}, // evicts vendor's mapping (cache of 1)
	}
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			var err error
			for i := 0; i < 50 && err == nil; i++ {
				in := inputs[(g+i)%len(inputs)]
				if _, rej := d.Telemetry(in.dev, "", []byte(in.payload), "mqtt"); rej != nil {
					err = rej
				}
			}
			done <- err
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestTDMatchesIngest: the WoT export and ingest describe one schema. A
// position built from the names the TD gives is accepted; an object or an
// event with only some of its declared members is accepted, as the TD (no
// "required") says; a member the TD does not list is refused, as its
// "additionalProperties": false says.
func TestTDMatchesIngest(t *testing.T) {
	dev := devices(t)["pump"]
	raw, err := dev.Model.ThingDescription()
	if err != nil {
		t.Fatal(err)
	}
	var td struct {
		Properties map[string]struct {
			Properties           map[string]any `json:"properties"`
			Required             []string       `json:"required"`
			AdditionalProperties *bool          `json:"additionalProperties"`
		} `json:"properties"`
		Events map[string]struct {
			Data struct {
				Properties map[string]any `json:"properties"`
				Required   []string       `json:"required"`
			} `json:"data"`
		} `json:"events"`
	}
	if err := json.Unmarshal(raw, &td); err != nil {
		t.Fatal(err)
	}
	loc := td.Properties["location"]
	pos := map[string]float64{}
	for _, name := range loc.Required {
		pos[name] = 10
	}
	if _, ok := loc.Properties["alt"]; ok {
		pos["alt"] = 5
	}
	body, _ := json.Marshal(map[string]any{"location": pos})
	d := newTestDecoder(Options{})
	if _, rej := d.Telemetry(dev, ContentJSON, body, "test"); rej != nil || len(pos) != 3 {
		t.Errorf("a position named as the TD names it (%s): %v", body, rej)
	}
	if ev := td.Events["overheat"].Data; len(ev.Required) != 0 || ev.Properties["temp"] == nil {
		t.Errorf("overheat data in the TD: %+v", ev)
	}
	if _, rej := d.Event(dev, "overheat", ContentJSON, []byte(`{"temp": 80}`), "test"); rej != nil {
		t.Errorf("an event with some of its members: %v", rej)
	}
	if _, rej := d.Event(dev, "overheat", ContentJSON, []byte(`{"temp": 80, "colour": "red"}`), "test"); rej == nil {
		t.Error("an event member the TD does not list was accepted")
	}
}

package ingest

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

func TestMapping(t *testing.T) {
	xs := make([]string, 200)
	for i := range xs {
		xs[i] = fmt.Sprint(i)
	}
	runaway := `{"t":1,"st":1,"xs":[` + strings.Join(xs, ",") + `]}`
	tests := []telemetryCase{
		{name: "vendor payload", dev: "vendor", payload: `{"t": 215, "st": 1, "ts": 1767225000}`,
			want: []Record{{Property: "mode", Time: 1767225000000, Kind: KindString, String: "auto"},
				float("temperature", 1767225000000, 21.5, "Cel")}},
		{name: "optional position", dev: "vendor", payload: `{"t": 215, "st": 0, "gps": [31.2, 121.5]}`,
			want: []Record{{Property: "location", Time: nowMs, Kind: KindPosition, Lat: 31.2, Lon: 121.5},
				{Property: "mode", Time: nowMs, Kind: KindString, String: "manual"},
				float("temperature", nowMs, 21.5, "Cel")}},
		{name: "list result", dev: "vendor", ct: ContentJSON, payload: `{"t": 0, "st": 1, "f": [1, 0, -1]}`,
			want: []Record{{Property: "flags", Time: nowMs, Kind: KindData, Data: []byte("[true,false,false]")},
				{Property: "mode", Time: nowMs, Kind: KindString, String: "auto"},
				float("temperature", nowMs, 0, "Cel")}},
		{name: "small comprehension within the cost limit", dev: "vendor", payload: `{"t":1,"st":1,"xs":[1,2,3]}`,
			want: []Record{float("count", nowMs, 3, ""), {Property: "mode", Time: nowMs, Kind: KindString, String: "auto"},
				float("temperature", nowMs, 0.1, "Cel")}},
		{name: "rfc3339 time", dev: "vendor", payload: `{"t": 1, "st": 1, "ts": "2025-12-31T23:00:00Z"}`,
			want: []Record{{Property: "mode", Time: nowMs - 3600000, Kind: KindString, String: "auto"},
				float("temperature", nowMs-3600000, 0.1, "Cel")}},
		{name: "SenML still works", dev: "vendor", payload: `[{"n":"temperature","v":20}]`,
			want: []Record{float("temperature", nowMs, 20, "Cel")}},

		{name: "missing field", dev: "vendor", payload: `{"st": 1}`, reason: MappingFailed,
			msg: "mapping for temperature failed: no such key: t"},
		{name: "wrong field type", dev: "vendor", payload: `{"t": "21", "st": 1}`, reason: MappingFailed,
			msg: "mapping for temperature failed: no such overload…"},
		{name: "not an object", dev: "vendor", ct: ContentJSON, payload: `[1, 2]`, reason: MappingFailed, msg: "mapping for the time failed: unsupported index type …"},
		{name: "runaway expression", dev: "vendor", payload: runaway, reason: MappingFailed,
			msg: "mapping for count failed: operation cancelled: actual cost limit exceeded"},
		{name: "out of range after mapping", dev: "vendor", payload: `{"t": 2000, "st": 1}`, reason: OutOfRange,
			msg: "temperature=200 above maximum 125"},
		{name: "type after mapping", dev: "vendor", payload: `{"t": 1, "st": 1, "gps": [1, "x"]}`, reason: TypeMismatch,
			msg: "location.lon must be a number, not a string"},
		{name: "time too old", dev: "vendor", payload: `{"t": 1, "st": 1, "ts": 1000}`, reason: TimeTooOld,
			msg: "time at 1970-01-01T00:16:40Z is older than 24h0m0s"},
		{name: "time of wrong type", dev: "vendor", payload: `{"t": 1, "st": 1, "ts": true}`, reason: MappingFailed,
			msg: "mapping for the time gave a bool, not a number, string or timestamp"},
		{name: "malformed JSON", dev: "vendor", payload: `{"t": 1`, reason: Malformed, msg: "invalid JSON: …"},
	}
	// A generous deadline, so that the cost limit is what stops the
	// runaway even under the race detector; TestMappingDeadline tests the
	// deadline.
	d := newTestDecoder(Options{MappingTimeout: 10 * time.Second})
	devs := devices(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.stamps = newArrivalStamps() // each case is its device's first message: stamped with the clock
			start := time.Now()
			msg, rej := d.Telemetry(devs[tt.dev], tt.ct, []byte(tt.payload), "mqtt")
			checkCase(t, tt, msg, rej)
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("took %v", el)
			}
		})
	}
}

func TestMappingDeadline(t *testing.T) {
	// With the cost limit out of the way, the deadline stops the runaway.
	d := newTestDecoder(Options{MappingCostLimit: math.MaxUint64, MappingTimeout: 20 * time.Millisecond})
	xs := strings.TrimSuffix(strings.Repeat("1,", 2000), ",")
	start := time.Now()
	_, rej := d.Telemetry(devices(t)["vendor"], "", []byte(`{"t":1,"st":1,"xs":[`+xs+`]}`), "")
	if rej == nil || rej.Reason != MappingFailed || !strings.Contains(rej.Message, "deadline") {
		t.Fatalf("got %v, want mapping_failed naming the deadline", rej)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("deadline of 20ms took %v", el)
	}
}

func mappedModel(t *testing.T, key string, mapping map[string]string, tm string) *thingmodel.Model {
	t.Helper()
	id, version, _ := strings.Cut(key, "@")
	lo, hi := -40.0, 125.0
	return &thingmodel.Model{ID: id, Version: version,
		Properties: map[string]*thingmodel.Property{
			"temperature": {Schema: thingmodel.Schema{Type: thingmodel.TypeNumber, Unit: "Cel", Minimum: &lo, Maximum: &hi}},
			"mode":        {Schema: thingmodel.Schema{Type: thingmodel.TypeString}},
			"on":          {Schema: thingmodel.Schema{Type: thingmodel.TypeBoolean}},
			"where":       {Schema: thingmodel.Schema{Type: thingmodel.TypePosition}},
		},
		Mapping: &thingmodel.Mapping{Properties: mapping, Time: tm},
	}
}

func TestCheckMapping(t *testing.T) {
	tests := []struct {
		name    string
		mapping map[string]string
		time    string
		probs   []string // "path: message prefix"
	}{
		{"fine", map[string]string{"temperature": "payload.t * 1.5", "mode": "string(payload.m)", "on": "payload.on == true",
			"where": "{'lat': payload.a, 'lon': payload.b}"}, "payload.ts", nil},
		{"dyn results pass", map[string]string{"temperature": "payload.t", "on": "has(payload.x) ? payload.x : null"}, "", nil},
		{"extensions", map[string]string{"mode": "payload.m.lowerAscii().trim()", "temperature": "math.round(payload.t)"}, "timestamp(payload.ts)", nil},
		{"syntax", map[string]string{"temperature": "payload.t +"}, "",
			[]string{"$.mapping.properties.temperature: does not compile: <input>:1:12: Syntax error…"}},
		{"undeclared", map[string]string{"temperature": "t / 10.0"}, "",
			[]string{"$.mapping.properties.temperature: does not compile: <input>:1:1: undeclared reference to 't'…"}},
		{"wrong result type", map[string]string{"mode": "1 + 2", "on": "'yes'", "where": "[1, 2]"}, "true",
			[]string{
				"$.mapping.properties.mode: evaluates to int, but the value must be a string",
				"$.mapping.properties.on: evaluates to string, but the value must be a bool",
				"$.mapping.properties.where: evaluates to list(int), but the value must be a map",
				"$.mapping.time: evaluates to bool, but the value must be seconds since the epoch, an RFC 3339 string or a timestamp",
			}},
		{"unknown property", map[string]string{"colour": "1"}, "", []string{`$.mapping.properties.colour: "colour" is not a property of the model`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckMapping(mappedModel(t, "acme:x@1.0.0", tt.mapping, tt.time))
			if tt.probs == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *thingmodel.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, thingmodel.ErrInvalid) {
				t.Fatalf("error %v (%T) is not a thingmodel.ValidationError", err, err)
			}
			if len(ve.Problems) != len(tt.probs) {
				t.Fatalf("problems %v, want %v", ve.Problems, tt.probs)
			}
			for i, want := range tt.probs {
				got := ve.Problems[i].String()
				if p, ok := strings.CutSuffix(want, "…"); ok && strings.HasPrefix(got, p) || got == want {
					continue
				}
				t.Errorf("problem %d = %q, want %q", i, got, want)
			}
		})
	}
	if err := CheckMapping(&thingmodel.Model{}); err != nil {
		t.Errorf("model without mapping: %v", err)
	}
}

func TestMappingCompileFailureRejects(t *testing.T) {
	d := newTestDecoder(Options{})
	m := mappedModel(t, "acme:x@1.0.0", map[string]string{"temperature": "payload.t +"}, "")
	_, rej := d.Telemetry(Device{Code: "acme:d", Model: m}, "", []byte(`{"t":1}`), "")
	if rej == nil || rej.Reason != MappingFailed ||
		!strings.HasPrefix(rej.Message, "the mapping of acme:x@1.0.0 does not compile: $.mapping.properties.temperature: does not compile:") {
		t.Fatalf("got %v", rej)
	}
	var ve *thingmodel.ValidationError
	if !errors.As(rej, &ve) {
		t.Errorf("rejection does not unwrap to the ValidationError")
	}
}

func TestMappingCache(t *testing.T) {
	d := newTestDecoder(Options{MappingCache: 2})
	send := func(m *thingmodel.Model, payload string) Message {
		t.Helper()
		msg, rej := d.Telemetry(Device{Code: "acme:d", Model: m}, "", []byte(payload), "")
		if rej != nil {
			t.Fatal(rej)
		}
		return msg
	}
	a := mappedModel(t, "acme:a@1.0.0", map[string]string{"temperature": "payload.t"}, "")
	if got := send(a, `{"t": 5}`).Records[0].Float; got != 5 {
		t.Fatalf("a: %v", got)
	}
	// Same key, different mapping: must not run the cached program.
	a2 := mappedModel(t, "acme:a@1.0.0", map[string]string{"temperature": "payload.t * 2.0"}, "")
	if got := send(a2, `{"t": 5}`).Records[0].Float; got != 10 {
		t.Fatalf("a2: %v, want 10 (a stale program ran)", got)
	}
	// Same key and mapping, another *Model: reuses the program.
	a3 := mappedModel(t, "acme:a@1.0.0", map[string]string{"temperature": "payload.t * 2.0"}, "")
	before := d.mappings.get(a2)
	if after := d.mappings.get(a3); after != before {
		t.Errorf("equal mapping recompiled")
	}
	for _, k := range []string{"acme:b@1.0.0", "acme:c@1.0.0", "acme:d@1.0.0"} {
		send(mappedModel(t, k, map[string]string{"mode": "payload.m"}, ""), `{"m": "x"}`)
	}
	if n := d.mappings.len(); n != 2 {
		t.Errorf("cache holds %d entries, limit 2", n)
	}
}

func TestCELResults(t *testing.T) {
	// Every CEL result type a mapping may produce, through celToJSON and
	// the JSON validators.
	d := newTestDecoder(Options{})
	m := mappedModel(t, "acme:r@1.0.0", map[string]string{
		"temperature": "int(payload.t)",
		"mode":        "payload.m",
		"on":          "payload.on",
		"where":       "payload.w",
	}, "timestamp('2025-12-31T12:00:00Z')")
	msg, rej := d.Telemetry(Device{Code: "acme:d", Model: m}, "", []byte(`{"t": 21.7, "m": "x", "on": true, "w": {"lon": 2, "lat": 1, "alt": 3}}`), "")
	if rej != nil {
		t.Fatal(rej)
	}
	at := int64(nowMs - 12*3600*1000)
	want := []Record{
		{Property: "mode", Time: at, Kind: KindString, String: "x"},
		{Property: "on", Time: at, Kind: KindBool, Bool: true},
		float("temperature", at, 21, "Cel"),
		{Property: "where", Time: at, Kind: KindPosition, Lat: 1, Lon: 2, Alt: 3, HasAlt: true},
	}
	if !reflect.DeepEqual(msg.Records, want) {
		t.Fatalf("got %+v\nwant %+v", msg.Records, want)
	}
	m = mappedModel(t, "acme:r@1.0.1", map[string]string{"temperature": "1.0 / 0.0"}, "")
	if _, rej := d.Telemetry(Device{Code: "acme:d", Model: m}, "", []byte(`{}`), ""); rej == nil || rej.Reason != MappingFailed ||
		rej.Message != "mapping for temperature failed: result is not a finite number" {
		t.Fatalf("infinite result: %v", rej)
	}
	m = mappedModel(t, "acme:r@1.0.2", map[string]string{"temperature": "payload.x"}, "")
	if _, rej := d.Telemetry(Device{Code: "acme:d", Model: m}, "", []byte(`{"x": null}`), ""); rej == nil || rej.Reason != MappingFailed ||
		rej.Message != "the mapping produced no property values" {
		t.Fatalf("all null: %v", rej)
	}
	m = mappedModel(t, "acme:r@1.0.3", map[string]string{"temperature": "b'abc'"}, "")
	if _, rej := d.Telemetry(Device{Code: "acme:d", Model: m}, "", []byte(`{}`), ""); rej == nil || rej.Reason != MappingFailed {
		t.Fatalf("bytes result: %v", rej)
	}
}

// TestModbusOnlyMapping: a model whose mapping is a Modbus mapping alone
// has no expressions to run: its devices' plain JSON is read as property
// values (PROTOCOL.md §3.2) and SenML as always, and no mapping is
// compiled for it.
func TestModbusOnlyMapping(t *testing.T) {
	m, err := thingmodel.Parse([]byte(`{"id":"acme:meter","version":"1.0.0",
		"properties":{"energy":{"type":"number","unit":"kWh"},"on":{"type":"boolean"}},
		"mapping":{"modbus":{"groups":[{"interval":"1s","registers":[
			{"property":"energy","table":"input","address":0,"type":"u32","unit":"Wh"},
			{"property":"on","table":"coil","address":0}]}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckMapping(m); err != nil {
		t.Fatalf("CheckMapping: %v", err)
	}
	d := newTestDecoder(Options{})
	dev := Device{Code: "acme:m1", Model: m}
	msg, rej := d.Telemetry(dev, ContentJSON, []byte(`{"energy": 12.5, "on": true}`), "http")
	if rej != nil {
		t.Fatalf("plain JSON: %v", rej)
	}
	if len(msg.Records) != 2 || msg.Records[0].Property != "energy" || msg.Records[0].Float != 12.5 {
		t.Errorf("plain JSON records %+v", msg.Records)
	}
	// What the Modbus driver sends: SenML with the register's unit,
	// converted to the model's.
	msg, rej = d.Telemetry(dev, ContentSenMLJSON, []byte(`[{"n":"energy","u":"Wh","v":1500},{"n":"on","vb":false}]`), "modbus")
	if rej != nil {
		t.Fatalf("SenML: %v", rej)
	}
	if r := msg.Records[0]; r.Float != 1.5 || r.Unit != "kWh" {
		t.Errorf("converted record %+v", r)
	}
	if n := d.mappings.len(); n != 0 {
		t.Errorf("%d mappings compiled for a model without expressions", n)
	}
}

func TestCheckMappingModbusUnits(t *testing.T) {
	m, err := thingmodel.Parse([]byte(`{"id":"acme:meter","version":"1.0.0",
		"properties":{"energy":{"type":"number","unit":"kWh"},"count":{"type":"number"},"t":{"type":"number","unit":"Cel"}},
		"actions":{"setSpeed":{"input":{"rpm":{"type":"number","unit":"1/min"}}},"setLevel":{"input":{"l":{"type":"number"}}},
			"setT":{"input":{"t":{"type":"number","unit":"Cel"}}}},
		"mapping":{"properties":{"t":"payload.t +"},"modbus":{"groups":[{"interval":"1s","registers":[
			{"property":"energy","table":"input","address":0,"type":"u32","unit":"m"},
			{"property":"count","table":"input","address":2,"unit":"Wh"},
			{"property":"t","table":"input","address":3,"unit":"degF"}]}],
		"actions":{"setSpeed":{"argument":"rpm","table":"holding","address":0,"unit":"Hz"},
			"setLevel":{"argument":"l","table":"holding","address":1,"unit":"m"},
			"setT":{"argument":"t","table":"holding","address":2,"unit":"kWh"}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	err = CheckMapping(m)
	var ve *thingmodel.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("CheckMapping = %v", err)
	}
	var got []string
	for _, p := range ve.Problems {
		got = append(got, p.String())
	}
	want := []string{
		`$.mapping.modbus.actions.setLevel.unit: argument l has no unit to convert to "m"`,
		`$.mapping.modbus.actions.setT.unit: "Cel" does not convert to "kWh", the unit of the write`,
		`$.mapping.modbus.groups[0].registers[0].unit: "m" does not convert to "kWh", the unit of property energy`,
		`$.mapping.modbus.groups[0].registers[1].unit: "Wh" needs a unit to convert to, and property count has none`,
		`$.mapping.properties.t: does not compile: `,
	}
	if len(got) != len(want) {
		t.Fatalf("problems\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i][:min(len(want[i]), 60)]) {
			t.Errorf("problem %d = %q, want %q", i, got[i], want[i])
		}
	}
}

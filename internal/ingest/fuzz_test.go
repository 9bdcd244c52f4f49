package ingest

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// checkOutcome asserts what must hold for any input: a rejection has a known
// reason and a message and comes with a zero Message; an accepted message
// has only records that pass the model, within the time window, and survives
// the bus encoding unchanged.
func checkOutcome(t *testing.T, dev Device, msg Message, rej *Rejection, o Options) {
	t.Helper()
	if rej != nil {
		if !rej.Reason.Valid() || rej.Message == "" {
			t.Fatalf("bad rejection %#v", rej)
		}
		if !reflect.DeepEqual(msg, Message{}) {
			t.Fatalf("rejected with a non-zero message %+v", msg)
		}
		return
	}
	o = o.withDefaults()
	if len(msg.Records) == 0 || len(msg.Records) > o.MaxRecords {
		t.Fatalf("accepted %d records", len(msg.Records))
	}
	now := o.Now().UnixMilli()
	for _, r := range msg.Records {
		if r.Time > now+o.FutureSkew.Milliseconds() || r.Time < now-o.MaxAge.Milliseconds() {
			t.Fatalf("record %+v outside the time window", r)
		}
		for _, f := range []float64{r.Float, r.Lat, r.Lon, r.Alt} {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				t.Fatalf("record %+v has a non-finite number", r)
			}
		}
		if dev.Model == nil {
			continue
		}
		p := dev.Model.Properties[r.Property]
		if p == nil {
			t.Fatalf("record for undeclared property %q", r.Property)
		}
		switch p.Type {
		case thingmodel.TypeNumber, thingmodel.TypeInteger:
			if r.Kind != KindFloat || r.Unit != p.Unit ||
				p.Minimum != nil && r.Float < *p.Minimum || p.Maximum != nil && r.Float > *p.Maximum ||
				p.Type == thingmodel.TypeInteger && r.Float != math.Trunc(r.Float) {
				t.Fatalf("record %+v breaks %+v", r, p.Schema)
			}
		case thingmodel.TypeBoolean:
			if r.Kind != KindBool {
				t.Fatalf("record %+v for a boolean", r)
			}
		case thingmodel.TypeString:
			if r.Kind != KindString {
				t.Fatalf("record %+v for a string", r)
			}
		case thingmodel.TypePosition:
			if r.Kind != KindPosition || math.Abs(r.Lat) > 90 || math.Abs(r.Lon) > 180 {
				t.Fatalf("record %+v for a position", r)
			}
		default:
			if r.Kind != KindData || !json.Valid(r.Data) {
				t.Fatalf("record %+v for an %s", r, p.Type)
			}
		}
	}
	b, err := EncodeBatch([]Message{msg})
	if err != nil {
		t.Fatalf("EncodeBatch of an accepted message: %v", err)
	}
	back, err := DecodeBatch(b)
	if err != nil || len(back) != 1 || !reflect.DeepEqual(back[0], msg) {
		t.Fatalf("bus round trip: %v\n got %+v\nwant %+v", err, back, msg)
	}
}

func fuzzDecoder() (*Decoder, Options) {
	o := Options{Now: func() time.Time { return testNow }}
	return NewDecoder(o), o
}

func FuzzTelemetrySenMLJSON(f *testing.F) {
	for _, s := range []string{
		`[{"bn":"acme:pump-0001/","bt":1767225000,"n":"temperature","u":"Cel","v":71.5},{"n":"speed","u":"km/h","v":3.2},{"n":"mode","vs":"auto"},{"n":"running","vb":true}]`,
		`[{"n":"location/lat","v":31.2},{"n":"location/lon","v":121.5},{"n":"location/alt","u":"km","v":0.1}]`,
		`[{"bn":"x/","bt":1767225000,"bu":"%RH"},{"n":"humidity","v":55,"t":-1},{"n":"humidity","u":"/","v":0.5}]`,
		`[{"n":"rpm","u":"Hz","v":25.5},{"n":"count","v":1e20}]`,
		`[{"n":"d","vd":"AQI"},{"n":"e","s":1},{"n":"a/b","v":-0}]`,
		`[{"bver":10,"n":"level","v":1,"t":-86400.001}]`,
		`[{"n":"temperature","u":"degF","v":257}]`,
		`[]`, `[{}]`, `[{"n":"level","v":1e400}]`,
	} {
		f.Add([]byte(s))
	}
	d, o := fuzzDecoder()
	devs := devices(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, dev := range []Device{devs["pump"], devs["none"]} {
			msg, rej := d.Telemetry(dev, ContentSenMLJSON, data, "mqtt")
			checkOutcome(t, dev, msg, rej, o)
		}
	})
}

func FuzzTelemetryPlainJSON(f *testing.F) {
	for _, s := range []string{
		`{"temperature": 71.5, "mode": "auto", "ts": 1767225000}`,
		`{"location": {"lat": 31.2, "lon": 121.5, "alt": 12}, "running": false, "ts": "2025-12-31T23:59:00Z"}`,
		`{"config": {"limit": 3, "name": "x\u00e9\ud83d\ude00"}, "samples": [0, 1.5e2, 3E-1]}`,
		`{"rpm": 1500, "count": -0, "level": 1e-400, "label": "\"\\\/\b\f\n\r\t"}`,
		`{"humidity": 100, "pressure": 1013.25, "energy": 0.5}`,
		`{"a":{"a":{"a":[[[[{}]]]]}}}`, `{"level":1,"level":2}`, `{"label":"\ud800"}`, ` { } `, `[1]`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	d, o := fuzzDecoder()
	dev := devices(f)["pump"]
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, rej := d.Telemetry(dev, ContentJSON, data, "http")
		checkOutcome(t, dev, msg, rej, o)

		// The parser accepts only JSON that encoding/json accepts, and its
		// compact form means the same.
		nodes, err := parseJSON(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("parseJSON accepted invalid JSON %q", data)
		}
		compact := appendJSON(nil, nodes, 0)
		var a, b any
		if err := json.Unmarshal(data, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(compact, &b); err != nil {
			t.Fatalf("compact form %q is not JSON: %v", compact, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("compact form %q means something else than %q", compact, data)
		}
		if !reflect.DeepEqual(toNative(nodes, 0), a) {
			t.Fatalf("toNative differs from encoding/json on %q", data)
		}
	})
}

func FuzzMapping(f *testing.F) {
	for _, s := range []string{
		`{"t": 215, "st": 1, "ts": 1767225000}`,
		`{"t": 215, "st": 0, "gps": [31.2, 121.5]}`,
		`{"t": 0, "st": 1, "f": [1, 0, -1]}`,
		`{"t":1,"st":1,"xs":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30]}`,
		`{"t": 1, "st": 1, "ts": "2025-12-31T23:00:00Z"}`,
		`{"t": "1", "st": null}`, `[1, 2]`, `{"t": 1e308, "st": 1}`, `{"t":1,"st":1,"gps":[{"a":1},[]]}`,
	} {
		f.Add([]byte(s))
	}
	d, o := fuzzDecoder()
	dev := devices(f)["vendor"]
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		msg, rej := d.Telemetry(dev, ContentJSON, data, "mqtt")
		checkOutcome(t, dev, msg, rej, o)
		// The cost limit and deadline bound every payload; allow for a
		// loaded fuzzing machine.
		if el := time.Since(start); el > time.Second {
			t.Fatalf("mapping took %v on %q", el, data)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	if b, err := EncodeBatch(sampleBatch()); err == nil {
		f.Add(b)
	}
	if b, err := EncodeBatch(nil); err == nil {
		f.Add(b)
	}
	f.Add([]byte("\x82\x01\x81\xa2\x01\x66acme:d\x07\x01"))
	f.Add([]byte("\x82\x02\x80"))
	f.Add([]byte("\x82\x01\x81\xa3\x01\x61d\x04\x01\x05\x61e"))
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := DecodeBatch(data)
		if err != nil {
			return
		}
		b, err := EncodeBatch(msgs)
		if err != nil {
			t.Fatalf("decoded batch does not encode: %v", err)
		}
		back, err := DecodeBatch(b)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if !reflect.DeepEqual(back, msgs) {
			t.Fatalf("round trip changed the batch\n got %+v\nwant %+v", back, msgs)
		}
		b2, err := EncodeBatch(back)
		if err != nil || string(b2) != string(b) {
			t.Fatalf("encoding unstable: %v", err)
		}
	})
}

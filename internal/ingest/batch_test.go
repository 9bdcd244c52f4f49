package ingest

import (
	"errors"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func sampleBatch() []Message {
	return []Message{
		{Device: "acme:pump-0001", Tenant: "acme", Model: "acme:pump@1.2.0", Kind: Telemetry, Received: nowMs, Source: "mqtt",
			Records: []Record{
				float("temperature", nowMs-1000, 21.5, "Cel"),
				float("rpm", nowMs, 1500, "1/min"),
				float("level", nowMs, -0.1, ""),
				{Property: "mode", Time: nowMs, Kind: KindString, String: "auto"},
				{Property: "running", Time: nowMs, Kind: KindBool, Bool: true},
				{Property: "location", Time: nowMs, Kind: KindPosition, Lat: 31.2, Lon: 121.5, Alt: 12.25, HasAlt: true},
				{Property: "config", Time: nowMs, Kind: KindData, Data: []byte(`{"limit":3}`)},
			}},
		{Device: "acme:pump-0001", Tenant: "acme", Model: "acme:pump@1.2.0", Kind: Event, Event: "overheat",
			EventData: []byte(`{"temp":130}`), Received: nowMs + 1, Source: "http"},
		{Device: "acme:raw-1", Kind: Event, Event: "boot", Received: 1},
		{Device: "acme:raw-1", Received: 2, Records: []Record{{Property: "x", Time: 0}}},
	}
}

func TestBatchRoundTrip(t *testing.T) {
	msgs := sampleBatch()
	b, err := EncodeBatch(msgs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, msgs) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, msgs)
	}
	if got, err := DecodeBatch(mustEncode(t, nil)); err != nil || len(got) != 0 {
		t.Errorf("empty batch: %v, %v", got, err)
	}
	t.Logf("%d messages, %d records: %d bytes", len(msgs), len(msgs[0].Records), len(b))
}

func mustEncode(t *testing.T, msgs []Message) []byte {
	t.Helper()
	b, err := EncodeBatch(msgs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBatchDecodeErrors(t *testing.T) {
	raw := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	msg := map[int]any{1: "acme:d", 7: 1}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrBatchMalformed},
		{"not an array", raw(map[string]int{"a": 1}), ErrBatchMalformed},
		{"future version", raw([]any{2, []any{}}), ErrBatchVersion},
		{"version zero", raw([]any{0, []any{}}), ErrBatchVersion},
		{"trailing data", append(mustEncode(t, sampleBatch()), 0), ErrBatchMalformed},
		{"unknown message field", raw([]any{1, []any{map[int]any{1: "acme:d", 7: 1, 99: 1}}}), ErrBatchMalformed},
		{"duplicate key", []byte("\x82\x01\x81\xa2\x01\x66acme:d\x01\x66acme:e"), ErrBatchMalformed},
		{"no device", raw([]any{1, []any{map[int]any{7: 1}}}), ErrBatchMalformed},
		{"unknown kind", raw([]any{1, []any{map[int]any{1: "acme:d", 4: 9}}}), ErrBatchMalformed},
		{"event without name", raw([]any{1, []any{map[int]any{1: "acme:d", 4: 1}}}), ErrBatchMalformed},
		{"event with records", raw([]any{1, []any{map[int]any{1: "acme:d", 4: 1, 5: "e", 9: []any{map[int]any{1: "x"}}}}}), ErrBatchMalformed},
		{"telemetry with event", raw([]any{1, []any{map[int]any{1: "acme:d", 5: "e"}}}), ErrBatchMalformed},
		{"record without property", raw([]any{1, []any{map[int]any{1: "acme:d", 9: []any{map[int]any{2: 1}}}}}), ErrBatchMalformed},
		{"record of unknown kind", raw([]any{1, []any{map[int]any{1: "acme:d", 9: []any{map[int]any{1: "x", 3: 5}}}}}), ErrBatchMalformed},
		{"NaN", raw([]any{1, []any{map[int]any{1: "acme:d", 9: []any{map[int]any{1: "x", 4: cbor.RawMessage{0xf9, 0x7e, 0x00}}}}}}), ErrBatchMalformed},
		{"tag", append([]byte{0xc1}, raw([]any{1, []any{msg}})...), ErrBatchMalformed},
		{"bad UTF-8", []byte("\x82\x01\x81\xa1\x01\x61\xff"), ErrBatchMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeBatch(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("DecodeBatch = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := DecodeBatch(raw([]any{1, []any{msg}})); err != nil {
		t.Errorf("minimal message: %v", err)
	}
}

func TestBatchEncodeRefuses(t *testing.T) {
	for _, m := range []Message{
		{},
		{Device: "d", Kind: 7},
		{Device: "d", Kind: Event},
		{Device: "d", Records: []Record{{Property: "x", Kind: 99}}},
	} {
		if _, err := EncodeBatch([]Message{m}); err == nil {
			t.Errorf("EncodeBatch(%+v) succeeded", m)
		}
	}
}

// TestBatchOfDecoded checks that whatever Telemetry and Event accept,
// EncodeBatch takes and DecodeBatch gives back.
func TestBatchOfDecoded(t *testing.T) {
	d := newTestDecoder(Options{})
	devs := devices(t)
	var msgs []Message
	for _, in := range []struct{ dev, payload string }{
		{"pump", `{"temperature": 21.5, "location": {"lat": 1, "lon": 2}, "config": {"limit": 1}, "running": true}`},
		{"none", `[{"n":"d","vd":"AQI"},{"n":"s","vs":""}]`},
		{"vendor", `{"t": 215, "st": 1, "f": [1]}`},
	} {
		m, rej := d.Telemetry(devs[in.dev], "", []byte(in.payload), "mqtt")
		if rej != nil {
			t.Fatal(rej)
		}
		msgs = append(msgs, m)
	}
	ev, rej := d.Event(devs["pump"], "started", "", nil, "coap")
	if rej != nil {
		t.Fatal(rej)
	}
	msgs = append(msgs, ev)
	got, err := DecodeBatch(mustEncode(t, msgs))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, msgs) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, msgs)
	}
}

package ingest

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"reflect"
	"slices"
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

func mustEncode(t testing.TB, msgs []Message) []byte {
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

// TestBatchV1Fixture reads a batch written by the CBOR encoder of format
// version 1 (testdata/batch-v1.cbor, EncodeBatch(sampleBatch()) of that
// release): JetStream may hold such batches when a hub is upgraded.
func TestBatchV1Fixture(t *testing.T) {
	b, err := os.ReadFile("testdata/batch-v1.cbor")
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != cborV1 {
		t.Fatalf("fixture starts with %#x", b[0])
	}
	got, err := DecodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := sampleBatch(); !reflect.DeepEqual(got, want) {
		t.Fatalf("version 1 batch\n got %+v\nwant %+v", got, want)
	}
	// Re-encoded, it is version 2 and holds the same messages.
	v2 := mustEncode(t, got)
	if v2[0] != BatchVersion {
		t.Fatalf("EncodeBatch wrote version %d", v2[0])
	}
	back, err := DecodeBatch(v2)
	if err != nil || !reflect.DeepEqual(back, got) {
		t.Fatalf("re-encoded: %v\n got %+v\nwant %+v", err, back, got)
	}
	t.Logf("sample batch: %d bytes as version 1, %d as version 2", len(b), len(v2))
}

func TestBatchV2DecodeErrors(t *testing.T) {
	good := mustEncode(t, sampleBatch())
	// Every proper prefix is refused, and so is every single byte appended.
	for n := range len(good) {
		if _, err := DecodeBatch(good[:n]); !errors.Is(err, ErrBatchMalformed) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
	if _, err := DecodeBatch(append(slices.Clip(good), 0)); !errors.Is(err, ErrBatchMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
	f64 := func(v float64) string {
		return string(binary.LittleEndian.AppendUint64(nil, math.Float64bits(v)))
	}
	// A message: fields, device "d", received 0; a record: fields, property "x", time 0.
	tests := []struct {
		name string
		b    string
		want error
	}{
		{"empty", "", ErrBatchMalformed},
		{"version 3", "\x03\x00\x00", ErrBatchVersion},
		{"version 0", "\x00", ErrBatchVersion},
		{"not CBOR either", "\xff", ErrBatchMalformed},
		{"no counts", "\x02", ErrBatchMalformed},
		{"more messages than bytes", "\x02\x05\x00\x00\x01d\x00", ErrBatchMalformed},
		{"too many messages", "\x02\x81\x80\x04\x00", ErrBatchMalformed},
		{"huge count", "\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00", ErrBatchMalformed},
		{"overlong varint", "\x02\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01\x00", ErrBatchMalformed},
		{"more records than bytes", "\x02\x01\x09\x40\x01d\x00\x09", ErrBatchMalformed},
		{"records beyond the header's count", "\x02\x01\x01\x40\x01d\x00\x02\x00\x01x\x00\x00\x01y\x00", ErrBatchMalformed},
		{"records announced, not present", "\x02\x01\x02\x40\x01d\x00\x01\x00\x01x\x00\x00\x01y\x00", ErrBatchMalformed},
		{"string beyond the end", "\x02\x01\x00\x00\x09d\x00", ErrBatchMalformed},
		{"string length overflow", "\x02\x01\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\x7fd\x00", ErrBatchMalformed},
		{"unknown message field", "\x02\x01\x00\x80\x01\x01d\x00", ErrBatchMalformed},
		{"unknown record field", "\x02\x01\x01\x40\x01d\x00\x01\x80\x08\x01x\x00", ErrBatchMalformed},
		{"no device", "\x02\x01\x00\x00\x00\x00\x00", ErrBatchMalformed},
		{"unknown message kind", "\x02\x01\x00\x04\x01d\x00\x07", ErrBatchMalformed},
		{"event without name", "\x02\x01\x00\x04\x01d\x00\x01", ErrBatchMalformed},
		{"event with records", "\x02\x01\x01\x4c\x01d\x00\x01\x01e\x01\x00\x01x\x00", ErrBatchMalformed},
		{"telemetry with event", "\x02\x01\x00\x08\x01d\x00\x01e", ErrBatchMalformed},
		{"record without property", "\x02\x01\x01\x40\x01d\x00\x01\x00\x00\x00\x00", ErrBatchMalformed},
		{"record of unknown kind", "\x02\x01\x01\x40\x01d\x00\x01\x04\x01x\x00\x05", ErrBatchMalformed},
		{"NaN", "\x02\x01\x01\x40\x01d\x00\x01\x01\x01x\x00" + f64(math.NaN()), ErrBatchMalformed},
		{"infinite latitude", "\x02\x01\x01\x40\x01d\x00\x01\x44\x01x\x00\x03" + f64(math.Inf(1)), ErrBatchMalformed},
		{"short float", "\x02\x01\x01\x40\x01d\x00\x01\x01\x01x\x00\x00\x00\x00", ErrBatchMalformed},
		{"missing kind byte", "\x02\x01\x00\x04\x01d\x00", ErrBatchMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeBatch([]byte(tt.b)); !errors.Is(err, tt.want) {
				t.Fatalf("DecodeBatch = %v, want %v", err, tt.want)
			}
		})
	}
	// The smallest messages the table varies, accepted as they are.
	for _, b := range []string{
		"\x02\x00\x00",
		"\x02\x01\x00\x00\x01d\x00",
		"\x02\x01\x01\x40\x01d\x00\x01\x00\x01x\x00",
		"\x02\x01\x00\x0c\x01d\x00\x01\x01e",
	} {
		if _, err := DecodeBatch([]byte(b)); err != nil {
			t.Errorf("DecodeBatch(%q): %v", b, err)
		}
	}
}

// TestBatchV2Details: what the binary form keeps that the CBOR form did
// not (negative zero), that decoded messages share no memory with the
// input, and that their record slices do not overlap.
func TestBatchV2Details(t *testing.T) {
	msgs := []Message{
		{Device: "acme:a", Received: nowMs, Records: []Record{{Property: "x", Time: nowMs - 5, Float: math.Copysign(0, -1)}}},
		{Device: "acme:b", Received: math.MinInt64, Records: []Record{{Property: "y", Time: math.MaxInt64, Kind: KindData, Data: []byte{1}}}},
	}
	b := mustEncode(t, msgs)
	got, err := DecodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, msgs) || !math.Signbit(got[0].Records[0].Float) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, msgs)
	}
	for i := range b {
		b[i] = 0
	}
	if got[0].Device != "acme:a" || got[1].Records[0].Data[0] != 1 {
		t.Fatalf("decoded messages changed with the input: %+v", got)
	}
	got[0].Records = append(got[0].Records, Record{Property: "z"})
	if got[1].Records[0].Property != "y" {
		t.Fatal("appending to one message's records overwrote the next message's")
	}
}

// TestBatchV2Allocs: decoding allocates per batch, not per message.
func TestBatchV2Allocs(t *testing.T) {
	b := mustEncode(t, benchBatch())
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := DecodeBatch(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 3 {
		t.Errorf("DecodeBatch of %d messages: %v allocations, want at most 3", len(benchBatch()), allocs)
	}
}

func TestBatchEncodeLimits(t *testing.T) {
	msgs := make([]Message, maxBatchMessages+1)
	for i := range msgs {
		msgs[i] = Message{Device: "d"}
	}
	if _, err := EncodeBatch(msgs); err == nil {
		t.Error("EncodeBatch of more messages than DecodeBatch reads succeeded")
	}
	b, err := EncodeBatch(msgs[:maxBatchMessages])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeBatch(b); err != nil || len(got) != maxBatchMessages {
		t.Fatalf("largest batch: %d messages, %v", len(got), err)
	}
	for _, r := range []Record{
		{Property: "x", Float: math.NaN()},
		{Property: "x", Kind: KindPosition, Lon: math.Inf(-1)},
	} {
		if _, err := EncodeBatch([]Message{{Device: "d", Records: []Record{r}}}); err == nil {
			t.Errorf("EncodeBatch(%+v) succeeded", r)
		}
	}
	// AppendBatch appends.
	out, err := AppendBatch([]byte("head"), msgs[:1])
	if err != nil || string(out[:4]) != "head" {
		t.Fatalf("AppendBatch: %q, %v", out, err)
	}
	if got, err := DecodeBatch(out[4:]); err != nil || len(got) != 1 {
		t.Fatalf("AppendBatch output: %v, %v", got, err)
	}
}

// TestBatchReader: a reader that reuses its arrays leaves nothing of one
// batch in the next, and the strings of an earlier batch stay intact.
func TestBatchReader(t *testing.T) {
	var r BatchReader
	first := sampleBatch()
	got1, err := r.Decode(mustEncode(t, first))
	if err != nil || !reflect.DeepEqual(got1, first) {
		t.Fatalf("first batch: %v\n got %+v\nwant %+v", err, got1, first)
	}
	dev, unit := got1[0].Device, got1[0].Records[0].Unit
	// Fewer messages and records, each with fewer fields than the first.
	second := []Message{{Device: "acme:x", Received: 5, Records: []Record{{Property: "p", Time: 5}}}, {Device: "acme:y"}}
	got2, err := r.Decode(mustEncode(t, second))
	if err != nil || !reflect.DeepEqual(got2, second) {
		t.Fatalf("second batch: %v\n got %+v\nwant %+v", err, got2, second)
	}
	if dev != "acme:pump-0001" || unit != "Cel" {
		t.Errorf("strings of the first batch changed: %q %q", dev, unit)
	}
	v1, err := os.ReadFile("testdata/batch-v1.cbor")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Decode(v1); err != nil || !reflect.DeepEqual(got, first) {
		t.Fatalf("version 1 through a reader: %v", err)
	}
	if got, err := r.Decode(mustEncode(t, nil)); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty batch: %#v, %v", got, err)
	}
	b := mustEncode(t, benchBatch())
	r.Decode(b)
	if allocs := testing.AllocsPerRun(20, func() { r.Decode(b) }); allocs > 1 {
		t.Errorf("BatchReader.Decode: %v allocations, want 1 (the strings)", allocs)
	}
}

// FuzzBatchReader decodes two inputs one after the other with one reader,
// so that the second reuses the first's arrays: the result must be what
// DecodeBatch gives, and the first result must not have been altered
// before the second call.
func FuzzBatchReader(f *testing.F) {
	full := mustEncode(f, sampleBatch())
	f.Add(full, mustEncode(f, benchBatch()[:3]))
	f.Add(mustEncode(f, benchBatch()[:3]), full)
	f.Add(full, []byte("\x02\x01\x01\x40\x01d\x00\x01\x00\x01x\x00"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var r BatchReader
		for _, data := range [][]byte{a, b} {
			want, werr := DecodeBatch(data)
			got, err := r.Decode(data)
			if (err == nil) != (werr == nil) {
				t.Fatalf("reader: %v, DecodeBatch: %v", err, werr)
			}
			if err != nil {
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("reader\n got %+v\nwant %+v", got, want)
			}
			if len(got) > len(data)/minMessageBytes+1 {
				t.Fatalf("%d messages from %d bytes", len(got), len(data))
			}
		}
	})
}

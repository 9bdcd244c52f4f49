package ingest

import (
	"fmt"
	"testing"
)

// benchSenML is a 3-record pack of about 100 bytes, the size of a typical
// device publish.
const benchSenML = `[{"bn":"acme:pump-0001/","n":"temperature","u":"Cel","v":71.5},{"n":"rpm","v":1500},{"n":"mode","vs":"auto"}]`

func benchTelemetry(b *testing.B, dev, ct, payload string) {
	d := newTestDecoder(Options{})
	device := devices(b)[dev]
	p := []byte(payload)
	if _, rej := d.Telemetry(device, ct, p, "mqtt"); rej != nil {
		b.Fatal(rej)
	}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, rej := d.Telemetry(device, ct, p, "mqtt"); rej != nil {
			b.Fatal(rej)
		}
	}
}

func BenchmarkTelemetrySenMLJSON(b *testing.B) {
	benchTelemetry(b, "pump", ContentSenMLJSON, benchSenML)
}

func BenchmarkTelemetrySenMLJSONNoModel(b *testing.B) {
	benchTelemetry(b, "none", ContentSenMLJSON, `[{"bn":"acme:raw-1/","n":"temperature","u":"Cel","v":71.5},{"n":"rpm","v":1500},{"n":"mode","vs":"auto"}]`)
}

// BenchmarkTelemetryLoadgenPayload decodes what `wanwu bench mqtt` sends:
// a time with milliseconds and a sequence number, no model.
func BenchmarkTelemetryLoadgenPayload(b *testing.B) {
	now := testNow.UnixMilli()
	benchTelemetry(b, "none", ContentSenMLJSON,
		fmt.Sprintf(`[{"bn":"acme:raw-1/","n":"temperature","v":21.5,"t":%d.%03d},{"n":"seq","v":12345}]`, now/1000, now%1000))
}

func BenchmarkTelemetrySenMLCBOR(b *testing.B) {
	// The same pack as benchSenML in CBOR.
	benchTelemetry(b, "pump", ContentSenMLCBOR,
		"\x83\xa4\x21\x6facme:pump-0001/\x00\x6btemperature\x01\x63Cel\x02\xfb\x40\x51\xe0\x00\x00\x00\x00\x00"+
			"\xa2\x00\x63rpm\x02\x19\x05\xdc\xa2\x00\x64mode\x03\x64auto")
}

func BenchmarkTelemetryPlainJSON(b *testing.B) {
	benchTelemetry(b, "pump", ContentJSON, `{"temperature":71.5,"rpm":1500,"mode":"auto","ts":1767225000}`)
}

func BenchmarkTelemetryUnitConversion(b *testing.B) {
	benchTelemetry(b, "pump", ContentSenMLJSON, `[{"n":"temperature","u":"degF","v":160.7},{"n":"speed","u":"km/h","v":36},{"n":"pressure","u":"kPa","v":101.3}]`)
}

func BenchmarkTelemetryMapped(b *testing.B) {
	benchTelemetry(b, "vendor", ContentJSON, `{"t":215,"st":1,"ts":1767225000}`)
}

func benchBatch() []Message {
	msgs := make([]Message, 256)
	for i := range msgs {
		msgs[i] = Message{Device: fmt.Sprintf("acme:pump-%04d", i), Tenant: "acme", Model: "acme:pump@1.2.0",
			Received: nowMs + int64(i), Source: "mqtt", Records: []Record{
				float("temperature", nowMs, 71.5+float64(i)/10, "Cel"),
				float("rpm", nowMs, 1500, "1/min"),
				{Property: "mode", Time: nowMs, Kind: KindString, String: "auto"},
			}}
	}
	return msgs
}

func BenchmarkEncodeBatch(b *testing.B) {
	msgs := benchBatch()
	enc, err := EncodeBatch(msgs)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := EncodeBatch(msgs); err != nil {
			b.Fatal(err)
		}
	}
	reportPerMsg(b, len(msgs))
	b.ReportMetric(float64(len(enc))/float64(len(msgs)), "bytes/msg")
}

// reportPerMsg adds the cost of one message of an n-message batch.
func reportPerMsg(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/msg")
}

func BenchmarkDecodeBatch(b *testing.B) {
	msgs := benchBatch()
	enc, err := EncodeBatch(msgs)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := DecodeBatch(enc); err != nil {
			b.Fatal(err)
		}
	}
	reportPerMsg(b, len(msgs))
}

// BenchmarkBatchReader is DecodeBatch reusing the message and record
// arrays, as the store consumer decodes.
func BenchmarkBatchReader(b *testing.B) {
	msgs := benchBatch()
	enc, err := EncodeBatch(msgs)
	if err != nil {
		b.Fatal(err)
	}
	var r BatchReader
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
	reportPerMsg(b, len(msgs))
}

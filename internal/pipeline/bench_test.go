package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
)

// storeBatches writes encoded batches into the stores at once, as the
// stores' loop does with batches it reads back.
func (p *Pipeline) storeBatches(batches [][]byte) error {
	l := p.loops[0]
	for i, b := range batches {
		l.addEncoded(uint64(i+1), b)
	}
	return l.c.Write(context.Background())
}

// storeOnly is a pipeline with only what storeBatches uses: the stores,
// no bus and no goroutines.
func storeOnly(b testing.TB) *Pipeline {
	b.Helper()
	dir := b.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ts, err := tsdb.Open(tsdb.Options{Dir: filepath.Join(dir, "tsdb"), NoSync: true, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ts.Close() })
	ev, err := eventstore.Open(context.Background(), filepath.Join(dir, "events.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ev.Close() })
	p := &Pipeline{opts: Options{TSDB: ts, Events: ev}, log: log}
	p.m, p.cm = newMetrics(), newConsumerMetrics()
	if err := p.AddConsumer(&stores{p: p}, ConsumerOptions{Name: storesName}); err != nil {
		b.Fatal(err)
	}
	return p
}

// benchDevices and benchBatchLen are the durable-ingest benchmark's shape
// (bench/RESULTS.md): 1,000 devices, batches as large as the group commit
// makes them under that load.
const benchDevices, benchBatchLen = 1000, 2048

// loadgenBatch is one bus batch of what `wanwu bench` sends: SenML with a
// temperature and a sequence number, 1,000 devices publishing in turn.
func loadgenBatch(b *testing.B, round int, t0 int64) []byte {
	msgs := make([]ingest.Message, benchBatchLen)
	for i := range msgs {
		k := round*benchBatchLen + i
		t := t0 + int64(k/benchDevices)*1000 + int64(k%benchDevices)
		msgs[i] = ingest.Message{
			Device: fmt.Sprintf("acme:dev-%05d", k%benchDevices), Tenant: "acme", Model: "acme:sensor@1.0.0",
			Kind: ingest.Telemetry, Source: "mqtt", Received: t,
			Records: []ingest.Record{
				{Property: "temperature", Time: t, Kind: ingest.KindFloat, Float: 21.5, Unit: "Cel"},
				{Property: "seq", Time: t, Kind: ingest.KindFloat, Float: float64(k / benchDevices)},
			},
		}
	}
	enc, err := ingest.EncodeBatch(msgs)
	if err != nil {
		b.Fatal(err)
	}
	return enc
}

// BenchmarkStoreBatch measures the store loop's CPU for one bus batch
// of 2,048 two-sample messages: decode, map onto samples, append to the
// TSDB (without its fsync, which costs wall time rather than CPU).
func BenchmarkStoreBatch(b *testing.B) {
	p := storeOnly(b)
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	// Warm up: the series exist in the head, as in a running hub.
	for r := range benchDevices/benchBatchLen + 1 {
		if err := p.storeBatches([][]byte{loadgenBatch(b, r, t0)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for r := benchDevices/benchBatchLen + 1; b.Loop(); r++ {
		b.StopTimer()
		batch := loadgenBatch(b, r, t0)
		b.StartTimer()
		if err := p.storeBatches([][]byte{batch}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchBatchLen, "ns/msg")
}

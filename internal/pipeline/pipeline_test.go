package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
)

type env struct {
	bus    *bus.Bus
	tsdb   *tsdb.Store
	events *eventstore.Store
	p      *Pipeline
}

func start(tb testing.TB, dir, sync string) *env {
	tb.Helper()
	return startWith(tb, dir, sync, nil)
}

// startWith starts a pipeline whose options tune changes (nil: defaults);
// before runs between New and Start (to add consumers).
func startWith(tb testing.TB, dir, sync string, tune func(*Options), before ...func(*Pipeline)) *env {
	tb.Helper()
	ctx := context.Background()
	b, err := bus.Start(ctx, bus.Options{StoreDir: filepath.Join(dir, "nats"), Sync: sync})
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := tsdb.Open(tsdb.Options{Dir: filepath.Join(dir, "tsdb"), NoSync: sync != bus.SyncAlways})
	if err != nil {
		tb.Fatal(err)
	}
	ev, err := eventstore.Open(ctx, filepath.Join(dir, "events.db"))
	if err != nil {
		tb.Fatal(err)
	}
	o := Options{Bus: b, TSDB: ts, Events: ev}
	if tune != nil {
		tune(&o)
	}
	p, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	for _, fn := range before {
		fn(p)
	}
	if err := p.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	e := &env{bus: o.Bus, tsdb: ts, events: ev, p: p}
	tb.Cleanup(func() { e.stop(tb) })
	return e
}

func (e *env) stop(tb testing.TB) {
	if e.p == nil {
		return
	}
	ctx := context.Background()
	if err := e.p.Shutdown(ctx); err != nil {
		tb.Error(err)
	}
	e.tsdb.Close()
	e.events.Close()
	e.bus.Shutdown(ctx)
	e.p = nil
}

func message(dev string, seq int, t time.Time) ingest.Message {
	return ingest.Message{
		Device: dev, Tenant: "acme", Kind: ingest.Telemetry, Source: "test", Received: t.UnixMilli(),
		Records: []ingest.Record{
			{Property: "seq", Time: t.UnixMilli(), Kind: ingest.KindFloat, Float: float64(seq)},
			{Property: "mode", Time: t.UnixMilli(), Kind: ingest.KindString, String: "auto"},
			{Property: "pos", Time: t.UnixMilli(), Kind: ingest.KindPosition, Lat: 31.2, Lon: 121.5},
			{Property: "on", Time: t.UnixMilli(), Kind: ingest.KindBool, Bool: true},
		},
	}
}

// TestSubmitStoresOnce: concurrent submissions are all stored, each once,
// including after a restart that reads back what the stores had not committed.
func TestSubmitStoresOnce(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, bus.SyncAlways)
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	const devices, per = 8, 50
	var wg sync.WaitGroup
	for d := 0; d < devices; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if err := e.p.Submit(context.Background(), message(fmt.Sprintf("acme:d%d", d), i, base.Add(time.Duration(i)*time.Millisecond))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	ev := ingest.Message{Device: "acme:d0", Tenant: "acme", Kind: ingest.Event, Event: "overheat", EventData: []byte(`{"t":1}`), Received: base.UnixMilli(), Source: "test"}
	if err := e.p.Submit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	e.stop(t)
	// Restart on the same directory: the stores resume from their cursor, nothing doubles.
	e = start(t, dir, bus.SyncAlways)
	waitSamples(t, e, []tsdb.Matcher{{Name: "__name__", Op: "=", Value: "seq"}}, base, devices*per)
	lat, err := e.tsdb.Latest(context.Background(), []tsdb.Matcher{{Name: "__name__", Op: "=~", Value: "pos_lat|pos_lon|on"}, {Name: "device", Op: "=", Value: "acme:d3"}}, time.Hour)
	if err != nil || len(lat) != 3 {
		t.Fatalf("positions and booleans: %+v, %v", lat, err)
	}
	vals, _ := e.events.Latest(context.Background(), "acme:d3")
	if len(vals) != 1 || vals[0].Text != "auto" {
		t.Errorf("string values: %+v", vals)
	}
	evs, _ := e.events.Events(context.Background(), eventstore.EventFilter{Devices: []string{"acme:d0"}})
	if len(evs) != 1 || string(evs[0].Data) != `{"t":1}` {
		t.Errorf("events: %+v", evs)
	}
}

// TestDeadLetters keeps rejected messages per device, newest last.
func TestDeadLetters(t *testing.T) {
	e := start(t, t.TempDir(), bus.SyncAlways)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		dev := "acme:a"
		if i%2 == 1 {
			dev = "acme:b"
		}
		if err := e.p.Reject(ctx, DeadLetter{Device: dev, Tenant: "acme", Reason: ingest.OutOfRange, Message: fmt.Sprint(i), Payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.p.DeadLetters(ctx, "", "acme:a", 2)
	if err != nil || len(got) != 2 || got[0].Message != "2" || got[1].Message != "4" {
		t.Fatalf("device a, last 2: %+v, %v", got, err)
	}
	got, _ = e.p.DeadLetters(ctx, "acme", "", 100)
	if len(got) != 5 {
		t.Errorf("tenant: %d dead letters, want 5", len(got))
	}
}

// BenchmarkSubmit measures durable submissions from many concurrent devices
// under both fsync policies: "always" (the default: every acknowledged
// message survives power loss) and a 2 s interval (faster; a power loss may
// lose up to 2 s of acknowledged data).
func BenchmarkSubmit(b *testing.B) {
	for _, policy := range []string{bus.SyncAlways, "2s"} {
		b.Run("sync="+policy, func(b *testing.B) {
			e := start(b, b.TempDir(), policy)
			base := time.Now().Add(-time.Minute)
			var seq atomic.Int64
			b.SetParallelism(64) // many devices waiting on their PUBACKs at once
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				dev := fmt.Sprintf("acme:d%d", seq.Add(1))
				i := 0
				for pb.Next() {
					i++
					if err := e.p.Submit(context.Background(), message(dev, i, base.Add(time.Duration(i)*time.Microsecond))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// TestStoreBatchesLabels: a value whose series cannot be labelled is
// counted as refused and the rest of the batch is stored; the label set
// cache holds each series once, keyed by tenant too, and stays bounded.
func TestStoreBatchesLabels(t *testing.T) {
	p := storeOnly(t)
	now := time.Now().Add(-time.Minute).UnixMilli()
	msgs := []ingest.Message{
		{Device: "acme:a", Tenant: "acme", Received: now, Records: []ingest.Record{
			{Property: "bad\xff", Time: now, Float: 1},
			{Property: "t", Time: now, Float: 2},
			{Property: "pos", Time: now, Kind: ingest.KindPosition, Lat: 1, Lon: 2, Alt: 3, HasAlt: true},
		}},
		{Device: "acme:a", Tenant: "other", Received: now, Records: []ingest.Record{{Property: "t", Time: now, Float: 3}}},
	}
	b, err := ingest.EncodeBatch(msgs)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time from the cache, and idempotent
		if err := p.storeBatches([][]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(p.m.storeReject.WithLabelValues("tsdb")); got != 2 {
		t.Errorf("refused samples: %v, want 2", got)
	}
	if got := testutil.ToFloat64(p.m.stored.WithLabelValues("tsdb")); got != 10 {
		t.Errorf("stored samples: %v, want 10", got)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		tenant, name string
		want         float64
	}{{"acme", "t", 2}, {"other", "t", 3}, {"acme", "pos_lat", 1}, {"acme", "pos_lon", 2}, {"acme", "pos_alt", 3}} {
		got, err := p.opts.TSDB.Latest(ctx, []tsdb.Matcher{{Name: "__name__", Op: "=", Value: tt.name}, {Name: "tenant", Op: "=", Value: tt.tenant}}, time.Hour)
		if err != nil || len(got) != 1 || got[0].Points[0].V != tt.want {
			t.Errorf("%s of tenant %s: %+v, %v; want %v", tt.name, tt.tenant, got, err, tt.want)
		}
	}
	// The device's entry is the last tenant's.
	if d := p.labelSets.devices["acme:a"]; p.labelSets.n != 1 || len(p.labelSets.devices) != 1 || d.tenant != "other" || len(d.props) != 1 {
		t.Errorf("cache: %d label sets, devices %+v", p.labelSets.n, p.labelSets.devices)
	}

	var c labelSets
	for i := range maxLabelSets + 10 {
		if _, err := c.get(c.device("acme", fmt.Sprintf("acme:d%d", i)), "t", partValue); err != nil {
			t.Fatal(err)
		}
	}
	if c.n > maxLabelSets || len(c.devices) > maxLabelSets {
		t.Errorf("cache holds %d label sets of %d devices, bound %d", c.n, len(c.devices), maxLabelSets)
	}
}

// TestStoreRefusedKeptAsDeadLetter: a second, different value for a
// property at a millisecond that already has one is refused by the store
// after its message was acknowledged; it is kept as a dead letter with the
// reason store_refused instead of vanishing.
func TestStoreRefusedKeptAsDeadLetter(t *testing.T) {
	e := start(t, t.TempDir(), bus.SyncAlways)
	ctx := context.Background()
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	for _, seq := range []int{7, 8} {
		if err := e.p.Submit(ctx, message("acme:dup", seq, at)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := e.p.DeadLetters(ctx, "acme", "acme:dup", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > 0 {
			dl := got[0]
			var v struct {
				Property string
				Time     time.Time
				Value    float64
			}
			if err := json.Unmarshal(dl.Payload, &v); err != nil {
				t.Fatal(err)
			}
			if dl.Reason != ingest.StoreRefused || dl.Source != "store" || v.Property != "seq" || v.Value != 8 || !v.Time.Equal(at) {
				t.Errorf("dead letter %+v, payload %+v", dl, v)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter for the refused sample within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFullBatchStopsLingering: a batch that holds LingerMessages messages
// goes out at once, however long Linger and the mean gap between arrivals
// would let it wait for more.
func TestFullBatchStopsLingering(t *testing.T) {
	e := startWith(t, t.TempDir(), "2s", func(o *Options) {
		o.Linger = 10 * time.Second
		o.LingerMessages = 4
	})
	// Two arrivals per second: lingerFor holds a batch up to 10 s and waits
	// 2 s for each next message; the estimate holds for the test's length.
	e.p.rateMu.Lock()
	e.p.rate, e.p.rateSince = 2, time.Now().Add(time.Minute)
	e.p.rateMu.Unlock()
	start := time.Now()
	done := make(chan error, 4)
	for i := range 4 {
		e.p.SubmitAsync(message("dev-1", i, start), CompletionFunc(func(err error) { done <- err }))
	}
	for range 4 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Second):
			t.Fatalf("a batch of LingerMessages was still lingering after %v", time.Since(start))
		}
	}
}

// TestLingerFollowsArrivalRate: a batch is held open only while messages
// arrive often enough to join it, each next one awaited for a few mean gaps
// between arrivals; a lone message is flushed at once.
func TestLingerFollowsArrivalRate(t *testing.T) {
	p := &Pipeline{opts: Options{Linger: time.Millisecond}}
	t0 := time.Now()
	for _, step := range []struct {
		name       string
		after      time.Duration // since t0
		arrivals   int64         // taken into batches since the step before
		total, gap time.Duration
	}{
		{"first message", 0, 0, 0, 0},
		{"100 msg/s: under two per linger", 100 * time.Millisecond, 10, 0, 0},
		{"5,000 msg/s", 200 * time.Millisecond, 500, time.Millisecond, 800 * time.Microsecond},
		{"within the window the estimate holds", 250 * time.Millisecond, 0, time.Millisecond, 800 * time.Microsecond},
		{"200,000 msg/s: the shortest gap", 300 * time.Millisecond, 20000, time.Millisecond, minGap},
		{"quiet again", 500 * time.Millisecond, 1, 0, 0},
	} {
		p.arrivals.Add(step.arrivals)
		total, gap := p.lingerFor(t0.Add(step.after))
		if total != step.total || gap < step.gap*99/100 || gap > step.gap*101/100 {
			t.Errorf("%s: linger %v gap %v, want %v and %v", step.name, total, gap, step.total, step.gap)
		}
	}
	p.opts.Linger = -1
	p.arrivals.Add(1 << 20)
	if total, _ := p.lingerFor(t0.Add(time.Second)); total != 0 {
		t.Errorf("Linger < 0: %v", total)
	}
}

package pipeline

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/ingest"
)

// recorder is a consumer that keeps the (device, seq) pairs it committed,
// and can be made to fail its writes.
type recorder struct {
	mu        sync.Mutex
	pending   []string
	written   []string
	committed []string
	fail      bool
}

func (r *recorder) Add(msgs []ingest.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		for _, rec := range m.Records {
			if rec.Property == "seq" {
				r.pending = append(r.pending, m.Device+"/"+string(rune('0'+int(rec.Float))))
			}
		}
	}
}

func (r *recorder) Write(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() { r.pending = r.pending[:0] }()
	if r.fail {
		return errors.New("recorder: failing as told")
	}
	r.written = append(r.written, r.pending...)
	return nil
}

func (r *recorder) Commit(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.committed = append(r.committed[:0], r.written...)
	return nil
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.written...)
}

func waitSeen(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := r.seen()
		if equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer saw %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestNamedConsumer: a second consumer beside the stores gets every batch
// in order, filtered by tenant, keeps its own cursor across a restart
// (reading back only what came after it), retries a failed write by
// reading the batches back, and reports its lag.
func TestNamedConsumer(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{}
	cursor := filepath.Join(dir, "beta.cursor")
	add := func(p *Pipeline) {
		if err := p.AddConsumer(rec, ConsumerOptions{Name: "beta-export", CursorFile: cursor,
			Filter: func(tenant, _ string) bool { return tenant == "beta" }}); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	msg := func(tenant string, seq int) ingest.Message {
		m := message(tenant+":d", seq, base.Add(time.Duration(seq)*time.Millisecond))
		m.Tenant = tenant
		return m
	}
	e := startWith(t, dir, bus.SyncAlways, nil, add)
	if err := e.p.AddConsumer(&recorder{}, ConsumerOptions{Name: "late"}); err == nil {
		t.Fatal("a consumer was added after Start")
	}
	for i := range 3 {
		for _, tenant := range []string{"acme", "beta"} {
			if err := e.p.Submit(context.Background(), msg(tenant, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitSeen(t, rec, "beta:d/0", "beta:d/1", "beta:d/2")
	waitSeqCount(t, e, "acme:d", base, 3) // the stores have every tenant
	// A failed write: the batches are read back and written again.
	rec.mu.Lock()
	rec.fail = true
	rec.mu.Unlock()
	if err := e.p.Submit(context.Background(), msg("beta", 3)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	rec.mu.Lock()
	rec.fail = false
	rec.mu.Unlock()
	waitSeen(t, rec, "beta:d/0", "beta:d/1", "beta:d/2", "beta:d/3")
	e.stop(t)
	if _, seq, found, err := openCursorFile(cursor); err != nil || !found || seq != 7 {
		t.Fatalf("consumer cursor %d (found %v, %v), want 7", seq, found, err)
	}

	// Restart with a batch stored by a process that died before handing it
	// over: the consumer reads back that one only.
	rec2 := &recorder{}
	rec = rec2
	e = startWith(t, dir, bus.SyncAlways, func(o *Options) {
		publishOrphan(t, o.Bus, "orphan", msg("beta", 4))
	}, add)
	waitSeen(t, rec2, "beta:d/4")
	l := e.p.loops[1]
	if got := testutil.ToFloat64(l.readBack); got != 1 {
		t.Fatalf("read back %v batches, want the one after the cursor", got)
	}
	for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(e.p.cm.lag.WithLabelValues("beta-export")) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("lag gauge never came back to 0")
		}
	}
}

// TestConsumerReportsLostBatches: a consumer whose cursor is behind what
// the stream retains is told the exact range it lost, and counts it.
func TestConsumerReportsLostBatches(t *testing.T) {
	dir := t.TempDir()
	cursor := filepath.Join(dir, "slow.cursor")
	c, _, _, err := openCursorFile(cursor)
	if err != nil {
		t.Fatal(err)
	}
	c.save(0)
	c.f.Close()
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	// A stream of at most 64 KiB, filled before the consumer starts.
	b, err := bus.Start(context.Background(), bus.Options{StoreDir: filepath.Join(dir, "nats"), IngestMaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	big := message("acme:d", 0, base)
	big.Records = append(big.Records, ingest.Record{Property: "blob", Time: base.UnixMilli(), Kind: ingest.KindData, Data: make([]byte, 4<<10)})
	for i := range 60 {
		publishOrphan(t, b, "b"+string(rune('A'+i)), big)
	}
	b.Shutdown(context.Background())
	rec := &recorder{}
	e := startWith(t, dir, bus.SyncAlways, func(o *Options) {
		o.Bus.Shutdown(context.Background())
		nb, err := bus.Start(context.Background(), bus.Options{StoreDir: filepath.Join(dir, "nats"), IngestMaxBytes: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		o.Bus = nb
	}, func(p *Pipeline) {
		if err := p.AddConsumer(rec, ConsumerOptions{Name: "slow", CursorFile: cursor}); err != nil {
			t.Fatal(err)
		}
	})
	l := e.p.loops[1]
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(l.lost)+float64(len(rec.seen())) < 60 {
		if time.Now().After(deadline) {
			t.Fatalf("lost %v and saw %d of 60 batches", testutil.ToFloat64(l.lost), len(rec.seen()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	lost := testutil.ToFloat64(l.lost)
	if lost <= 0 || lost >= 60 || float64(len(rec.seen())) != 60-lost {
		t.Fatalf("lost %v of 60 batches and saw %d: every batch is either seen or reported lost, once", lost, len(rec.seen()))
	}
}

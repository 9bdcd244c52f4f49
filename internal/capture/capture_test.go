package capture_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/capture"
	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/loop"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
)

var t0 = time.Now().Add(-10 * time.Minute).Truncate(time.Second)

type env struct {
	c    *capture.Capturer
	ds   *dataset.Store
	prom *prometheus.Registry
	mu   sync.Mutex
	up   []*dataset.Window
}

func open(t *testing.T, after time.Duration) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, key, _ := ed25519.GenerateKey(nil)
	al, err := audit.Open(ctx, db.W, key, "wanwu.edge/test")
	if err != nil {
		t.Fatal(err)
	}
	ts, err := tsdb.Open(tsdb.Options{Dir: filepath.Join(dir, "tsdb")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	var samples []tsdb.Sample
	for i := range 60 { // one report every 5 s over the last 5 minutes of t0
		at := t0.Add(time.Duration(i-60) * 5 * time.Second).UnixMilli()
		for prop, v := range map[string]float64{"flow": 40 + float64(i%5), "power": 6 + float64(i%3)/10} {
			samples = append(samples, tsdb.Sample{Labels: map[string]string{"__name__": prop, "tenant": "acme", "device": "acme:pump-1"}, T: at, V: v})
		}
	}
	if _, _, err := ts.Append(ctx, samples); err != nil {
		t.Fatal(err)
	}
	ds, err := dataset.Open(ctx, dataset.Options{DB: db, Audit: al})
	if err != nil {
		t.Fatal(err)
	}
	model := &thingmodel.Model{ID: "acme:pump", Version: "1.0.0", Properties: map[string]*thingmodel.Property{
		"flow":  {Schema: thingmodel.Schema{Type: "number"}, Classification: thingmodel.ClassInternal},
		"power": {Schema: thingmodel.Schema{Type: "number"}, Classification: thingmodel.ClassCore},
		"mode":  {Schema: thingmodel.Schema{Type: "string"}},
	}}
	e := &env{ds: ds, prom: prometheus.NewRegistry()}
	e.c, err = capture.New(capture.Options{TSDB: ts, Store: ds, Edge: "acme:edge-1", Before: 2 * time.Minute, After: after, Registerer: e.prom,
		Object: func(_ context.Context, code string) (*registry.Object, *thingmodel.Model, error) {
			if code != "acme:pump-1" {
				return nil, nil, registry.ErrNotFound
			}
			return &registry.Object{Code: code, Tenant: "acme"}, model, nil
		},
		Shared: func(model, prop string) bool { return false },
		Up: func(w *dataset.Window) {
			e.mu.Lock()
			e.up = append(e.up, w)
			e.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A window keeps every numeric property at the node and sends the core
// one's summary only; an unknown object or no data is an error.
func TestCaptureRespectsClassification(t *testing.T) {
	e := open(t, 0)
	ctx := context.Background()
	w, err := e.c.Capture(ctx, capture.Trigger{Object: "acme:pump-1", Reason: dataset.ReasonRequest, Ref: "req-1", Features: map[string]float64{"f": 1}},
		t0.Add(-2*time.Minute), t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Series["flow"]) != 24 || len(w.Series["power"]) != 24 || w.Series["mode"] != nil || w.Classification != "core" || w.Edge != "acme:edge-1" {
		t.Fatalf("the node's window: %d flow, %d power, %s", len(w.Series["flow"]), len(w.Series["power"]), w.Classification)
	}
	if len(e.up) != 1 || e.up[0].Series["power"] != nil || len(e.up[0].Series["flow"]) != 24 || e.up[0].Summary["power"].N != 24 {
		t.Fatalf("the window sent up: %+v", e.up)
	}
	if _, err := e.c.Capture(ctx, capture.Trigger{Object: "acme:pump-9", Reason: dataset.ReasonRequest}, t0.Add(-time.Minute), t0); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("an unknown object: %v", err)
	}
	if _, err := e.c.Capture(ctx, capture.Trigger{Object: "acme:pump-1", Reason: dataset.ReasonRequest}, t0.Add(time.Hour), t0.Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "no numeric samples") {
		t.Errorf("a span without data: %v", err)
	}
	n, err := testutil.GatherAndCount(e.prom, "wanwu_dataset_windows_captured_total")
	if err != nil || n != 2 { // request ok, request error
		t.Errorf("capture counters: %d series, %v", n, err)
	}
}

// Triggers are queued and taken once: a later state of the same decision,
// the same activation of an alarm, an imported alarm or a clear are not.
func TestScheduleOncePerTrigger(t *testing.T) {
	e := open(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.c.Start(ctx)
	defer e.c.Shutdown(context.Background())
	ev := &loop.Evidence{ID: 7, Kind: loop.KindAction, Tenant: "acme", Object: "acme:pump-1", Loop: "acme:high-flow", At: t0, Features: map[string]float64{"flow": 44}}
	e.c.Decision(ev)
	e.c.Decision(ev) // a later state
	e.c.Decision(&loop.Evidence{ID: 8, Kind: loop.KindClear, Tenant: "acme", Object: "acme:pump-1", At: t0})
	e.c.Decision(&loop.Evidence{ID: 9, Kind: loop.KindAction, Tenant: "acme", Object: "acme:pump-1", At: t0, Origin: "acme:edge-2"})
	a := alarm.Alarm{ID: "0123456789abcdef01234567", Tenant: "acme", Object: "acme:pump-1", Source: "loop:acme:high-flow", RaisedAt: t0}
	e.c.Alarm(alarm.Event{Kind: alarm.KindRaised, Alarm: a})
	e.c.Alarm(alarm.Event{Kind: alarm.KindRaised, Alarm: a})
	e.c.Alarm(alarm.Event{Kind: "acked", Alarm: a})
	var nilC *capture.Capturer
	nilC.Alarm(alarm.Event{Kind: alarm.KindRaised, Alarm: a}) // no capturer: nothing
	var ws []*dataset.Window
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if ws, err = e.ds.Windows(ctx, dataset.Query{Tenant: "acme"}); err != nil {
			t.Fatal(err)
		}
		if len(ws) >= 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	ws, _ = e.ds.Windows(ctx, dataset.Query{Tenant: "acme"})
	reasons := map[string]string{}
	for _, w := range ws {
		reasons[w.Reason] = w.Ref
	}
	if len(ws) != 2 || reasons[dataset.ReasonDecision] != "7" || reasons[dataset.ReasonAlarm] != a.ID {
		t.Fatalf("windows: %+v", ws)
	}
}

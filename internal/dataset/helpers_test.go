package dataset_test

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// t0 is the tests' epoch.
var t0 = time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC)

type env struct {
	ctx    context.Context
	ds     *dataset.Store
	audit  *audit.Log
	now    time.Time
	audits atomic.Int32 // OnAudit calls
}

func open(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, key, _ := ed25519.GenerateKey(nil)
	al, err := audit.Open(ctx, db.W, key, "wanwu.hub/test")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ctx: ctx, audit: al, now: t0.Add(time.Hour)}
	e.ds, err = dataset.Open(ctx, dataset.Options{DB: db, Audit: al, Now: func() time.Time { return e.now },
		OnAudit: func() { e.audits.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// series returns n points from t0+start, every step, values f(i).
func series(start, step time.Duration, n int, f func(i int) float64) []dataset.Point {
	pts := make([]dataset.Point, n)
	for i := range pts {
		pts[i] = dataset.Point{T: t0.Add(start + time.Duration(i)*step), V: f(i)}
	}
	return pts
}

func ramp(i int) float64 { return float64(i) }

// window returns a valid window of acme:pump-1 over [t0, t0+10s] with a
// temperature series of 10 points, one a second, captured 10 s after its
// end.
func window() *dataset.Window {
	return &dataset.Window{
		Tenant: "acme", Object: "acme:pump-1", Model: "pump@1.0.0", Firmware: "2.1.0", Reason: dataset.ReasonAlarm,
		Ref: "a1b2c3", From: t0, To: t0.Add(10 * time.Second),
		Series:     map[string][]dataset.Point{"temperature": series(0, time.Second, 10, ramp)},
		CapturedAt: t0.Add(20 * time.Second),
	}
}

func (e *env) add(t *testing.T, w *dataset.Window) *dataset.Window {
	t.Helper()
	got, err := e.ds.AddWindow(e.ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (e *env) label(t *testing.T, actor, windowID, kind, class string) *dataset.Label {
	t.Helper()
	l, err := e.ds.AddLabel(e.ctx, actor, "acme", dataset.Label{Window: windowID, Kind: kind, Class: class})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// entries returns the audit log's entries.
func (e *env) entries(t *testing.T) []audit.Entry {
	t.Helper()
	n, err := e.audit.Size(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		return nil
	}
	es, err := e.audit.Entries(e.ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

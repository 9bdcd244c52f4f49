package tsdb

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAppendPrepared: prepared label sets store what Append stores, refs
// remembered across batches stay with their store, and the rejects are
// Append's.
func TestAppendPrepared(t *testing.T) {
	s1 := openStore(t, Options{})
	s2 := openStore(t, Options{})
	b := base()
	at := func(sec int) int64 { return b.Add(time.Duration(sec) * time.Second).UnixMilli() }
	mk := func(kv ...string) *LabelSet {
		t.Helper()
		ls, err := NewLabelSet(lbl(kv...))
		if err != nil {
			t.Fatal(err)
		}
		return ls
	}
	a, other := mk("__name__", "temp", "dev", "a", "tenant", ""), mk("__name__", "temp", "dev", "b")
	if got := a.String(); got != `{__name__="temp", dev="a"}` {
		t.Errorf("String() = %s", got)
	}
	ctx := context.Background()
	// Several batches: the second and later use remembered refs; the two
	// stores create their series in another order, so their refs differ.
	for round := range 3 {
		n, rejects, err := s1.AppendPrepared(ctx, []PreparedSample{{a, at(round), float64(round)}, {other, at(round), 10}})
		if err != nil || n != 2 || len(rejects) != 0 {
			t.Fatalf("s1 round %d: %d %v %v", round, n, rejects, err)
		}
		n, rejects, err = s2.AppendPrepared(ctx, []PreparedSample{{other, at(round), 20}, {a, at(round), 100 + float64(round)}})
		if err != nil || n != 2 || len(rejects) != 0 {
			t.Fatalf("s2 round %d: %d %v %v", round, n, rejects, err)
		}
	}
	for _, tt := range []struct {
		s    *Store
		dev  string
		want float64
	}{{s1, "a", 0 + 1 + 2}, {s1, "b", 30}, {s2, "a", 303}, {s2, "b", 60}} {
		got, err := tt.s.Range(ctx, []Matcher{{Name: "dev", Op: "=", Value: tt.dev}}, b, b.Add(time.Minute), time.Minute, AggSum)
		if err != nil || len(got) != 1 || got[0].Points[0].V != tt.want {
			t.Errorf("sum of dev %s: %+v, %v; want %v", tt.dev, got, err, tt.want)
		}
	}

	n, rejects, err := s1.AppendPrepared(ctx, []PreparedSample{
		{nil, at(10), 1},
		{a, at(11), 1},
		{a, at(11), 1}, // the same value again: stored once
		{a, at(11), 2}, // a second value in the batch
		{a, b.Add(-48 * time.Hour).UnixMilli(), 1},
	})
	if err != nil || n != 2 || len(rejects) != 3 {
		t.Fatalf("rejects: %d %+v %v", n, rejects, err)
	}
	for i, want := range []struct {
		idx    int
		reason string
	}{{0, "no label set"}, {3, "duplicate sample"}, {4, "too old"}} {
		if rejects[i].Index != want.idx || !strings.Contains(rejects[i].Reason, want.reason) {
			t.Errorf("reject %d = %+v, want index %d, %q", i, rejects[i], want.idx, want.reason)
		}
	}
	if _, err := NewLabelSet(lbl("dev", "x")); err == nil {
		t.Error("NewLabelSet without __name__ succeeded")
	}
	if _, err := NewLabelSet(lbl("__name__", "x", "dev", "\xff")); err == nil {
		t.Error("NewLabelSet with a value that is not UTF-8 succeeded")
	}
}

// BenchmarkAppendPrepared is BenchmarkAppend with label sets prepared once,
// as the ingest consumer appends.
func BenchmarkAppendPrepared(b *testing.B) {
	s := openStore(b, Options{NoSync: true})
	const series, batchSize = 1000, 100
	sets := make([]*LabelSet, series)
	for i := range sets {
		ls, err := NewLabelSet(lbl("__name__", "bench_metric", "dev", fmt.Sprintf("dev-%04d", i), "tenant", "acme"))
		if err != nil {
			b.Fatal(err)
		}
		sets[i] = ls
	}
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	batch := make([]PreparedSample, batchSize)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		round := i / (series / batchSize)
		for j := range batch {
			k := (i*batchSize + j) % series
			batch[j] = PreparedSample{Labels: sets[k], T: t0 + int64(round)*1000, V: float64(i)}
		}
		if _, rejects, err := s.AppendPrepared(ctx, batch); err != nil || len(rejects) > 0 {
			b.Fatalf("append: %v %v", err, rejects)
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "samples/s")
}

package loadgen

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestQuantileNearestRank(t *testing.T) {
	seq := func(n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(i + 1) // 1..n
		}
		return d
	}
	tests := []struct {
		n    int
		q    float64
		want time.Duration
	}{
		{1, 0.5, 1},
		{1, 0.999, 1},
		{2, 0.5, 1},
		{3, 0.5, 2},
		{4, 0.5, 2},
		{100, 0.5, 50},
		{100, 0.99, 99},
		{100, 0.999, 100},
		{1000, 0.99, 990},
		{1000, 0.999, 999}, // 0.999*1000 is 998.999… in floating point
		{1000, 1, 1000},
		{100000, 0.999, 99900},
		{100001, 0.999, 99901},
	}
	for _, tc := range tests {
		if got := Quantile(seq(tc.n), tc.q); got != tc.want {
			t.Errorf("Quantile(1..%d, %v) = %d, want %d", tc.n, tc.q, got, tc.want)
		}
	}
	if got := Quantile(nil, 0.5); got != 0 {
		t.Errorf("Quantile(empty) = %v, want 0", got)
	}
}

func TestSummarizeSortsAndSummarises(t *testing.T) {
	d := make([]time.Duration, 10000)
	for i := range d {
		d[i] = time.Duration(i+1) * time.Microsecond
	}
	rand.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
	p := Summarize(d)
	want := Percentiles{
		N: 10000, Min: time.Microsecond, P50: 5000 * time.Microsecond, P99: 9900 * time.Microsecond,
		P999: 9990 * time.Microsecond, Max: 10000 * time.Microsecond, Mean: 5000500 * time.Nanosecond,
	}
	if p != want {
		t.Errorf("Summarize = %+v\nwant        %+v", p, want)
	}
	if (Summarize(nil) != Percentiles{}) {
		t.Error("Summarize(nil) is not zero")
	}
}

// TestTrackerAccounting drives the (client, seq) accounting through every
// outcome: delivered once, duplicated, lost, delivered without ack, never
// acknowledged nor delivered, and foreign receipts.
func TestTrackerAccounting(t *testing.T) {
	tr := newTracker(3, 4)
	now := time.Now()
	// Client 0: seq 0..3, all acked; 0 delivered once, 1 twice, 2 three times, 3 lost.
	for range 4 {
		seq, _ := tr.next(0, now)
		tr.ack(0, seq)
	}
	rx := now.Add(5 * time.Millisecond)
	for _, s := range []int{0, 1, 1, 2, 2, 2} {
		if !tr.received(0, s, rx) {
			t.Fatalf("received(0, %d) = false", s)
		}
	}
	// Client 1: seq 0 acked+delivered, seq 1 not acked but delivered, seq 2 neither.
	for range 3 {
		tr.next(1, now)
	}
	tr.ack(1, 0)
	tr.received(1, 0, rx)
	tr.received(1, 1, rx)
	// Client 2 sent nothing. Foreign receipts: unknown client, unsent seq, negative.
	for _, p := range [][2]int{{7, 0}, {2, 0}, {0, 99}, {-1, 0}} {
		if tr.received(p[0], p[1], rx) {
			t.Errorf("received(%d, %d) = true for a pair never sent", p[0], p[1])
		}
	}

	got := tr.tally()
	want := Tally{Sent: 7, Acked: 5, Delivered: 5, Lost: 1, Duplicates: 3, DeliveredUnacked: 1, Foreign: 4}
	if got != want {
		t.Errorf("tally = %+v\nwant    %+v", got, want)
	}
	if p := tr.pending(); p != 1 {
		t.Errorf("pending = %d, want 1", p)
	}
	// One publish→delivery sample per distinct delivered pair, ≥ 5 ms each.
	if len(tr.deliver) != 5 {
		t.Fatalf("%d delivery samples, want 5", len(tr.deliver))
	}
	for _, d := range tr.deliver {
		if d < 5*time.Millisecond || d > time.Second {
			t.Errorf("delivery latency %v, want about 5ms", d)
		}
	}
}

func TestTrackerTimestampsIncrease(t *testing.T) {
	tr := newTracker(1, 0)
	now := time.UnixMilli(1_760_000_000_000)
	var last int64
	for i := range 5000 { // far more than one per millisecond
		seq, ts := tr.next(0, now)
		if seq != i {
			t.Fatalf("seq %d, want %d", seq, i)
		}
		if ts <= last {
			t.Fatalf("timestamp %d not after %d", ts, last)
		}
		last = ts
	}
}

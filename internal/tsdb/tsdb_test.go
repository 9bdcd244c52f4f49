package tsdb

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAppend(t testing.TB, s *Store, samples []Sample) {
	t.Helper()
	n, rejects, err := s.Append(context.Background(), samples)
	if err != nil || len(rejects) > 0 || n != len(samples) {
		t.Fatalf("Append: accepted %d of %d, rejects %v, err %v", n, len(samples), rejects, err)
	}
}

func lbl(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// base is a whole minute ten minutes ago: recent enough for Latest's
// lookback and for the head's appendable window.
func base() time.Time { return time.Now().Truncate(time.Minute).Add(-10 * time.Minute) }

func TestAppendLatestRange(t *testing.T) {
	s := openStore(t, Options{})
	b := base()
	at := func(sec int) int64 { return b.Add(time.Duration(sec) * time.Second).UnixMilli() }
	a := lbl("__name__", "temp", "dev", "a")
	other := lbl("__name__", "temp", "dev", "b")
	mustAppend(t, s, []Sample{
		{a, at(0), 1}, {a, at(10), 2}, {a, at(20), 3}, // window [0s,30s)
		{a, at(30), 4},                   // window [30s,60s)
		{a, at(60), 10}, {a, at(70), 20}, // window [60s,90s)
		{other, at(5), 100},
	})

	ctx := context.Background()
	sel := []Matcher{{Name: "__name__", Op: "=", Value: "temp"}, {Name: "dev", Op: "=", Value: "a"}}

	latest, err := s.Latest(ctx, sel, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 1 || latest[0].Labels["dev"] != "a" || latest[0].Points[0] != (Point{at(70), 20}) {
		t.Fatalf("Latest = %+v, want dev=a @70s = 20", latest)
	}

	// Windows of 30s from b; expected values computed by hand from the data.
	tests := []struct {
		agg  string
		want []float64 // for windows 0s, 30s, 60s
	}{
		{"avg", []float64{2, 4, 15}},
		{"min", []float64{1, 4, 10}},
		{"max", []float64{3, 4, 20}},
		{"sum", []float64{6, 4, 30}},
		{"count", []float64{3, 1, 2}},
		{"last", []float64{3, 4, 20}},
	}
	for _, tt := range tests {
		t.Run(tt.agg, func(t *testing.T) {
			got, err := s.Range(ctx, sel, b, b.Add(90*time.Second), 30*time.Second, tt.agg)
			if err != nil {
				t.Fatal(err)
			}
			want := []Point{{at(0), tt.want[0]}, {at(30), tt.want[1]}, {at(60), tt.want[2]}}
			if len(got) != 1 || !slices.Equal(got[0].Points, want) {
				t.Fatalf("Range(%s) = %+v, want %v", tt.agg, got, want)
			}
		})
	}

	t.Run("regexp matcher selects both series", func(t *testing.T) {
		got, err := s.Range(ctx, []Matcher{{Name: "__name__", Op: "=~", Value: "te.*"}}, b, b.Add(90*time.Second), time.Minute, "count")
		if err != nil {
			t.Fatal(err)
		}
		wantA, wantB := []Point{{at(0), 4}, {at(60), 2}}, []Point{{at(0), 1}}
		if len(got) != 2 || got[0].Labels["dev"] != "a" || !slices.Equal(got[0].Points, wantA) ||
			got[1].Labels["dev"] != "b" || !slices.Equal(got[1].Points, wantB) {
			t.Fatalf("got %+v, want dev=a %v and dev=b %v", got, wantA, wantB)
		}
	})

	bad := []struct {
		name string
		call func() error
	}{
		{"unknown agg", func() error { _, err := s.Range(ctx, sel, b, b.Add(time.Minute), time.Second, "median"); return err }},
		{"zero step", func() error { _, err := s.Range(ctx, sel, b, b.Add(time.Minute), 0, "avg"); return err }},
		{"end before start", func() error { _, err := s.Range(ctx, sel, b, b.Add(-time.Minute), time.Second, "avg"); return err }},
		{"too many points", func() error { _, err := s.Range(ctx, sel, b, b.Add(24*time.Hour), time.Second, "avg"); return err }},
		{"bad op", func() error {
			_, err := s.Latest(ctx, []Matcher{{Name: "dev", Op: "~", Value: "a"}}, time.Hour)
			return err
		}},
		{"bad regexp", func() error {
			_, err := s.Latest(ctx, []Matcher{{Name: "dev", Op: "=~", Value: "("}}, time.Hour)
			return err
		}},
		{"matches everything", func() error {
			_, err := s.Latest(ctx, []Matcher{{Name: "dev", Op: "=~", Value: ".*"}}, time.Hour)
			return err
		}},
	}
	for _, tt := range bad {
		if err := tt.call(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", tt.name, err)
		}
	}
}

func TestOutOfOrder(t *testing.T) {
	s := openStore(t, Options{})
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	m := lbl("__name__", "level", "dev", "tank-1")
	mustAppend(t, s, []Sample{{m, now.UnixMilli(), 1}})

	batch := []Sample{
		{m, now.Add(-30 * time.Minute).UnixMilli(), 2},              // late, within the window
		{m, now.Add(-25 * time.Hour).UnixMilli(), 3},                // older than the window
		{lbl("dev", "x"), now.UnixMilli(), 4},                       // no __name__
		{lbl("__name__", "level", "__x", "y"), now.UnixMilli(), 5},  // reserved name
		{lbl("__name__", "level", "d", "\xff"), now.UnixMilli(), 6}, // not UTF-8
		{m, now.Add(-10 * time.Minute).UnixMilli(), 7},              // late, within the window
	}
	n, rejects, err := s.Append(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("accepted = %d, want 2", n)
	}
	wantReasons := map[int]string{1: "too old sample", 2: "missing __name__", 3: "reserved", 4: "UTF-8"}
	if len(rejects) != len(wantReasons) {
		t.Fatalf("rejects = %+v", rejects)
	}
	for _, r := range rejects {
		if !strings.Contains(r.Reason, wantReasons[r.Index]) {
			t.Errorf("reject %d: reason %q, want it to mention %q", r.Index, r.Reason, wantReasons[r.Index])
		}
	}
	if !strings.Contains(rejects[0].Reason, `dev="tank-1"`) {
		t.Errorf("reason %q does not name the series", rejects[0].Reason)
	}

	got, err := s.Range(ctx, []Matcher{{Name: "__name__", Value: "level"}}, now.Add(-time.Hour), now, time.Minute, "last")
	if err != nil {
		t.Fatal(err)
	}
	// One-minute windows from now-1h; each sample lands in the window that
	// starts at or before it.
	start := now.Add(-time.Hour).UnixMilli()
	window := func(ts time.Time) int64 { return start + (ts.UnixMilli()-start)/60000*60000 }
	want := []Point{
		{window(now.Add(-30 * time.Minute)), 2},
		{window(now.Add(-10 * time.Minute)), 7},
		{window(now), 1},
	}
	if len(got) != 1 || !slices.Equal(got[0].Points, want) {
		t.Fatalf("Range = %+v, want %v", got, want)
	}
}

func TestOutOfOrderDisabled(t *testing.T) {
	s := openStore(t, Options{OutOfOrderWindow: -1})
	now := time.Now()
	m := lbl("__name__", "level")
	mustAppend(t, s, []Sample{{m, now.UnixMilli(), 1}})
	n, rejects, err := s.Append(context.Background(), []Sample{{m, now.Add(-time.Minute).UnixMilli(), 2}})
	if err != nil || n != 0 || len(rejects) != 1 || !strings.Contains(rejects[0].Reason, "out-of-order ingestion is off") {
		t.Fatalf("n=%d rejects=%v err=%v", n, rejects, err)
	}
}

func TestIdempotentReplay(t *testing.T) {
	s := openStore(t, Options{})
	ctx := context.Background()
	b := base()
	var batch []Sample
	for i := range 20 {
		for _, dev := range []string{"a", "b"} {
			batch = append(batch, Sample{lbl("__name__", "power", "dev", dev), b.Add(time.Duration(i) * 10 * time.Second).UnixMilli(), float64(i)})
		}
	}
	sel := []Matcher{{Name: "__name__", Value: "power"}}
	query := func() (count, sum []Series) {
		t.Helper()
		var err error
		if count, err = s.Range(ctx, sel, b, b.Add(5*time.Minute), 5*time.Minute, "count"); err != nil {
			t.Fatal(err)
		}
		if sum, err = s.Range(ctx, sel, b, b.Add(5*time.Minute), 5*time.Minute, "sum"); err != nil {
			t.Fatal(err)
		}
		return count, sum
	}

	mustAppend(t, s, batch)
	count1, sum1 := query()
	if len(count1) != 2 || count1[0].Points[0].V != 20 || sum1[0].Points[0].V != 190 {
		t.Fatalf("after first append: count %+v sum %+v", count1, sum1)
	}
	// The same batch again, then reversed (a replay need not keep the
	// order): older samples take the out-of-order path, where the head finds
	// duplicates differently than for the newest sample.
	mustAppend(t, s, batch)
	reversed := slices.Clone(batch)
	slices.Reverse(reversed)
	mustAppend(t, s, reversed)
	count2, sum2 := query()
	if !equalSeries(count1, count2) || !equalSeries(sum1, sum2) {
		t.Fatalf("replay changed results: count %+v → %+v, sum %+v → %+v", count1, count2, sum1, sum2)
	}

	t.Run("conflicting duplicates are rejected", func(t *testing.T) {
		last := batch[len(batch)-1]
		dup := Sample{last.Labels, last.T, last.V + 1}
		n, rejects, err := s.Append(ctx, []Sample{dup})
		if err != nil || n != 0 || len(rejects) != 1 || !strings.Contains(rejects[0].Reason, "duplicate sample") {
			t.Fatalf("stored newest with another value: n=%d rejects=%v err=%v", n, rejects, err)
		}
		m := lbl("__name__", "fresh")
		n, rejects, err = s.Append(ctx, []Sample{{m, last.T, 1}, {m, last.T, 1}, {m, last.T, 2}})
		if err != nil || n != 2 || len(rejects) != 1 || rejects[0].Index != 2 {
			t.Fatalf("in-batch duplicates: n=%d rejects=%v err=%v", n, rejects, err)
		}
	})
}

func equalSeries(a, b []Series) bool {
	return slices.EqualFunc(a, b, func(x, y Series) bool {
		return len(x.Labels) == len(y.Labels) && slices.Equal(x.Points, y.Points) && x.Labels["dev"] == y.Labels["dev"]
	})
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	m := lbl("__name__", "pressure", "dev", "p1")

	s := openStore(t, Options{Dir: dir})
	mustAppend(t, s, []Sample{{m, now.UnixMilli(), 1.5}})
	mustAppend(t, s, []Sample{{m, now.Add(-time.Hour).UnixMilli(), 0.5}}) // out of order: the WBL
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := s.Append(ctx, []Sample{{m, now.UnixMilli(), 1}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}

	s = openStore(t, Options{Dir: dir})
	sel := []Matcher{{Name: "dev", Value: "p1"}}
	latest, err := s.Latest(ctx, sel, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 1 || latest[0].Points[0] != (Point{now.UnixMilli(), 1.5}) || latest[0].Labels["__name__"] != "pressure" {
		t.Fatalf("Latest after restart = %+v", latest)
	}
	got, err := s.Range(ctx, sel, now.Add(-2*time.Hour), now, 3*time.Hour, "count")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Points[0].V != 2 {
		t.Fatalf("Range after restart = %+v, want both samples", got)
	}
}

func TestSpecialValues(t *testing.T) {
	s := openStore(t, Options{})
	b := base()
	m := lbl("__name__", "odd")
	mustAppend(t, s, []Sample{{m, b.UnixMilli(), math.NaN()}, {m, b.Add(time.Second).UnixMilli(), 3}, {m, b.Add(2 * time.Second).UnixMilli(), math.Inf(1)}})
	got, err := s.Range(context.Background(), []Matcher{{Name: "__name__", Value: "odd"}}, b, b.Add(time.Minute), time.Minute, "min")
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Points[0].V != 3 {
		t.Fatalf("min over NaN, 3, +Inf = %v, want 3 (NaN loses, as in PromQL)", got[0].Points[0].V)
	}
	stale := math.Float64frombits(0x7ff0000000000002)
	if _, rejects, _ := s.Append(context.Background(), []Sample{{m, b.Add(3 * time.Second).UnixMilli(), stale}}); len(rejects) != 1 {
		t.Fatalf("staleness marker not rejected: %v", rejects)
	}
}

// TestBatchOrder guards the sort in Append: given newest-first, the head
// accepts both samples of a new series at append time but drops the older
// one at commit without an error when the window is shorter than its lag.
func TestBatchOrder(t *testing.T) {
	s := openStore(t, Options{OutOfOrderWindow: 10 * time.Minute})
	now := time.Now()
	mustAppend(t, s, []Sample{{lbl("__name__", "other"), now.UnixMilli(), 1}})
	m := lbl("__name__", "fresh")
	mustAppend(t, s, []Sample{{m, now.UnixMilli(), 1}, {m, now.Add(-30 * time.Minute).UnixMilli(), 2}})
	got, err := s.Range(context.Background(), []Matcher{{Name: "__name__", Value: "fresh"}}, now.Add(-time.Hour), now, 2*time.Hour, "count")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Points[0].V != 2 {
		t.Fatalf("got %+v, want both samples stored", got)
	}
}

// TestConcurrentAppend runs appenders and readers together (for -race) and
// checks every sample arrived: concurrent callers share fsyncs.
func TestConcurrentAppend(t *testing.T) {
	s := openStore(t, Options{})
	ctx := context.Background()
	b := base()
	const writers, batches = 4, 20
	errc := make(chan error, writers+1)
	for w := range writers {
		go func() {
			for i := range batches {
				m := lbl("__name__", "conc", "w", strconv.Itoa(w))
				_, rejects, err := s.Append(ctx, []Sample{{m, b.Add(time.Duration(i) * time.Second).UnixMilli(), 1}})
				if err == nil && len(rejects) > 0 {
					err = errors.New(rejects[0].Reason)
				}
				if err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	go func() {
		for range batches {
			if _, err := s.Latest(ctx, []Matcher{{Name: "__name__", Value: "conc"}}, time.Hour); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for range writers + 1 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Range(ctx, []Matcher{{Name: "__name__", Value: "conc"}}, b, b.Add(time.Minute), time.Minute, "count")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers {
		t.Fatalf("%d series, want %d", len(got), writers)
	}
	for _, sr := range got {
		if sr.Points[0].V != batches {
			t.Errorf("%v: %v samples, want %d", sr.Labels, sr.Points[0].V, batches)
		}
	}
}

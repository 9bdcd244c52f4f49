package tsdb

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Matcher selects series by one label. Op is "=", "!=", "=~" or "!~";
// regular expressions are anchored, as in PromQL.
type Matcher struct {
	Name, Value string
	Op          string
}

// Point is one sample of a query result.
type Point struct {
	T int64 // ms since epoch
	V float64
}

// Series is one series of a query result, with its full label set
// (including __name__).
type Series struct {
	Labels map[string]string
	Points []Point
}

// Aggregations Range accepts.
const (
	AggAvg   = "avg"
	AggMin   = "min"
	AggMax   = "max"
	AggSum   = "sum"
	AggCount = "count"
	AggLast  = "last"
)

func toMatchers(ms []Matcher) ([]*labels.Matcher, error) {
	out := make([]*labels.Matcher, 0, len(ms))
	for _, m := range ms {
		var typ labels.MatchType
		switch m.Op {
		case "=", "":
			typ = labels.MatchEqual
		case "!=":
			typ = labels.MatchNotEqual
		case "=~":
			typ = labels.MatchRegexp
		case "!~":
			typ = labels.MatchNotRegexp
		default:
			return nil, fmt.Errorf("%w: matcher %s: unknown operator %q (want =, !=, =~ or !~)", ErrInvalid, m.Name, m.Op)
		}
		lm, err := labels.NewMatcher(typ, m.Name, m.Value)
		if err != nil {
			return nil, fmt.Errorf("%w: matcher %s%s%q: %v", ErrInvalid, m.Name, m.Op, m.Value, err)
		}
		out = append(out, lm)
	}
	return out, nil
}

// selectorMatchers converts ms and refuses selectors that match every series:
// like PromQL, at least one matcher must not match the empty string, or one
// typo would scan the whole store.
func selectorMatchers(ms []Matcher) ([]*labels.Matcher, error) {
	lms, err := toMatchers(ms)
	if err != nil {
		return nil, err
	}
	for _, m := range lms {
		if !m.Matches("") {
			return lms, nil
		}
	}
	return nil, fmt.Errorf("%w: at least one matcher must not match the empty string (e.g. __name__=\"...\")", ErrInvalid)
}

// Latest returns the newest point of each series matching matchers that has
// one within lookback of now. Samples stamped in the future (device clocks
// run ahead) count as newest too: they are what the device last said.
func (s *Store) Latest(ctx context.Context, matchers []Matcher, lookback time.Duration) ([]Series, error) {
	if lookback <= 0 {
		return nil, fmt.Errorf("%w: lookback must be positive", ErrInvalid)
	}
	lms, err := selectorMatchers(matchers)
	if err != nil {
		return nil, err
	}
	release, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer release()

	mint := time.Now().Add(-lookback).UnixMilli()
	q, err := s.db.Querier(mint, math.MaxInt64)
	if err != nil {
		return nil, fmt.Errorf("tsdb: latest: %w", err)
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: mint, End: math.MaxInt64, Func: "last_over_time"}
	set := q.Select(ctx, true, hints, lms...)
	var out []Series
	var it chunkenc.Iterator
	for set.Next() {
		sr := set.At()
		it = sr.Iterator(it)
		var last Point
		found := false
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt != chunkenc.ValFloat {
				continue // only floats are written
			}
			t, v := it.At()
			if t >= mint {
				last, found = Point{T: t, V: v}, true
			}
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("tsdb: latest: read %s: %w", sr.Labels(), err)
		}
		if found {
			out = append(out, Series{Labels: sr.Labels().Map(), Points: []Point{last}})
		}
	}
	if err := set.Err(); err != nil {
		return nil, fmt.Errorf("tsdb: latest: %w", err)
	}
	return out, nil
}

// Range returns, for each series matching matchers, one point per step window
// that holds samples, aggregated with agg (avg, min, max, sum, count, last).
// Window k is [start+k·step, start+(k+1)·step), cut at end (inclusive), and
// its point carries the window's start time. Windows without samples are
// left out rather than filled, so a gap in the data shows as a gap. Unlike
// PromQL's *_over_time at a range step, every sample is counted in exactly
// one window and no lookback reaches before start.
func (s *Store) Range(ctx context.Context, matchers []Matcher, start, end time.Time, step time.Duration, agg string) ([]Series, error) {
	switch {
	case step <= 0:
		return nil, fmt.Errorf("%w: step must be positive", ErrInvalid)
	case end.Before(start):
		return nil, fmt.Errorf("%w: end is before start", ErrInvalid)
	case end.Sub(start)/step >= MaxPointsPerSeries:
		return nil, fmt.Errorf("%w: more than %d points per series; use a larger step", ErrInvalid, MaxPointsPerSeries)
	}
	if !aggregations[agg] {
		return nil, fmt.Errorf("%w: unknown aggregation %q (want avg, min, max, sum, count or last)", ErrInvalid, agg)
	}
	lms, err := selectorMatchers(matchers)
	if err != nil {
		return nil, err
	}
	release, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer release()

	mint, maxt, stepMs := start.UnixMilli(), end.UnixMilli(), step.Milliseconds()
	if stepMs == 0 {
		return nil, fmt.Errorf("%w: step must be at least 1ms", ErrInvalid)
	}
	q, err := s.db.Querier(mint, maxt)
	if err != nil {
		return nil, fmt.Errorf("tsdb: range: %w", err)
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt, Step: stepMs, Range: stepMs, Func: agg + "_over_time"}
	set := q.Select(ctx, true, hints, lms...)
	var out []Series
	var it chunkenc.Iterator
	for set.Next() {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("tsdb: range: %w", err)
		}
		sr := set.At()
		it = sr.Iterator(it)
		var pts []Point
		w := window{agg: agg}
		k := int64(-1) // index of the window w accumulates
		for vt := it.Seek(mint); vt != chunkenc.ValNone; vt = it.Next() {
			if vt != chunkenc.ValFloat {
				continue
			}
			t, v := it.At()
			if t > maxt {
				break
			}
			if t < mint {
				continue
			}
			if wk := (t - mint) / stepMs; wk != k {
				if k >= 0 {
					pts = append(pts, Point{T: mint + k*stepMs, V: w.result()})
				}
				k, w = wk, window{agg: agg}
			}
			w.add(v)
		}
		if k >= 0 {
			pts = append(pts, Point{T: mint + k*stepMs, V: w.result()})
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("tsdb: range: read %s: %w", sr.Labels(), err)
		}
		if len(pts) > 0 {
			out = append(out, Series{Labels: sr.Labels().Map(), Points: pts})
		}
	}
	if err := set.Err(); err != nil {
		return nil, fmt.Errorf("tsdb: range: %w", err)
	}
	return out, nil
}

// window accumulates one step window. One value type with a switch, not an
// interface per aggregation, so that a window costs no allocation.
type window struct {
	agg    string
	n      int
	sum, c float64 // Kahan-compensated sum, as PromQL's sum/avg_over_time
	v      float64 // min, max or last so far
}

var aggregations = map[string]bool{AggAvg: true, AggMin: true, AggMax: true, AggSum: true, AggCount: true, AggLast: true}

func (w *window) add(v float64) {
	switch w.agg {
	case AggAvg, AggSum:
		w.sum, w.c = kahanAdd(v, w.sum, w.c)
	// Like PromQL's min/max_over_time, a NaN only wins when all are NaN.
	case AggMin:
		if w.n == 0 || v < w.v || math.IsNaN(w.v) {
			w.v = v
		}
	case AggMax:
		if w.n == 0 || v > w.v || math.IsNaN(w.v) {
			w.v = v
		}
	case AggLast:
		w.v = v
	}
	w.n++
}

func (w *window) result() float64 {
	switch w.agg {
	case AggAvg:
		return (w.sum + w.c) / float64(w.n)
	case AggSum:
		return w.sum + w.c
	case AggCount:
		return float64(w.n)
	}
	return w.v
}

// kahanAdd is Neumaier's variant of compensated summation.
func kahanAdd(v, sum, c float64) (float64, float64) {
	t := sum + v
	switch {
	case math.IsInf(t, 0):
		c = 0
	case math.Abs(sum) >= math.Abs(v):
		c += (sum - t) + v
	default:
		c += (v - t) + sum
	}
	return t, c
}

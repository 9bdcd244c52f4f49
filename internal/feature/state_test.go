package feature

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// model is a plain reading of the late and duplicate rule and of the
// function definitions, for sliding windows: every taken sample is kept,
// and a window is picked out of all of them.
type model struct {
	spec   Spec
	seen   bool
	newest int64
	times  []int64 // in arrival order
	values map[int64]float64
}

func (m *model) add(t int64, v float64) (bool, string) {
	if m.seen && t < m.newest-m.spec.Window.Lateness.Milliseconds() {
		return false, ReasonLate
	}
	if _, dup := m.values[t]; dup && m.held(t) {
		m.values[t] = v
		return true, ReasonDuplicate
	}
	if i := m.index(t); i >= 0 { // a sample that left a count window comes back
		m.times = append(m.times[:i], m.times[i+1:]...)
	}
	m.times = append(m.times, t)
	m.values[t] = v
	if !m.seen || t > m.newest {
		m.newest = t
	}
	m.seen = true
	return true, ""
}

func (m *model) index(t int64) int {
	for i, u := range m.times {
		if u == t {
			return i
		}
	}
	return -1
}

// held reports whether the sample at t is still in the window (count
// windows: among the last Count arrivals; time windows: after
// newest − Duration).
func (m *model) held(t int64) bool {
	if n := m.spec.Window.Count; n > 0 {
		return m.index(t) >= len(m.times)-n
	}
	return t > m.newest-m.spec.Window.Duration.Milliseconds()
}

// window returns the samples Value(now) is over, in time order.
func (m *model) window(now int64) (ts []int64, vs []float64) {
	if n := m.spec.Window.Count; n > 0 {
		ts = append(ts, m.times[max(0, len(m.times)-n):]...)
	} else {
		for _, t := range m.times {
			if t > now-m.spec.Window.Duration.Milliseconds() && t <= now {
				ts = append(ts, t)
			}
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	for _, t := range ts {
		vs = append(vs, m.values[t])
	}
	return ts, vs
}

// value computes fn from the definitions, by the textbook formulas.
func (m *model) value(now int64) (float64, bool) {
	ts, x := m.window(now)
	n := float64(len(x))
	if len(x) == 0 {
		return 0, false
	}
	var sum, sum2, lo, hi, pk float64 = 0, 0, math.Inf(1), math.Inf(-1), 0
	for _, v := range x {
		sum += v
		sum2 += v * v
		lo, hi, pk = math.Min(lo, v), math.Max(hi, v), math.Max(pk, math.Abs(v))
	}
	mean := sum / n
	central := func(k float64) float64 {
		s := 0.0
		for _, v := range x {
			s += math.Pow(v-mean, k)
		}
		return s / n
	}
	switch m.spec.Fn {
	case Mean:
		return mean, true
	case Min:
		return lo, true
	case Max:
		return hi, true
	case Sum:
		return sum, true
	case Count:
		return n, true
	case Last:
		return x[len(x)-1], true
	case Stddev:
		return math.Sqrt(central(2)), true
	case RMS:
		return math.Sqrt(sum2 / n), true
	case Peak:
		return pk, true
	case Crest:
		if sum2 == 0 {
			return 0, false
		}
		return pk / math.Sqrt(sum2/n), true
	case Kurtosis:
		if len(x) < 4 || central(2) == 0 {
			return 0, false
		}
		return central(4) / math.Pow(central(2), 2), true
	case Rate:
		if len(x) < 2 {
			return 0, false
		}
		// Normal equations for v = a + b·t, t in seconds.
		var st, stt, sv, stv float64
		for i, v := range x {
			tt := float64(ts[i]-ts[0]) / 1000
			st += tt
			stt += tt * tt
			sv += v
			stv += tt * v
		}
		return (n*stv - st*sv) / (n*stt - st*st), true
	}
	panic("unknown fn " + m.spec.Fn)
}

// TestAgainstModel feeds sliding windows random samples, jittered, out of
// order, duplicated and late, and compares every Add and every Value with
// the model.
func TestAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 2))
	windows := []Window{
		{Kind: Sliding, Duration: 5 * time.Second},
		{Kind: Sliding, Duration: 5 * time.Second, Lateness: 1500 * time.Millisecond},
		{Kind: Sliding, Duration: 700 * time.Millisecond, Lateness: 2 * time.Second},
		{Kind: Sliding, Count: 1},
		{Kind: Sliding, Count: 7},
		{Kind: Sliding, Count: 7, Lateness: time.Second},
	}
	for _, w := range windows {
		for _, fn := range Fns() {
			spec := Spec{fn, w}
			st := NewState(spec)
			m := &model{spec: spec, values: map[int64]float64{}}
			now := int64(1_700_000_000_000) // epoch milliseconds: precision matters for rate
			for i := range 400 {
				tt := now + int64(r.IntN(300))
				switch r.IntN(6) {
				case 0: // out of order, maybe late
					tt = now - int64(r.IntN(3000))
				case 1: // a duplicate of the newest
					tt = now
				default:
					now = tt
				}
				v := math.Round(r.NormFloat64()*1000) / 100
				ok, reason := st.Add(tt, v)
				wok, wreason := m.add(tt, v)
				if ok != wok || reason != wreason {
					t.Fatalf("%v step %d: Add(%d, %v) = %v, %q; model %v, %q", spec, i, tt, v, ok, reason, wok, wreason)
				}
				ask := max(now, m.newest) + int64(r.IntN(2000))
				got, gok := st.Value(ask)
				want, mok := m.value(ask)
				if gok != mok || math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
					t.Fatalf("%v step %d: Value(%d) = %v, %v; model %v, %v", spec, i, ask, got, gok, want, mok)
				}
			}
			if st.Late() == 0 {
				t.Errorf("%v: no late samples: the test does not test lateness", spec)
			}
		}
	}
}

// FuzzState drives a State of any spec with samples at any times, and
// checks that it never panics and keeps its invariants: the samples it
// holds are within its bound, time windows hold them in strictly
// increasing time, sliding time windows hold nothing at or before
// newest − Duration, and values are what the definitions allow.
func FuzzState(f *testing.F) {
	f.Add([]byte{0, 0, 10, 0, 1, 5, 3, 1, 5, 4, 0, 2, 0})
	f.Add([]byte{11, 1, 3, 2, 1, 250, 3, 1, 6, 4, 1, 1, 1, 0, 40, 0})
	f.Add([]byte{10, 2, 4, 4, 1, 1, 1, 1, 255, 7, 2, 0, 9, 0, 0, 0})
	f.Add([]byte{5, 3, 2, 7, 1, 128, 200, 1, 127, 1, 3, 1, 127})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 4 {
			return
		}
		spec := Spec{Fn: fns[int(data[0])%len(fns)]}
		spec.Window.Kind = Sliding
		if data[1]&1 != 0 {
			spec.Window.Kind = Tumbling
		}
		if data[1]&2 != 0 {
			spec.Window.Count = 1 + int(data[2])%16
		} else {
			spec.Window.Duration = time.Duration(1+int(data[2])) * 100 * time.Millisecond
		}
		spec.Window.Lateness = time.Duration(data[3]%8) * 250 * time.Millisecond
		st := NewState(spec)
		if st.Err() != nil {
			t.Fatalf("%v: %v", spec, st.Err())
		}
		bound := MaxSamples
		if spec.Window.Count > 0 {
			bound = spec.Window.Count
		}
		var now int64
		if data[1]&4 != 0 {
			now = math.MaxInt64 - 1_000_000 // near the end of time
		}
		for ops := data[4:]; len(ops) >= 3; ops = ops[3:] {
			now += int64(int8(ops[1])) * 100
			v := float64(int8(ops[2]))
			switch ops[0] % 5 {
			case 0:
				got, ok := st.Value(now)
				checkValue(t, spec, st, got, ok)
			case 1:
				v = math.NaN()
				fallthrough
			default:
				ok, reason := st.Add(now, v)
				if math.IsNaN(v) && (ok || reason != ReasonNotFinite) {
					t.Fatalf("Add(NaN) = %v, %q", ok, reason)
				}
				if !ok && reason != ReasonLate && reason != ReasonNotFinite {
					t.Fatalf("Add refused for %q", reason)
				}
				if ok && reason != "" && reason != ReasonDuplicate {
					t.Fatalf("Add took with reason %q", reason)
				}
			}
			if st.Len() > bound || st.Len() < 0 {
				t.Fatalf("%v holds %d samples; bound %d", spec, st.Len(), bound)
			}
			if spec.Window.Count == 0 {
				for i := 1; i < st.r.n; i++ {
					if st.r.at(i-1).t >= st.r.at(i).t {
						t.Fatalf("%v: samples out of time order at %d: %d, %d", spec, i, st.r.at(i-1).t, st.r.at(i).t)
					}
				}
				if spec.Window.Kind == Sliding && st.r.n > 0 && st.r.front().t <= st.newest-st.dur {
					t.Fatalf("%v holds %d at newest %d", spec, st.r.front().t, st.newest)
				}
			}
		}
	})
}

// checkValue checks what a value can be, whatever the samples (small
// integers, so no sum overflows).
func checkValue(t *testing.T, spec Spec, st *State, v float64, ok bool) {
	t.Helper()
	if !ok {
		if v != 0 && spec.Window.Kind == Sliding {
			t.Fatalf("%v: not ok with value %v", spec, v)
		}
		return
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		t.Fatalf("%v: value %v", spec, v)
	}
	switch spec.Fn {
	case Count:
		if v < 1 || v != math.Trunc(v) || (spec.Window.Count > 0 && v > float64(spec.Window.Count)) {
			t.Fatalf("%v: count %v", spec, v)
		}
	case Stddev, RMS, Peak:
		if v < 0 {
			t.Fatalf("%v: %v < 0", spec, v)
		}
	case Crest:
		if v < 1-1e-12 {
			t.Fatalf("%v: crest %v < 1", spec, v)
		}
	case Kurtosis:
		if v < 1-1e-12 { // m4 ≥ m2² (Jensen)
			t.Fatalf("%v: kurtosis %v < 1", spec, v)
		}
	case Min, Max, Mean, Last:
		if v < -128 || v > 127 {
			t.Fatalf("%v: %v outside the samples' range", spec, v)
		}
	}
}

func BenchmarkAdd(b *testing.B) {
	for _, w := range []Window{
		{Kind: Sliding, Duration: time.Minute},
		{Kind: Sliding, Count: 600},
		{Kind: Tumbling, Duration: time.Minute},
	} {
		spec := Spec{Mean, w}
		b.Run(string(w.Kind)+"/"+spec.String(), func(b *testing.B) {
			st := NewState(spec)
			b.ReportAllocs()
			t := int64(0)
			for i := 0; b.Loop(); i++ {
				t += 100 // 10 Hz: a 1 min window holds 600 samples
				st.Add(t, float64(i&1023))
			}
		})
	}
}

func BenchmarkValue(b *testing.B) {
	for _, fn := range []Fn{Mean, Stddev, Kurtosis, Rate} {
		b.Run(string(fn), func(b *testing.B) {
			st := NewState(Spec{fn, Window{Kind: Sliding, Duration: time.Minute}})
			for i := range int64(600) {
				st.Add(i*100, float64(i%37))
			}
			b.ReportAllocs()
			for b.Loop() {
				st.Value(59_999)
			}
		})
	}
}

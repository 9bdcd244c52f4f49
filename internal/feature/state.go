package feature

import (
	"fmt"
	"math"
	"time"
	"unsafe"
)

// The reasons Add gives.
const (
	// ReasonLate: refused, older than the newest sample seen minus the
	// lateness, or for a tumbling window that already closed.
	ReasonLate = "late"
	// ReasonDuplicate: taken, replacing the held sample at the same time.
	ReasonDuplicate = "duplicate"
	// ReasonNotFinite: refused, the value is NaN or infinite.
	ReasonNotFinite = "not finite"
	// ReasonInvalidSpec: refused, the State was made from a spec that
	// does not validate.
	ReasonInvalidSpec = "invalid spec"
)

// State is the window of one feature of one object and what it needs to
// compute the feature. It is not safe for concurrent use: one goroutine
// adds and asks.
type State struct {
	spec   Spec
	err    error // Spec.Validate's verdict; a State with one takes nothing
	dur    int64 // window duration, ms (0 for a count window)
	late   int64 // lateness, ms
	count  int   // window count (0 for a time window)
	r      ring
	seen   bool  // a sample was taken
	newest int64 // the newest time taken, ms

	lateN, dropped uint64

	// Tumbling windows: the open window is r; for a time window it is
	// window number open (the one covering [open·dur, (open+1)·dur)), and
	// every window before it is closed. closedV and closedOK are the value
	// of the latest closed window, ok false when it was empty or there is
	// none.
	open     int64
	closedV  float64
	closedOK bool
}

// NewState returns the empty state of a feature. A spec that does not
// validate gives a State that refuses every sample (ReasonInvalidSpec)
// and has no value; validate specs before.
func NewState(s Spec) *State {
	st := &State{spec: s, err: s.Validate()}
	if st.err != nil {
		return st
	}
	st.dur = s.Window.Duration.Milliseconds()
	st.late = s.Window.Lateness.Milliseconds()
	st.count = s.Window.Count
	bound := MaxSamples
	if st.count > 0 {
		bound = st.count
	}
	st.r = newRing(bound)
	return st
}

// Spec returns the spec the state was made from.
func (st *State) Spec() Spec { return st.spec }

// Err returns why the spec does not validate, or nil.
func (st *State) Err() error { return st.err }

// Add takes one sample of value v at t, milliseconds since the epoch. It
// returns false and the reason when it refuses the sample (ReasonLate,
// ReasonNotFinite, ReasonInvalidSpec), and true with ReasonDuplicate when
// the sample replaced a held one at the same time; see the package
// documentation for the rule. Taking an in-order sample is O(1) amortised.
func (st *State) Add(t int64, v float64) (ok bool, reason string) {
	if st.err != nil {
		return false, ReasonInvalidSpec
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return false, ReasonNotFinite
	}
	if st.seen && t < st.newest && diff(st.newest, t) > uint64(st.late) {
		st.lateN++
		return false, ReasonLate
	}
	s := sample{t, v}
	switch {
	case st.count > 0:
		return st.addCount(s)
	case st.spec.Window.Kind == Tumbling:
		k := floorDiv(t, st.dur)
		if !st.seen {
			st.open = k
		}
		if k < st.open {
			st.lateN++
			return false, ReasonLate
		}
		st.closeThrough(k - 1)
		return st.addTime(s)
	default:
		ok, reason = st.addTime(s)
		for st.r.n > 0 && diff(st.newest, st.r.front().t) >= uint64(st.dur) {
			st.r.popFront()
		}
		return ok, reason
	}
}

// addCount adds s to a count window, held in order of arrival.
func (st *State) addCount(s sample) (bool, string) {
	if st.seen && s.t <= st.newest {
		if i := st.r.find(s.t); i >= 0 {
			st.r.at(i).v = s.v
			return true, ReasonDuplicate
		}
	}
	st.take(s.t)
	if st.r.n == st.count { // sliding: the oldest leaves
		st.r.popFront()
	}
	st.r.push(s)
	if st.spec.Window.Kind == Tumbling && st.r.n == st.count {
		st.closedV, st.closedOK = compute(st.spec.Fn, &st.r, 0, st.r.n)
		st.r.clear()
	}
	return true, ""
}

// addTime adds s to a time window, held in time order.
func (st *State) addTime(s sample) (bool, string) {
	i := st.r.n
	if i > 0 && s.t <= st.r.back().t {
		i = st.r.search(s.t)
		if st.r.at(i).t == s.t {
			st.r.at(i).v = s.v
			return true, ReasonDuplicate
		}
	}
	st.take(s.t)
	if st.r.n == MaxSamples {
		st.dropped++
		if i == 0 { // the new sample is the oldest: it goes
			return true, ""
		}
		st.r.popFront()
		i--
	}
	st.r.insert(i, s)
	return true, ""
}

// take records that a sample at t was taken.
func (st *State) take(t int64) {
	if !st.seen || t > st.newest {
		st.newest = t
	}
	st.seen = true
}

// closeThrough closes the windows of a tumbling time window up to number
// last: the open one, if it is among them, gives its value; when later
// ones close as well, they were empty.
func (st *State) closeThrough(last int64) {
	if last < st.open {
		return
	}
	if last == st.open {
		st.closedV, st.closedOK = compute(st.spec.Fn, &st.r, 0, st.r.n)
	} else {
		st.closedV, st.closedOK = 0, false
	}
	st.r.clear()
	st.open = last + 1
}

// Value returns the feature at now, milliseconds since the epoch: for a
// sliding time window over the samples in (now−Duration, now]; for a
// sliding count window over the last Count samples; for a tumbling window
// the value of the latest closed window (a time window closes here when
// now ≥ its end + Lateness). ok is false when there is nothing to compute
// from: no samples (an empty window too, whatever the function), fewer
// than 2 for rate, fewer than 4 or no spread for kurtosis, an rms of 0 for
// crest, no tumbling window closed yet.
//
// Value of a sliding time window at a now before the newest sample sees
// only the samples still held: those after newest−Duration.
func (st *State) Value(now int64) (v float64, ok bool) {
	if st.err != nil {
		return 0, false
	}
	switch {
	case st.spec.Window.Kind == Tumbling:
		if st.count == 0 && st.seen {
			st.closeThrough(floorDiv(subSat(now, st.late), st.dur) - 1)
		}
		return st.closedV, st.closedOK
	case st.count > 0:
		return compute(st.spec.Fn, &st.r, 0, st.r.n)
	default:
		lo := 0
		if from := subSat(now, st.dur); from < math.MaxInt64 {
			lo = st.r.search(from + 1)
		}
		hi := st.r.n
		if now < math.MaxInt64 {
			hi = st.r.search(now + 1)
		}
		return compute(st.spec.Fn, &st.r, lo, hi)
	}
}

// Len returns the number of samples held.
func (st *State) Len() int { return st.r.n }

// Bytes returns the memory the state holds, approximately.
func (st *State) Bytes() int {
	return int(unsafe.Sizeof(*st)) + len(st.r.buf)*int(unsafe.Sizeof(sample{}))
}

// Late returns the number of samples refused as late so far.
func (st *State) Late() uint64 { return st.lateN }

// Dropped returns the number of samples a time window dropped, oldest
// first, because it held MaxSamples.
func (st *State) Dropped() uint64 { return st.dropped }

// String describes the state for logs and test failures.
func (st *State) String() string {
	return fmt.Sprintf("feature{%v held=%d late=%d dropped=%d newest=%v}",
		st.spec, st.r.n, st.lateN, st.dropped, time.UnixMilli(st.newest).UTC().Format(time.RFC3339Nano))
}

// diff returns a − b for a ≥ b, exact even where a − b overflows int64.
func diff(a, b int64) uint64 { return uint64(a) - uint64(b) }

// subSat returns a − b for b ≥ 0, saturating at math.MinInt64.
func subSat(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

// floorDiv returns ⌊a/b⌋ for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

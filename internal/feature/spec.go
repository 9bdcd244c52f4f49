package feature

import (
	"errors"
	"fmt"
	"time"
)

// Fn names the function a feature computes over its window.
type Fn string

// The functions. See the package documentation for their definitions.
const (
	Mean     Fn = "mean"     // arithmetic mean
	Min      Fn = "min"      // smallest value
	Max      Fn = "max"      // largest value
	Sum      Fn = "sum"      // sum of the values
	Count    Fn = "count"    // number of samples
	Last     Fn = "last"     // value of the sample with the newest timestamp
	Stddev   Fn = "stddev"   // population standard deviation
	RMS      Fn = "rms"      // root mean square, sqrt(mean(x²))
	Peak     Fn = "peak"     // largest absolute value, max |x|
	Crest    Fn = "crest"    // crest factor, peak/rms
	Kurtosis Fn = "kurtosis" // plain (non-excess) population kurtosis m4/m2²
	Rate     Fn = "rate"     // least-squares slope, value units per second
)

// fns lists every Fn, in the order the documentation gives them.
var fns = []Fn{Mean, Min, Max, Sum, Count, Last, Stddev, RMS, Peak, Crest, Kurtosis, Rate}

// Fns returns every known Fn.
func Fns() []Fn { return append([]Fn(nil), fns...) }

// Known reports whether f is one of the functions.
func (f Fn) Known() bool {
	for _, k := range fns {
		if f == k {
			return true
		}
	}
	return false
}

// WindowKind is how a window moves.
type WindowKind string

// The window kinds.
const (
	// Sliding windows end at the time Value is asked (time windows) or at
	// the last sample (count windows).
	Sliding WindowKind = "sliding"
	// Tumbling windows are consecutive, non-overlapping windows; Value
	// gives the latest closed one.
	Tumbling WindowKind = "tumbling"
)

// Window is the extent of the samples a feature is computed over.
type Window struct {
	Kind     WindowKind
	Duration time.Duration // a time window, or
	Count    int           // a count window (exactly one of Duration, Count is > 0)
	// Lateness is how far behind the newest sample seen a sample may be
	// and still be taken (see the package documentation); 0 takes no
	// sample older than the newest.
	Lateness time.Duration
}

// Spec is what one feature computes: a function over a window.
type Spec struct {
	Fn     Fn
	Window Window
}

// MaxSamples is the hard cap on the samples one window holds. A time
// window that would hold more drops its oldest sample and counts it
// (State.Dropped); a count window may not be longer.
const MaxSamples = 1 << 16

// MaxDuration is the longest time window and the longest lateness.
const MaxDuration = 24 * time.Hour

// ErrInvalid is wrapped by every error of Spec.Validate.
var ErrInvalid = errors.New("invalid feature spec")

// Validate reports what is wrong with s, if anything: an unknown function
// or window kind, both or neither of Duration and Count, a negative or
// too large duration, count or lateness, or a duration that is not a whole
// number of milliseconds (sample times are milliseconds).
func (s Spec) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if !s.Fn.Known() {
		return bad("unknown fn %q (want one of %v)", s.Fn, fns)
	}
	w := s.Window
	if w.Kind != Sliding && w.Kind != Tumbling {
		return bad("unknown window kind %q (want %q or %q)", w.Kind, Sliding, Tumbling)
	}
	switch {
	case w.Duration < 0:
		return bad("negative window duration %v", w.Duration)
	case w.Count < 0:
		return bad("negative window count %d", w.Count)
	case w.Duration > 0 && w.Count > 0:
		return bad("window has both a duration (%v) and a count (%d); give one", w.Duration, w.Count)
	case w.Duration == 0 && w.Count == 0:
		return bad("window has neither a duration nor a count; give one")
	case w.Duration > MaxDuration:
		return bad("window duration %v is longer than %v", w.Duration, MaxDuration)
	case w.Duration%time.Millisecond != 0:
		return bad("window duration %v is not a whole number of milliseconds", w.Duration)
	case w.Count > MaxSamples:
		return bad("window count %d is more than %d", w.Count, MaxSamples)
	case w.Lateness < 0:
		return bad("negative lateness %v", w.Lateness)
	case w.Lateness > MaxDuration:
		return bad("lateness %v is longer than %v", w.Lateness, MaxDuration)
	case w.Lateness%time.Millisecond != 0:
		return bad("lateness %v is not a whole number of milliseconds", w.Lateness)
	}
	return nil
}

// MaxSamples is how many samples the window can hold when samples arrive
// every interval: Count for a count window; Duration/interval + 1 for a
// time window (an interval of 0 or less counts as one second), never more
// than the cap MaxSamples. An engine refuses a definition whose windows
// exceed its memory budget with it.
func (s Spec) MaxSamples(interval time.Duration) int {
	if s.Window.Count > 0 {
		return min(s.Window.Count, MaxSamples)
	}
	if interval <= 0 {
		interval = time.Second
	}
	if s.Window.Duration <= 0 {
		return 0
	}
	n := s.Window.Duration / interval
	if n >= MaxSamples {
		return MaxSamples
	}
	return int(n) + 1
}

// String writes s the way the golden tests write a spec.
func (s Spec) String() string {
	w := s.Window
	str := fmt.Sprintf("fn=%s kind=%s", s.Fn, w.Kind)
	if w.Count > 0 {
		str += fmt.Sprintf(" count=%d", w.Count)
	} else {
		str += fmt.Sprintf(" duration=%v", w.Duration)
	}
	if w.Lateness > 0 {
		str += fmt.Sprintf(" lateness=%v", w.Lateness)
	}
	return str
}

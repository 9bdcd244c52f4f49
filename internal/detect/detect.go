package detect

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalid is wrapped by every error of the Validate methods.
var ErrInvalid = errors.New("invalid detector")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// EWMA z-score: mean and variance tracked by exponentially weighted moving
// averages (weight Alpha in (0,1] for the newest sample); Score is
// (x − mean)/stddev before x is folded in; ready after Warmup samples.
//
// The weight of the n-th sample is max(Alpha, 1/n), so the first samples
// are averaged plainly (mean and population variance) until 1/n falls
// below Alpha, and the estimates do not start biased toward the first
// sample. The update is the incremental one of West (1979):
// d = x − mean, mean += a·d, var = (1 − a)·(var + a·d²).
type EWMA struct {
	Alpha  float64
	Warmup int
	// MinStd is a floor on the standard deviation a score divides by
	// (0: none). Without one, a signal that was constant has no spread to
	// score against, and Update is not ready until it has.
	MinStd float64

	n        int
	mean, vr float64
}

// Validate reports bad parameters: Alpha not in (0, 1], Warmup < 0,
// MinStd negative or not finite.
func (e *EWMA) Validate() error {
	switch {
	case !(e.Alpha > 0 && e.Alpha <= 1):
		return invalid("ewma: alpha %v is not in (0, 1]", e.Alpha)
	case e.Warmup < 0:
		return invalid("ewma: negative warmup %d", e.Warmup)
	case !(e.MinStd >= 0) || math.IsInf(e.MinStd, 1):
		return invalid("ewma: min std %v is not a finite number ≥ 0", e.MinStd)
	}
	return nil
}

// Update scores x against the mean and standard deviation so far, then
// folds it in. ready is false during the first Warmup samples (and for the
// very first, which has nothing to be scored against), and while the
// standard deviation, floored at MinStd, is 0; the score is then 0. A
// non-finite x is not folded in and gives 0, false.
func (e *EWMA) Update(x float64) (score float64, ready bool) {
	if !finite(x) {
		return 0, false
	}
	if e.n == 0 {
		e.n, e.mean, e.vr = 1, x, 0
		return 0, false
	}
	sd := math.Max(math.Sqrt(e.vr), e.MinStd)
	if sd > 0 {
		score = (x - e.mean) / sd
		ready = e.n >= e.Warmup
	}
	a := math.Max(e.Alpha, 1/float64(e.n+1))
	d := x - e.mean
	e.mean += a * d
	e.vr = (1 - a) * (e.vr + a*d*d)
	if e.n < math.MaxInt {
		e.n++
	}
	return score, ready
}

// Mean returns the weighted mean so far.
func (e *EWMA) Mean() float64 { return e.mean }

// Std returns the weighted standard deviation so far.
func (e *EWMA) Std() float64 { return math.Sqrt(e.vr) }

// N returns the number of samples folded in.
func (e *EWMA) N() int { return e.n }

// Reset forgets every sample; the parameters stay.
func (e *EWMA) Reset() { e.n, e.mean, e.vr = 0, 0, 0 }

// CUSUM (Page's two-sided tabular): target mean Target (or learned as the
// mean of the first Warmup samples when Learn is true), slack K and
// decision interval H in units of the standard deviation Sigma (learned
// too when Learn and Sigma == 0, as the sample standard deviation of the
// first Warmup samples). Update returns the upper and lower sums and
// whether either crossed H; Reset after an alarm is the caller's choice.
//
// With z = (x − Target)/Sigma, the sums are
//
//	hi = max(0, hi + z − K)
//	lo = max(0, lo − z − K)
//
// both ≥ 0, in units of Sigma; an alarm is hi > H or lo > H. Without
// Learn, Warmup plays no part and Update is ready from the first sample. K = 0.5 and
// H = 4 or 5 detect a shift of one standard deviation quickly with rare
// false alarms (Montgomery).
type CUSUM struct {
	Target, Sigma, K, H float64
	Warmup              int
	Learn               bool

	n            int     // samples learned from
	lm, lm2      float64 // their mean and sum of squared deviations (Welford)
	mu, sd       float64 // the target and sigma in use
	ready        bool
	sumHi, sumLo float64
}

// Validate reports bad parameters: K < 0, H ≤ 0, Warmup < 0, any of them
// not finite; without Learn, Sigma ≤ 0; with Learn, Warmup < 1, or
// Warmup < 2 when Sigma is to be learned too.
func (c *CUSUM) Validate() error {
	switch {
	case !finite(c.Target) || !finite(c.Sigma) || !finite(c.K) || !finite(c.H):
		return invalid("cusum: target %v, sigma %v, k %v, h %v: not all finite", c.Target, c.Sigma, c.K, c.H)
	case c.K < 0:
		return invalid("cusum: negative slack k %v", c.K)
	case c.H <= 0:
		return invalid("cusum: decision interval h %v is not > 0", c.H)
	case c.Warmup < 0:
		return invalid("cusum: negative warmup %d", c.Warmup)
	case c.Sigma < 0:
		return invalid("cusum: negative sigma %v", c.Sigma)
	case !c.Learn && c.Sigma == 0:
		return invalid("cusum: sigma 0 without learn; give sigma or learn it")
	case c.Learn && c.Sigma == 0 && c.Warmup < 2:
		return invalid("cusum: learning sigma needs a warmup of at least 2 samples, not %d", c.Warmup)
	case c.Learn && c.Warmup < 1:
		return invalid("cusum: learning the target needs a warmup of at least 1 sample, not %d", c.Warmup)
	}
	return nil
}

// Update folds x into the sums. While learning (Learn, the first Warmup
// samples) it returns zeros and ready false; the sample that completes the
// warm-up is learned from, not scored. A warm-up whose samples were all
// equal teaches no sigma: learning goes on until they differ. A non-finite
// x changes nothing and gives the sums as they are, alarm false.
func (c *CUSUM) Update(x float64) (hi, lo float64, alarm, ready bool) {
	if !finite(x) {
		return c.sumHi, c.sumLo, false, c.ready
	}
	if !c.ready {
		if !c.Learn {
			c.mu, c.sd, c.ready = c.Target, c.Sigma, true
		} else {
			c.n++
			d := x - c.lm
			c.lm += d / float64(c.n)
			c.lm2 += d * (x - c.lm)
			if c.n < c.Warmup {
				return 0, 0, false, false
			}
			c.mu, c.sd = c.lm, c.Sigma
			if c.sd == 0 && c.n > 1 {
				c.sd = math.Sqrt(c.lm2 / float64(c.n-1))
			}
			c.ready = c.sd > 0
			return 0, 0, false, false
		}
	}
	z := (x - c.mu) / c.sd
	c.sumHi = math.Max(0, c.sumHi+z-c.K)
	c.sumLo = math.Max(0, c.sumLo-z-c.K)
	return c.sumHi, c.sumLo, c.sumHi > c.H || c.sumLo > c.H, true
}

// Reset sets both sums to 0, as after an alarm; what was learned stays.
func (c *CUSUM) Reset() { c.sumHi, c.sumLo = 0, 0 }

// Params returns the target and sigma in use, and whether there are any
// yet (false while learning).
func (c *CUSUM) Params() (target, sigma float64, ok bool) {
	return c.mu, c.sd, c.ready
}

// Hysteresis (deadband) for a numeric signal: turns on above On, off below
// Off (On > Off for a high limit; On < Off makes it a low limit: on below
// On, off above Off). On == Off is a high limit without a deadband. It
// starts off.
type Hysteresis struct {
	On, Off float64

	state bool
}

// Validate reports limits that are not finite.
func (h *Hysteresis) Validate() error {
	if !finite(h.On) || !finite(h.Off) {
		return invalid("hysteresis: on %v, off %v: not both finite", h.On, h.Off)
	}
	return nil
}

// Update returns the state after x. A NaN x keeps the state.
func (h *Hysteresis) Update(x float64) bool {
	if h.On >= h.Off { // high limit
		if !h.state && x > h.On {
			h.state = true
		} else if h.state && x < h.Off {
			h.state = false
		}
	} else { // low limit
		if !h.state && x < h.On {
			h.state = true
		} else if h.state && x > h.Off {
			h.state = false
		}
	}
	return h.state
}

// State returns the state.
func (h *Hysteresis) State() bool { return h.state }

// Delay debounces a boolean condition: it turns on only after the
// condition held On, and off only after it was false Off (times in ms
// since the epoch). It starts off.
//
// The condition counts as changed at the time of the Update that first
// reports it changed; a state change happens at the first Update at least
// the delay later. Time never runs backwards for a Delay: an Update older
// than the newest one counts at the newest one's time. So the state never
// changes twice within min(On, Off): off to on takes On of true, on to off
// Off of false.
type Delay struct {
	On, Off time.Duration

	started bool
	last    int64 // the newest time seen
	cond    bool  // the condition as last reported
	since   int64 // when it changed to that
	state   bool
}

// Validate reports negative delays.
func (d *Delay) Validate() error {
	if d.On < 0 || d.Off < 0 {
		return invalid("delay: negative on %v or off %v", d.On, d.Off)
	}
	return nil
}

// Update reports the condition at t and returns the state and whether this
// update changed it.
func (d *Delay) Update(t int64, cond bool) (state, changed bool) {
	if d.started && t < d.last {
		t = d.last
	}
	d.started, d.last = true, t
	if cond != d.cond {
		d.cond, d.since = cond, t
	}
	if d.cond != d.state {
		need := d.Off
		if d.cond {
			need = d.On
		}
		if uint64(t-d.since) >= ceilMillis(max(need, 0)) {
			d.state = d.cond
			return d.state, true
		}
	}
	return d.state, false
}

// State returns the state.
func (d *Delay) State() bool { return d.state }

// ceilMillis returns d in milliseconds, rounded up.
func ceilMillis(d time.Duration) uint64 {
	return uint64((d + time.Millisecond - 1) / time.Millisecond)
}

package guard

import (
	"fmt"
	"math"
	"slices"
)

// limit is one numeric check of one value: its bounds, its step around the
// current value or its rate against the last value sent.
type limit struct {
	name  string // the result's name, e.g. "bounds:feedRate"
	bound float64
	// boundFor, when set, gives the bound a value is held to (the min or
	// the max), in place of bound.
	boundFor func(v float64) float64
	// pass, when set, passes the check without looking at the value
	// (nothing to check against), with this detail.
	pass string
	// broken, when set, fails the check whatever the value (fail-safe),
	// with this detail.
	broken string
	ok     func(v float64) bool
	// target is the nearest value that ought to meet the limit from v.
	target func(v float64) float64
	// anchor is a value that meets the limit, if hasAnchor; clamping moves
	// from target towards it when rounding makes target miss.
	anchor    float64
	hasAnchor bool
	measure   func(v float64) float64
	describe  string

	result   Result
	bypassed bool
}

// values checks every proposed value (in name order) against its limits and
// records the results grouped by kind. It returns the values to send.
func (e *evaluator) values() map[string]float64 {
	if len(e.prop.Values) == 0 {
		return nil
	}
	names := make([]string, 0, len(e.prop.Values))
	for name := range e.prop.Values {
		names = append(names, name)
	}
	slices.Sort(names)

	out := make(map[string]float64, len(names))
	var bounds, steps, rates []Result
	for _, name := range names {
		v, lims := e.value(name, e.prop.Values[name])
		out[name] = v
		for _, l := range lims {
			switch kindOf(l.name) {
			case GuardBounds:
				bounds = append(bounds, l.result)
			case GuardMaxStep:
				steps = append(steps, l.result)
			default:
				rates = append(rates, l.result)
			}
		}
	}
	for _, r := range slices.Concat(bounds, steps, rates) {
		e.add(r)
	}
	return out
}

// value checks one value; with Clamp it moves it through bounds, step and
// rate in that order and then checks the moved value against all three.
func (e *evaluator) value(name string, v float64) (float64, []*limit) {
	if !isFinite(v) {
		// Not clampable, not bypassable: there is no meaning to send.
		r := Result{Guard: GuardBounds + ":" + name, Outcome: Fail, Detail: "proposed value " + num(v) + " is not a finite number"}
		return v, []*limit{{name: r.Guard, result: r}}
	}
	lims := e.limits(name)
	proposed := v
	var movedBy *limit
	for _, l := range lims {
		l.result = Result{Guard: l.name, Limit: finite(l.bound)}
		switch {
		case l.pass != "":
			l.result.Outcome, l.result.Detail = Pass, l.pass
			continue
		case l.broken != "":
			l.result.Detail = l.broken
			e.fail(l)
			continue
		}
		l.result.Value = finite(l.measure(v))
		if l.boundFor != nil {
			l.result.Limit = finite(l.boundFor(v))
		}
		if l.ok(v) {
			l.result.Outcome, l.result.Detail = Pass, fmt.Sprintf("%s meets %s", num(v), l.describe)
			continue
		}
		l.result.Detail = fmt.Sprintf("%s breaks %s", num(v), l.describe)
		if e.fail(l); l.bypassed || !e.p.Clamp {
			continue
		}
		if c, ok := l.clamp(v); ok {
			l.result.Outcome = Clamped
			l.result.Detail = fmt.Sprintf("%s breaks %s: clamped to %s", num(v), l.describe, num(c))
			v, movedBy = c, l
		}
	}
	if movedBy == nil {
		return v, lims
	}
	// The moved value must still meet every limit it was held to; the
	// first it breaks (bounds before step) refuses the action.
	for _, l := range lims {
		if l.pass != "" || l.broken != "" || l.bypassed || l.result.Outcome == Fail || l.ok(v) {
			continue
		}
		l.result.Value = finite(l.measure(v))
		if l.boundFor != nil {
			l.result.Limit = finite(l.boundFor(v))
		}
		l.result.Detail = fmt.Sprintf("no value meets %s and the other limits: %s (proposed %s) clamped to %s for %s breaks it",
			l.describe, name, num(proposed), num(v), movedBy.name)
		e.fail(l)
	}
	return v, lims
}

// fail marks l's result failing, or bypassed if a bypass in force matches.
func (e *evaluator) fail(l *limit) {
	l.result = e.failing(l.result)
	l.bypassed = l.result.Outcome == Bypassed
}

// clamp returns the value nearest to v that meets l, if there is one.
func (l *limit) clamp(v float64) (float64, bool) {
	x := l.target(v)
	if isFinite(x) && l.ok(x) {
		return x, true
	}
	if !l.hasAnchor || !isFinite(l.anchor) || !l.ok(l.anchor) {
		return 0, false
	}
	// Rounding (cur + step, last + rate·t) can land a few ulps outside.
	if !isFinite(x) {
		x = math.Copysign(math.MaxFloat64, x)
	}
	for range 64 {
		if isFinite(x) && l.ok(x) {
			return x, true
		}
		x = math.Nextafter(x, l.anchor)
	}
	return l.anchor, true
}

// limits returns the configured limits of one value, in checking order.
func (e *evaluator) limits(name string) []*limit {
	var lims []*limit
	if r, ok := e.p.Bounds[name]; ok {
		lims = append(lims, boundsLimit(name, r))
	}
	if s, ok := e.p.MaxStep[name]; ok {
		cur, known := e.prop.Current[name]
		lims = append(lims, stepLimit(name, s, cur, known))
	}
	if r, ok := e.p.MaxRate[name]; ok {
		lims = append(lims, e.rateLimitOf(name, r))
	}
	return lims
}

func boundsLimit(name string, r Range) *limit {
	lo, hi := math.Inf(-1), math.Inf(1)
	if r.Min != nil {
		lo = *r.Min
	}
	if r.Max != nil {
		hi = *r.Max
	}
	span := fmt.Sprintf("[%s, %s]", num(lo), num(hi))
	l := &limit{
		name:     GuardBounds + ":" + name,
		describe: "bounds " + span,
		ok:       func(v float64) bool { return v >= lo && v <= hi },
		target: func(v float64) float64 {
			if v < lo {
				return lo
			}
			return hi
		},
		measure: func(v float64) float64 { return v },
	}
	l.boundFor = func(v float64) float64 {
		if v < lo || (hi-v > v-lo) {
			return lo
		}
		return hi
	}
	switch {
	case math.IsNaN(lo) || math.IsNaN(hi):
		l.broken = "bounds " + span + " are not numbers"
	case lo > hi:
		l.broken = "bounds " + span + " are empty (min > max)"
	}
	return l
}

func stepLimit(name string, step, cur float64, known bool) *limit {
	l := &limit{
		name:      GuardMaxStep + ":" + name,
		bound:     step,
		describe:  fmt.Sprintf("max_step %s from current %s", num(step), num(cur)),
		ok:        func(v float64) bool { return math.Abs(v-cur) <= step },
		target:    func(v float64) float64 { return towards(cur, v, step) },
		anchor:    cur,
		hasAnchor: true,
		measure:   func(v float64) float64 { return math.Abs(v - cur) },
	}
	switch {
	case !known:
		l.pass = "no current value"
	case math.IsNaN(step) || step < 0:
		l.broken = "max_step " + num(step) + " is not a number ≥ 0"
	case !isFinite(cur):
		l.broken = "current value " + num(cur) + " is not a finite number"
	}
	return l
}

func (e *evaluator) rateLimitOf(name string, rate float64) *limit {
	l := &limit{name: GuardMaxRate + ":" + name, bound: rate}
	last, ok := e.snap.last[name]
	switch {
	case math.IsNaN(rate) || rate < 0:
		l.broken = "max_rate " + num(rate) + " is not a number ≥ 0"
		return l
	case !e.haveHistory:
		l.broken = "no history to find the last value sent in"
		return l
	case !ok:
		l.pass = "no value sent before"
		return l
	case !isFinite(last.v):
		l.broken = "last value sent " + num(last.v) + " is not a finite number"
		return l
	}
	secs := e.prop.Now.Sub(last.at).Seconds()
	l.anchor, l.hasAnchor = last.v, true
	if secs <= 0 {
		// No time has passed since the last value was sent: only that
		// value keeps the rate.
		l.describe = fmt.Sprintf("max_rate %s/s: last sent %s no time ago", num(rate), num(last.v))
		l.ok = func(v float64) bool { return v == last.v }
		l.target = func(float64) float64 { return last.v }
		l.measure = func(v float64) float64 {
			if v == last.v {
				return 0
			}
			return math.Inf(1)
		}
		return l
	}
	l.describe = fmt.Sprintf("max_rate %s/s: last sent %s, %gs ago", num(rate), num(last.v), secs)
	l.ok = func(v float64) bool { return math.Abs(v-last.v)/secs <= rate }
	l.target = func(v float64) float64 { return towards(last.v, v, rate*secs) }
	l.measure = func(v float64) float64 { return math.Abs(v-last.v) / secs }
	return l
}

// towards returns from ± d, on v's side of from.
func towards(from, v, d float64) float64 {
	if v < from {
		return from - d
	}
	return from + d
}

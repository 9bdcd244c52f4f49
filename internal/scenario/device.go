package scenario

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/wanwu-iot/wanwu/device"
)

// Device is one simulated device's physics. It is not safe for concurrent
// use: the runner owns each device and calls it from one goroutine.
//
// Time is simulated and only moves forward. The first Step starts the
// device: faults' offsets count from it, and the first report comes within
// one interval of it (each device at its own phase, so that a fleet does
// not report in lockstep). Reports fall on the device's own schedule, not on
// the times Step is called at, and the physics advances from report to
// report: the records of a device are a function of its class, index, seed
// and the commands and desired states it was given, whenever the runner
// happens to call.
type Device interface {
	// Step advances the physics to t and returns the records of the
	// reports due by t, each with its own time (empty when none is due).
	// A device that fell more than 64 intervals behind integrates the
	// older reports into its physics but returns only the recent ones.
	// Values satisfy the thing model (types, units, ranges).
	Step(t time.Time) []device.Record
	// Events returns the events raised since the last call (by Step or
	// Command), oldest first, and forgets them.
	Events() []Event
	// Command carries out an action of the thing model with its JSON
	// arguments; it changes the physics from the latest report on. The
	// error is the reason the device reports for a failed command.
	Command(action string, args json.RawMessage) (output map[string]any, err error)
	// Desired applies desired twin state (writable properties; others are
	// ignored) and returns the device's reported state: its writable
	// properties' values after applying.
	Desired(state map[string]any) (reported map[string]any)
	// Next is when the device next reports (lets the runner sleep a PSM
	// meter until then); zero before the first Step.
	Next() time.Time
}

// Event is an event of the thing model that a device raised.
type Event struct {
	Name string
	Time time.Time
	Data map[string]any
}

// Errors a device's Command returns, wrapped with the reason.
var (
	ErrUnknownAction = errors.New("unknown action")
	ErrBadArgs       = errors.New("invalid arguments")
)

// Device returns the physics of the class's device index for the scenario
// seed. The same (class, index, seed) gives the same device. The class must
// come from Parse or Builtin (or have a valid Kind).
func (c *Class) Device(index int, seed int64) Device {
	k := lookupKind(c.Kind)
	if k == nil {
		panic(fmt.Sprintf("scenario: class %q has no known kind (%q)", c.Name, c.Kind))
	}
	cs := derive(uint64(seed), hashString(c.Name))
	s := derive(cs, uint64(index))
	b := base{rng: rng{s}, seed: s, classSeed: cs, interval: c.Interval}
	if b.interval <= 0 {
		b.interval = k.interval
	}
	for j, f := range c.Faults {
		if !c.affected(j, index, uint64(seed)) {
			continue
		}
		w := window{kind: f.Kind, from: f.At, to: math.MaxInt64}
		if f.Duration > 0 {
			w.to = f.At + f.Duration
		}
		b.faults = append(b.faults, w)
	}
	return k.build(b, func(name string) float64 {
		if v, ok := c.Params[name]; ok {
			return v
		}
		p, ok := k.param(name)
		if !ok {
			panic("scenario: kind " + k.name + " has no parameter " + name)
		}
		return p.def
	})
}

// maxBehind is how many intervals behind a report may be and still be
// returned by Step.
const maxBehind = 64

// window is a fault's time, as offsets from the device's start.
type window struct {
	kind     string
	from, to time.Duration
}

// base is what every device has: its random stream, its schedule, its
// faults and the events not yet taken.
type base struct {
	rng       rng
	seed      uint64 // for streams derived per report, which skipping a report must not shift
	classSeed uint64 // for what the class's devices share (storms)
	interval  time.Duration
	t0        time.Time // the first Step; zero before
	last      time.Time // the latest report: the physics' time
	next      time.Time
	faults    []window
	events    []Event
}

// physics is what a kind adds to base.
type physics interface {
	// start sets the initial state at the device's first Step.
	start(t time.Time)
	// advance integrates the physics from b.last to t.
	advance(t time.Time)
	// report appends the records of a report at t; emit false skips the
	// work of building them (a report too old to send).
	report(t time.Time, out []device.Record, emit bool) []device.Record
	// after is the time of the report following one at t.
	after(t time.Time) time.Time
}

// step is Device.Step for the physics p that embeds b.
func (b *base) step(p physics, t time.Time) []device.Record {
	if b.t0.IsZero() {
		b.t0, b.last = t, t
		p.start(t)
		b.next = t.Add(time.Duration(b.rng.float() * float64(b.interval)))
	}
	var out []device.Record
	for !b.next.After(t) {
		at := b.next
		p.advance(at)
		b.last = at
		emit := t.Sub(at) < maxBehind*b.interval
		out = p.report(at, out, emit)
		b.next = p.after(at)
		if !b.next.After(at) { // a physics bug must not hang the runner
			b.next = at.Add(b.interval)
		}
	}
	return out
}

func (b *base) Next() time.Time { return b.next }

func (b *base) Events() []Event {
	ev := b.events
	b.events = nil
	return ev
}

func (b *base) raise(name string, t time.Time, data map[string]any) {
	b.events = append(b.events, Event{Name: name, Time: t, Data: data})
}

// fault reports whether a fault of that kind is active at t.
func (b *base) fault(kind string, t time.Time) bool {
	if len(b.faults) == 0 || b.t0.IsZero() {
		return false
	}
	d := t.Sub(b.t0)
	for _, w := range b.faults {
		if w.kind == kind && d >= w.from && d < w.to {
			return true
		}
	}
	return false
}

// reportRNG is a random stream for the report at t alone, so that what a
// report draws (a vibration window's noise) does not depend on whether
// earlier reports were built.
func (b *base) reportRNG(t time.Time) rng {
	return rng{derive(b.seed, uint64(t.UnixNano()))}
}

// hours is the time of day of t in hours, on t's clock: daily profiles
// follow the location of the times given to Step.
func hours(t time.Time) float64 {
	h, m, s := t.Clock()
	return float64(h) + float64(m)/60 + (float64(s)+float64(t.Nanosecond())/1e9)/3600
}

// decodeArgs decodes an action's JSON arguments into v, refusing unknown
// members.
func decodeArgs(action string, args json.RawMessage, v any) error {
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	if err := json.Unmarshal(args, v); err != nil {
		return fmt.Errorf("%w for %s: %v", ErrBadArgs, action, err)
	}
	return nil
}

// noArgs checks that an action without input got none.
func noArgs(action string, args json.RawMessage) error {
	var m map[string]any
	if err := decodeArgs(action, args, &m); err != nil {
		return err
	}
	if len(m) > 0 {
		return fmt.Errorf("%w for %s: it takes no arguments", ErrBadArgs, action)
	}
	return nil
}

// numberArg is a required number argument within [lo, hi].
func numberArg(action string, args json.RawMessage, name string, lo, hi float64) (float64, error) {
	var m map[string]any
	if err := decodeArgs(action, args, &m); err != nil {
		return 0, err
	}
	for k := range m {
		if k != name {
			return 0, fmt.Errorf("%w for %s: unknown argument %q", ErrBadArgs, action, k)
		}
	}
	v, ok := m[name].(float64)
	switch {
	case m[name] == nil:
		return 0, fmt.Errorf("%w for %s: %s is required", ErrBadArgs, action, name)
	case !ok:
		return 0, fmt.Errorf("%w for %s: %s must be a number", ErrBadArgs, action, name)
	case v < lo || v > hi:
		return 0, fmt.Errorf("%w for %s: %s=%g is not between %g and %g", ErrBadArgs, action, name, v, lo, hi)
	}
	return v, nil
}

func unknownAction(action string) error {
	return fmt.Errorf("%w %q", ErrUnknownAction, action)
}

// round rounds x to the given number of decimals, as a device with that
// resolution reports it.
func round(x float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(x*p) / p
}

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

// approach moves x toward target with time constant tau over dt (the exact
// solution of a first-order lag for a constant target).
func approach(x, target float64, dt, tau time.Duration) float64 {
	if tau <= 0 {
		return target
	}
	return target + (x-target)*math.Exp(-float64(dt)/float64(tau))
}

// number reads a desired value as a number.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

package guard

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// The properties hold whatever the policy (valid or not), proposal and
// history: an allowed action's values (or those waiting for approval) keep
// the bounds, the step from the current value and the rate from the last
// value sent; no window of length Per holds more than Count actions on an
// object or on one of its actuators when every allowed action is recorded;
// actions keep the cooldown; a condition that does not hold refuses; an
// engaged kill switch refuses. The test keeps its own record of what was
// sent, independent of History.

var valueNames = []string{"a", "b", "c"}

// sentRecord is the test's own model of the actions sent.
type sentRecord struct {
	times map[string][]time.Time // by object, and by object+"/"+actuator
	last  map[string]sent        // by object+"/"+actuator+"/"+value
}

func newSentRecord() *sentRecord {
	return &sentRecord{times: map[string][]time.Time{}, last: map[string]sent{}}
}

func (s *sentRecord) record(obj, act string, at time.Time, values map[string]float64) {
	s.times[obj] = append(s.times[obj], at)
	s.times[obj+"/"+act] = append(s.times[obj+"/"+act], at)
	for k, v := range values {
		key := obj + "/" + act + "/" + k
		if prev, ok := s.last[key]; !ok || !at.Before(prev.at) {
			s.last[key] = sent{v: v, at: at}
		}
	}
}

func (s *sentRecord) newest(key string) (time.Time, bool) {
	ts := s.times[key]
	if len(ts) == 0 {
		return time.Time{}, false
	}
	return slices.MaxFunc(ts, time.Time.Compare), true
}

// checkDecision checks the properties of one decision, before it is
// recorded. It returns a description of the first broken one.
func checkDecision(p Policy, prop Proposal, d Decision, rec *sentRecord, kill Kill) error {
	killed := kill.All != "" || hasKey(kill.Loops, prop.Loop) || hasKey(kill.Sites, prop.Site)
	if killed && (d.Allowed || d.NeedsApproval || d.Refusal != RefusalKilled) {
		return fmt.Errorf("kill switch engaged, decision %+v", d)
	}
	if d.Allowed == (d.Refusal != "") || (d.NeedsApproval && d.Allowed) {
		return fmt.Errorf("inconsistent decision %+v", d)
	}
	if !d.Allowed && !d.NeedsApproval {
		if d.Values != nil {
			return fmt.Errorf("refused with values %v", d.Values)
		}
		return nil
	}
	for _, c := range slices.Concat(p.Permissives, p.Interlocks) {
		if r, ok := prop.Conditions[c.Name]; !ok || !r.Holds || r.Err != "" {
			return fmt.Errorf("condition %q %+v does not hold, decision %+v", c.Name, r, d)
		}
	}
	if len(d.Values) != len(prop.Values) {
		return fmt.Errorf("values %v for proposed %v", d.Values, prop.Values)
	}
	for name, pv := range prop.Values {
		v, ok := d.Values[name]
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("value %s: %v (proposed %v)", name, v, pv)
		}
		if !p.Clamp && v != pv {
			return fmt.Errorf("value %s moved from %v to %v without Clamp", name, pv, v)
		}
		if b, ok := p.Bounds[name]; ok {
			if (b.Min != nil && !(v >= *b.Min)) || (b.Max != nil && !(v <= *b.Max)) {
				return fmt.Errorf("value %s = %v outside bounds %v..%v", name, v, deref(b.Min), deref(b.Max))
			}
		}
		if s, ok := p.MaxStep[name]; ok {
			if cur, known := prop.Current[name]; known && !(math.Abs(v-cur) <= s) {
				return fmt.Errorf("value %s = %v: step %v from current %v over %v", name, v, math.Abs(v-cur), cur, s)
			}
		}
		if r, ok := p.MaxRate[name]; ok {
			if last, sentBefore := rec.last[prop.Object+"/"+prop.Actuator+"/"+name]; sentBefore {
				secs := prop.Now.Sub(last.at).Seconds()
				if secs <= 0 && v != last.v {
					return fmt.Errorf("value %s = %v: last sent %v no time ago", name, v, last.v)
				}
				if secs > 0 && !(math.Abs(v-last.v)/secs <= r) {
					return fmt.Errorf("value %s = %v: rate %v from %v over %v", name, v, math.Abs(v-last.v)/secs, last.v, r)
				}
			}
		}
	}
	if rl := p.RateLimit; rl != (RateLimit{}) && (rl.Count <= 0 || rl.Per <= 0) {
		return fmt.Errorf("misconfigured rate limit %+v allowed an action", rl)
	}
	if p.Cooldown > 0 {
		if last, ok := rec.newest(prop.Object + "/" + prop.Actuator); ok && prop.Now.Sub(last) < p.Cooldown {
			return fmt.Errorf("action %s after the previous one, cooldown %s", prop.Now.Sub(last), p.Cooldown)
		}
	}
	return nil
}

// checkWindows checks that no window (t−Per, t] holds more than Count
// recorded actions, per object and per actuator.
func checkWindows(rl RateLimit, rec *sentRecord) error {
	if rl.Count <= 0 || rl.Per <= 0 {
		return nil
	}
	for key, ts := range rec.times {
		for _, end := range ts {
			n := 0
			for _, t := range ts {
				if !t.After(end) && end.Sub(t) < rl.Per {
					n++
				}
			}
			if n > rl.Count {
				return fmt.Errorf("%s: %d actions in the %s up to %s, at most %d", key, n, rl.Per, end, rl.Count)
			}
		}
	}
	return nil
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// number draws a float of varied scale, now and then an awkward one.
func number(r *rand.Rand) float64 {
	switch r.IntN(40) {
	case 0:
		return math.NaN()
	case 1:
		return math.Inf(1 - 2*r.IntN(2))
	case 2:
		return 0
	case 3:
		return (r.Float64() - 0.5) * 1e300
	case 4:
		return (r.Float64() - 0.5) * 1e-9
	}
	return math.Round((r.NormFloat64()*30+50)*1000) / 1000 * []float64{1, 1, 1, 0.1, 1.1}[r.IntN(5)]
}

// positive draws a limit: mostly positive, now and then zero, negative or not a number.
func positive(r *rand.Rand, scale float64) float64 {
	switch r.IntN(30) {
	case 0:
		return math.NaN()
	case 1:
		return -scale
	case 2:
		return 0
	case 3:
		return math.Inf(1)
	}
	return r.Float64()*scale + 1e-3
}

func randomPolicy(r *rand.Rand) Policy {
	p := Policy{Clamp: r.IntN(2) == 0}
	for _, name := range valueNames {
		if r.IntN(3) > 0 {
			if p.Bounds == nil {
				p.Bounds = map[string]Range{}
			}
			var b Range
			if r.IntN(4) > 0 {
				b.Min = f(number(r))
			}
			if r.IntN(4) > 0 {
				b.Max = f(number(r))
			}
			if b.Min != nil && b.Max != nil && *b.Min > *b.Max && r.IntN(5) > 0 {
				*b.Min, *b.Max = *b.Max, *b.Min
			}
			p.Bounds[name] = b
		}
		if r.IntN(3) > 0 {
			if p.MaxStep == nil {
				p.MaxStep = map[string]float64{}
			}
			p.MaxStep[name] = positive(r, 20)
		}
		if r.IntN(3) > 0 {
			if p.MaxRate == nil {
				p.MaxRate = map[string]float64{}
			}
			p.MaxRate[name] = positive(r, 5)
		}
	}
	switch r.IntN(8) {
	case 0: // none
	case 1:
		p.RateLimit = RateLimit{Count: r.IntN(3) - 1, Per: time.Duration(r.IntN(3)-1) * time.Second}
	default:
		p.RateLimit = RateLimit{Count: 1 + r.IntN(6), Per: time.Duration(1+r.IntN(120)) * time.Second}
	}
	if r.IntN(3) == 0 {
		p.Cooldown = time.Duration(r.IntN(30_000)) * time.Millisecond
	}
	for i := range r.IntN(3) {
		p.Interlocks = append(p.Interlocks, Condition{Name: fmt.Sprint("i", i), Expr: "x"})
	}
	for i := range r.IntN(2) {
		p.Permissives = append(p.Permissives, Condition{Name: fmt.Sprint("p", i), Expr: "y"})
	}
	if r.IntN(4) == 0 {
		p.Approval = Approval{Required: 1 + r.IntN(2), Approvers: []string{"ann", "bob", "cy"}, Expires: time.Hour}
	}
	return p
}

func randomProposal(r *rand.Rand, p Policy, now time.Time, objects []string) Proposal {
	obj := objects[r.IntN(len(objects))]
	prop := Proposal{
		Object: obj, Actuator: []string{"set", "desired", "start"}[r.IntN(3)],
		Site: "site-" + obj[len(obj)-1:], Loop: []string{"l1", "l2"}[r.IntN(2)],
		Now: now, Conditions: map[string]ConditionResult{},
	}
	if prop.Actuator != "start" {
		prop.Values, prop.Current = map[string]float64{}, map[string]float64{}
		for _, name := range valueNames {
			if r.IntN(3) > 0 {
				prop.Values[name] = number(r)
			}
			if r.IntN(4) > 0 {
				prop.Current[name] = number(r)
			}
		}
	}
	for _, c := range slices.Concat(p.Interlocks, p.Permissives) {
		switch r.IntN(20) {
		case 0: // not evaluated
		case 1:
			prop.Conditions[c.Name] = ConditionResult{Holds: true, Err: "boom"}
		case 2:
			prop.Conditions[c.Name] = ConditionResult{}
		default:
			prop.Conditions[c.Name] = ConditionResult{Holds: true}
		}
	}
	return prop
}

func randomKill(r *rand.Rand) Kill {
	switch r.IntN(25) {
	case 0:
		return Kill{All: "stop"}
	case 1:
		return Kill{Loops: map[string]string{"l1": "tuning"}}
	case 2:
		return Kill{Sites: map[string]string{"site-1": ""}}
	}
	return Kill{}
}

func TestPropertyGuards(t *testing.T) {
	evaluations, allowed := 0, 0
	for seed := range uint64(60) {
		r := rand.New(rand.NewPCG(seed, 19))
		p := randomPolicy(r)
		h := NewHistory(1 + r.IntN(8))
		rec := newSentRecord()
		objects := []string{"obj-1", "obj-2"}
		now := t0
		for step := range 250 {
			switch r.IntN(10) {
			case 0: // the same instant
			case 1:
				now = now.Add(-time.Duration(r.IntN(5000)) * time.Millisecond)
			default:
				now = now.Add(time.Duration(r.ExpFloat64() * float64(5*time.Second)))
			}
			prop := randomProposal(r, p, now, objects)
			kill := randomKill(r)
			d := Evaluate(p, prop, h, nil, kill)
			evaluations++
			if err := checkDecision(p, prop, d, rec, kill); err != nil {
				t.Fatalf("seed %d step %d: %v\npolicy %+v\nproposal %+v\nresults %+v", seed, step, err, p, prop, d.Results)
			}
			if again := Evaluate(p, prop, h, nil, kill); !reflect.DeepEqual(again, d) {
				t.Fatalf("seed %d step %d: not deterministic:\n%+v\n%+v", seed, step, d, again)
			}
			if d.NeedsApproval {
				// Approved, the same action is allowed with the same values.
				prop.ApprovedBy = []string{"cy", "ann", "bob"}
				approved := Evaluate(p, prop, h, nil, kill)
				if !approved.Allowed || !reflect.DeepEqual(approved.Values, d.Values) {
					t.Fatalf("seed %d step %d: approved %+v, waiting %+v", seed, step, approved, d)
				}
				d = approved
			}
			if d.Allowed {
				allowed++
				h.Record(prop.Object, prop.Actuator, now, d.Values)
				rec.record(prop.Object, prop.Actuator, now, d.Values)
			}
		}
		if err := checkWindows(p.RateLimit, rec); err != nil {
			t.Fatalf("seed %d: %v\npolicy %+v", seed, err, p)
		}
	}
	// The generator must exercise both sides, or the test proves little.
	if allowed < evaluations/10 || allowed > evaluations*9/10 {
		t.Fatalf("%d of %d evaluations allowed", allowed, evaluations)
	}
	t.Logf("%d evaluations, %d allowed", evaluations, allowed)
}

// TestPropertyClamp: with Clamp and valid limits that can be met together,
// every finite proposal is allowed and lands within all of them.
func TestPropertyClamp(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 19))
	rec := newSentRecord()
	for i := range 5000 {
		lo := r.NormFloat64() * 100
		hi := lo + r.Float64()*200
		cur := lo + r.Float64()*(hi-lo)
		last := lo + r.Float64()*(hi-lo)
		step := r.Float64()*50 + 1e-9
		secs := r.Float64()*10 + 0.001
		rate := r.Float64()*10 + 1e-9
		p := Policy{
			Bounds:  map[string]Range{"x": {&lo, &hi}},
			MaxStep: map[string]float64{"x": step},
			MaxRate: map[string]float64{"x": rate},
			Clamp:   true,
		}
		now := t0.Add(time.Duration(i) * time.Minute)
		at := now.Add(-time.Duration(secs * float64(time.Second)))
		h := NewHistory(2)
		h.Record("o", "a", at, map[string]float64{"x": last})
		rec.last = map[string]sent{"o/a/x": {v: last, at: at}}
		prop := Proposal{Object: "o", Actuator: "a", Now: now,
			Values: map[string]float64{"x": r.NormFloat64() * 1000}, Current: map[string]float64{"x": cur}}
		d := Evaluate(p, prop, h, nil, Kill{})
		if err := checkDecision(p, prop, d, rec, Kill{}); err != nil {
			t.Fatalf("case %d: %v\n%+v", i, err, d.Results)
		}
		// The step's and the rate's ranges around points inside the bounds
		// always meet when they overlap each other.
		realSecs := now.Sub(at).Seconds()
		if math.Abs(cur-last) < step+rate*realSecs-1e-6 && !d.Allowed {
			t.Fatalf("case %d: refused although the limits overlap: %+v", i, d.Results)
		}
	}
}

package guard

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

func f(x float64) *float64 { return &x }

// base is a proposal that every empty policy allows.
func base() Proposal {
	return Proposal{
		Object: "demo:cnc-a-001", Actuator: "setFeedRate", Site: "demo:plant-a", Loop: "feed",
		Values:  map[string]float64{"feedRate": 72},
		Current: map[string]float64{"feedRate": 70},
		Now:     t0,
	}
}

func result(t *testing.T, d Decision, guard string) Result {
	t.Helper()
	for _, r := range d.Results {
		if r.Guard == guard {
			return r
		}
	}
	t.Fatalf("no result %q in %+v", guard, d.Results)
	return Result{}
}

func hasResult(d Decision, guard string) bool {
	return slices.ContainsFunc(d.Results, func(r Result) bool { return r.Guard == guard })
}

// check asserts the decision's verdict and, when guard is set, that result's
// outcome and a fragment of its detail.
type want struct {
	allowed  bool
	refusal  string
	guard    string
	outcome  Outcome
	detail   string
	values   map[string]float64
	approval bool
}

func (w want) check(t *testing.T, d Decision) {
	t.Helper()
	if d.Allowed != w.allowed || d.Refusal != w.refusal || d.NeedsApproval != w.approval {
		t.Fatalf("allowed=%v refusal=%q needsApproval=%v, want %v %q %v; results %+v",
			d.Allowed, d.Refusal, d.NeedsApproval, w.allowed, w.refusal, w.approval, d.Results)
	}
	if w.guard != "" {
		r := result(t, d, w.guard)
		if r.Outcome != w.outcome || !strings.Contains(r.Detail, w.detail) {
			t.Fatalf("%s: %s %q, want %s containing %q", w.guard, r.Outcome, r.Detail, w.outcome, w.detail)
		}
	}
	if w.values != nil {
		if len(d.Values) != len(w.values) {
			t.Fatalf("values %v, want %v", d.Values, w.values)
		}
		for k, v := range w.values {
			if got, ok := d.Values[k]; !ok || got != v {
				t.Fatalf("values %v, want %v", d.Values, w.values)
			}
		}
	}
	if !d.Allowed && !d.NeedsApproval && d.Values != nil {
		t.Fatalf("refused decision carries values %v", d.Values)
	}
}

func TestKill(t *testing.T) {
	tests := []struct {
		name     string
		kill     Kill
		bypasses []Bypass
		want     want
	}{
		{"none", Kill{}, nil, want{allowed: true, guard: "kill", outcome: Pass, detail: "no kill switch engaged"}},
		{"all", Kill{All: "storm"}, nil, want{refusal: RefusalKilled, guard: "kill", outcome: Fail, detail: "all loops (storm)"}},
		{"this loop", Kill{Loops: map[string]string{"feed": "tuning"}}, nil, want{refusal: RefusalKilled, guard: "kill", outcome: Fail, detail: `loop "feed" (tuning)`}},
		{"another loop", Kill{Loops: map[string]string{"other": "x"}}, nil, want{allowed: true, guard: "kill", outcome: Pass}},
		{"this site", Kill{Sites: map[string]string{"demo:plant-a": "maintenance"}}, nil, want{refusal: RefusalKilled, guard: "kill", outcome: Fail, detail: `site "demo:plant-a" (maintenance)`}},
		{"another site", Kill{Sites: map[string]string{"demo:plant-b": "x"}}, nil, want{allowed: true}},
		{"engaged without reason", Kill{Loops: map[string]string{"feed": ""}}, nil, want{refusal: RefusalKilled}},
		{"bypass attempted", Kill{All: "storm"},
			[]Bypass{{Guard: "kill", Until: t0.Add(time.Hour), Reason: "please", RequestedBy: "ann", ApprovedBy: []string{"bob"}},
				{Guard: "killed", Until: t0.Add(time.Hour), Reason: "please", RequestedBy: "ann", ApprovedBy: []string{"bob"}}},
			want{refusal: RefusalKilled, guard: "kill", outcome: Fail, detail: "cannot be bypassed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Evaluate(Policy{}, base(), NewHistory(8), tt.bypasses, tt.kill)
			tt.want.check(t, d)
			if d.Results[0].Guard != GuardKill {
				t.Fatalf("first result %q, want kill", d.Results[0].Guard)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	policy := Policy{
		Permissives: []Condition{{Name: "at_speed", Expr: "spindle.rpm > 1000"}},
		Interlocks:  []Condition{{Name: "door", Expr: "door.closed"}},
	}
	in := map[string]any{"spindle.rpm": 1200.0}
	tests := []struct {
		name  string
		conds map[string]ConditionResult
		want  want
	}{
		{"both hold", map[string]ConditionResult{"at_speed": {Holds: true, Inputs: in}, "door": {Holds: true}},
			want{allowed: true, guard: "permissive:at_speed", outcome: Pass, detail: "holds: spindle.rpm > 1000"}},
		{"permissive does not hold", map[string]ConditionResult{"at_speed": {Holds: false, Inputs: in}, "door": {Holds: true}},
			want{refusal: "permissive:at_speed", guard: "permissive:at_speed", outcome: Fail, detail: "does not hold"}},
		{"interlock does not hold", map[string]ConditionResult{"at_speed": {Holds: true}, "door": {}},
			want{refusal: "interlock:door", guard: "interlock:door", outcome: Fail, detail: "does not hold: door.closed"}},
		{"evaluation error is fail-safe", map[string]ConditionResult{"at_speed": {Holds: true}, "door": {Holds: true, Err: "no such key: door"}},
			want{refusal: "interlock:door", guard: "interlock:door", outcome: Fail, detail: "evaluation error (counts as not holding): no such key: door"}},
		{"not evaluated is fail-safe", map[string]ConditionResult{"at_speed": {Holds: true}},
			want{refusal: "interlock:door", guard: "interlock:door", outcome: Fail, detail: "not evaluated"}},
		{"permissive refuses first", nil,
			want{refusal: "permissive:at_speed", guard: "interlock:door", outcome: Fail}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base()
			p.Conditions = tt.conds
			d := Evaluate(policy, p, NewHistory(8), nil, Kill{})
			tt.want.check(t, d)
			if got := result(t, d, "permissive:at_speed").Inputs; tt.conds["at_speed"].Inputs != nil && got["spindle.rpm"] != 1200.0 {
				t.Fatalf("inputs not recorded: %v", got)
			}
		})
	}
}

func TestBounds(t *testing.T) {
	tests := []struct {
		name   string
		r      Range
		clamp  bool
		value  float64
		want   want
		limit  float64
		result float64
	}{
		{"inside", Range{f(0), f(100)}, false, 72, want{allowed: true, guard: "bounds:feedRate", outcome: Pass, detail: "72 meets bounds [0, 100]", values: map[string]float64{"feedRate": 72}}, 100, 72},
		{"at max", Range{f(0), f(72)}, false, 72, want{allowed: true, guard: "bounds:feedRate", outcome: Pass}, 72, 72},
		{"above max", Range{f(0), f(60)}, false, 72, want{refusal: "bounds:feedRate", guard: "bounds:feedRate", outcome: Fail, detail: "72 breaks bounds [0, 60]"}, 60, 72},
		{"below min", Range{f(80), nil}, false, 72, want{refusal: "bounds:feedRate", guard: "bounds:feedRate", outcome: Fail, detail: "bounds [80, +Inf]"}, 80, 72},
		{"above max clamped", Range{f(0), f(60)}, true, 72, want{allowed: true, guard: "bounds:feedRate", outcome: Clamped, detail: "clamped to 60", values: map[string]float64{"feedRate": 60}}, 60, 72},
		{"below min clamped", Range{f(80), nil}, true, 72, want{allowed: true, guard: "bounds:feedRate", outcome: Clamped, values: map[string]float64{"feedRate": 80}}, 80, 72},
		{"open range", Range{}, false, -1e300, want{allowed: true, guard: "bounds:feedRate", outcome: Pass}, 0, -1e300},
		{"empty range refuses", Range{f(10), f(5)}, true, 7, want{refusal: "bounds:feedRate", guard: "bounds:feedRate", outcome: Fail, detail: "are empty (min > max)"}, 0, 0},
		{"NaN bound refuses", Range{f(math.NaN()), nil}, true, 7, want{refusal: "bounds:feedRate", guard: "bounds:feedRate", outcome: Fail, detail: "are not numbers"}, 0, 0},
		{"NaN value refuses", Range{f(0), f(100)}, true, math.NaN(), want{refusal: "bounds:feedRate", guard: "bounds:feedRate", outcome: Fail, detail: "not a finite number"}, 0, 0},
		{"infinite value refuses", Range{f(0), f(100)}, true, math.Inf(1), want{refusal: "bounds:feedRate", guard: "bounds:feedRate", outcome: Fail, detail: "not a finite number"}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base()
			p.Values = map[string]float64{"feedRate": tt.value}
			d := Evaluate(Policy{Bounds: map[string]Range{"feedRate": tt.r}, Clamp: tt.clamp}, p, NewHistory(8), nil, Kill{})
			tt.want.check(t, d)
			r := result(t, d, "bounds:feedRate")
			if r.Limit != tt.limit || r.Value != tt.result {
				t.Fatalf("limit %v value %v, want %v %v", r.Limit, r.Value, tt.limit, tt.result)
			}
		})
	}
}

func TestNonFiniteValueWithoutPolicy(t *testing.T) {
	p := base()
	p.Values = map[string]float64{"feedRate": math.NaN()}
	d := Evaluate(Policy{}, p, nil, []Bypass{{Guard: "bounds", Until: t0.Add(time.Hour), RequestedBy: "ann", ApprovedBy: []string{"bob"}}}, Kill{})
	want{refusal: "bounds:feedRate", guard: "bounds:feedRate", outcome: Fail, detail: "not a finite number"}.check(t, d)
}

func TestMaxStep(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		current map[string]float64
		value   float64
		want    want
	}{
		{"within", Policy{MaxStep: map[string]float64{"feedRate": 5}}, map[string]float64{"feedRate": 70}, 72,
			want{allowed: true, guard: "max_step:feedRate", outcome: Pass, detail: "72 meets max_step 5 from current 70"}},
		{"exactly the step", Policy{MaxStep: map[string]float64{"feedRate": 2}}, map[string]float64{"feedRate": 70}, 72,
			want{allowed: true, guard: "max_step:feedRate", outcome: Pass}},
		{"no current value", Policy{MaxStep: map[string]float64{"feedRate": 1}}, nil, 72,
			want{allowed: true, guard: "max_step:feedRate", outcome: Pass, detail: "no current value"}},
		{"too far", Policy{MaxStep: map[string]float64{"feedRate": 1}}, map[string]float64{"feedRate": 70}, 72,
			want{refusal: "max_step:feedRate", guard: "max_step:feedRate", outcome: Fail, detail: "72 breaks max_step 1 from current 70"}},
		{"too far up, clamped", Policy{MaxStep: map[string]float64{"feedRate": 1}, Clamp: true}, map[string]float64{"feedRate": 70}, 72,
			want{allowed: true, guard: "max_step:feedRate", outcome: Clamped, values: map[string]float64{"feedRate": 71}}},
		{"too far down, clamped", Policy{MaxStep: map[string]float64{"feedRate": 1}, Clamp: true}, map[string]float64{"feedRate": 70}, 60,
			want{allowed: true, guard: "max_step:feedRate", outcome: Clamped, values: map[string]float64{"feedRate": 69}}},
		{"bounds then step", Policy{Bounds: map[string]Range{"feedRate": {Max: f(71.5)}}, MaxStep: map[string]float64{"feedRate": 3}, Clamp: true},
			map[string]float64{"feedRate": 70}, 90,
			want{allowed: true, guard: "bounds:feedRate", outcome: Clamped, values: map[string]float64{"feedRate": 71.5}}},
		{"step and bounds cannot both be met", Policy{Bounds: map[string]Range{"feedRate": {Max: f(60)}}, MaxStep: map[string]float64{"feedRate": 3}, Clamp: true},
			map[string]float64{"feedRate": 70}, 90,
			want{refusal: "bounds:feedRate", guard: "bounds:feedRate", outcome: Fail, detail: "clamped to 67 for max_step:feedRate breaks it"}},
		{"non-finite current refuses", Policy{MaxStep: map[string]float64{"feedRate": 3}, Clamp: true}, map[string]float64{"feedRate": math.Inf(1)}, 72,
			want{refusal: "max_step:feedRate", guard: "max_step:feedRate", outcome: Fail, detail: "current value +Inf"}},
		{"NaN step refuses", Policy{MaxStep: map[string]float64{"feedRate": math.NaN()}, Clamp: true}, map[string]float64{"feedRate": 70}, 70,
			want{refusal: "max_step:feedRate", guard: "max_step:feedRate", outcome: Fail, detail: "not a number"}},
		{"zero step allows only the current value", Policy{MaxStep: map[string]float64{"feedRate": 0}, Clamp: true}, map[string]float64{"feedRate": 70}, 75,
			want{allowed: true, guard: "max_step:feedRate", outcome: Clamped, values: map[string]float64{"feedRate": 70}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base()
			p.Values, p.Current = map[string]float64{"feedRate": tt.value}, tt.current
			tt.want.check(t, Evaluate(tt.policy, p, NewHistory(8), nil, Kill{}))
		})
	}
}

func TestClampRounding(t *testing.T) {
	// 0.1 + 0.2 is 0.30000000000000004, whose distance from 0.1 is more
	// than 0.2: the clamped value must still keep the step.
	p := base()
	p.Values, p.Current = map[string]float64{"x": 5}, map[string]float64{"x": 0.1}
	d := Evaluate(Policy{MaxStep: map[string]float64{"x": 0.2}, Clamp: true}, p, nil, nil, Kill{})
	if !d.Allowed || math.Abs(d.Values["x"]-0.1) > 0.2 {
		t.Fatalf("allowed=%v value %v, step %v", d.Allowed, d.Values["x"], math.Abs(d.Values["x"]-0.1))
	}
}

func TestMaxRate(t *testing.T) {
	h := NewHistory(8)
	h.Record("demo:cnc-a-001", "setFeedRate", t0.Add(-10*time.Second), map[string]float64{"feedRate": 70})
	rate := func(r float64, clamp bool) Policy {
		return Policy{MaxRate: map[string]float64{"feedRate": r}, Clamp: clamp}
	}
	tests := []struct {
		name   string
		policy Policy
		h      *History
		now    time.Time
		value  float64
		want   want
	}{
		{"nothing sent before", rate(0.1, false), NewHistory(8), t0, 99,
			want{allowed: true, guard: "max_rate:feedRate", outcome: Pass, detail: "no value sent before"}},
		{"within", rate(0.5, false), h, t0, 75,
			want{allowed: true, guard: "max_rate:feedRate", outcome: Pass, detail: "75 meets max_rate 0.5/s: last sent 70, 10s ago"}},
		{"too fast", rate(0.1, false), h, t0, 72,
			want{refusal: "max_rate:feedRate", guard: "max_rate:feedRate", outcome: Fail, detail: "72 breaks max_rate 0.1/s"}},
		{"too fast, clamped", rate(0.1, true), h, t0, 72,
			want{allowed: true, guard: "max_rate:feedRate", outcome: Clamped, values: map[string]float64{"feedRate": 71}}},
		{"too fast down, clamped", rate(0.1, true), h, t0, 0,
			want{allowed: true, guard: "max_rate:feedRate", outcome: Clamped, values: map[string]float64{"feedRate": 69}}},
		{"no time passed, same value", rate(1, false), h, t0.Add(-10 * time.Second), 70,
			want{allowed: true, guard: "max_rate:feedRate", outcome: Pass}},
		{"no time passed, another value", rate(1, false), h, t0.Add(-10 * time.Second), 70.5,
			want{refusal: "max_rate:feedRate", guard: "max_rate:feedRate", outcome: Fail, detail: "no time ago"}},
		{"clock before the last send, clamped to it", rate(1, true), h, t0.Add(-20 * time.Second), 75,
			want{allowed: true, guard: "max_rate:feedRate", outcome: Clamped, values: map[string]float64{"feedRate": 70}}},
		{"no history is fail-safe", rate(1, true), nil, t0, 70,
			want{refusal: "max_rate:feedRate", guard: "max_rate:feedRate", outcome: Fail, detail: "no history"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base()
			p.Values, p.Now = map[string]float64{"feedRate": tt.value}, tt.now
			tt.want.check(t, Evaluate(tt.policy, p, tt.h, nil, Kill{}))
		})
	}
}

func TestStepThenRate(t *testing.T) {
	// bounds [0,100], step 10 from 50 → [40,60]; rate 1/s over 5s from 58
	// → [53,63]; 90 goes to 100, then 60, then stays at 60.
	h := NewHistory(8)
	h.Record("demo:cnc-a-001", "setFeedRate", t0.Add(-5*time.Second), map[string]float64{"feedRate": 58})
	policy := Policy{
		Bounds: map[string]Range{"feedRate": {f(0), f(100)}}, MaxStep: map[string]float64{"feedRate": 10},
		MaxRate: map[string]float64{"feedRate": 1}, Clamp: true,
	}
	p := base()
	p.Values, p.Current = map[string]float64{"feedRate": 120}, map[string]float64{"feedRate": 50}
	d := Evaluate(policy, p, h, nil, Kill{})
	want{allowed: true, values: map[string]float64{"feedRate": 60}}.check(t, d)
	for guard, o := range map[string]Outcome{"bounds:feedRate": Clamped, "max_step:feedRate": Clamped, "max_rate:feedRate": Pass} {
		if r := result(t, d, guard); r.Outcome != o {
			t.Fatalf("%s: %s %q, want %s", guard, r.Outcome, r.Detail, o)
		}
	}
	// From 40 the rate's range [53,63] and the step's [40,60]... with the
	// current at 30 the step's [20,40] misses the rate's: refused at step.
	p.Current = map[string]float64{"feedRate": 30}
	d = Evaluate(policy, p, h, nil, Kill{})
	want{refusal: "max_step:feedRate", guard: "max_step:feedRate", outcome: Fail, detail: "for max_rate:feedRate breaks it"}.check(t, d)
}

func TestRateLimit(t *testing.T) {
	const obj, act = "demo:cnc-a-001", "setFeedRate"
	policy := Policy{RateLimit: RateLimit{Count: 2, Per: time.Minute}}
	tests := []struct {
		name   string
		record func(h *History)
		maxPer int
		policy Policy
		want   want
	}{
		{"no actions", func(*History) {}, 8, policy, want{allowed: true, guard: "rate_limit:actuator", outcome: Pass, detail: "0 of at most 2 actions"}},
		{"one action", func(h *History) { h.Record(obj, act, t0.Add(-time.Second), nil) }, 8, policy,
			want{allowed: true, guard: "rate_limit:object", outcome: Pass, detail: "1 of at most 2 actions on object"}},
		{"two on this actuator", func(h *History) {
			h.Record(obj, act, t0.Add(-30*time.Second), nil)
			h.Record(obj, act, t0.Add(-time.Second), nil)
		}, 8, policy, want{refusal: "rate_limit:object", guard: "rate_limit:actuator", outcome: Fail, detail: "2 actions on actuator"}},
		{"two on the object, other actuators", func(h *History) {
			h.Record(obj, "start", t0.Add(-30*time.Second), nil)
			h.Record(obj, "desired", t0.Add(-time.Second), nil)
		}, 8, policy, want{refusal: "rate_limit:object", guard: "rate_limit:actuator", outcome: Pass}},
		{"another object does not count", func(h *History) {
			h.Record("demo:cnc-a-002", act, t0.Add(-30*time.Second), nil)
			h.Record("demo:cnc-a-002", act, t0.Add(-time.Second), nil)
		}, 8, policy, want{allowed: true}},
		{"an action exactly Per ago is outside the window", func(h *History) {
			h.Record(obj, act, t0.Add(-time.Minute), nil)
			h.Record(obj, act, t0.Add(-time.Second), nil)
		}, 8, policy, want{allowed: true, guard: "rate_limit:actuator", outcome: Pass, detail: "1 of at most 2 actions"}},
		{"an action in the future counts", func(h *History) {
			h.Record(obj, act, t0.Add(time.Hour), nil)
			h.Record(obj, act, t0.Add(-time.Second), nil)
		}, 8, policy, want{refusal: "rate_limit:object"}},
		{"history too short to count", func(h *History) {
			h.Record(obj, act, t0.Add(-3*time.Second), nil)
			h.Record(obj, act, t0.Add(-2*time.Second), nil)
		}, 1, Policy{RateLimit: RateLimit{Count: 3, Per: time.Minute}},
			want{refusal: "rate_limit:object", guard: "rate_limit:actuator", outcome: Fail, detail: "keeps only the last 1 actions"}},
		{"history short but old enough", func(h *History) {
			h.Record(obj, act, t0.Add(-3*time.Minute), nil)
			h.Record(obj, act, t0.Add(-2*time.Minute), nil)
		}, 1, Policy{RateLimit: RateLimit{Count: 3, Per: time.Minute}}, want{allowed: true}},
		{"misconfigured", func(*History) {}, 8, Policy{RateLimit: RateLimit{Count: 0, Per: time.Minute}},
			want{refusal: "rate_limit:object", guard: "rate_limit:object", outcome: Fail, detail: "misconfigured"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHistory(tt.maxPer)
			tt.record(h)
			tt.want.check(t, Evaluate(tt.policy, base(), h, nil, Kill{}))
		})
	}
	t.Run("no history", func(t *testing.T) {
		want{refusal: "rate_limit:object", guard: "rate_limit:actuator", outcome: Fail, detail: "no history"}.check(t, Evaluate(policy, base(), nil, nil, Kill{}))
	})
}

func TestCooldown(t *testing.T) {
	const obj, act = "demo:cnc-a-001", "setFeedRate"
	tests := []struct {
		name string
		last *time.Time
		h    bool
		want want
	}{
		{"no previous action", nil, true, want{allowed: true, guard: "cooldown", outcome: Pass, detail: "no previous action"}},
		{"inside the cooldown", ptr(t0.Add(-20 * time.Second)), true, want{refusal: "cooldown", guard: "cooldown", outcome: Fail, detail: "previous action 20s ago, cooldown 30s"}},
		{"exactly the cooldown", ptr(t0.Add(-30 * time.Second)), true, want{allowed: true, guard: "cooldown", outcome: Pass}},
		{"previous action in the future", ptr(t0.Add(time.Hour)), true, want{refusal: "cooldown"}},
		{"no history", nil, false, want{refusal: "cooldown", guard: "cooldown", outcome: Fail, detail: "no history"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h *History
			if tt.h {
				h = NewHistory(4)
				h.Record(obj, "start", t0.Add(-time.Second), nil) // another actuator does not count
				if tt.last != nil {
					h.Record(obj, act, *tt.last, nil)
				}
			}
			tt.want.check(t, Evaluate(Policy{Cooldown: 30 * time.Second}, base(), h, nil, Kill{}))
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestApproval(t *testing.T) {
	two := Approval{Required: 2, Approvers: []string{"ann", "bob", "cy"}, Expires: time.Hour}
	tests := []struct {
		name   string
		policy Policy
		by     []string
		values map[string]float64
		want   want
	}{
		{"automatic", Policy{}, nil, nil, want{allowed: true, guard: "approval", outcome: Pass, detail: "no approval required"}},
		{"waits", Policy{Approval: two}, nil, nil,
			want{approval: true, refusal: "approval", guard: "approval", outcome: Skipped, detail: "waits for 2 of 3 (ann, bob, cy)", values: map[string]float64{"feedRate": 72}}},
		{"waits for anyone with the role", Policy{Approval: Approval{Required: 1, Expires: time.Hour}}, nil, nil,
			want{approval: true, refusal: "approval", guard: "approval", outcome: Skipped, detail: "waits for 1 approvers with the approver role"}},
		{"clamped values wait", Policy{Approval: two, Bounds: map[string]Range{"feedRate": {Max: f(50)}}, Clamp: true}, nil, nil,
			want{approval: true, refusal: "approval", values: map[string]float64{"feedRate": 50}}},
		{"not asked when refused", Policy{Approval: two, Bounds: map[string]Range{"feedRate": {Max: f(50)}}}, nil, nil,
			want{refusal: "bounds:feedRate", guard: "approval", outcome: Skipped, detail: "not requested"}},
		{"approved", Policy{Approval: two}, []string{"bob", "ann"}, nil,
			want{allowed: true, guard: "approval", outcome: Pass, detail: "approved by bob, ann"}},
		{"one name twice is one approver", Policy{Approval: two}, []string{"bob", "bob"}, nil,
			want{approval: true, refusal: "approval"}},
		{"names outside the list do not count", Policy{Approval: two}, []string{"bob", "eve"}, nil,
			want{approval: true, refusal: "approval"}},
		{"approved still needs the other guards", Policy{Approval: two, Bounds: map[string]Range{"feedRate": {Max: f(50)}}}, []string{"bob", "ann"}, nil,
			want{refusal: "bounds:feedRate", guard: "approval", outcome: Pass}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base()
			p.ApprovedBy = tt.by
			tt.want.check(t, Evaluate(tt.policy, p, NewHistory(4), nil, Kill{}))
		})
	}
}

func TestBypass(t *testing.T) {
	policy := Policy{
		Interlocks: []Condition{{Name: "downstream", Expr: "valve.open"}},
		Bounds:     map[string]Range{"feedRate": {Max: f(60)}},
		Clamp:      true,
	}
	ok := Bypass{Guard: "interlock:downstream", Until: t0.Add(time.Hour), Reason: "valve sensor replaced", RequestedBy: "ann", ApprovedBy: []string{"ann", "bob"}}
	with := func(mod func(*Bypass)) []Bypass {
		b := ok
		b.ApprovedBy = slices.Clone(ok.ApprovedBy)
		mod(&b)
		return []Bypass{b}
	}
	tests := []struct {
		name     string
		bypasses []Bypass
		want     want
	}{
		{"in force", with(func(*Bypass) {}),
			want{allowed: true, guard: "interlock:downstream", outcome: Bypassed, detail: "bypassed: valve sensor replaced (requested by ann, approved by ann, bob, until 2025-03-01T09:00:00Z); does not hold"}},
		{"for this loop", with(func(b *Bypass) { b.Loop = "feed" }), want{allowed: true, guard: "interlock:downstream", outcome: Bypassed}},
		{"for this object", with(func(b *Bypass) { b.Object = "demo:cnc-a-001" }), want{allowed: true}},
		{"by kind", with(func(b *Bypass) { b.Guard = "interlock" }), want{allowed: true, guard: "interlock:downstream", outcome: Bypassed}},
		{"another loop", with(func(b *Bypass) { b.Loop = "other" }), want{refusal: "interlock:downstream", guard: "interlock:downstream", outcome: Fail, detail: "does not hold: valve.open"}},
		{"another object", with(func(b *Bypass) { b.Object = "demo:cnc-a-002" }), want{refusal: "interlock:downstream"}},
		{"another guard", with(func(b *Bypass) { b.Guard = "interlock:upstream" }), want{refusal: "interlock:downstream"}},
		{"expired", with(func(b *Bypass) { b.Until = t0 }),
			want{refusal: "interlock:downstream", guard: "interlock:downstream", outcome: Fail, detail: "bypass ignored: it expired at 2025-03-01T08:00:00Z"}},
		{"no end time", with(func(b *Bypass) { b.Until = time.Time{} }),
			want{refusal: "interlock:downstream", guard: "interlock:downstream", outcome: Fail, detail: "bypass ignored: it has no end time"}},
		{"approved only by its requester", with(func(b *Bypass) { b.ApprovedBy = []string{"ann", ""} }),
			want{refusal: "interlock:downstream", guard: "interlock:downstream", outcome: Fail, detail: "bypass ignored: no one but its requester approved it"}},
		{"not approved", with(func(b *Bypass) { b.ApprovedBy = nil }),
			want{refusal: "interlock:downstream", guard: "interlock:downstream", outcome: Fail, detail: "no one but its requester"}},
		{"no requester", with(func(b *Bypass) { b.RequestedBy = "" }),
			want{refusal: "interlock:downstream", guard: "interlock:downstream", outcome: Fail, detail: "bypass ignored: it names no requester"}},
		{"a later bypass in force", append(with(func(b *Bypass) { b.Until = t0 }), ok), want{allowed: true, guard: "interlock:downstream", outcome: Bypassed}},
		{"bounds bypassed: the value is not clamped", append(with(func(*Bypass) {}), Bypass{Guard: "bounds", Until: t0.Add(time.Minute), Reason: "trial", RequestedBy: "cy", ApprovedBy: []string{"bob"}}),
			want{allowed: true, guard: "bounds:feedRate", outcome: Bypassed, detail: "trial", values: map[string]float64{"feedRate": 72}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base()
			p.Conditions = map[string]ConditionResult{"downstream": {Holds: false}}
			tt.want.check(t, Evaluate(policy, p, NewHistory(4), tt.bypasses, Kill{}))
		})
	}
}

func TestResultOrder(t *testing.T) {
	h := NewHistory(8)
	h.Record("demo:cnc-a-001", "setFeedRate", t0.Add(-time.Hour), map[string]float64{"feedRate": 70, "spindle": 1000})
	policy := Policy{
		Bounds:      map[string]Range{"spindle": {Max: f(3000)}, "feedRate": {Max: f(100)}},
		MaxStep:     map[string]float64{"feedRate": 10, "spindle": 500},
		MaxRate:     map[string]float64{"spindle": 100, "feedRate": 1},
		RateLimit:   RateLimit{Count: 5, Per: time.Minute},
		Cooldown:    time.Second,
		Interlocks:  []Condition{{Name: "z", Expr: "true"}, {Name: "a", Expr: "true"}},
		Permissives: []Condition{{Name: "p", Expr: "true"}},
		Approval:    Approval{Required: 1, Expires: time.Hour},
	}
	p := base()
	p.Values = map[string]float64{"spindle": 1200, "feedRate": 72}
	p.Conditions = map[string]ConditionResult{"z": {Holds: true}, "a": {Holds: true}, "p": {Holds: true}}
	d := Evaluate(policy, p, h, nil, Kill{})
	var got []string
	for _, r := range d.Results {
		got = append(got, r.Guard)
	}
	wantOrder := []string{"kill", "permissive:p", "interlock:z", "interlock:a",
		"bounds:feedRate", "bounds:spindle", "max_step:feedRate", "max_step:spindle", "max_rate:feedRate", "max_rate:spindle",
		"rate_limit:object", "rate_limit:actuator", "cooldown", "approval"}
	if !slices.Equal(got, wantOrder) {
		t.Fatalf("order %v\nwant  %v", got, wantOrder)
	}
	if !d.NeedsApproval || d.Allowed {
		t.Fatalf("decision %+v", d)
	}
	// Every check runs after a failure, and the first failure refuses.
	p.Conditions = nil
	p.Values["feedRate"] = 500
	d = Evaluate(policy, p, h, nil, Kill{All: "stop"})
	if d.Refusal != RefusalKilled || len(d.Results) != len(wantOrder) || d.NeedsApproval {
		t.Fatalf("killed decision %+v", d)
	}
	if r := result(t, d, "bounds:feedRate"); r.Outcome != Fail {
		t.Fatalf("bounds after kill: %+v", r)
	}
}

func TestNoValues(t *testing.T) {
	p := base()
	p.Actuator, p.Values, p.Current = "start", nil, nil
	d := Evaluate(Policy{Bounds: map[string]Range{"feedRate": {Max: f(1)}}, MaxStep: map[string]float64{"feedRate": 1}}, p, NewHistory(1), nil, Kill{})
	want{allowed: true}.check(t, d)
	if d.Values != nil || hasResult(d, "bounds:feedRate") {
		t.Fatalf("start action: %+v", d)
	}
}

func TestHistory(t *testing.T) {
	h := NewHistory(3)
	for i, s := range []int{5, 1, 3, 9, 7, 2} {
		h.Record("o", "a", t0.Add(time.Duration(s)*time.Second), map[string]float64{"v": float64(i)})
	}
	s := h.snapshot("o", "a")
	var at []int
	for _, x := range s.actuator.at {
		at = append(at, int(x.Sub(t0)/time.Second))
	}
	if !slices.Equal(at, []int{5, 7, 9}) || !s.actuator.dropped || !s.object.dropped {
		t.Fatalf("kept %v dropped %v", at, s.actuator.dropped)
	}
	// The last value sent is the one sent latest, not the last recorded.
	if l := s.last["v"]; l.v != 3 || !l.at.Equal(t0.Add(9*time.Second)) {
		t.Fatalf("last %+v", l)
	}
	h.Forget("o")
	if s := h.snapshot("o", "a"); len(s.actuator.at) != 0 || s.last != nil {
		t.Fatalf("after Forget: %+v", s)
	}
}

func TestHistoryConcurrent(t *testing.T) {
	h := NewHistory(4)
	policy := Policy{RateLimit: RateLimit{Count: 4, Per: time.Minute}, MaxRate: map[string]float64{"feedRate": 1}, Clamp: true}
	done := make(chan bool)
	for g := range 4 {
		go func() {
			defer func() { done <- true }()
			for i := range 200 {
				p := base()
				p.Now = t0.Add(time.Duration(g*1000+i) * time.Second)
				if d := Evaluate(policy, p, h, nil, Kill{}); d.Allowed {
					h.Record(p.Object, p.Actuator, p.Now, d.Values)
				}
				if i%50 == 0 {
					h.Forget("nobody")
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	if s := h.snapshot("demo:cnc-a-001", "setFeedRate"); len(s.actuator.at) != 4 {
		t.Fatalf("kept %d times, want 4", len(s.actuator.at))
	}
}

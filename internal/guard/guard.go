package guard

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kinds of guard: the part of a Result.Guard before any ":".
const (
	GuardKill       = "kill"
	GuardPermissive = "permissive"
	GuardInterlock  = "interlock"
	GuardBounds     = "bounds"
	GuardMaxStep    = "max_step"
	GuardMaxRate    = "max_rate"
	GuardRateLimit  = "rate_limit"
	GuardCooldown   = "cooldown"
	GuardApproval   = "approval"
)

// RefusalKilled is Decision.Refusal while a kill switch is engaged.
const RefusalKilled = "killed"

// Range bounds a value; a nil Min or Max leaves that side open.
type Range struct {
	Min, Max *float64
}

// RateLimit allows at most Count actions in any window of length Per. Both
// zero turn it off.
type RateLimit struct {
	Count int
	Per   time.Duration
}

// Condition is a named CEL expression. The engine evaluates Expr and passes
// the result in Proposal.Conditions under Name.
type Condition struct {
	Name string
	Expr string
}

// Approval asks for Required distinct approvers (from Approvers, when the
// list is set; otherwise anyone the caller gives the approver role) before an
// action is sent. Required 0 sends without approval. A request not decided
// within Expires expires.
type Approval struct {
	Required  int
	Approvers []string
	Expires   time.Duration
}

// Policy is the guardrails of one loop's actions. Maps are keyed by value
// name (a key of Proposal.Values).
type Policy struct {
	// Bounds per value: the loop's bounds, which the engine intersects
	// with the thing model's minimum and maximum before calling.
	Bounds map[string]Range
	// MaxStep per value: the largest |new − current| in one action.
	MaxStep map[string]float64
	// MaxRate per value: the largest |new − last sent| / elapsed seconds,
	// against the last value sent in the History.
	MaxRate map[string]float64
	// RateLimit holds per object and, separately, per actuator of that
	// object: both must hold.
	RateLimit RateLimit
	// Cooldown is the least time after the previous action on the same
	// object and actuator.
	Cooldown time.Duration
	// Clamp moves a value outside bounds, step or rate to the nearest
	// allowed value (the result says "clamped"); false refuses the action.
	Clamp bool
	// Interlocks must hold, else the action is refused.
	Interlocks []Condition
	// Permissives must hold for the action to start: the same effect as
	// interlocks, recorded under their own name.
	Permissives []Condition
	// Approval, when Required > 0, holds an allowed action for approvers.
	Approval Approval
}

// ConditionResult is the engine's evaluation of one Condition. An evaluation
// error counts as not holding (fail-safe).
type ConditionResult struct {
	Holds  bool
	Err    string
	Inputs map[string]any
}

// Proposal is one action a loop proposes: targets for an actuator of an
// object.
type Proposal struct {
	Object, Actuator string
	// Site is the object's site (its hierarchy root or site ancestor), for
	// the site kill switch.
	Site string
	// Loop is the proposing loop's id.
	Loop string
	// Values are the proposed numeric targets; an action without numbers
	// (start, stop) has none and still passes the other guards.
	Values map[string]float64
	// Current holds the current values (reported twin, latest telemetry);
	// a missing one is unknown and its step check passes with "no current
	// value".
	Current map[string]float64
	// Conditions are the evaluated interlocks and permissives by
	// Condition.Name; a missing one does not hold.
	Conditions map[string]ConditionResult
	// ApprovedBy names the approvers whose votes approved this action (the
	// engine's Tally said "approved"), when the engine evaluates it again
	// before sending it; the approval guard passes when Required distinct
	// allowed names are among them.
	ApprovedBy []string
	// Now is the time of the evaluation.
	Now time.Time
}

// Bypass lets one failing guard pass until Until. It is in force only while
// Now < Until and when at least one of ApprovedBy is not RequestedBy.
type Bypass struct {
	// Guard is a result name ("interlock:downstream", "cooldown") or a kind
	// of guard ("bounds"). The kill switch and approval cannot be bypassed.
	Guard string
	// Loop and Object restrict the bypass; "" matches any.
	Loop, Object string
	Until        time.Time
	Reason       string
	RequestedBy  string
	ApprovedBy   []string
}

// Kill holds the engaged kill switches with their reasons: per loop id, per
// site, and All ("" when not engaged).
type Kill struct {
	Loops map[string]string
	Sites map[string]string
	All   string
}

// Outcome is one check's result.
type Outcome string

// Outcomes of a check.
const (
	Pass     Outcome = "pass"
	Fail     Outcome = "fail"
	Clamped  Outcome = "clamped"
	Bypassed Outcome = "bypassed"
	Skipped  Outcome = "skipped"
)

// Result is the record of one check. Limit and Value are set where they mean
// something (a bound and the value held against it) and are always finite.
type Result struct {
	Guard   string  `json:"guard"`
	Outcome Outcome `json:"outcome"`
	Detail  string  `json:"detail,omitempty"`
	Limit   float64 `json:"limit,omitempty"`
	Value   float64 `json:"value,omitempty"`
	// Inputs are a condition's inputs as the engine evaluated them.
	Inputs map[string]any `json:"inputs,omitempty"`
}

// Decision is the outcome of Evaluate.
type Decision struct {
	// Allowed: every guard passed, clamped or was bypassed, and no
	// approval is outstanding; the engine may send Values now.
	Allowed bool `json:"allowed"`
	// Values are the values to send (clamped ones moved); set when
	// Allowed or NeedsApproval, nil otherwise.
	Values map[string]float64 `json:"values,omitempty"`
	// Results in the fixed order: kill, permissives, interlocks, bounds,
	// max_step, max_rate, rate_limit, cooldown, approval.
	Results []Result `json:"results"`
	// NeedsApproval: every other guard allows the action and it waits
	// for approval (Allowed is false, Refusal is "approval").
	NeedsApproval bool `json:"needs_approval,omitempty"`
	// Refusal, when !Allowed, is the first failing result's Guard,
	// RefusalKilled for the kill switch, or "approval" with NeedsApproval.
	Refusal string `json:"refusal,omitempty"`
}

// Evaluate runs every guard of p on prop, in the fixed order, against the
// actions recorded in h, with the bypasses given (those not in force are
// ignored) and the kill switches. It is deterministic and does no I/O. A nil
// h refuses the guards that need a history (max_rate with a value sent,
// rate_limit, cooldown).
func Evaluate(p Policy, prop Proposal, h *History, bypasses []Bypass, kill Kill) Decision {
	e := evaluator{p: p, prop: prop, bypasses: bypasses}
	if h != nil {
		e.snap = h.snapshot(prop.Object, prop.Actuator)
		e.haveHistory = true
	}
	e.kill(kill)
	for _, c := range p.Permissives {
		e.condition(GuardPermissive, c)
	}
	for _, c := range p.Interlocks {
		e.condition(GuardInterlock, c)
	}
	values := e.values()
	e.rateLimit()
	e.cooldown()

	failed := slices.IndexFunc(e.results, func(r Result) bool { return r.Outcome == Fail })
	pending := e.approval(failed >= 0)

	d := Decision{Results: e.results}
	switch {
	case failed >= 0:
		d.Refusal = e.results[failed].Guard
		if d.Refusal == GuardKill {
			d.Refusal = RefusalKilled
		}
	case pending:
		d.NeedsApproval = true
		d.Refusal = GuardApproval
		d.Values = values
	default:
		d.Allowed = true
		d.Values = values
	}
	return d
}

type evaluator struct {
	p           Policy
	prop        Proposal
	bypasses    []Bypass
	snap        snapshot
	haveHistory bool
	results     []Result
}

func (e *evaluator) add(r Result) {
	r.Limit, r.Value = finite(r.Limit), finite(r.Value)
	e.results = append(e.results, r)
}

// failed records r as failing unless a bypass in force matches it.
func (e *evaluator) failed(r Result) { e.add(e.failing(r)) }

// failing returns r failing, or bypassed if a bypass in force matches it.
func (e *evaluator) failing(r Result) Result {
	b, ignored := e.bypass(r.Guard)
	if b != nil {
		r.Outcome = Bypassed
		r.Detail = fmt.Sprintf("bypassed: %s (requested by %s, approved by %s, until %s); %s",
			b.Reason, b.RequestedBy, strings.Join(b.ApprovedBy, ", "), b.Until.UTC().Format(time.RFC3339), r.Detail)
	} else {
		r.Outcome = Fail
		for _, why := range ignored {
			r.Detail += "; bypass ignored: " + why
		}
	}
	return r
}

// bypass returns the first bypass in force for the result name, or the
// reasons the matching ones are ignored.
func (e *evaluator) bypass(name string) (*Bypass, []string) {
	var ignored []string
	for i := range e.bypasses {
		b := &e.bypasses[i]
		if !b.matches(name, e.prop.Loop, e.prop.Object) {
			continue
		}
		if ok, why := b.Active(e.prop.Now); !ok {
			ignored = append(ignored, why)
			continue
		}
		return b, nil
	}
	return nil, ignored
}

func (b *Bypass) matches(name, loop, object string) bool {
	if b.Guard == "" || (b.Guard != name && b.Guard != kindOf(name)) {
		return false
	}
	return (b.Loop == "" || b.Loop == loop) && (b.Object == "" || b.Object == object)
}

// Active reports whether the bypass is in force at now, and if not, why: it
// has expired, names no requester, or no one but its requester approved it.
func (b Bypass) Active(now time.Time) (bool, string) {
	switch {
	case b.Until.IsZero():
		return false, "it has no end time"
	case !now.Before(b.Until):
		return false, "it expired at " + b.Until.UTC().Format(time.RFC3339)
	case b.RequestedBy == "":
		return false, "it names no requester"
	}
	for _, a := range b.ApprovedBy {
		if a != "" && a != b.RequestedBy {
			return true, ""
		}
	}
	return false, "no one but its requester approved it"
}

func kindOf(name string) string {
	kind, _, _ := strings.Cut(name, ":")
	return kind
}

func (e *evaluator) kill(k Kill) {
	var engaged []string
	if k.All != "" {
		engaged = append(engaged, "all loops ("+k.All+")")
	}
	if why, ok := k.Loops[e.prop.Loop]; ok {
		engaged = append(engaged, fmt.Sprintf("loop %q (%s)", e.prop.Loop, why))
	}
	if why, ok := k.Sites[e.prop.Site]; ok {
		engaged = append(engaged, fmt.Sprintf("site %q (%s)", e.prop.Site, why))
	}
	if len(engaged) == 0 {
		e.add(Result{Guard: GuardKill, Outcome: Pass, Detail: "no kill switch engaged"})
		return
	}
	detail := "kill switch engaged: " + strings.Join(engaged, "; ")
	for i := range e.bypasses {
		if b := &e.bypasses[i]; b.Guard == GuardKill || b.Guard == RefusalKilled {
			detail += "; bypass ignored: the kill switch cannot be bypassed"
			break
		}
	}
	e.add(Result{Guard: GuardKill, Outcome: Fail, Detail: detail})
}

func (e *evaluator) condition(kind string, c Condition) {
	r := Result{Guard: kind + ":" + c.Name}
	res, ok := e.prop.Conditions[c.Name]
	r.Inputs = res.Inputs
	switch {
	case !ok:
		r.Detail = "not evaluated (counts as not holding): " + c.Expr
	case res.Err != "":
		r.Detail = "evaluation error (counts as not holding): " + res.Err + ": " + c.Expr
	case !res.Holds:
		r.Detail = "does not hold: " + c.Expr
	default:
		r.Outcome, r.Detail = Pass, "holds: "+c.Expr
		e.add(r)
		return
	}
	e.failed(r)
}

func (e *evaluator) rateLimit() {
	rl := e.p.RateLimit
	if rl == (RateLimit{}) {
		return
	}
	scopes := []struct {
		name, what string
		tl         timeline
	}{
		{GuardRateLimit + ":object", fmt.Sprintf("object %q", e.prop.Object), e.snap.object},
		{GuardRateLimit + ":actuator", fmt.Sprintf("actuator %q of object %q", e.prop.Actuator, e.prop.Object), e.snap.actuator},
	}
	for _, s := range scopes {
		r := Result{Guard: s.name, Limit: float64(rl.Count)}
		if rl.Count <= 0 || rl.Per <= 0 {
			r.Detail = fmt.Sprintf("rate limit misconfigured: %d per %s", rl.Count, rl.Per)
			e.failed(r)
			continue
		}
		if !e.haveHistory {
			r.Detail = "no history to count actions in"
			e.failed(r)
			continue
		}
		n := 0
		for _, t := range s.tl.at {
			if e.prop.Now.Sub(t) < rl.Per {
				n++
			}
		}
		r.Value = float64(n)
		switch {
		case n >= rl.Count:
			r.Detail = fmt.Sprintf("%d actions on %s in the last %s, at most %d allowed", n, s.what, rl.Per, rl.Count)
		case s.tl.dropped && e.prop.Now.Sub(s.tl.at[0]) < rl.Per:
			r.Detail = fmt.Sprintf("the history keeps only the last %d actions on %s, all within %s: cannot count up to %d", len(s.tl.at), s.what, rl.Per, rl.Count)
		default:
			r.Outcome = Pass
			r.Detail = fmt.Sprintf("%d of at most %d actions on %s in the last %s", n, rl.Count, s.what, rl.Per)
			e.add(r)
			continue
		}
		e.failed(r)
	}
}

func (e *evaluator) cooldown() {
	cd := e.p.Cooldown
	if cd <= 0 {
		return
	}
	r := Result{Guard: GuardCooldown, Limit: cd.Seconds()}
	if !e.haveHistory {
		r.Detail = "no history to find the previous action in"
		e.failed(r)
		return
	}
	at := e.snap.actuator.at
	if len(at) == 0 {
		r.Outcome, r.Detail = Pass, "no previous action"
		e.add(r)
		return
	}
	since := e.prop.Now.Sub(at[len(at)-1])
	r.Value = since.Seconds()
	if since >= cd {
		r.Outcome, r.Detail = Pass, fmt.Sprintf("previous action %s ago, cooldown %s", since, cd)
		e.add(r)
		return
	}
	r.Detail = fmt.Sprintf("previous action %s ago, cooldown %s", since, cd)
	e.failed(r)
}

// approval records the approval guard and reports whether the action waits
// for approval.
func (e *evaluator) approval(refused bool) bool {
	a := e.p.Approval
	r := Result{Guard: GuardApproval, Limit: float64(a.Required)}
	if a.Required <= 0 {
		r.Outcome, r.Detail = Pass, "no approval required"
		e.add(r)
		return false
	}
	var by []string
	for _, name := range e.prop.ApprovedBy {
		if name != "" && !slices.Contains(by, name) && (len(a.Approvers) == 0 || slices.Contains(a.Approvers, name)) {
			by = append(by, name)
		}
	}
	r.Value = float64(len(by))
	if len(by) >= a.Required {
		r.Outcome, r.Detail = Pass, "approved by "+strings.Join(by, ", ")
		e.add(r)
		return false
	}
	r.Outcome, r.Detail = Skipped, a.waitsFor()
	if refused {
		r.Detail += "; not requested: the action is refused"
	}
	e.add(r)
	return !refused
}

func (a Approval) waitsFor() string {
	if len(a.Approvers) == 0 {
		return fmt.Sprintf("waits for %d approvers with the approver role", a.Required)
	}
	return fmt.Sprintf("waits for %d of %d (%s)", a.Required, len(a.Approvers), strings.Join(a.Approvers, ", "))
}

func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}

func isFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func num(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

package loop

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/guard"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// DefaultVerifyWithin is how long an action without act.verify may take
// to be confirmed: the command's result, or the desired state reported.
const DefaultVerifyWithin = 10 * time.Minute

// errorEvery bounds the error records of one loop for one object.
const errorEvery = time.Minute

func (e *Engine) newEvidence(r *running, code string, now time.Time, kind string, feats map[string]float64, vars map[string]any, model *ModelUse) *Evidence {
	known := make(map[string]float64, len(feats))
	for k, v := range feats {
		if !math.IsNaN(v) { // an optional feature without a value: absent
			known[k] = v
		}
	}
	ev := &Evidence{
		Loop: r.info.Key, Version: r.info.Version, Digest: r.info.Digest, Tenant: r.info.Tenant, Object: code,
		At: now.UTC().Truncate(time.Millisecond), Kind: kind, Mode: r.info.Mode, Features: known,
	}
	if d, ok := vars["detector"].(map[string]float64); ok {
		ev.Detector = maps.Clone(d)
		delete(ev.Detector, "input")
	}
	if c, ok := vars["current"].(map[string]float64); ok && len(c) > 0 {
		ev.Current = c
	}
	in := map[string]any{"features": known, "detector": ev.Detector, "current": ev.Current, "now": ev.At, "twin": vars["twin"], "state": vars["state"]}
	if r.c.Def.Decide.Model != nil {
		ev.Model = evidenceModel(model)
		if ev.Model != nil {
			in["model"] = map[string]any{"id": ev.Model.ID, "version": ev.Model.Version, "scores": ev.Model.Scores}
		}
	}
	ev.InputsDigest = digestJSON(in)
	return ev
}

// write stores a new record, or a new state of one, and tells OnEvidence.
//
// What one batch of samples, one tick or one vote decides is written in
// one transaction at its end (flush), so that a decision costs no commit
// of its own and nothing the engine does next waits for one. A new
// record that stays open (an action about to be sent, one awaiting
// approval) is written at once, with the writes that wait: its ID names
// its command and keeps it among the open records, and the evidence of
// an action is durable before the action is sent.
func (e *Engine) write(ctx context.Context, ev *Evidence, actor, auditKind string, data map[string]any) {
	w, err := newEvidenceWrite(ev, actor, auditKind, data)
	if err != nil {
		e.writeFailed(ev, err)
		return
	}
	e.pending = append(e.pending, w)
	// An action about to be sent ("proposed") needs its ID now too.
	if w.insert && (!Final(ev.State) || ev.State == "proposed") {
		e.flush(ctx)
	}
}

// flush writes the pending evidence in one transaction, then keeps the
// open records and tells OnEvidence, in the order of the writes.
func (e *Engine) flush(ctx context.Context) {
	if len(e.pending) == 0 {
		return
	}
	ws := e.pending
	e.pending = e.pending[len(e.pending):]
	if err := e.opts.Store.writeEvidence(ctx, ws); err != nil {
		for i := range ws {
			e.writeFailed(ws[i].ev, err)
		}
		clear(ws)
		return
	}
	for i := range ws {
		ev := ws[i].ev
		e.metrics.decisions.WithLabelValues(ev.Loop, ws[i].state).Inc()
		e.count(ev, ws[i].state)
		if Final(ws[i].state) {
			delete(e.open, ev.ID)
		} else {
			e.open[ev.ID] = ev
		}
		if e.opts.OnEvidence != nil {
			e.opts.OnEvidence(ev)
		}
	}
	clear(ws)
	if cap(e.pending) > 1024 {
		e.pending = nil
	}
}

func (e *Engine) writeFailed(ev *Evidence, err error) {
	e.log.Error("evidence not written", "loop", ev.Loop, "object", ev.Object, "state", ev.State, "err", err)
	e.metrics.errors.WithLabelValues(ev.Loop).Inc()
}

// count adds a record written in state to the loop's stats.
func (e *Engine) count(ev *Evidence, state string) {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	s := e.stats[ev.Loop]
	if s == nil {
		s = &LoopStats{Key: ev.Loop, Outcomes: map[string]int{}}
		e.stats[ev.Loop] = s
	}
	s.Outcomes[state]++
	at := ev.UpdatedAt
	s.LastAt = &at
	s.Last = state + " " + ev.Object
	if state == StateError {
		s.Errors++
	}
}

// fail records a loop's failure to evaluate for an object: counted every
// time, written as evidence at most once a minute per object.
func (e *Engine) fail(ctx context.Context, r *running, code string, t *target, now time.Time, feats map[string]float64, vars map[string]any, err error) {
	e.metrics.errors.WithLabelValues(r.info.Key).Inc()
	t.errs++
	if now.Sub(t.lastErr) < errorEvery {
		return
	}
	t.lastErr = now
	ev := e.newEvidence(r, code, now, KindError, feats, vars, t.model)
	ev.Error = err.Error()
	if t.errs > 1 {
		ev.Error += fmt.Sprintf(" (%d failures since the last record)", t.errs)
	}
	t.errs = 0
	ev.step(now, StateError, ev.Error)
	e.write(ctx, ev, "", "", nil)
}

// site is the kill-switch key of an object's site.
func site(tenant string, path []string) string {
	if len(path) == 0 {
		return ""
	}
	return tenant + ":" + path[0]
}

func (e *Engine) actor(r *running) string { return "loop:" + r.info.Key }

// propose runs a decision's action through the guards.
func (e *Engine) propose(ctx context.Context, r *running, code string, t *target, now time.Time, feats map[string]float64, vars map[string]any) {
	t.lastAct = now
	ev := e.newEvidence(r, code, now, KindAction, feats, vars, t.model)
	ev.step(now, "proposed", "")
	a := r.c.Def.Act
	shadow := r.info.Mode == Shadow
	if a.Alarm != nil {
		e.raise(ctx, r, code, ev, vars, shadow)
	}
	if a.Event != nil {
		e.event(ctx, r, code, ev, vars, shadow)
	}
	if a.Command == "" && len(a.Desired) == 0 {
		if shadow {
			ev.step(now, StateShadow, "recorded only (shadow)")
		} else {
			ev.step(now, StateRecorded, "nothing to send")
		}
		e.write(ctx, ev, "", "", nil)
		return
	}
	vals, numeric, err := e.values(r, vars)
	if err != nil {
		ev.Error = err.Error()
		ev.step(now, StateError, "action not computed: "+err.Error())
		e.write(ctx, ev, "", "", nil)
		e.metrics.errors.WithLabelValues(r.info.Key).Inc()
		return
	}
	ev.Action = &Action{Command: a.Command}
	dec := e.check(ctx, r, code, t, vals, numeric, now, shadow, nil)
	e.apply(ev, vals, dec)
	switch {
	case !dec.Allowed && !dec.NeedsApproval:
		ev.Refusal = dec.Refusal
		if shadow {
			ev.step(now, StateShadow, "would be refused by "+dec.Refusal)
		} else {
			ev.step(now, StateRefused, "refused by "+dec.Refusal+refusalDetail(dec))
		}
	case shadow && dec.NeedsApproval:
		ev.step(now, StateShadow, "would wait for approval")
		r.shadow.Record(code, actuator(a), now, dec.Values)
	case shadow:
		ev.step(now, StateShadow, "would send")
		r.shadow.Record(code, actuator(a), now, dec.Values)
	case dec.NeedsApproval:
		ap := r.c.Policy.Approval
		ev.Approval = &ApprovalState{Required: ap.Required, Approvers: ap.Approvers, Expires: now.Add(ap.Expires).UTC().Truncate(time.Millisecond), Votes: []guard.Vote{}}
		ev.step(now, StateAwaiting, fmt.Sprintf("waits for %d approver(s) until %s", ap.Required, ev.Approval.Expires.Format(time.RFC3339)))
	default:
		e.write(ctx, ev, "", "", nil)
		e.send(ctx, r, ev, now, e.actor(r))
		return
	}
	e.write(ctx, ev, "", "", nil)
}

func refusalDetail(dec guard.Decision) string {
	for _, res := range dec.Results {
		if res.Guard == dec.Refusal && res.Detail != "" {
			return ": " + res.Detail
		}
	}
	return ""
}

func actuator(a Act) string {
	if a.Command != "" {
		return a.Command
	}
	return "desired"
}

// values computes the action's arguments or desired fields.
func (e *Engine) values(r *running, vars map[string]any) (map[string]any, map[string]float64, error) {
	progs := r.c.args
	if len(r.c.desired) > 0 {
		progs = r.c.desired
	}
	vals := make(map[string]any, len(progs))
	numeric := map[string]float64{}
	for _, np := range progs {
		v, err := evalValue(np.prg, vars)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", np.name, err)
		}
		if f, ok := v.(float64); ok && (np.kind == thingmodel.TypeNumber || np.kind == thingmodel.TypeInteger) {
			if np.kind == thingmodel.TypeInteger {
				f = math.Round(f)
			}
			numeric[np.name] = f
			v = f
		}
		vals[np.name] = v
	}
	return vals, numeric, nil
}

// check evaluates the guards for an action now.
func (e *Engine) check(ctx context.Context, r *running, code string, t *target, vals map[string]any, numeric map[string]float64, now time.Time, shadow bool, approvedBy []string) guard.Decision {
	vars, _, ok := e.vars(ctx, r, code, t, now)
	if !ok {
		// A window emptied since the decision: the conditions read what
		// was last known.
		vars = map[string]any{"twin": map[string]any{}, "object": objectVars(t.obj), "now": now, "score": map[string]float64{}, "state": t.on, "current": map[string]float64{}}
		for _, f := range r.c.Features {
			vars[f.Name] = math.NaN()
		}
	}
	vars["values"] = vals
	current := map[string]float64{}
	tw := e.twinOf(ctx, code, t, now)
	for name := range numeric {
		if v, ok := tw.Reported[name].(float64); ok {
			current[name] = v
		} else if src := r.sources[code]; src != nil {
			if v, ok := src.last[name]; ok {
				current[name] = v
			}
		}
	}
	conds := make(map[string]guard.ConditionResult, len(r.c.conds))
	for _, c := range r.c.conds {
		holds, err := evalBool(c.prg, vars)
		res := guard.ConditionResult{Holds: holds}
		if err != nil {
			res.Holds, res.Err = false, err.Error()
		}
		conds[c.name] = res
	}
	pol := r.c.Policy
	hist := e.hist
	if shadow {
		hist = r.shadow
	}
	return guard.Evaluate(pol, guard.Proposal{
		Object: code, Actuator: actuator(r.c.Def.Act), Site: site(t.obj.Tenant, t.obj.Path), Loop: r.info.Key,
		Values: numeric, Current: current, Conditions: conds, Now: now, ApprovedBy: approvedBy,
	}, hist, e.bypasses, e.kill)
}

// apply puts the guards' results and the values they allow on the record.
func (e *Engine) apply(ev *Evidence, vals map[string]any, dec guard.Decision) {
	ev.Guards = dec.Results
	for k, v := range dec.Values {
		vals[k] = v
	}
	if ev.Action.Command != "" {
		ev.Action.Args = vals
	} else {
		ev.Action.Desired = vals
	}
	ev.Action.Values = dec.Values
}

// send issues the action through the command or twin service.
func (e *Engine) send(ctx context.Context, r *running, ev *Evidence, now time.Time, actor string) {
	a := ev.Action
	var detail string
	if a.Command != "" {
		args, _ := json.Marshal(a.Args)
		prefix := "loop-"
		if e.opts.Role == "edge" {
			prefix = "eloop-"
		}
		cmd, _, err := e.opts.Commands.Issue(ctx, actor, command.IssueRequest{Code: ev.Object, Action: a.Command, Args: args, ID: prefix + strconv.FormatInt(ev.ID, 10)})
		if err != nil {
			ev.step(now, StateFailed, "not sent: "+err.Error())
			e.write(ctx, ev, actor, "loop.action_failed", map[string]any{"reason": err.Error()})
			return
		}
		a.CommandID = cmd.ID
		detail = "command " + cmd.ID + " issued"
	} else {
		patch, _ := json.Marshal(a.Desired)
		// Unconditional: the guards ran again just now, on what the device
		// reports; another change of desired state meanwhile is no conflict.
		tw, err := e.opts.Twins.SetDesired(ctx, actor, ev.Object, patch, -1)
		if err != nil {
			ev.step(now, StateFailed, "not sent: "+err.Error())
			e.write(ctx, ev, actor, "loop.action_failed", map[string]any{"reason": err.Error()})
			return
		}
		a.Version = tw.Version
		detail = fmt.Sprintf("desired state version %d set", tw.Version)
	}
	e.hist.Record(ev.Object, actuator(r.c.Def.Act), now, a.Values)
	sent := now.UTC().Truncate(time.Millisecond)
	a.SentAt = &sent
	within := DefaultVerifyWithin
	if v := r.c.Def.Act.Verify; v != nil {
		within = v.Within.D()
	}
	by := sent.Add(within)
	a.VerifyBy = &by
	ev.step(now, StateSent, detail)
	if r.c.verify != nil {
		ev.step(now, StateVerify, fmt.Sprintf("expects %s within %s", r.c.Def.Act.Verify.Expect, within))
	}
	data := map[string]any{"command": a.Command, "command_id": a.CommandID, "values": a.Values, "guards": guardSummary(ev.Guards)}
	if a.Command != "" {
		data["args"] = a.Args
	} else {
		data["desired"] = a.Desired
	}
	e.write(ctx, ev, actor, "loop.action", data)
}

func guardSummary(rs []guard.Result) map[string]string {
	out := make(map[string]string, len(rs))
	for _, r := range rs {
		out[r.Guard] = string(r.Outcome)
	}
	return out
}

// follow moves an open record on: approvals expire, sent actions are
// confirmed or fail.
func (e *Engine) follow(ctx context.Context, ev *Evidence, now time.Time) {
	switch ev.State {
	case StateAwaiting:
		if ev.Approval != nil && !now.Before(ev.Approval.Expires) {
			ev.step(now, StateExpired, fmt.Sprintf("no decision by %d approver(s) in time", ev.Approval.Required))
			e.write(ctx, ev, "system", "loop.approval_expired", nil)
		}
		return
	case StateSent, StateVerify:
	default:
		return
	}
	a := ev.Action
	if a == nil || a.VerifyBy == nil {
		return
	}
	r := e.loops[ev.Loop]
	if a.CommandID != "" {
		cmd, err := e.opts.Commands.Get(ctx, a.CommandID)
		if err == nil && cmd.Status.Final() && cmd.Status != command.Succeeded {
			ev.step(now, StateFailed, fmt.Sprintf("command %s %s %s", cmd.ID, cmd.Status, cmd.Reason))
			e.write(ctx, ev, "", "", nil)
			return
		}
		if err == nil && cmd.Status == command.Succeeded && (r == nil || r.c.verify == nil) {
			ev.step(now, StateDone, "command succeeded")
			e.write(ctx, ev, "", "", nil)
			return
		}
	}
	if r != nil && r.c.verify != nil {
		if t := r.targets[ev.Object]; t != nil {
			if vars, _, ok := e.vars(ctx, r, ev.Object, t, now); ok {
				if holds, err := evalBool(r.c.verify, vars); err == nil && holds {
					ev.step(now, StateDone, fmt.Sprintf("verified after %s: %s", now.Sub(*a.SentAt).Round(time.Millisecond), r.c.Def.Act.Verify.Expect))
					e.write(ctx, ev, "", "", nil)
					return
				}
			}
		}
	} else if a.CommandID == "" {
		tw, err := e.opts.Twins.Get(ctx, ev.Object)
		if err == nil && reportedMatches(tw.Reported, a.Desired) {
			ev.step(now, StateDone, "desired state reported back")
			e.write(ctx, ev, "", "", nil)
			return
		}
	}
	if !now.Before(*a.VerifyBy) {
		ev.step(now, StateFailed, "effect not confirmed within "+a.VerifyBy.Sub(*a.SentAt).String())
		e.write(ctx, ev, "", "", nil)
	}
}

func reportedMatches(reported, desired map[string]any) bool {
	for k, want := range desired {
		got, ok := reported[k]
		if !ok {
			return false
		}
		wf, wok := want.(float64)
		gf, gok := got.(float64)
		if wok && gok {
			if math.Abs(wf-gf) > 1e-9*math.Max(1, math.Abs(wf)) {
				return false
			}
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return false
		}
	}
	return true
}

// cleared records the decision turning off and clears its alarm.
func (e *Engine) cleared(ctx context.Context, r *running, code string, t *target, now time.Time, feats map[string]float64, vars map[string]any) {
	ev := e.newEvidence(r, code, now, KindClear, feats, vars, t.model)
	if a := r.c.Def.Act.Alarm; a != nil && r.info.Mode == Active && e.opts.Alarms != nil {
		al, changed, err := e.opts.Alarms.Clear(ctx, e.actor(r), code, a.Name, now)
		if err == nil && changed {
			ev.Alarm = al.ID
		}
	}
	state := StateRecorded
	if r.info.Mode == Shadow {
		state = StateShadow
	}
	ev.step(now, state, "decision off")
	e.write(ctx, ev, "", "", nil)
}

// raise raises the loop's alarm for the object.
func (e *Engine) raise(ctx context.Context, r *running, code string, ev *Evidence, vars map[string]any, shadow bool) {
	a := r.c.Def.Act.Alarm
	msg := r.c.Def.Title
	if msg == "" {
		msg = r.c.Def.ID
	}
	if r.c.alarmMsg != nil {
		if v, err := evalValue(r.c.alarmMsg, vars); err == nil {
			if s, ok := v.(string); ok {
				msg = s
			}
		}
	}
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	if shadow {
		ev.Alarm = "would raise " + a.Name
		return
	}
	if e.opts.Alarms == nil {
		ev.Alarm = "no alarm service on this node"
		return
	}
	sev, _ := alarm.ParseSeverity(a.Severity)
	data, _ := json.Marshal(map[string]any{"loop": r.info.Key, "version": r.info.Version, "features": ev.Features})
	al, _, err := e.opts.Alarms.Raise(ctx, alarm.RaiseRequest{Source: e.actor(r), Object: code, Name: a.Name, Severity: sev, Message: msg, Data: data, At: ev.At})
	if err != nil {
		ev.Alarm = "not raised: " + err.Error()
		return
	}
	ev.Alarm = al.ID
}

// event records the loop's event for the object through the pipeline.
func (e *Engine) event(ctx context.Context, r *running, code string, ev *Evidence, vars map[string]any, shadow bool) {
	a := r.c.Def.Act.Event
	data := map[string]any{"loop": r.info.Key, "version": r.info.Version}
	for _, np := range r.c.event {
		if v, err := evalValue(np.prg, vars); err == nil {
			data[np.name] = v
		} else {
			data[np.name] = "error: " + err.Error()
		}
	}
	name := "loop." + a.Name
	if shadow || e.opts.Emit == nil {
		ev.Event = name + " (not recorded: " + map[bool]string{true: "shadow", false: "no pipeline"}[shadow] + ")"
		return
	}
	b, _ := json.Marshal(data)
	msg := ingest.Message{Device: code, Tenant: r.info.Tenant, Kind: ingest.Event, Event: name, EventData: b, Received: ev.At.UnixMilli(), Source: "loop"}
	if err := e.opts.Emit(ctx, msg); err != nil {
		ev.Event = name + " (not recorded: " + err.Error() + ")"
		return
	}
	ev.Event = name
}

// Vote records an approver's decision on an action waiting for approval;
// once enough approved, the guards run again and the action is sent if
// they still allow it. approver says whether the caller may approve at
// all (the role); the definition's approver list is checked here.
func (e *Engine) Vote(ctx context.Context, actor string, id int64, approve bool, note string) (*Evidence, error) {
	var out *Evidence
	var verr error
	err := e.do(ctx, func() {
		out, verr = e.vote(ctx, actor, id, approve, note)
	})
	if err != nil {
		return nil, err
	}
	return out, verr
}

func (e *Engine) vote(ctx context.Context, actor string, id int64, approve bool, note string) (*Evidence, error) {
	defer e.flush(ctx)
	ev := e.open[id]
	if ev == nil {
		got, err := e.opts.Store.GetEvidence(ctx, id)
		if err != nil {
			return nil, err
		}
		if got.State != StateAwaiting {
			return got, fmt.Errorf("evidence %d is %s, not waiting for approval: %w", id, got.State, ErrConflict)
		}
		return got, fmt.Errorf("evidence %d waits at %s: %w", id, originOr(got.Origin), ErrConflict)
	}
	if ev.State != StateAwaiting || ev.Approval == nil {
		return ev, fmt.Errorf("evidence %d is %s, not waiting for approval: %w", id, ev.State, ErrConflict)
	}
	if len(note) > 1024 {
		return nil, fmt.Errorf("a note has at most 1024 bytes: %w", ErrInvalid)
	}
	if len(ev.Approval.Approvers) > 0 && !slices.Contains(ev.Approval.Approvers, actor) {
		return ev, fmt.Errorf("%s is not one of this loop's approvers (%s): %w", actor, strings.Join(ev.Approval.Approvers, ", "), ErrConflict)
	}
	for _, v := range ev.Approval.Votes {
		if v.By == actor {
			return ev, fmt.Errorf("%s has already voted on evidence %d: %w", actor, id, ErrConflict)
		}
	}
	now := e.opts.Now()
	ev.Approval.Votes = append(ev.Approval.Votes, guard.Vote{By: actor, Approve: approve, At: now.UTC().Truncate(time.Millisecond), Note: note})
	ap := guard.Approval{Required: ev.Approval.Required, Approvers: ev.Approval.Approvers, Expires: ev.Approval.Expires.Sub(ev.At)}
	state, why := ap.Tally("", ev.At, ev.Approval.Votes, now)
	kind := "loop.vote"
	if approve {
		kind = "loop.approved"
	} else {
		kind = "loop.rejected"
	}
	data := map[string]any{"approve": approve, "note": note, "tally": string(state)}
	switch state {
	case guard.ApprovalState("approved"):
		ev.step(now, StateAwaiting, "approved: "+why)
		r := e.loops[ev.Loop]
		t := (*target)(nil)
		if r != nil {
			t = r.targets[ev.Object]
		}
		if r == nil || t == nil || r.info.Mode != Active {
			ev.step(now, StateRefused, "approved, but the loop no longer runs actively for the object")
			e.write(ctx, ev, actor, kind, data)
			return ev, nil
		}
		vals := ev.Action.Args
		if ev.Action.Command == "" {
			vals = ev.Action.Desired
		}
		var approvers []string
		for _, v := range ev.Approval.Votes {
			if v.Approve {
				approvers = append(approvers, v.By)
			}
		}
		dec := e.check(ctx, r, ev.Object, t, vals, ev.Action.Values, now, false, approvers)
		e.apply(ev, vals, dec)
		if !dec.Allowed {
			ev.Refusal = dec.Refusal
			ev.step(now, StateRefused, "approved, then refused by "+dec.Refusal+refusalDetail(dec))
			e.write(ctx, ev, actor, kind, data)
			return ev, nil
		}
		e.write(ctx, ev, actor, kind, data)
		e.send(ctx, r, ev, now, actor)
	case guard.ApprovalState("rejected"):
		ev.step(now, StateRejected, "rejected by "+actor+noteSuffix(note))
		e.write(ctx, ev, actor, kind, data)
	case guard.ApprovalState("expired"):
		ev.step(now, StateExpired, why)
		e.write(ctx, ev, actor, kind, data)
	default:
		ev.step(now, StateAwaiting, "approved by "+actor+" ("+why+")")
		e.write(ctx, ev, actor, kind, data)
	}
	return ev, nil
}

func originOr(o string) string {
	if o == "" {
		return "this node"
	}
	return "edge " + o
}

func noteSuffix(n string) string {
	if n == "" {
		return ""
	}
	return ": " + n
}

package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Figures are what a node measured of a candidate during its current
// stage: Samples (the candidate's inferences) and the figures measured so
// far, by name (one not measured yet is absent).
type Figures struct {
	Samples int                `json:"samples"`
	Values  map[string]float64 `json:"values,omitempty"`
}

// GateResult is one gate judged.
type GateResult struct {
	Figure string  `json:"figure"`
	Max    float64 `json:"max"`
	Value  float64 `json:"value,omitempty"`
	// Measured is false when the figure had no value yet; Judged when it
	// had and the stage had enough samples.
	Measured bool `json:"measured"`
	Judged   bool `json:"judged"`
	Pass     bool `json:"pass"`
}

// Verdict is what Evaluate decided: To is the next stage ("" to stay),
// Reason why, Results every gate.
type Verdict struct {
	To      string       `json:"to,omitempty"`
	Reason  string       `json:"reason"`
	By      string       `json:"by,omitempty"` // the operator of a forced stage
	Results []GateResult `json:"results,omitempty"`
}

// Next is the stage after s on success.
func Next(s string) string {
	switch s {
	case Shadow:
		return Canary
	case Canary:
		return Active
	}
	return ""
}

// Terminal reports whether a node's stage moves no more by itself.
func Terminal(s string) bool { return s == Active || s == RolledBack }

// Evaluate decides a node's next stage from the plan, the node's stage
// since `since`, and the figures of that stage. A forced stage wins. Then
// a judged gate that fails rolls back; when every judged gate passes and
// the stage had its minimum of samples and time, the node moves on. A
// gate whose figure is not measured (a plan without baseline has no
// disagreement) neither fails nor holds the promotion.
func Evaluate(p *Plan, node, stage string, since time.Time, f Figures, now time.Time) Verdict {
	if fo := p.Forced(node); fo != nil && fo.Stage != stage {
		reason := "forced by " + fo.By
		if fo.Reason != "" {
			reason += ": " + fo.Reason
		}
		return Verdict{To: fo.Stage, Reason: reason, By: fo.By}
	}
	if p.State == Aborted && stage != RolledBack {
		return Verdict{To: RolledBack, Reason: "the rollout was rolled back"}
	}
	if Terminal(stage) || p.State != Running {
		return Verdict{Reason: "stage " + stage + " is final"}
	}
	var v Verdict
	var failed []string
	for _, name := range slices.Sorted(mapsKeys(p.Gates)) {
		g := p.Gates[name]
		r := GateResult{Figure: name, Max: g.Max}
		if val, ok := f.Values[name]; ok {
			r.Measured, r.Value = true, val
			r.Judged = f.Samples >= p.Stages.JudgeAfter
			r.Pass = val <= g.Max
			if r.Judged && !r.Pass {
				failed = append(failed, fmt.Sprintf("%s %.4g above %.4g", name, val, g.Max))
			}
		}
		v.Results = append(v.Results, r)
	}
	if len(failed) > 0 {
		v.To, v.Reason = RolledBack, "gate failed at "+stage+": "+strings.Join(failed, ", ")
		return v
	}
	spec := p.Stages.Shadow
	if stage == Canary {
		spec = p.Stages.Canary
	}
	switch {
	case f.Samples < spec.MinSamples:
		v.Reason = fmt.Sprintf("%d of %d samples", f.Samples, spec.MinSamples)
	case now.Sub(since) < spec.MinDuration.D():
		v.Reason = fmt.Sprintf("%s of %s", now.Sub(since).Truncate(time.Second), spec.MinDuration.D())
	default:
		v.To = Next(stage)
		v.Reason = fmt.Sprintf("gates passed after %d samples and %s in %s", f.Samples, now.Sub(since).Truncate(time.Second), stage)
	}
	return v
}

package mlreg

// Staged scoring: while a rollout (package rollout) stages a candidate
// version of a model at this node, the scorer runs the candidate beside
// the baseline, gives each decision the scores of the version its stage
// says (the baseline in shadow, the candidate for canary objects), and
// measures the candidate's figures for the rollout's gates.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

// Stages tells the scorer what the node runs of a model (a rollout
// Controller's Lookup).
type Stages func(tenant, kind, artifact string) (rollout.Assignment, bool)

// Flagged is told when a rollout's candidate flags a decision's object
// (a threshold on) that the version in effect does not (or where there
// is none): the shadow's would-be alarms, which a node captures for
// operators to label.
type Flagged func(tenant, object, plan, version string, at time.Time, features map[string]float64)

// SetFlagged sets the hook; call it before the first score.
func (s *Scorer) SetFlagged(f Flagged) {
	s.mu.Lock()
	s.flagged = f
	s.mu.Unlock()
}

// SetStages makes ScoreObject follow the node's rollouts; call it before
// the first score.
func (s *Scorer) SetStages(st Stages) {
	s.mu.Lock()
	s.stages = st
	s.mu.Unlock()
}

// ScoreObject scores a decision about object (of site, "tenant:site"):
// with a version named, that version; else the version the node's
// rollouts put in effect (the model's first version when no rollout ever
// staged it here: a later version takes effect only through a rollout),
// and while a rollout stages a candidate for the object's site, both, as
// the Scored's Beside says.
func (s *Scorer) ScoreObject(ctx context.Context, tenant, id, version, object, site string, features map[string]float64) (ml.Scored, error) {
	s.mu.Lock()
	stages := s.stages
	s.mu.Unlock()
	var a rollout.Assignment
	ok := false
	if version == "" && stages != nil {
		a, ok = stages(tenant, rollout.KindModel, id)
	}
	if !ok && version == "" {
		// No rollout ever staged the model here: its first version.
		first, err := s.reg.First(ctx, tenant, id)
		if err != nil {
			return ml.Scored{}, err
		}
		version = first
	}
	if !ok {
		scores, v, err := s.Score(ctx, tenant, id, version, features)
		return ml.Scored{Scores: scores, Version: v}, err
	}
	if a.Plan != nil && !a.Plan.InSites(site) {
		a.Plan = nil // another site's rollout: the version in effect
	}
	if a.Plan == nil {
		if a.None {
			return ml.Scored{}, fmt.Errorf("mlreg: model %s: %w: no version is in effect at this node (no rollout made one active)", id, ErrNotFound)
		}
		scores, v, err := s.Score(ctx, tenant, id, a.Version, features)
		return ml.Scored{Scores: scores, Version: v}, err
	}
	p := a.Plan
	out := ml.Scored{Rollout: p.ID, Stage: a.Stage}
	cand := s.run(ctx, tenant, id, p.Version, features)
	if errors.Is(cand.err, ErrNotFound) && !a.None {
		// The candidate has not reached this node yet (an edge imports it
		// after it takes the plan): the version in effect decides, and the
		// candidate is not measured.
		scores, v, err := s.Score(ctx, tenant, id, a.Version, features)
		return ml.Scored{Scores: scores, Version: v}, err
	}
	var base *run
	if !a.None {
		base = s.run(ctx, tenant, id, a.Version, features)
	}
	s.meter(p.ID).observe(cand, base)
	s.mu.Lock()
	hook := s.flagged
	s.mu.Unlock()
	if hook != nil && cand.err == nil && anyOn(cand.scores, cand.flags) && (base == nil || base.err == nil && !anyOn(base.scores, base.flags)) {
		hook(tenant, object, p.ID, p.Version, time.Now(), features)
	}
	counted, beside, role := base, cand, "candidate"
	if a.Stage == rollout.Canary && p.InCanary(object) || a.None {
		counted, beside, role = cand, base, "baseline"
	}
	if beside != nil {
		out.Beside = &ml.Beside{Version: beside.version, Role: role, Scores: beside.scores}
		if beside.err != nil {
			out.Beside.Error = beside.err.Error()
		}
	}
	if a.None && a.Stage == rollout.Shadow {
		// No baseline: the candidate's scores do not count in shadow.
		out.Beside = &ml.Beside{Version: cand.version, Role: "candidate", Scores: cand.scores}
		if cand.err != nil {
			out.Beside.Error = cand.err.Error()
		}
		return out, fmt.Errorf("mlreg: model %s: version %s is in shadow at this node and no version is in effect", id, p.Version)
	}
	out.Scores, out.Version = counted.scores, counted.version
	return out, counted.err
}

// run is one version's inference for a decision.
type run struct {
	version string
	scores  map[string]float64
	err     error
	took    time.Duration
	versionFacts
}

// versionFacts are what staged scoring reads of a version's meta,
// computed once when its session loads.
type versionFacts struct {
	flags []string // the threshold names, sorted
	score string   // the first score output
	level float64  // a threshold's level on it (1 without one)
}

func factsOf(m ml.Meta) versionFacts {
	f := versionFacts{level: 1}
	for name := range m.Thresholds {
		f.flags = append(f.flags, name)
	}
	slices.Sort(f.flags)
	for _, o := range m.Outputs {
		if o.Kind == ml.OutputScore {
			f.score = o.Name
			break
		}
	}
	for _, name := range f.flags {
		if th := m.Thresholds[name]; th.Output == f.score && th.Above > 0 {
			f.level = th.Above
			break
		}
	}
	return f
}

func (s *Scorer) run(ctx context.Context, tenant, id, version string, features map[string]float64) *run {
	r := &run{version: version}
	var facts *versionFacts
	r.scores, _, facts, r.took, r.err = s.score(ctx, tenant, id, version, features)
	if facts != nil {
		r.versionFacts = *facts
	}
	return r
}

// meterWindow bounds the latency and score samples a plan's meter keeps.
const meterWindow = 500

// minShiftPairs is how many paired scores the score shift needs.
const minShiftPairs = 200

// planMeter holds a candidate's figures since its stage began.
type planMeter struct {
	mu        sync.Mutex
	samples   int
	errors    int
	latencies []float64 // ms, the last meterWindow
	pairs     int
	disagree  int
	cand      []float64 // the candidate's first score, paired
	base      []float64 // the baseline's, on the same inputs
}

func (s *Scorer) meter(plan string) *planMeter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.meters == nil {
		s.meters = map[string]*planMeter{}
	}
	m := s.meters[plan]
	if m == nil {
		m = &planMeter{}
		s.meters[plan] = m
	}
	return m
}

func pushWindow(xs []float64, v float64) []float64 {
	if len(xs) >= meterWindow {
		xs = xs[1:]
	}
	return append(xs, v)
}

func (m *planMeter) observe(cand, base *run) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples++
	if cand.took > 0 { // an inference ran (it may have failed)
		m.latencies = pushWindow(m.latencies, float64(cand.took)/float64(time.Millisecond))
	}
	if cand.err != nil {
		m.errors++
		return
	}
	if base == nil || base.err != nil {
		return
	}
	m.pairs++
	for _, f := range cand.flags {
		if bv, ok := base.scores[f]; ok && bv != cand.scores[f] {
			m.disagree++
			break
		}
	}
	if len(base.flags) > 0 && len(cand.flags) > 0 && !sharesFlag(cand.flags, base.flags) {
		// Flags under other names: compare whether any is on.
		if anyOn(cand.scores, cand.flags) != anyOn(base.scores, base.flags) {
			m.disagree++
		}
	}
	// Each score relative to its own threshold: two versions trained
	// apart score on their own scales.
	cs, bs := cand.scores[cand.score]/cand.level, base.scores[base.score]/base.level
	if cand.score != "" && base.score != "" && !math.IsNaN(cs) && !math.IsNaN(bs) {
		m.cand = pushWindow(m.cand, cs)
		m.base = pushWindow(m.base, bs)
	}
}

func sharesFlag(a, b []string) bool {
	for _, f := range a {
		if slices.Contains(b, f) {
			return true
		}
	}
	return false
}

func anyOn(scores map[string]float64, flags []string) bool {
	for _, f := range flags {
		if scores[f] == 1 {
			return true
		}
	}
	return false
}

// Figures returns a plan's candidate figures since its stage began (a
// rollout.Meter).
func (s *Scorer) Figures(plan string) rollout.Figures {
	m := s.meter(plan)
	m.mu.Lock()
	defer m.mu.Unlock()
	f := rollout.Figures{Samples: m.samples, Values: map[string]float64{}}
	if m.samples > 0 {
		f.Values[rollout.FigureErrorRate] = float64(m.errors) / float64(m.samples)
	}
	if len(m.latencies) > 0 {
		lat := slices.Clone(m.latencies)
		slices.Sort(lat)
		f.Values[rollout.FigureLatencyP99] = lat[min(len(lat)-1, int(math.Ceil(0.99*float64(len(lat))))-1)]
	}
	if m.pairs > 0 {
		f.Values[rollout.FigureDisagreement] = float64(m.disagree) / float64(m.pairs)
	}
	// Below minShiftPairs the index is mostly sampling noise (about
	// (bins − 1) / n per sample).
	if len(m.cand) >= minShiftPairs {
		if psi := ml.SamplePSI(m.base, m.cand); !math.IsNaN(psi) {
			f.Values[rollout.FigureScoreShift] = psi
		}
	}
	return f
}

// Reset starts a plan's figures again (its stage changed).
func (s *Scorer) Reset(plan string) {
	s.mu.Lock()
	delete(s.meters, plan)
	s.mu.Unlock()
}

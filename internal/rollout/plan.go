package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ErrInvalid is wrapped by every refusal of a plan, with the reasons.
var ErrInvalid = errors.New("invalid rollout")

// Artifact kinds. A model version is the first; firmware and other
// artifacts become kinds of the same plans later.
const KindModel = "ml-model"

// Stages of an artifact version at one node (a target), in order.
const (
	// Shadow: the candidate runs beside the baseline; only the baseline's
	// results count.
	Shadow = "shadow"
	// Canary: the candidate's results count for a fraction of the
	// objects, the baseline's for the others.
	Canary = "canary"
	// Active: the candidate's results count everywhere at the node.
	Active = "active"
	// RolledBack: the baseline's results count again.
	RolledBack = "rolled_back"
)

// Plan states.
const (
	Running = "running"
	// Done: every target reached Active.
	Done = "done"
	// Aborted: rolled back (by a gate at a node or by an operator):
	// every target went back to the baseline.
	Aborted = "rolled_back"
)

// Figures the model gates read, each a rate or a measure over the stage
// so far (package mlreg measures them).
const (
	// FigureErrorRate: the candidate's failed inferences / its inferences.
	FigureErrorRate = "error_rate"
	// FigureLatencyP99: the candidate's 99th percentile inference time, ms.
	FigureLatencyP99 = "latency_p99_ms"
	// FigureScoreShift: population stability index of the candidate's
	// first score output against the baseline's on the same inputs, each
	// relative to its threshold (versions trained apart score on their
	// own scales).
	FigureScoreShift = "score_shift"
	// FigureDisagreement: share of the decisions where the candidate's
	// threshold flags differ from the baseline's.
	FigureDisagreement = "disagreement"
	// FigureFalseAlarmRate: share of the candidate's flagged decisions
	// that operators labelled false positives (measured at the hub, from
	// labels).
	FigureFalseAlarmRate = "false_alarm_rate"
)

// DefaultGates are a model plan's gates unless it names its own.
var DefaultGates = map[string]Gate{
	FigureErrorRate:      {Max: 0.01},
	FigureLatencyP99:     {Max: 20},
	FigureScoreShift:     {Max: 0.25},
	FigureDisagreement:   {Max: 0.05},
	FigureFalseAlarmRate: {Max: 0.2},
}

var knownFigures = []string{FigureErrorRate, FigureLatencyP99, FigureScoreShift, FigureDisagreement, FigureFalseAlarmRate}

// Plan stages one artifact version at its targets: shadow, then canary,
// then active, each promotion on passing gates after a minimum of samples
// and time, and a rollback as soon as a judged gate fails.
type Plan struct {
	ID       string `json:"id"`
	Tenant   string `json:"tenant"`
	Kind     string `json:"kind"`
	Artifact string `json:"artifact"`
	// Version is the candidate; Baseline the version it replaces ("": none,
	// and nothing counts until the candidate is canary or active).
	Version  string  `json:"version"`
	Baseline string  `json:"baseline,omitempty"`
	Targets  Targets `json:"targets"`
	// Canary chooses the objects whose results the candidate gives at the
	// canary stage.
	Canary CanarySpec `json:"canary"`
	Stages StageSpecs `json:"stages"`
	// Gates by figure: the figure must stay at or under Max.
	Gates map[string]Gate `json:"gates"`
	// State is Running, Done or Aborted.
	State string `json:"state"`
	// Force, set by an operator (or by the hub after a gate failed at one
	// node), moves every target to its Stage; NodeForce, one target.
	Force     *Force            `json:"force,omitempty"`
	NodeForce map[string]*Force `json:"node_force,omitempty"`
	// Rev grows with every change of the plan.
	Rev       int       `json:"rev"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Targets are the nodes a plan runs at: the hub (for the loops it runs)
// and edges by code, or every edge whose loops use the artifact; Sites
// ("tenant:site", the first segment of an object's place in the
// hierarchy, as the site kill switch names it) narrows it to the objects
// of those sites, at every node that runs them when no node is named.
type Targets struct {
	Hub      bool     `json:"hub,omitempty"`
	Edges    []string `json:"edges,omitempty"`
	AllEdges bool     `json:"all_edges,omitempty"`
	Sites    []string `json:"sites,omitempty"`
}

// CanarySpec picks the canary objects: those listed, and a stable
// Fraction of the others (by a hash of the plan and the object code).
type CanarySpec struct {
	Fraction float64  `json:"fraction"`
	Objects  []string `json:"objects,omitempty"`
}

// StageSpecs say how long shadow and canary last at least, and after how
// many samples a gate is judged.
type StageSpecs struct {
	Shadow StageSpec `json:"shadow"`
	Canary StageSpec `json:"canary"`
	// JudgeAfter: a gate fails a stage only once the stage has this many
	// samples (default 30); a figure not measured yet is not judged.
	JudgeAfter int `json:"judge_after"`
}

// StageSpec is a stage's minimum before promotion.
type StageSpec struct {
	MinSamples  int      `json:"min_samples"`
	MinDuration Duration `json:"min_duration"`
}

// Gate bounds a figure.
type Gate struct {
	Max float64 `json:"max"`
}

// Force is an operator's (or the hub's) decision about the stage.
type Force struct {
	Stage  string    `json:"stage"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Duration is a time.Duration written as a Go duration string.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string ("2m0s").
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("must be a duration such as \"2m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("must be a duration such as \"2m\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// Defaults of a new plan's stages.
const (
	DefaultMinSamples  = 100
	DefaultMinDuration = 10 * time.Minute
	DefaultJudgeAfter  = 30
	DefaultFraction    = 0.1
	MaxTargets         = 1000
	MaxCanaryObjects   = 1000
)

var (
	artifactGrammar = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	versionGrammar  = regexp.MustCompile(`^[1-9][0-9]{0,8}$`)
)

// ParsePlan reads a plan as an operator writes it (JSON, unknown fields
// refused), fills the defaults and validates it. The store sets the id,
// state, revision and times.
func ParsePlan(b []byte) (*Plan, error) {
	var p Plan
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the plan", ErrInvalid)
	}
	p.Defaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Defaults fills what a plan leaves out.
func (p *Plan) Defaults() {
	if p.Kind == "" {
		p.Kind = KindModel
	}
	for _, s := range []*StageSpec{&p.Stages.Shadow, &p.Stages.Canary} {
		if s.MinSamples == 0 {
			s.MinSamples = DefaultMinSamples
		}
		if s.MinDuration == 0 {
			s.MinDuration = Duration(DefaultMinDuration)
		}
	}
	if p.Stages.JudgeAfter == 0 {
		p.Stages.JudgeAfter = DefaultJudgeAfter
	}
	if p.Canary.Fraction == 0 && len(p.Canary.Objects) == 0 {
		p.Canary.Fraction = DefaultFraction
	}
	if p.Gates == nil && p.Kind == KindModel {
		p.Gates = map[string]Gate{}
		for k, g := range DefaultGates {
			p.Gates[k] = g
		}
	}
}

// Validate reports every problem of the plan with its field.
func (p *Plan) Validate() error {
	var probs []string
	add := func(field, format string, a ...any) { probs = append(probs, field+": "+fmt.Sprintf(format, a...)) }
	if p.Kind != KindModel {
		add("kind", "must be %q, got %q", KindModel, p.Kind)
	}
	if !artifactGrammar.MatchString(p.Artifact) {
		add("artifact", "must match %s, got %q", artifactGrammar, p.Artifact)
	}
	if !versionGrammar.MatchString(p.Version) {
		add("version", "must be a version number, got %q", p.Version)
	}
	if p.Baseline != "" && !versionGrammar.MatchString(p.Baseline) {
		add("baseline", "must be a version number or absent, got %q", p.Baseline)
	}
	if p.Baseline != "" && p.Baseline == p.Version {
		add("baseline", "is the candidate version %s", p.Version)
	}
	if !p.Targets.Hub && !p.Targets.AllEdges && len(p.Targets.Edges) == 0 && len(p.Targets.Sites) == 0 {
		add("targets", "name the hub, edges, all_edges or sites")
	}
	if len(p.Targets.Sites) > MaxTargets {
		add("targets.sites", "at most %d, got %d", MaxTargets, len(p.Targets.Sites))
	}
	for i, site := range p.Targets.Sites {
		ns, seg, ok := strings.Cut(site, ":")
		if !ok || ns == "" || seg == "" || strings.ContainsAny(seg, "/: \t\n") || len(site) > 256 {
			add(fmt.Sprintf("targets.sites[%d]", i), "must be tenant:site, got %q", site)
		}
	}
	if len(p.Targets.Edges) > MaxTargets {
		add("targets.edges", "at most %d, got %d", MaxTargets, len(p.Targets.Edges))
	}
	for i, e := range p.Targets.Edges {
		if e == "" || len(e) > 256 || strings.ContainsAny(e, " \t\n") {
			add(fmt.Sprintf("targets.edges[%d]", i), "must be an edge's code, got %q", e)
		}
	}
	if !(p.Canary.Fraction >= 0 && p.Canary.Fraction <= 1) {
		add("canary.fraction", "must be in [0, 1], got %v", p.Canary.Fraction)
	}
	if len(p.Canary.Objects) > MaxCanaryObjects {
		add("canary.objects", "at most %d, got %d", MaxCanaryObjects, len(p.Canary.Objects))
	}
	for name, s := range map[string]StageSpec{"stages.shadow": p.Stages.Shadow, "stages.canary": p.Stages.Canary} {
		if s.MinSamples < 0 || s.MinSamples > 10_000_000 {
			add(name+".min_samples", "must be in [0, 10000000], got %d", s.MinSamples)
		}
		if s.MinDuration.D() > 90*24*time.Hour {
			add(name+".min_duration", "at most 90 days, got %s", s.MinDuration.D())
		}
	}
	if p.Stages.JudgeAfter < 1 || p.Stages.JudgeAfter > 1_000_000 {
		add("stages.judge_after", "must be in [1, 1000000], got %d", p.Stages.JudgeAfter)
	}
	for _, name := range slices.Sorted(mapsKeys(p.Gates)) {
		g := p.Gates[name]
		if !slices.Contains(knownFigures, name) {
			add("gates."+name, "unknown figure (known: %s)", strings.Join(knownFigures, ", "))
		}
		if math.IsNaN(g.Max) || math.IsInf(g.Max, 0) || g.Max < 0 {
			add("gates."+name+".max", "must be a finite number at or above 0, got %v", g.Max)
		}
	}
	if len(probs) > 0 {
		slices.Sort(probs)
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(probs, "; "))
	}
	return nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TargetsNode reports whether the plan runs at node ("hub" or an edge's
// code); uses says whether the node's loops use the artifact (for
// AllEdges).
func (p *Plan) TargetsNode(node string, uses bool) bool {
	t := p.Targets
	if len(t.Sites) > 0 && !t.Hub && !t.AllEdges && len(t.Edges) == 0 {
		return node == HubNode || uses // the sites' objects, wherever they run
	}
	if node == HubNode {
		return t.Hub
	}
	return t.AllEdges && uses || slices.Contains(t.Edges, node)
}

// String says where the targets are, as people read it.
func (t Targets) String() string {
	var parts []string
	if t.Hub {
		parts = append(parts, "the hub")
	}
	if t.AllEdges {
		parts = append(parts, "every edge using it")
	}
	parts = append(parts, t.Edges...)
	if len(t.Sites) > 0 {
		parts = append(parts, "the objects of "+strings.Join(t.Sites, ", "))
	}
	return strings.Join(parts, ", ")
}

// InSites reports whether an object of site ("tenant:site", "" for an
// object outside the hierarchy) is in the plan's scope: every object
// without Sites.
func (p *Plan) InSites(site string) bool {
	return len(p.Targets.Sites) == 0 || slices.Contains(p.Targets.Sites, site)
}

// HubNode names the hub among a plan's nodes.
const HubNode = "hub"

// InCanary reports whether object is one of the plan's canary objects.
func (p *Plan) InCanary(object string) bool {
	if slices.Contains(p.Canary.Objects, object) {
		return true
	}
	if p.Canary.Fraction <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(p.ID + "\x00" + object))
	return float64(h.Sum64()%10000) < p.Canary.Fraction*10000
}

// Forced returns the force that applies at node, the node's own first.
func (p *Plan) Forced(node string) *Force {
	if f := p.NodeForce[node]; f != nil {
		return f
	}
	return p.Force
}

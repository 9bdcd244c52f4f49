package ml

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ErrInvalidMeta is wrapped by every error ParseMeta and Meta.Validate
// return.
var ErrInvalidMeta = errors.New("invalid model meta")

// KindAnomaly is the one model kind for now: a model whose score output
// grows with how unusual the features are.
const KindAnomaly = "anomaly"

// Output kinds.
const (
	// OutputScore is an output of one number.
	OutputScore = "score"
	// OutputClass is an output of one number per class (probabilities or
	// logits); Result.Scores gives the index of the largest.
	OutputClass = "class"
)

// Hard limits of the runtime: a budget above them is refused.
const (
	MaxModelBytesLimit = 64 << 20
	MaxNodesLimit      = 10000
	MaxDeadline        = 10 * time.Second
	MaxInputs          = 1024
	MaxOutputs         = 64
)

// Meta is the model document that travels with the ONNX bytes.
type Meta struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
	Kind    string `json:"kind"`
	// Input is the name of the graph's one input tensor, of shape [1, n]
	// (or [n], or [batch, n] with a dynamic batch) where n is len(Inputs).
	Input string `json:"input"`
	// Inputs are the features in the order of the tensor's last axis,
	// named as a loop names them.
	Inputs  []Feature `json:"inputs"`
	Outputs []Output  `json:"outputs"`
	// Thresholds by name (a name a loop sees next to the scores): a
	// threshold is crossed when its output is above the level.
	Thresholds map[string]Threshold `json:"thresholds,omitempty"`
	Budget     Budget               `json:"budget"`
	Training   Training             `json:"training"`
}

// Feature is one input. Mean and Std are the feature's statistics in the
// training vectors. The runtime passes features raw: normalisation is
// inside the graph (TrainPCA puts it there), and Mean and Std say what it
// is, for people and drift checks; Load runs the model once on the means.
type Feature struct {
	Name string  `json:"name"`
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

// Output is one graph output the runtime reads.
type Output struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
}

// Threshold flags an output above a level.
type Threshold struct {
	Output string  `json:"output"`
	Above  float64 `json:"above"`
}

// Budget bounds what a model may cost an edge node.
type Budget struct {
	MaxModelBytes int      `json:"max_model_bytes"`
	MaxNodes      int      `json:"max_nodes"`
	Deadline      Duration `json:"deadline"`
}

// Training records where the model comes from.
type Training struct {
	Dataset        string             `json:"dataset"`
	DatasetVersion string             `json:"dataset_version"`
	Vectors        int                `json:"vectors"`
	Metrics        map[string]float64 `json:"metrics,omitempty"`
	CreatedAt      time.Time          `json:"created_at"`
	// Method says how it was trained ("pca" for TrainPCA), free text.
	Method string `json:"method,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("20ms").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("must be a duration such as \"20ms\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("must be a duration such as \"20ms\": %q", s)
	}
	*d = Duration(v)
	return nil
}

var (
	idGrammar   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	nameGrammar = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
)

// ParseMeta reads a model document (JSON; unknown fields refused) and
// validates it.
func ParseMeta(b []byte) (Meta, error) {
	var m Meta
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Meta{}, fmt.Errorf("%w: %w", ErrInvalidMeta, err)
	}
	if dec.More() {
		return Meta{}, fmt.Errorf("%w: data after the document", ErrInvalidMeta)
	}
	if err := m.Validate(); err != nil {
		return Meta{}, err
	}
	return m, nil
}

// Validate reports every problem of the document, each with the field it
// is in.
func (m *Meta) Validate() error {
	var p []string
	add := func(field, format string, a ...any) { p = append(p, field+": "+fmt.Sprintf(format, a...)) }
	if !idGrammar.MatchString(m.ID) {
		add("id", "must match %s, got %q", idGrammar, m.ID)
	}
	if m.Version < 1 {
		add("version", "must be 1 or more, got %d", m.Version)
	}
	if m.Kind != KindAnomaly {
		add("kind", "must be %q, got %q", KindAnomaly, m.Kind)
	}
	if !nameGrammar.MatchString(m.Input) {
		add("input", "must name the graph input tensor (%s), got %q", nameGrammar, m.Input)
	}
	names := map[string]string{}
	if len(m.Inputs) == 0 || len(m.Inputs) > MaxInputs {
		add("inputs", "must have 1 to %d features, got %d", MaxInputs, len(m.Inputs))
	}
	for i, f := range m.Inputs {
		path := fmt.Sprintf("inputs[%d]", i)
		if !nameGrammar.MatchString(f.Name) {
			add(path+".name", "must match %s, got %q", nameGrammar, f.Name)
		} else if prev, dup := names[f.Name]; dup {
			add(path+".name", "%q already names %s", f.Name, prev)
		} else {
			names[f.Name] = path
		}
		if !finite(f.Mean) {
			add(path+".mean", "must be a finite number")
		}
		if !finite(f.Std) || f.Std <= 0 {
			add(path+".std", "must be a finite number above 0, got %v", f.Std)
		}
	}
	outs := map[string]string{} // name → kind
	scores := 0
	if len(m.Outputs) == 0 || len(m.Outputs) > MaxOutputs {
		add("outputs", "must have 1 to %d outputs, got %d", MaxOutputs, len(m.Outputs))
	}
	for i, o := range m.Outputs {
		path := fmt.Sprintf("outputs[%d]", i)
		if !nameGrammar.MatchString(o.Name) {
			add(path+".name", "must match %s, got %q", nameGrammar, o.Name)
		} else if _, dup := outs[o.Name]; dup {
			add(path+".name", "%q names two outputs", o.Name)
		} else {
			outs[o.Name] = o.Kind
		}
		switch o.Kind {
		case OutputScore:
			scores++
		case OutputClass:
		default:
			add(path+".kind", "must be %q or %q, got %q", OutputScore, OutputClass, o.Kind)
		}
	}
	if m.Kind == KindAnomaly && len(m.Outputs) > 0 && scores == 0 {
		add("outputs", "an anomaly model needs a %q output", OutputScore)
	}
	for _, name := range sortedKeys(m.Thresholds) {
		t := m.Thresholds[name]
		path := "thresholds." + name
		if !nameGrammar.MatchString(name) {
			add(path, "name must match %s", nameGrammar)
		}
		if _, clash := outs[name]; clash {
			add(path, "name clashes with the output %q (both are keys of the scores)", name)
		}
		if kind, ok := outs[t.Output]; !ok {
			add(path+".output", "must name an output, got %q", t.Output)
		} else if kind != OutputScore {
			add(path+".output", "must name a %q output, %q is a %q output", OutputScore, t.Output, kind)
		}
		if !finite(t.Above) {
			add(path+".above", "must be a finite number")
		}
	}
	b := m.Budget
	if b.MaxModelBytes <= 0 || b.MaxModelBytes > MaxModelBytesLimit {
		add("budget.max_model_bytes", "must be 1 to %d, got %d", MaxModelBytesLimit, b.MaxModelBytes)
	}
	if b.MaxNodes <= 0 || b.MaxNodes > MaxNodesLimit {
		add("budget.max_nodes", "must be 1 to %d, got %d", MaxNodesLimit, b.MaxNodes)
	}
	if b.Deadline <= 0 || b.Deadline.D() > MaxDeadline {
		add("budget.deadline", "must be above 0 and at most %s, got %s", MaxDeadline, b.Deadline.D())
	}
	t := m.Training
	if t.Dataset == "" {
		add("training.dataset", "must name the dataset")
	}
	if t.DatasetVersion == "" {
		add("training.dataset_version", "must give the dataset's version")
	}
	if t.Vectors < 1 {
		add("training.vectors", "must be 1 or more, got %d", t.Vectors)
	}
	for _, k := range sortedKeys(t.Metrics) {
		if !finite(t.Metrics[k]) {
			add("training.metrics."+k, "must be a finite number")
		}
	}
	if t.CreatedAt.IsZero() {
		add("training.created_at", "must be set (RFC 3339)")
	}
	if len(p) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidMeta, strings.Join(p, "; "))
	}
	return nil
}

// Clone returns a copy of m that shares no slice or map with it.
func (m Meta) Clone() Meta {
	m.Inputs = slices.Clone(m.Inputs)
	m.Outputs = slices.Clone(m.Outputs)
	m.Thresholds = maps.Clone(m.Thresholds)
	m.Training.Metrics = maps.Clone(m.Training.Metrics)
	return m
}

// FeatureNames returns the input names in order.
func (m *Meta) FeatureNames() []string {
	out := make([]string, len(m.Inputs))
	for i, f := range m.Inputs {
		out[i] = f.Name
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

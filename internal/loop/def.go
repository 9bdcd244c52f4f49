package loop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Limits of a definition.
const (
	MaxDefinitionSize = 64 << 10 // bytes of YAML or JSON
	MaxFeatures       = 32
	MaxConditions     = 16 // interlocks + permissives
	MaxValues         = 16 // command arguments or desired fields
	MaxExpressionLen  = 2048
	MaxModelInputs    = 256 // entries of decide.model.features
	// MaxCost bounds the estimated worst-case cost of each expression (CEL's
	// cost units: about one per operation); the same figure limits it at
	// run time.
	MaxCost = 10_000
	// DefaultMemoryBudget is what the feature windows of one loop may hold
	// for all its objects, estimated from the model's sampling hints.
	DefaultMemoryBudget = 64 << 20
	bytesPerSample      = 16
)

// Mode says whether a loop acts.
type Mode string

// Modes.
const (
	// Active loops act: actions go through the guards to the devices.
	Active Mode = "active"
	// Shadow loops decide and record what they would have done, and act on
	// nothing.
	Shadow Mode = "shadow"
	// Disabled loops neither decide nor act.
	Disabled Mode = "disabled"
)

// Placement says where a loop runs.
type Placement string

// Placements.
const (
	// Auto runs a loop at an edge for the objects behind that edge (when
	// their related objects are behind it too), and at the hub for the rest.
	Auto Placement = "auto"
	// Edge runs it only at edges, for objects behind them.
	Edge Placement = "edge"
	// Hub runs it only at the hub, for every object it selects.
	Hub Placement = "hub"
)

// Definition is one version of a loop, as an author writes it (YAML or
// JSON, the same fields). Version, Tenant and Created are set by the store.
type Definition struct {
	ID          string             `json:"id"`
	Tenant      string             `json:"tenant,omitempty"`
	Version     int                `json:"version,omitempty"`
	Title       string             `json:"title,omitempty"`
	Description string             `json:"description,omitempty"`
	Mode        Mode               `json:"mode,omitempty"`
	Placement   Placement          `json:"placement,omitempty"`
	On          Selector           `json:"on"`
	Perceive    map[string]Feature `json:"perceive"`
	Decide      Decide             `json:"decide"`
	Act         Act                `json:"act"`
	Guard       Guard              `json:"guard,omitempty"`
}

// Selector picks the objects a loop runs for: all of its conditions hold.
type Selector struct {
	// Model is the thing model's id ("demo:cnc-spindle"); every version.
	Model string `json:"model"`
	// Tags must all be on the object with these values.
	Tags map[string]string `json:"tags,omitempty"`
	// Under is a hierarchy prefix ("plant-1/hall-2").
	Under string `json:"under,omitempty"`
	// Objects, when set, lists the objects by code.
	Objects []string `json:"objects,omitempty"`
}

// Feature is one windowed feature of a property, or of the band energy
// of raw windows a device returns for a capture action.
type Feature struct {
	Property string `json:"property,omitempty"`
	// Capture names an action whose result carries a raw window
	// ({"window", "samples", "sampleRate", "scale"}: the cnc model's
	// captureRaw); each result the object returns, whoever asked for it,
	// gives one sample: the RMS of the window's energy between Band[0] and
	// Band[1] Hz (an FFT). Not with Property.
	Capture string    `json:"capture,omitempty"`
	Band    []float64 `json:"band,omitempty"`
	// Fn is the function over the window: mean, min, max, sum, count, last,
	// stddev, rms, peak, crest, kurtosis, rate (package feature).
	Fn     string `json:"fn"`
	Window Window `json:"window,omitempty"`
	// Of, when set, computes the feature for each related object and
	// combines their values: the join of a line's devices.
	Of *Related `json:"of,omitempty"`
	// Optional lets the loop decide before the feature has a value: it is
	// NaN then (every comparison with it is false; math.isNaN tests it).
	// A loop waits for its other features.
	Optional bool `json:"optional,omitempty"`
}

// Window is a feature's window. A plain duration ("30s") is a sliding time
// window.
type Window struct {
	Kind     string   `json:"kind,omitempty"` // sliding (default) or tumbling
	Duration Duration `json:"duration,omitempty"`
	Count    int      `json:"count,omitempty"`
	Lateness Duration `json:"lateness,omitempty"`
}

// Related selects objects related to the loop's object in the hierarchy.
type Related struct {
	// Relation: siblings (same hierarchy path; the object itself
	// excluded), or children (directly under the object's own path
	// extended by its code's local id).
	Relation string            `json:"relation"`
	Model    string            `json:"model,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
	// Across combines the related objects' values: max, min, mean, sum or
	// count (of those with a value).
	Across string `json:"across"`
}

// Decide turns features into a decision that is on or off.
type Decide struct {
	// When is a CEL condition that turns the decision on.
	When string `json:"when"`
	// Clear, when set, is the condition that turns it off again (a
	// deadband: "vib < 0.8" against "vib > 1.0"); default: When is false.
	Clear string `json:"clear,omitempty"`
	// Detector feeds one feature to a streaming detector whose output CEL
	// sees as detector.score, detector.alarm.
	Detector *Detector `json:"detector,omitempty"`
	// OnDelay: the condition must hold this long before the decision turns
	// on; OffDelay: be false this long before it turns off.
	OnDelay  Duration `json:"on_delay,omitempty"`
	OffDelay Duration `json:"off_delay,omitempty"`
	// Repeat, when set, proposes the action again every Repeat while the
	// decision stays on (the guards still apply); default: only when it
	// turns on.
	Repeat Duration `json:"repeat,omitempty"`
	// Model, when set, scores the loop's features with a model for each
	// decision: CEL sees its outputs and thresholds as score.<name>.
	Model *ModelRef `json:"model,omitempty"`
}

// ModelRef names the model that fills a decision's score map, and what
// it is fed.
type ModelRef struct {
	// ID is the model's id in the model registry.
	ID string `json:"id"`
	// Version pins a version (1 or more); 0 or absent: the newest
	// registered, looked up at each decision.
	Version int `json:"version,omitempty"`
	// Features maps each model input to the loop feature it takes
	// ({modelInput: loopFeature}); the model is then given exactly these.
	// Absent: it is given every feature of the loop by its own name and
	// takes its inputs from them by name.
	Features map[string]string `json:"features,omitempty"`
}

// Detector is a streaming detector over one feature.
type Detector struct {
	Kind  string `json:"kind"` // ewma or cusum
	Input string `json:"input"`
	// EWMA: Alpha, Threshold (|z| above it is an alarm), Warmup samples.
	Alpha     float64 `json:"alpha,omitempty"`
	Threshold float64 `json:"threshold,omitempty"`
	Warmup    int     `json:"warmup,omitempty"`
	// CUSUM: Target and Sigma (learned over Warmup when zero), slack K and
	// decision interval H, in sigmas.
	Target float64 `json:"target,omitempty"`
	Sigma  float64 `json:"sigma,omitempty"`
	K      float64 `json:"k,omitempty"`
	H      float64 `json:"h,omitempty"`
}

// Act is what a decision does when it turns on (and again every Repeat).
// At least one of Command, Desired, Alarm, Event.
type Act struct {
	// Command names an action of the object's model; Args gives each
	// argument as a CEL expression.
	Command string            `json:"command,omitempty"`
	Args    map[string]string `json:"args,omitempty"`
	// Desired changes the object's desired state: each field a CEL
	// expression.
	Desired map[string]string `json:"desired,omitempty"`
	// Alarm is raised while the decision is on and cleared when it turns
	// off.
	Alarm *AlarmAct `json:"alarm,omitempty"`
	// Event is recorded for the object when the decision turns on.
	Event *EventAct `json:"event,omitempty"`
	// Verify checks the effect after the action was sent.
	Verify *Verify `json:"verify,omitempty"`
}

// AlarmAct is an alarm a loop raises.
type AlarmAct struct {
	Name     string `json:"name"`
	Severity string `json:"severity"`
	// Message is a CEL expression giving a string.
	Message string `json:"message,omitempty"`
}

// EventAct is an event a loop records for its object: a work order, say.
type EventAct struct {
	Name string            `json:"name"`
	Data map[string]string `json:"data,omitempty"` // CEL per field
}

// Verify is the read-back check of an action: Expect (CEL over the
// features, twin and time) must hold within Within after the action was
// sent. Without Expect, a command must succeed and a desired change must
// be reported back.
type Verify struct {
	Expect string   `json:"expect,omitempty"`
	Within Duration `json:"within"`
}

// Guard holds the guardrails checked before every action.
type Guard struct {
	Bounds    map[string]Bound   `json:"bounds,omitempty"`
	MaxStep   map[string]float64 `json:"max_step,omitempty"`
	MaxRate   map[string]float64 `json:"max_rate,omitempty"` // per second
	RateLimit *RateLimit         `json:"rate_limit,omitempty"`
	Cooldown  Duration           `json:"cooldown,omitempty"`
	// Clamp moves a value outside the bounds, step or rate to the nearest
	// allowed one instead of refusing the action.
	Clamp       bool              `json:"clamp,omitempty"`
	Interlocks  map[string]string `json:"interlocks,omitempty"`
	Permissives map[string]string `json:"permissives,omitempty"`
	Approval    *Approval         `json:"approval,omitempty"`
}

// Bound is a range; either end may be left open. YAML and JSON also take
// [min, max].
type Bound struct {
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
}

// RateLimit allows Count actions per Per, per object and per actuator.
type RateLimit struct {
	Count int      `json:"count"`
	Per   Duration `json:"per"`
}

// Approval asks people to approve each action: Required distinct
// approvers (of Approvers, when listed; else any token with the operator
// role) within Expires.
type Approval struct {
	Required  int      `json:"required"`
	Approvers []string `json:"approvers,omitempty"`
	Expires   Duration `json:"expires,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var f float64
		if json.Unmarshal(b, &f) != nil {
			return errors.New("must be a duration such as \"30s\"")
		}
		*d = Duration(f * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("must be a duration such as \"30s\": %q", s)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalJSON takes a window as a duration string or as an object.
func (w *Window) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &w.Duration)
	}
	type plain Window
	return json.Unmarshal(b, (*plain)(w))
}

// UnmarshalJSON takes a bound as [min, max] (null for an open end) or as
// an object.
func (b *Bound) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '[' {
		var v []*float64
		if err := json.Unmarshal(data, &v); err != nil || len(v) != 2 {
			return errors.New("must be [min, max]")
		}
		b.Min, b.Max = v[0], v[1]
		return nil
	}
	type plain Bound
	return json.Unmarshal(data, (*plain)(b))
}

// ErrInvalid is wrapped by every refusal of a definition.
var ErrInvalid = errors.New("invalid loop definition")

// Problems is every problem of a definition, each with its path.
type Problems []thingmodel.Problem

func (p Problems) Error() string {
	s := make([]string, len(p))
	for i, q := range p {
		s[i] = q.String()
	}
	return "invalid loop definition: " + strings.Join(s, "; ")
}

// Unwrap returns ErrInvalid.
func (p Problems) Unwrap() error { return ErrInvalid }

type problems struct{ list Problems }

func (p *problems) add(path, format string, args ...any) {
	p.list = append(p.list, thingmodel.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	sort.SliceStable(p.list, func(i, j int) bool { return p.list[i].Path < p.list[j].Path })
	return p.list
}

// Parse reads a definition from YAML or JSON. Unknown fields and values of
// the wrong type are refused, every one with its path; the meaning is
// checked by Compile, which needs the thing model.
func Parse(data []byte) (*Definition, error) {
	var p problems
	if len(data) > MaxDefinitionSize {
		p.add("$", "the definition is %d bytes, more than %d", len(data), MaxDefinitionSize)
		return nil, p.err()
	}
	var tree any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		p.add("$", "not valid YAML or JSON: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, p.err()
	}
	tree, err := jsonable(tree, 0)
	if err != nil {
		p.add("$", "%v", err)
		return nil, p.err()
	}
	if _, ok := tree.(map[string]any); !ok {
		p.add("$", "must be a mapping of fields")
		return nil, p.err()
	}
	shape(&p, "$", tree, reflect.TypeFor[Definition]())
	if err := p.err(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(tree)
	if err != nil {
		p.add("$", "%v", err)
		return nil, p.err()
	}
	var d Definition
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		p.add("$", "%v", err)
		return nil, p.err()
	}
	return &d, nil
}

// jsonable turns what YAML decodes into what JSON encodes: maps with
// string keys only, bounded depth.
func jsonable(v any, depth int) (any, error) {
	if depth > 16 {
		return nil, errors.New("nested too deeply")
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			j, err := jsonable(e, depth+1)
			if err != nil {
				return nil, err
			}
			x[k] = j
		}
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("key %v is not a string", k)
			}
			j, err := jsonable(e, depth+1)
			if err != nil {
				return nil, err
			}
			m[ks] = j
		}
		return m, nil
	case []any:
		for i, e := range x {
			j, err := jsonable(e, depth+1)
			if err != nil {
				return nil, err
			}
			x[i] = j
		}
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, errors.New("numbers must be finite")
		}
		return x, nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	case nil, string, bool:
		return x, nil
	}
	return nil, fmt.Errorf("unsupported value %T", v)
}

var durationType = reflect.TypeFor[Duration]()

// shape checks a decoded tree against the Go type it will become,
// reporting unknown fields and wrong kinds at their paths.
func shape(p *problems, path string, v any, t reflect.Type) {
	if v == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		switch x := v.(type) {
		case string:
			if _, err := time.ParseDuration(x); err != nil {
				p.add(path, "must be a duration such as \"30s\", not %q", x)
			}
		case float64:
		default:
			p.add(path, "must be a duration such as \"30s\"")
		}
		return
	case t == reflect.TypeFor[Window]():
		if _, ok := v.(string); ok {
			shape(p, path, v, durationType)
			return
		}
	case t == reflect.TypeFor[Bound]():
		if l, ok := v.([]any); ok {
			if len(l) != 2 {
				p.add(path, "must be [min, max]")
				return
			}
			for i, e := range l {
				if _, ok := e.(float64); !ok && e != nil {
					p.add(path+"["+strconv.Itoa(i)+"]", "must be a number or null")
				}
			}
			return
		}
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			p.add(path, "must be a mapping of fields")
			return
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
			names = append(names, name)
		}
		for _, k := range slices.Sorted(mapsKeys(m)) {
			ft, ok := fields[k]
			if !ok {
				p.add(path+"."+k, "unknown field; the fields here are %s", strings.Join(names, ", "))
				continue
			}
			shape(p, path+"."+k, m[k], ft)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			p.add(path, "must be a mapping")
			return
		}
		for _, k := range slices.Sorted(mapsKeys(m)) {
			shape(p, path+"."+k, m[k], t.Elem())
		}
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			p.add(path, "must be a list")
			return
		}
		for i, e := range l {
			shape(p, path+"["+strconv.Itoa(i)+"]", e, t.Elem())
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			p.add(path, "must be a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			p.add(path, "must be true or false")
		}
	case reflect.Int:
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
			p.add(path, "must be an integer")
		}
	case reflect.Float64:
		if _, ok := v.(float64); !ok {
			p.add(path, "must be a number")
		}
	}
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

var (
	idGrammar = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	// modelIDGrammar is a model's id as package ml's Meta has it.
	modelIDGrammar = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	nameGrammar    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
)

// reserved names CEL sees besides the features.
var reserved = []string{"twin", "object", "now", "detector", "score", "state", "value", "values", "current"}

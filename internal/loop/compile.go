package loop

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"

	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/detect"
	"github.com/wanwu-iot/wanwu/internal/feature"
	"github.com/wanwu-iot/wanwu/internal/guard"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// MaxObjectBytes bounds what one loop's windows hold for one object,
// estimated from the model's sampling hints (a property without one is
// taken to report every second).
const MaxObjectBytes = 1 << 20

// Compiled is a definition checked against its thing model, with every
// expression compiled: what the engine runs.
type Compiled struct {
	Def      *Definition
	Model    *thingmodel.Model
	Features []CompiledFeature
	when     cel.Program
	clear    cel.Program
	args     []namedProgram // command arguments, sorted
	desired  []namedProgram // desired fields, sorted
	alarmMsg cel.Program
	event    []namedProgram
	verify   cel.Program
	conds    []condition // permissives, then interlocks, each sorted
	// readsTwin: some expression reads the twin, so the engine reads it
	// for each decision (a loop that does not spares it that read).
	readsTwin bool
	Policy    guard.Policy
	// Digest identifies the definition's content (SHA-256 of its canonical
	// JSON, hex).
	Digest string
}

// CompiledFeature is one feature ready to run.
type CompiledFeature struct {
	Name, Property string
	// Capture and Band: a band-energy feature of raw windows.
	Capture  string
	Band     [2]float64
	Spec     feature.Spec
	Of       *Related
	Optional bool
}

type namedProgram struct {
	name string
	prg  cel.Program
	kind string // thing model type the value must have ("" = any)
}

type condition struct {
	name       string // as the guard knows it (its result: "permissive:<name>", "interlock:<name>")
	permissive bool
	prg        cel.Program
}

// Fns lists the feature functions a definition may name.
var Fns = []string{"mean", "min", "max", "sum", "count", "last", "stddev", "rms", "peak", "crest", "kurtosis", "rate"}

var acrossFns = []string{"max", "min", "mean", "sum", "count"}

// Compile checks d against its model (m, the latest version of
// d.On.Model; related holds the models of Of selectors by id) and compiles
// its expressions. Every problem is reported with its path.
func Compile(d *Definition, m *thingmodel.Model, related map[string]*thingmodel.Model) (*Compiled, error) {
	var p problems
	c := &Compiled{Def: d, Model: m}
	if !idGrammar.MatchString(d.ID) {
		p.add("$.id", "must be 1 to 63 lower-case letters, digits and '-', starting with a letter or digit")
	}
	switch d.Mode {
	case "":
		d.Mode = Shadow
	case Active, Shadow, Disabled:
	default:
		p.add("$.mode", "must be active, shadow or disabled, not %q", d.Mode)
	}
	switch d.Placement {
	case "":
		d.Placement = Auto
	case Auto, Edge, Hub:
	default:
		p.add("$.placement", "must be auto, edge or hub, not %q", d.Placement)
	}
	if len(d.Title) > 200 {
		p.add("$.title", "longer than 200 characters")
	}
	if len(d.Description) > 4000 {
		p.add("$.description", "longer than 4000 characters")
	}
	// The selector.
	if d.On.Model == "" {
		p.add("$.on.model", "required: the thing model of the objects the loop runs for")
	} else if m == nil {
		p.add("$.on.model", "no model %q is registered", d.On.Model)
	}
	for i, o := range d.On.Objects {
		if _, err := code.Parse(o); err != nil {
			p.add(fmt.Sprintf("$.on.objects[%d]", i), "%v", err)
		}
	}
	if d.On.Under != "" && (strings.HasPrefix(d.On.Under, "/") || strings.HasSuffix(d.On.Under, "/") || strings.Contains(d.On.Under, "//")) {
		p.add("$.on.under", "must be a hierarchy path such as \"plant-1/hall-2\"")
	}
	// Features.
	if len(d.Perceive) == 0 {
		p.add("$.perceive", "required: at least one feature")
	}
	if len(d.Perceive) > MaxFeatures {
		p.add("$.perceive", "%d features, more than %d", len(d.Perceive), MaxFeatures)
	}
	var objBytes int
	for _, name := range slices.Sorted(maps.Keys(d.Perceive)) {
		f := d.Perceive[name]
		path := "$.perceive." + name
		if !nameGrammar.MatchString(name) || slices.Contains(reserved, name) || isCELKeyword(name) {
			p.add(path, "a feature's name must be an identifier (letters, digits, '_') and not one of %s", strings.Join(reserved, ", "))
			continue
		}
		pm := m
		if f.Of != nil {
			switch f.Of.Relation {
			case "siblings", "children":
			default:
				p.add(path+".of.relation", "must be siblings or children, not %q", f.Of.Relation)
			}
			if !slices.Contains(acrossFns, f.Of.Across) {
				p.add(path+".of.across", "must be one of %s, not %q", strings.Join(acrossFns, ", "), f.Of.Across)
			}
			if f.Of.Model != "" {
				pm = related[f.Of.Model]
				if pm == nil {
					p.add(path+".of.model", "no model %q is registered", f.Of.Model)
				}
			}
		}
		var interval time.Duration
		var band [2]float64
		if f.Capture != "" {
			interval = 10 * time.Second
			var act *thingmodel.Action
			if pm != nil {
				act = pm.Actions[f.Capture]
			}
			switch {
			case f.Property != "":
				p.add(path, "a property or a capture, not both")
			case f.Of != nil:
				p.add(path+".of", "a capture feature is the object's own")
			case pm == nil:
			case act == nil:
				p.add(path+".capture", "%q is not an action of %s", f.Capture, pm.Key())
			case act.Output["window"] == nil || act.Output["sampleRate"] == nil:
				p.add(path+".capture", "the result of %s carries no raw window (output window, samples, sampleRate, scale)", f.Capture)
			}
			if len(f.Band) != 2 || f.Band[0] < 0 || f.Band[1] <= f.Band[0] || f.Band[1] > 1e6 {
				p.add(path+".band", "must be [low, high] in Hz, 0 ≤ low < high")
			} else {
				band = [2]float64{f.Band[0], f.Band[1]}
			}
		} else if len(f.Band) > 0 {
			p.add(path+".band", "only for a capture feature")
		}
		if pm != nil && f.Capture == "" {
			prop := pm.Properties[f.Property]
			switch {
			case f.Property == "":
				p.add(path+".property", "required (or capture)")
			case prop == nil:
				p.add(path+".property", "%q is not a property of %s", f.Property, pm.Key())
			case prop.Type != thingmodel.TypeNumber && prop.Type != thingmodel.TypeInteger && prop.Type != thingmodel.TypeBoolean:
				p.add(path+".property", "%q is a %s; features are computed over numbers and booleans", f.Property, prop.Type)
			default:
				interval, _ = time.ParseDuration(prop.Sampling)
			}
		}
		if !slices.Contains(Fns, f.Fn) {
			p.add(path+".fn", "must be one of %s, not %q", strings.Join(Fns, ", "), f.Fn)
			continue
		}
		w := f.Window
		kind := feature.WindowKind(w.Kind)
		if kind == "" {
			kind = feature.Sliding
		}
		if w.Duration == 0 && w.Count == 0 {
			w.Count = 1 // "last value" and the like
			if f.Fn != "last" {
				p.add(path+".window", "required for %s: a duration (\"30s\") or {count: N}", f.Fn)
			}
		}
		spec := feature.Spec{Fn: feature.Fn(f.Fn), Window: feature.Window{Kind: kind, Duration: w.Duration.D(), Count: w.Count, Lateness: w.Lateness.D()}}
		if err := spec.Validate(); err != nil {
			p.add(path+".window", "%v", err)
			continue
		}
		if interval <= 0 {
			interval = time.Second
		}
		objBytes += spec.MaxSamples(interval) * bytesPerSample
		c.Features = append(c.Features, CompiledFeature{Name: name, Property: f.Property, Capture: f.Capture, Band: band, Spec: spec, Of: f.Of, Optional: f.Optional})
	}
	if objBytes > MaxObjectBytes {
		p.add("$.perceive", "the windows hold up to %d samples per object (%d KiB at the model's sampling), more than the memory budget of %d KiB: shorten a window or count samples", objBytes/bytesPerSample, objBytes>>10, MaxObjectBytes>>10)
	}
	env, err := celEnvFor(c.Features, d.Decide.Detector != nil)
	if err != nil {
		p.add("$", "CEL environment: %v", err)
		return nil, p.err()
	}
	compile := func(path, expr, want string) cel.Program {
		return compileExpr(&p, env, path, expr, want, &c.readsTwin)
	}
	// Decide.
	if d.Decide.When == "" {
		p.add("$.decide.when", "required: a CEL condition over the features")
	} else {
		c.when = compile("$.decide.when", d.Decide.When, "bool")
	}
	if d.Decide.Clear != "" {
		c.clear = compile("$.decide.clear", d.Decide.Clear, "bool")
	}
	if d.Decide.OnDelay < 0 || d.Decide.OffDelay < 0 || d.Decide.Repeat < 0 {
		p.add("$.decide", "delays and repeat must not be negative")
	}
	if r := d.Decide.Repeat.D(); r != 0 && r < time.Second {
		p.add("$.decide.repeat", "at least 1s")
	}
	if dt := d.Decide.Detector; dt != nil {
		path := "$.decide.detector"
		if _, ok := d.Perceive[dt.Input]; !ok {
			p.add(path+".input", "%q is not a feature of the loop", dt.Input)
		}
		switch dt.Kind {
		case "ewma":
			e := detect.EWMA{Alpha: dt.Alpha, Warmup: dt.Warmup}
			if err := e.Validate(); err != nil {
				p.add(path, "%v", err)
			}
			if dt.Threshold <= 0 {
				p.add(path+".threshold", "must be above 0 (a |z| score)")
			}
		case "cusum":
			cs := detect.CUSUM{Target: dt.Target, Sigma: dt.Sigma, K: dt.K, H: dt.H, Warmup: dt.Warmup, Learn: dt.Sigma == 0}
			if err := cs.Validate(); err != nil {
				p.add(path, "%v", err)
			}
		default:
			p.add(path+".kind", "must be ewma or cusum, not %q", dt.Kind)
		}
	}
	if mr := d.Decide.Model; mr != nil {
		path := "$.decide.model"
		switch {
		case mr.ID == "":
			p.add(path+".id", "required: the id of a registered model")
		case !modelIDGrammar.MatchString(mr.ID):
			p.add(path+".id", "must be 1 to 63 of lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, not %q", mr.ID)
		}
		if mr.Version < 0 {
			p.add(path+".version", "must be 1 or more (or absent: the version in effect), not %d", mr.Version)
		}
		if mr.Features != nil && len(mr.Features) == 0 {
			p.add(path+".features", "empty: map each model input to a feature of the loop, or leave it out to give the model the loop's features by their names")
		}
		if len(mr.Features) > MaxModelInputs {
			p.add(path+".features", "%d inputs, more than %d", len(mr.Features), MaxModelInputs)
		}
		for _, in := range slices.Sorted(maps.Keys(mr.Features)) {
			fpath := path + ".features." + in
			if !nameGrammar.MatchString(in) {
				p.add(fpath, "a model input's name must be an identifier (letters, digits, '_')")
				continue
			}
			if _, ok := d.Perceive[mr.Features[in]]; !ok {
				p.add(fpath, "%q is not a feature of the loop", mr.Features[in])
			}
		}
	}
	// Act.
	a := d.Act
	if a.Command == "" && len(a.Desired) == 0 && a.Alarm == nil && a.Event == nil {
		p.add("$.act", "required: a command, desired state, an alarm or an event")
	}
	if a.Command != "" && len(a.Desired) > 0 {
		p.add("$.act", "a command or a desired-state change, not both")
	}
	valueKind := map[string]*thingmodel.Schema{}
	if a.Command != "" && m != nil {
		act := m.Actions[a.Command]
		if act == nil {
			p.add("$.act.command", "%q is not an action of %s", a.Command, m.Key())
		} else {
			for _, name := range slices.Sorted(maps.Keys(a.Args)) {
				in := act.Input[name]
				if in == nil {
					p.add("$.act.args."+name, "%q is not an argument of %s", name, a.Command)
					continue
				}
				valueKind[name] = in
				c.args = append(c.args, namedProgram{name: name, kind: in.Type, prg: compile("$.act.args."+name, a.Args[name], celType(in.Type))})
			}
		}
	} else if len(a.Args) > 0 {
		p.add("$.act.args", "arguments need a command")
	}
	if len(a.Args) > MaxValues || len(a.Desired) > MaxValues {
		p.add("$.act", "more than %d values", MaxValues)
	}
	for _, name := range slices.Sorted(maps.Keys(a.Desired)) {
		path := "$.act.desired." + name
		var prop *thingmodel.Property
		if m != nil {
			prop = m.Properties[name]
		}
		if prop == nil {
			p.add(path, "%q is not a property of the model", name)
			continue
		}
		if prop.ReadOnly {
			p.add(path, "%q is read-only", name)
			continue
		}
		valueKind[name] = &prop.Schema
		c.desired = append(c.desired, namedProgram{name: name, kind: prop.Type, prg: compile(path, a.Desired[name], celType(prop.Type))})
	}
	if al := a.Alarm; al != nil {
		if !alarmName.MatchString(al.Name) {
			p.add("$.act.alarm.name", "must be 1 to 64 of [A-Za-z0-9_.-]")
		}
		if _, err := alarm.ParseSeverity(al.Severity); err != nil {
			p.add("$.act.alarm.severity", "%v", err)
		}
		if al.Message != "" {
			c.alarmMsg = compile("$.act.alarm.message", al.Message, "string")
		}
	}
	if ev := a.Event; ev != nil {
		if !nameGrammar.MatchString(ev.Name) {
			p.add("$.act.event.name", "must be an identifier (letters, digits, '_')")
		}
		for _, name := range slices.Sorted(maps.Keys(ev.Data)) {
			c.event = append(c.event, namedProgram{name: name, prg: compile("$.act.event.data."+name, ev.Data[name], "")})
		}
	}
	if v := a.Verify; v != nil {
		if v.Within <= 0 {
			p.add("$.act.verify.within", "required: how long the effect may take (\"2m\")")
		}
		if v.Expect != "" {
			c.verify = compile("$.act.verify.expect", v.Expect, "bool")
		}
		if a.Command == "" && len(a.Desired) == 0 {
			p.add("$.act.verify", "needs a command or desired state to verify")
		}
	}
	// Guard.
	g := d.Guard
	pol := guard.Policy{Bounds: map[string]guard.Range{}, MaxStep: g.MaxStep, MaxRate: g.MaxRate, Cooldown: g.Cooldown.D(), Clamp: g.Clamp}
	numeric := func(path, name string) bool {
		s, ok := valueKind[name]
		if !ok {
			p.add(path, "%q is not a value the action sets", name)
			return false
		}
		if s.Type != thingmodel.TypeNumber && s.Type != thingmodel.TypeInteger {
			p.add(path, "%q is a %s, not a number", name, s.Type)
			return false
		}
		return true
	}
	for _, name := range slices.Sorted(maps.Keys(g.Bounds)) {
		if numeric("$.guard.bounds."+name, name) {
			b := g.Bounds[name]
			pol.Bounds[name] = guard.Range{Min: b.Min, Max: b.Max}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(g.MaxStep)) {
		numeric("$.guard.max_step."+name, name)
	}
	for _, name := range slices.Sorted(maps.Keys(g.MaxRate)) {
		numeric("$.guard.max_rate."+name, name)
	}
	// Every numeric value is bounded by its schema too.
	for name, s := range valueKind {
		if s.Type != thingmodel.TypeNumber && s.Type != thingmodel.TypeInteger {
			continue
		}
		r := pol.Bounds[name]
		r.Min = tighter(r.Min, s.Minimum, math.Max)
		r.Max = tighter(r.Max, s.Maximum, math.Min)
		if r.Min != nil || r.Max != nil {
			pol.Bounds[name] = r
		}
	}
	if rl := g.RateLimit; rl != nil {
		pol.RateLimit = guard.RateLimit{Count: rl.Count, Per: rl.Per.D()}
	}
	if len(g.Interlocks)+len(g.Permissives) > MaxConditions {
		p.add("$.guard", "more than %d interlocks and permissives", MaxConditions)
	}
	for _, kind := range []string{"permissive", "interlock"} {
		set := g.Permissives
		if kind == "interlock" {
			set = g.Interlocks
		}
		for _, name := range slices.Sorted(maps.Keys(set)) {
			path := "$.guard." + kind + "s." + name
			if !nameGrammar.MatchString(name) {
				p.add(path, "a name must be an identifier")
				continue
			}
			cond := guard.Condition{Name: name, Expr: set[name]}
			if kind == "interlock" {
				pol.Interlocks = append(pol.Interlocks, cond)
			} else {
				pol.Permissives = append(pol.Permissives, cond)
			}
			c.conds = append(c.conds, condition{name: cond.Name, permissive: kind == "permissive", prg: compile(path, set[name], "bool")})
		}
	}
	if ap := g.Approval; ap != nil {
		pol.Approval = guard.Approval{Required: ap.Required, Approvers: ap.Approvers, Expires: ap.Expires.D()}
		if ap.Required > 0 && ap.Expires == 0 {
			pol.Approval.Expires = DefaultApprovalExpiry
		}
		if ap.Required < 0 || ap.Required > 16 {
			p.add("$.guard.approval.required", "must be between 0 and 16")
		}
	}
	if err := pol.Validate(); err != nil {
		p.add("$.guard", "%v", err)
	}
	c.Policy = pol
	if err := p.err(); err != nil {
		return nil, err
	}
	c.Digest = digestJSON(d)
	return c, nil
}

// DefaultApprovalExpiry is how long an action waits for its approvers
// when the definition does not say.
const DefaultApprovalExpiry = 15 * time.Minute

var alarmName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func tighter(a, b *float64, pick func(x, y float64) float64) *float64 {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	v := pick(*a, *b)
	return &v
}

func celType(t string) string {
	switch t {
	case thingmodel.TypeNumber, thingmodel.TypeInteger:
		return "number"
	case thingmodel.TypeBoolean:
		return "bool"
	case thingmodel.TypeString:
		return "string"
	}
	return ""
}

var celKeywords = []string{"in", "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while", "true", "false", "null"}

func isCELKeyword(s string) bool { return slices.Contains(celKeywords, s) }

// baseEnv holds what every loop's expressions see besides their features;
// a loop's environment extends it (cheaper than building one from
// nothing).
var baseEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("twin", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("object", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("now", cel.TimestampType),
		cel.Variable("score", cel.MapType(cel.StringType, cel.DoubleType)),
		cel.Variable("state", cel.BoolType),
		cel.Variable("values", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("current", cel.MapType(cel.StringType, cel.DoubleType)),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		ext.Strings(),
		ext.Math(),
		cel.ParserExpressionSizeLimit(MaxExpressionLen),
		cel.ParserRecursionLimit(32),
	)
})

func celEnvFor(fs []CompiledFeature, detector bool) (*cel.Env, error) {
	base, err := baseEnv()
	if err != nil {
		return nil, err
	}
	opts := make([]cel.EnvOption, 0, len(fs)+1)
	for _, f := range fs {
		opts = append(opts, cel.Variable(f.Name, cel.DoubleType))
	}
	if detector {
		opts = append(opts, cel.Variable("detector", cel.MapType(cel.StringType, cel.DoubleType)))
	}
	return base.Extend(opts...)
}

// sizeEstimator tells CEL's cost estimate how large the inputs can be.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(cost.AstNode) *cost.SizeEstimate {
	return &cost.SizeEstimate{Min: 0, Max: 64}
}

func (sizeEstimator) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// compileExpr compiles one expression; readsTwin is set when it reads the
// variable twin.
func compileExpr(p *problems, env *cel.Env, path, expr, want string, readsTwin *bool) cel.Program {
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		p.add(path, "does not compile: %s", oneLine(iss.Err().Error()))
		return nil
	}
	for _, ref := range ast.NativeRep().ReferenceMap() {
		if ref.Name == "twin" {
			*readsTwin = true
		}
	}
	k := ast.OutputType().Kind()
	ok := true
	switch want {
	case "bool":
		ok = k == types.BoolKind || k == types.DynKind
	case "number":
		ok = k == types.DoubleKind || k == types.IntKind || k == types.UintKind || k == types.DynKind
	case "string":
		ok = k == types.StringKind || k == types.DynKind
	}
	if !ok {
		p.add(path, "gives %s, but must give a %s", ast.OutputType(), want)
		return nil
	}
	est, err := env.EstimateCost(ast, sizeEstimator{})
	if err != nil {
		p.add(path, "cost cannot be estimated: %s", oneLine(err.Error()))
		return nil
	}
	if est.Max > MaxCost {
		p.add(path, "too costly: its worst case is %d cost units, more than %d (iterate over less)", est.Max, MaxCost)
		return nil
	}
	prg, err := env.Program(ast, cel.CostLimit(MaxCost), cel.InterruptCheckFrequency(64))
	if err != nil {
		p.add(path, "cannot be planned: %s", oneLine(err.Error()))
		return nil
	}
	return prg
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimPrefix(s, "ERROR: ")
}

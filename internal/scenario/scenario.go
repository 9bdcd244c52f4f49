package scenario

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// Scenario is a parsed scenario file.
type Scenario struct {
	Name        string
	Description string
	// Tenant is the tenant the devices are registered under ("demo" by
	// default); the classes' models are in it.
	Tenant  string
	Seed    int64
	Classes []Class
}

// Class is a group of devices of one kind with the same settings.
type Class struct {
	// Name names the class and its devices (DeviceID): "cnc".
	Name string
	// Kind is the physics: KindCNC, KindGasMeter, KindWaterMeter,
	// KindFlood, KindChiller or KindPump.
	Kind string
	// Model is the thing model ref, "<tenant>:<kind's model>@1.0.0" by
	// default ("demo:cnc-spindle@1.0.0"); ModelJSON is its document.
	Model string
	// Count is how many devices the class has.
	Count int
	// Network is the link profile (netprofile.Names); the kind's usual one
	// by default.
	Network string
	// Protocol is "mqtt" or "coap"; the profile's by default.
	Protocol string
	// Interval is the reporting interval; the kind's by default.
	Interval time.Duration
	// Params are kind-specific parameters (doc.go lists them); those not
	// set take their defaults.
	Params map[string]float64
	// Faults are injected faults.
	Faults []Fault
	// Edge places the class's devices behind the edge node when one runs
	// (`wanwu demo` starts one): they connect to the edge, which forwards
	// to the hub. Without an edge they connect to the hub.
	Edge bool
}

// Fault is a fault injected into some of a class's devices for a while.
type Fault struct {
	// Kind is what goes wrong: FaultChatter, FaultImbalance, FaultOverheat,
	// FaultLeak, FaultStorm or FaultRiver, each for the kinds doc.go names.
	Kind string
	// At is when it starts, counted from each device's first Step.
	At time.Duration
	// Duration is how long it lasts; 0 means to the end.
	Duration time.Duration
	// Count is how many of the class's devices it affects; where 0,
	// Fraction is the share of them (rounded up), 1 for all. Which devices
	// depends on the seed.
	Count    int
	Fraction float64
}

// Limits on a scenario file.
const (
	MaxFileSize   = 1 << 20
	MaxClasses    = 64
	MaxFaults     = 32
	MaxCount      = 100_000
	MaxDevices    = 1_000_000 // all classes together
	maxClassName  = 32
	maxScenarioID = 64
)

// ErrInvalid is wrapped by every error Parse returns about a file's content.
var ErrInvalid = errors.New("invalid scenario")

// FieldError is one problem in a scenario file: the field, as a path like
// "classes[1].count", and the reason.
type FieldError struct {
	Field  string
	Line   int // in the file; 0 where unknown
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Parse parses and checks a scenario file (YAML). Unknown fields are
// refused; the error lists every problem, one *FieldError each (errors.Join),
// each naming its field: "classes[1].count: must be between 1 and 100000".
// Defaults are filled in, so the result says everything.
func Parse(data []byte) (*Scenario, error) {
	p := &parser{}
	if len(data) > MaxFileSize {
		p.fail("scenario", nil, "the file is %d bytes, more than %d", len(data), MaxFileSize)
		return nil, p.err()
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.fail("scenario", nil, "not valid YAML: %v", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, p.err()
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		p.fail("scenario", nil, "the file is empty")
		return nil, p.err()
	}
	s := p.scenario(doc.Content[0])
	if err := p.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// parser collects problems while it walks the YAML tree, so that an author
// sees every problem at once.
type parser struct {
	errs []error
}

func (p *parser) fail(field string, n *yaml.Node, format string, args ...any) {
	e := &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line = n.Line
	}
	p.errs = append(p.errs, e)
}

func (p *parser) err() error { return errors.Join(p.errs...) }

// plainKey is what a field name looks like.
var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// resolve follows aliases. Anchors are allowed (shared params, say); the
// walk below only ever descends into fields it knows, and the limits on
// classes, faults and params bound what an alias can make it do.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	return n
}

// fields calls fn for each member of the mapping at n, refusing duplicates
// and keys not in allowed.
func (p *parser) fields(path string, n *yaml.Node, allowed []string, fn func(key, field string, v *yaml.Node)) bool {
	n = resolve(n)
	where := path
	if where == "" {
		where = "scenario"
	}
	if n == nil || n.Kind != yaml.MappingNode {
		p.fail(where, n, "must be a mapping of fields (%s)", strings.Join(allowed, ", "))
		return false
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			p.fail(where, n.Content[i], "a key must be a plain name")
			continue
		}
		field := join(path, k.Value)
		switch {
		case !plainKey.MatchString(k.Value):
			// Not a name any field has: say so at the parent, quoted, so
			// that the message keeps its "field: reason" shape.
			p.fail(where, k, "unknown field %q; the fields here are %s", k.Value, strings.Join(allowed, ", "))
		case seen[k.Value]:
			p.fail(field, k, "given twice")
		case allowed != nil && !slices.Contains(allowed, k.Value):
			p.fail(field, k, "unknown field; the fields here are %s", strings.Join(allowed, ", "))
		default:
			seen[k.Value] = true
			fn(k.Value, field, v)
		}
	}
	return true
}

func (p *parser) str(field string, n *yaml.Node) (string, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		p.fail(field, n, "must be a string")
		return "", false
	}
	return n.Value, true
}

func (p *parser) integer(field string, n *yaml.Node) (int64, bool) {
	n = resolve(n)
	var v int64
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		p.fail(field, n, "must be an integer")
		return 0, false
	}
	return v, true
}

func (p *parser) number(field string, n *yaml.Node) (float64, bool) {
	n = resolve(n)
	var v float64
	if n == nil || n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&v) != nil {
		p.fail(field, n, "must be a number")
		return 0, false
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		p.fail(field, n, "must be a finite number")
		return 0, false
	}
	return v, true
}

func (p *parser) duration(field string, n *yaml.Node) (time.Duration, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		p.fail(field, n, "must be a duration such as \"90s\" or \"1h30m\"")
		return 0, false
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		p.fail(field, n, "%q is not a duration such as \"90s\" or \"1h30m\"", n.Value)
		return 0, false
	}
	if d < 0 {
		p.fail(field, n, "must not be negative")
		return 0, false
	}
	return d, true
}

func (p *parser) scenario(n *yaml.Node) *Scenario {
	s := &Scenario{Tenant: "demo"}
	var classes *yaml.Node
	p.fields("", n, []string{"name", "description", "tenant", "seed", "classes"}, func(key, field string, v *yaml.Node) {
		switch key {
		case "name":
			if name, ok := p.str(field, v); ok {
				if err := code.ValidLocal(name); err != nil || len(name) > maxScenarioID {
					p.fail(field, v, "%q is not a name of at most %d letters, digits, '-' and '_', starting with a letter or digit", name, maxScenarioID)
				}
				s.Name = name
			}
		case "description":
			s.Description, _ = p.str(field, v)
		case "tenant":
			if t, ok := p.str(field, v); ok {
				if err := code.ValidNamespace(t); err != nil {
					p.fail(field, v, "%v", err)
				}
				s.Tenant = t
			}
		case "seed":
			s.Seed, _ = p.integer(field, v)
		case "classes":
			classes = v
		}
	})
	if resolve(n) == nil || resolve(n).Kind != yaml.MappingNode {
		return s
	}
	if s.Name == "" {
		p.fail("name", n, "is required")
	}
	classes = resolve(classes)
	switch {
	case classes == nil:
		p.fail("classes", n, "is required: at least one class of devices")
		return s
	case classes.Kind != yaml.SequenceNode:
		p.fail("classes", classes, "must be a list of classes")
		return s
	case len(classes.Content) == 0:
		p.fail("classes", classes, "must have at least one class")
	case len(classes.Content) > MaxClasses:
		p.fail("classes", classes, "%d classes, more than %d", len(classes.Content), MaxClasses)
		return s
	}
	names := map[string]int{}
	total := 0
	for i, cn := range classes.Content {
		field := index("classes", i)
		c := p.class(field, cn, s.Tenant)
		if c.Name != "" {
			if j, dup := names[c.Name]; dup {
				p.fail(field+".name", cn, "%q is also the name of classes[%d]", c.Name, j)
			}
			names[c.Name] = i
		}
		total += c.Count
		s.Classes = append(s.Classes, c)
	}
	if total > MaxDevices {
		p.fail("classes", classes, "%d devices in all, more than %d", total, MaxDevices)
	}
	return s
}

var classFields = []string{"name", "kind", "model", "count", "network", "protocol", "interval", "params", "faults", "edge"}

func (p *parser) class(path string, n *yaml.Node, tenant string) Class {
	var c Class
	var params, faults, model, interval *yaml.Node
	ok := p.fields(path, n, classFields, func(key, field string, v *yaml.Node) {
		switch key {
		case "name":
			if name, ok := p.str(field, v); ok {
				if err := code.ValidLocal(name); err != nil || len(name) > maxClassName {
					p.fail(field, v, "%q is not a name of at most %d letters, digits, '-' and '_', starting with a letter or digit", name, maxClassName)
				}
				c.Name = name
			}
		case "kind":
			if k, ok := p.str(field, v); ok {
				if lookupKind(k) == nil {
					p.fail(field, v, "%q is not one of %s", k, strings.Join(Kinds(), ", "))
				} else {
					c.Kind = k
				}
			}
		case "model":
			model = v
		case "count":
			if cnt, ok := p.integer(field, v); ok {
				if cnt < 1 || cnt > MaxCount {
					p.fail(field, v, "must be between 1 and %d", MaxCount)
				} else {
					c.Count = int(cnt)
				}
			}
		case "network":
			if net, ok := p.str(field, v); ok {
				if _, found := netprofile.Lookup(net); !found {
					p.fail(field, v, "%q is not one of %s", net, strings.Join(netprofile.Names(), ", "))
				} else {
					c.Network = net
				}
			}
		case "protocol":
			if proto, ok := p.str(field, v); ok {
				if proto != "mqtt" && proto != "coap" {
					p.fail(field, v, "%q is not one of mqtt, coap", proto)
				} else {
					c.Protocol = proto
				}
			}
		case "interval":
			interval = v
		case "params":
			params = v
		case "faults":
			faults = v
		case "edge":
			if n := resolve(v); n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&c.Edge) != nil {
				p.fail(field, v, "must be true or false")
			}
		}
	})
	if !ok {
		return c
	}
	if c.Name == "" {
		p.fail(path+".name", n, "is required")
	}
	if c.Count == 0 && !p.has(path+".count") {
		p.fail(path+".count", n, "is required")
	}
	k := lookupKind(c.Kind)
	if k == nil {
		if !p.has(path + ".kind") {
			p.fail(path+".kind", n, "is required: one of %s", strings.Join(Kinds(), ", "))
		}
		return c
	}
	if c.Network == "" && !p.has(path+".network") {
		c.Network = k.network
	}
	if c.Protocol == "" && c.Network != "" {
		prof, _ := netprofile.Lookup(c.Network)
		c.Protocol = prof.Protocol
	}
	c.Model = k.modelRef(tenant)
	if model != nil {
		field := path + ".model"
		if ref, ok := p.str(field, model); ok {
			if err := checkModelRef(ref, k, tenant); err != nil {
				p.fail(field, model, "%v", err)
			} else {
				c.Model = ref
			}
		}
	}
	c.Interval = k.interval
	if interval != nil {
		field := path + ".interval"
		if d, ok := p.duration(field, interval); ok {
			if d < k.minIvl || d > k.maxIvl {
				p.fail(field, interval, "must be between %v and %v for kind %s", k.minIvl, k.maxIvl, k.name)
			} else {
				c.Interval = d
			}
		}
	}
	if params != nil {
		c.Params = p.params(path+".params", params, k)
	}
	if faults != nil {
		c.Faults = p.faults(path+".faults", faults, k, c.Count)
	}
	return c
}

// has reports whether a problem was already reported for field, so that a
// field with a bad value is not also called missing.
func (p *parser) has(field string) bool {
	for _, e := range p.errs {
		if fe, ok := e.(*FieldError); ok && fe.Field == field {
			return true
		}
	}
	return false
}

func checkModelRef(ref string, k *kind, tenant string) error {
	id, version, ok := strings.Cut(ref, "@")
	if !ok {
		return fmt.Errorf("%q is not a model ref <tenant>:<model>@<version>", ref)
	}
	c, err := code.Parse(id)
	if err != nil {
		return fmt.Errorf("%q is not a model ref <tenant>:<model>@<version>: %v", ref, err)
	}
	if c.Namespace != tenant && c.Namespace != "std" {
		return fmt.Errorf("model %s is in namespace %q: the devices of tenant %q can use their tenant's models and std's", ref, c.Namespace, tenant)
	}
	if c.Local != k.model || version != modelVersion {
		return fmt.Errorf("kind %s reports the model %s@%s, not %s@%s", k.name, k.model, modelVersion, c.Local, version)
	}
	return nil
}

func (p *parser) params(path string, n *yaml.Node, k *kind) map[string]float64 {
	names := make([]string, len(k.params))
	for i, pr := range k.params {
		names[i] = pr.name
	}
	out := map[string]float64{}
	p.fields(path, n, names, func(key, field string, v *yaml.Node) {
		pr, _ := k.param(key)
		if f, ok := p.number(field, v); ok {
			if f < pr.min || f > pr.max {
				p.fail(field, v, "must be between %g and %g", pr.min, pr.max)
				return
			}
			out[key] = f
		}
	})
	return out
}

func (p *parser) faults(path string, n *yaml.Node, k *kind, count int) []Fault {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		p.fail(path, n, "must be a list of faults")
		return nil
	}
	if len(n.Content) > MaxFaults {
		p.fail(path, n, "%d faults, more than %d", len(n.Content), MaxFaults)
		return nil
	}
	var out []Fault
	for i, fn := range n.Content {
		field := index(path, i)
		f := Fault{Fraction: 1}
		kindSet := false
		ok := p.fields(field, fn, []string{"kind", "at", "duration", "devices"}, func(key, field string, v *yaml.Node) {
			switch key {
			case "kind":
				if fk, ok := p.str(field, v); ok {
					kindSet = true
					if !slices.Contains(k.faults, fk) {
						p.fail(field, v, "%q is not a fault of kind %s (%s)", fk, k.name, strings.Join(k.faults, ", "))
					}
					f.Kind = fk
				}
			case "at":
				f.At, _ = p.duration(field, v)
			case "duration":
				f.Duration, _ = p.duration(field, v)
			case "devices":
				f.Count, f.Fraction = p.devices(field, v, count)
			}
		})
		if ok && !kindSet && !p.has(field+".kind") {
			p.fail(field+".kind", fn, "is required: one of %s", strings.Join(k.faults, ", "))
		}
		out = append(out, f)
	}
	return out
}

// devices parses a fault's devices: a count ("3") or a share ("25%").
func (p *parser) devices(field string, n *yaml.Node, count int) (int, float64) {
	n = resolve(n)
	const want = "must be a number of devices (3) or a share of them (25%)"
	if n == nil || n.Kind != yaml.ScalarNode {
		p.fail(field, n, "%s", want)
		return 0, 1
	}
	if n.Tag == "!!int" {
		var c int64
		if n.Decode(&c) != nil || c < 1 {
			p.fail(field, n, "%s", want)
			return 0, 1
		}
		if count > 0 && c > int64(count) {
			p.fail(field, n, "%d devices, more than the class's %d", c, count)
			return 0, 1
		}
		return int(c), 0
	}
	s, ok := strings.CutSuffix(n.Value, "%")
	if n.Tag != "!!str" || !ok {
		p.fail(field, n, "%s", want)
		return 0, 1
	}
	pct, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(pct > 0 && pct <= 100) {
		p.fail(field, n, "a share must be more than 0%% and at most 100%%")
		return 0, 1
	}
	return 0, pct / 100
}

// DeviceID is the local id of the class's device index: the class name and
// the index, zero-padded to the width of the class's last index ("cnc-007").
func (c *Class) DeviceID(index int) string {
	width := max(3, len(strconv.Itoa(max(c.Count-1, 0))))
	return fmt.Sprintf("%s-%0*d", c.Name, width, index)
}

// affected reports whether fault j hits device index: a block of the
// class's devices starting at a seed-chosen place, wrapping around.
func (c *Class) affected(j int, index int, seed uint64) bool {
	if c.Count <= 0 {
		return true
	}
	f := c.Faults[j]
	n := f.Count
	if n == 0 {
		n = int(math.Ceil(f.Fraction*float64(c.Count) - 1e-9))
	}
	off := int(derive(seed, hashString(c.Name), 0xfa, uint64(j)) % uint64(c.Count))
	return ((index%c.Count)+off)%c.Count < n
}

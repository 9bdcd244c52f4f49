package ingest

import (
	"container/list"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Vendor mappings (PROTOCOL.md §3.3): CEL expressions over the decoded JSON
// payload, one per property, compiled once per model version.
//
// JSON numbers reach CEL as doubles, as in every JSON-to-CEL binding: write
// "payload.t / 10.0", not "payload.t / 10" (CEL has no mixed-type
// arithmetic; comparisons such as "payload.st == 1" do work across types).

// celEnv is shared by every mapping: building an environment costs far more
// than compiling one expression in it. The standard extensions a payload
// mapping plausibly needs (string functions, math) are on; nothing that
// reaches outside the expression exists in CEL to turn on.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("payload", cel.DynType),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Math(),
		ext.Encoders(),
		cel.ParserExpressionSizeLimit(thingmodel.MaxExpressionLen),
		cel.ParserRecursionLimit(64),
	)
})

// interruptEvery is how many comprehension iterations pass between checks of
// the mapping deadline.
const interruptEvery = 64

// compiledMapping is a model's mapping, ready to run.
type compiledMapping struct {
	src   *thingmodel.Mapping // what it was compiled from
	props []mappedProp        // sorted by name, so evaluation order is fixed
	time  cel.Program         // nil: no time expression
	err   error               // a *thingmodel.ValidationError: the mapping cannot run
}

type mappedProp struct {
	name string
	prg  cel.Program
}

// CheckMapping compiles m's vendor mapping, if it has expressions, and
// checks that each expression's type can fit its property; and that each
// unit of its Modbus mapping converts to its property's unit, or from its
// action argument's. It returns nil or a *thingmodel.ValidationError
// (wrapping thingmodel.ErrInvalid) with one problem per failing expression
// or unit, at its JSON path ("$.mapping.properties.temperature"), so the
// registry can report it exactly as a thingmodel.Parse failure. thingmodel
// checks the mapping's shape; this checks the CEL and the unit
// conversions, which thingmodel does not depend on.
func CheckMapping(m *thingmodel.Model) error {
	if m == nil || m.Mapping == nil {
		return nil
	}
	var probs []thingmodel.Problem
	if m.Mapping.HasExpressions() {
		if cm := compileMapping(m, DefaultMappingCostLimit); cm.err != nil {
			probs = append(probs, cm.err.(*thingmodel.ValidationError).Problems...)
		}
	}
	probs = append(probs, checkModbusUnits(m)...)
	if len(probs) == 0 {
		return nil
	}
	slices.SortStableFunc(probs, func(a, b thingmodel.Problem) int { return strings.Compare(a.Path, b.Path) })
	return &thingmodel.ValidationError{Problems: probs}
}

// checkModbusUnits checks the units of a Modbus mapping the way a value
// sent with that unit is checked (number): a register's unit must convert
// to its property's, an argument's unit to the write's.
func checkModbusUnits(m *thingmodel.Model) []thingmodel.Problem {
	mb := m.Mapping.Modbus
	if mb == nil {
		return nil
	}
	var probs []thingmodel.Problem
	check := func(path, from, to, whose string) {
		switch {
		case from == "" || from == to:
		case to == "":
			probs = append(probs, thingmodel.Problem{Path: path, Message: fmt.Sprintf("%q needs a unit to convert to, and %s has none", from, whose)})
		case !Convertible(from, to):
			probs = append(probs, thingmodel.Problem{Path: path, Message: fmt.Sprintf("%q does not convert to %q, the unit of %s", from, to, whose)})
		}
	}
	for i, g := range mb.Groups {
		if g == nil {
			continue
		}
		for j, r := range g.Registers {
			if r == nil || m.Properties[r.Property] == nil {
				continue
			}
			path := fmt.Sprintf("$.mapping.modbus.groups[%d].registers[%d].unit", i, j)
			check(path, r.Unit, m.Properties[r.Property].Unit, "property "+r.Property)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(mb.Actions)) {
		w, a := mb.Actions[name], m.Actions[name]
		if w == nil || w.Argument == "" || a == nil || a.Input[w.Argument] == nil {
			continue
		}
		arg := a.Input[w.Argument]
		switch path := "$.mapping.modbus.actions." + name + ".unit"; {
		case w.Unit == "" || w.Unit == arg.Unit:
		case arg.Unit == "":
			probs = append(probs, thingmodel.Problem{Path: path, Message: fmt.Sprintf("argument %s has no unit to convert to %q", w.Argument, w.Unit)})
		default:
			check(path, arg.Unit, w.Unit, "the write")
		}
	}
	return probs
}

func compileMapping(m *thingmodel.Model, costLimit uint64) *compiledMapping {
	cm := &compiledMapping{src: m.Mapping}
	var probs []thingmodel.Problem
	env, err := celEnv()
	if err != nil {
		// Only a broken build of this package gets here.
		cm.err = &thingmodel.ValidationError{Problems: []thingmodel.Problem{{Path: "$.mapping", Message: "CEL environment: " + err.Error()}}}
		return cm
	}
	opts := []cel.ProgramOption{cel.CostLimit(costLimit), cel.InterruptCheckFrequency(interruptEvery)}
	compile := func(path, expr string, fits func(types.Kind) bool, want string) cel.Program {
		ast, iss := env.Compile(expr)
		if iss != nil && iss.Err() != nil {
			probs = append(probs, thingmodel.Problem{Path: path, Message: "does not compile: " + oneLine(iss.Err().Error())})
			return nil
		}
		if k := ast.OutputType().Kind(); !fits(k) {
			probs = append(probs, thingmodel.Problem{Path: path, Message: fmt.Sprintf("evaluates to %s, but the value must be %s", ast.OutputType(), want)})
			return nil
		}
		prg, err := env.Program(ast, opts...)
		if err != nil {
			probs = append(probs, thingmodel.Problem{Path: path, Message: "cannot be planned: " + oneLine(err.Error())})
			return nil
		}
		return prg
	}
	for _, name := range slices.Sorted(maps.Keys(m.Mapping.Properties)) {
		path := "$.mapping.properties." + name
		p := m.Properties[name]
		if p == nil {
			probs = append(probs, thingmodel.Problem{Path: path, Message: fmt.Sprintf("%q is not a property of the model", name)})
			continue
		}
		fits, want := resultKinds(p.Type)
		if prg := compile(path, m.Mapping.Properties[name], fits, want); prg != nil {
			cm.props = append(cm.props, mappedProp{name: name, prg: prg})
		}
	}
	if m.Mapping.Time != "" {
		cm.time = compile("$.mapping.time", m.Mapping.Time, func(k types.Kind) bool {
			switch k {
			case types.DoubleKind, types.IntKind, types.UintKind, types.StringKind, types.TimestampKind:
				return true
			}
			return !definite(k)
		}, "seconds since the epoch, an RFC 3339 string or a timestamp")
	}
	if len(probs) > 0 {
		cm.err = &thingmodel.ValidationError{Problems: probs}
		cm.props, cm.time = nil, nil
	}
	return cm
}

// definite reports whether the checker has pinned an expression's type; an
// expression over the dyn payload is usually not, and is then checked when
// it runs.
func definite(k types.Kind) bool {
	switch k {
	case types.BoolKind, types.BytesKind, types.DoubleKind, types.DurationKind, types.IntKind,
		types.ListKind, types.MapKind, types.StringKind, types.StructKind, types.TimestampKind,
		types.TypeKind, types.UintKind:
		return true
	}
	return false
}

// resultKinds says which result types fit a property type.
func resultKinds(t string) (func(types.Kind) bool, string) {
	var ok []types.Kind
	var want string
	switch t {
	case thingmodel.TypeNumber, thingmodel.TypeInteger:
		ok, want = []types.Kind{types.DoubleKind, types.IntKind, types.UintKind}, "a number"
	case thingmodel.TypeBoolean:
		ok, want = []types.Kind{types.BoolKind}, "a bool"
	case thingmodel.TypeString:
		ok, want = []types.Kind{types.StringKind}, "a string"
	case thingmodel.TypePosition, thingmodel.TypeObject:
		ok, want = []types.Kind{types.MapKind}, "a map"
	case thingmodel.TypeArray:
		ok, want = []types.Kind{types.ListKind}, "a list"
	}
	return func(k types.Kind) bool { return !definite(k) || slices.Contains(ok, k) }, want
}

// oneLine keeps the first line of a CEL error: the rest is a source excerpt
// with a caret, which reads badly inside a JSON problem or reason string.
func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimPrefix(s, "ERROR: ")
}

// mapped runs the model's mapping over a parsed payload.
func (d *Decoder) mapped(dev Device, nodes []jnode, now time.Time) ([]Record, *Rejection) {
	m := dev.Model
	cm := d.mappings.get(m)
	if cm.err != nil {
		return nil, &Rejection{Reason: MappingFailed, Message: fmt.Sprintf("the mapping of %s does not compile: %s", m.Key(), firstProblem(cm.err)), Err: cm.err}
	}
	vars := map[string]any{"payload": toNative(nodes, 0)}
	// One deadline for the whole message: the cost limit bounds each
	// expression, this bounds their sum and anything the cost model misses.
	ctx, cancel := context.WithTimeout(context.Background(), d.o.MappingTimeout)
	defer cancel()

	ms := now.UnixMilli()
	if cm.time != nil {
		v, _, err := cm.time.ContextEval(ctx, vars)
		if err != nil {
			return nil, &Rejection{Reason: MappingFailed, Message: "mapping for the time failed: " + oneLine(err.Error()), Err: err}
		}
		if v, ok := present(v); ok {
			t, rej := celTime(v)
			if rej != nil {
				return nil, rej
			}
			if rej := d.checkTime("time", t, now); rej != nil {
				return nil, rej
			}
			ms = t
		}
	}
	recs := make([]Record, 0, len(cm.props))
	var scratch []jnode
	for _, mp := range cm.props {
		p := m.Properties[mp.name]
		v, _, err := mp.prg.ContextEval(ctx, vars)
		if err != nil {
			return nil, &Rejection{Reason: MappingFailed, Message: "mapping for " + mp.name + " failed: " + oneLine(err.Error()), Err: err}
		}
		var ok bool
		if v, ok = present(v); !ok {
			continue // the mapping's way of saying "not in this payload"
		}
		scratch, err = celToJSON(scratch[:0], v, 0)
		if err != nil {
			return nil, &Rejection{Reason: MappingFailed, Message: "mapping for " + mp.name + " failed: " + err.Error(), Err: err}
		}
		rec, rej := jsonRecord(mp.name, p, scratch, 0, ms)
		if rej != nil {
			return nil, rej
		}
		recs = append(recs, rec)
	}
	if len(recs) == 0 {
		return nil, Reject(MappingFailed, "the mapping produced no property values")
	}
	return recs, nil
}

// present unwraps a mapping result: null and optional.none() mean the
// value is absent from this payload. Both are accepted because CEL's checker
// refuses "cond ? 1 : null" (int and null do not unify), where
// "cond ? optional.of(1) : optional.none()" or "payload.?x" type-check.
func present(v ref.Val) (ref.Val, bool) {
	if o, ok := v.(*types.Optional); ok {
		if !o.HasValue() {
			return nil, false
		}
		v = o.GetValue()
	}
	return v, v != types.NullValue
}

func firstProblem(err error) string {
	if ve, ok := err.(*thingmodel.ValidationError); ok && len(ve.Problems) > 0 {
		return ve.Problems[0].String()
	}
	return err.Error()
}

// celTime converts a time expression's result to ms since the epoch.
func celTime(v ref.Val) (int64, *Rejection) {
	switch x := v.(type) {
	case types.Double:
		return secondsToMs("time", float64(x))
	case types.Int:
		return secondsToMs("time", float64(x))
	case types.Uint:
		return secondsToMs("time", float64(x))
	case types.String:
		return rfc3339ToMs("time", string(x))
	case types.Timestamp:
		if y := x.Time.Year(); y < 1970 || y > 9999 {
			return 0, Reject(MappingFailed, "mapping for the time gave %s, outside the years 1970-9999", x.Time.UTC().Format(time.RFC3339))
		}
		return x.Time.UnixMilli(), nil
	}
	return 0, Reject(MappingFailed, "mapping for the time gave a %s, not a number, string or timestamp", v.Type().TypeName())
}

// celToJSON appends the JSON form of a CEL result to dst, so that mapped
// values pass through exactly the validation plain JSON does. Map members
// are sorted, which makes object properties' stored JSON deterministic.
func celToJSON(dst []jnode, v ref.Val, depth int) ([]jnode, error) {
	if len(dst) >= maxJSONNodes {
		return nil, fmt.Errorf("result has more than %d values", maxJSONNodes)
	}
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("result nests deeper than %d levels", maxJSONDepth)
	}
	idx := len(dst)
	switch x := v.(type) {
	case types.Null:
		return append(dst, jnode{kind: jNull, end: int32(idx + 1)}), nil
	case types.Bool:
		return append(dst, jnode{kind: jBool, b: bool(x), end: int32(idx + 1)}), nil
	case types.Double:
		return celNumber(dst, float64(x))
	case types.Int:
		return celNumber(dst, float64(x))
	case types.Uint:
		return celNumber(dst, float64(x))
	case types.String:
		if !utf8.ValidString(string(x)) {
			return nil, fmt.Errorf("result string is not valid UTF-8")
		}
		return append(dst, jnode{kind: jStr, str: string(x), end: int32(idx + 1)}), nil
	case traits.Mapper:
		dst = append(dst, jnode{kind: jObj})
		var keys []string
		for it := x.Iterator(); it.HasNext() == types.True; {
			k, ok := it.Next().(types.String)
			if !ok {
				return nil, fmt.Errorf("result map has a key that is not a string")
			}
			keys = append(keys, string(k))
		}
		slices.Sort(keys)
		for _, k := range keys {
			c := len(dst)
			var err error
			if dst, err = celToJSON(dst, x.Get(types.String(k)), depth+1); err != nil {
				return nil, err
			}
			dst[c].key = k
		}
		dst[idx].n, dst[idx].end = int32(len(keys)), int32(len(dst))
		return dst, nil
	case traits.Lister:
		n, ok := x.Size().(types.Int)
		if !ok {
			return nil, fmt.Errorf("result list has no size")
		}
		dst = append(dst, jnode{kind: jArr})
		for i := types.Int(0); i < n; i++ {
			var err error
			if dst, err = celToJSON(dst, x.Get(i), depth+1); err != nil {
				return nil, err
			}
		}
		dst[idx].n, dst[idx].end = int32(n), int32(len(dst))
		return dst, nil
	case *types.Err:
		return nil, x
	}
	return nil, fmt.Errorf("result is a %s, which is not a JSON value", v.Type().TypeName())
}

func celNumber(dst []jnode, f float64) ([]jnode, error) {
	if !finite(f) {
		return nil, fmt.Errorf("result is not a finite number")
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	return append(dst, jnode{kind: jNum, num: f, str: s, end: int32(len(dst) + 1)}), nil
}

// mappingCache keeps compiled mappings by model key with least-recently-used
// eviction. Compiling takes tens of microseconds to milliseconds; running
// takes a few, so a miss per message would dominate ingest.
type mappingCache struct {
	mu        sync.Mutex
	max       int
	costLimit uint64
	ents      map[string]*list.Element // of *cacheEntry
	lru       list.List                // front: most recently used
}

type cacheEntry struct {
	key string
	cm  *compiledMapping
}

func newMappingCache(max int, costLimit uint64) *mappingCache {
	return &mappingCache{max: max, costLimit: costLimit, ents: make(map[string]*list.Element)}
}

// get returns m's compiled mapping. A model key names an immutable model
// version, but the cache checks the expressions anyway: should two different
// mappings ever share a key, the wrong program must not run.
func (c *mappingCache) get(m *thingmodel.Model) *compiledMapping {
	key := m.Key()
	c.mu.Lock()
	if e, ok := c.ents[key]; ok {
		ce := e.Value.(*cacheEntry)
		if sameMapping(ce.cm.src, m.Mapping) {
			c.lru.MoveToFront(e)
			c.mu.Unlock()
			return ce.cm
		}
	}
	c.mu.Unlock()

	// Compile outside the lock so a slow compile does not hold up other
	// models' messages; two goroutines may both compile, and one wins.
	cm := compileMapping(m, c.costLimit)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.ents[key]; ok {
		e.Value.(*cacheEntry).cm = cm
		c.lru.MoveToFront(e)
		return cm
	}
	c.ents[key] = c.lru.PushFront(&cacheEntry{key: key, cm: cm})
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.ents, old.Value.(*cacheEntry).key)
	}
	return cm
}

func (c *mappingCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func sameMapping(a, b *thingmodel.Mapping) bool {
	if a == b {
		return true
	}
	return a != nil && b != nil && a.Time == b.Time && maps.Equal(a.Properties, b.Properties)
}

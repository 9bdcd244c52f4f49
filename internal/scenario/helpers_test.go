package scenario

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// start is the simulated start of the tests: midnight UTC, so that the
// hours of day in the tests are UTC's.
var start = time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)

// class is a class of kind with params and faults, as Parse would fill it.
func class(t testing.TB, kind string, interval time.Duration, params map[string]float64, faults ...Fault) *Class {
	t.Helper()
	k := lookupKind(kind)
	if k == nil {
		t.Fatalf("no kind %q", kind)
	}
	if interval == 0 {
		interval = k.interval
	}
	for i := range faults {
		if faults[i].Count == 0 && faults[i].Fraction == 0 {
			faults[i].Fraction = 1
		}
	}
	return &Class{Name: kind, Kind: kind, Model: k.modelRef("demo"), Count: 10, Network: k.network,
		Interval: interval, Params: params, Faults: faults}
}

// run steps d every step from from to to (both included) and returns what
// it published and raised.
func run(d Device, from, to time.Time, step time.Duration) ([]device.Record, []Event) {
	var recs []device.Record
	var evs []Event
	for t := from; !t.After(to); t = t.Add(step) {
		recs = append(recs, d.Step(t)...)
		evs = append(evs, d.Events()...)
	}
	return recs, evs
}

// series is the values of one property in order, with their times.
type point struct {
	t time.Time
	v float64
}

func series(recs []device.Record, name string) []point {
	var out []point
	for _, r := range recs {
		if r.Name != name {
			continue
		}
		switch v := r.Value.(type) {
		case float64:
			out = append(out, point{r.Time, v})
		case int:
			out = append(out, point{r.Time, float64(v)})
		case bool:
			b := 0.0
			if v {
				b = 1
			}
			out = append(out, point{r.Time, b})
		}
	}
	return out
}

func mean(ps []point) float64 {
	if len(ps) == 0 {
		return math.NaN()
	}
	s := 0.0
	for _, p := range ps {
		s += p.v
	}
	return s / float64(len(ps))
}

func between(ps []point, from, to time.Time) []point {
	var out []point
	for _, p := range ps {
		if !p.t.Before(from) && p.t.Before(to) {
			out = append(out, p)
		}
	}
	return out
}

func argmax(ps []point) point {
	best := point{v: math.Inf(-1)}
	for _, p := range ps {
		if p.v > best.v {
			best = p
		}
	}
	return best
}

// modelOf parses the class kind's embedded model.
func modelOf(t testing.TB, kind string) *thingmodel.Model {
	t.Helper()
	m, err := thingmodel.Parse(modelDoc(lookupKind(kind)))
	if err != nil {
		t.Fatalf("model of %s: %v", kind, err)
	}
	return m
}

var (
	latMin, latMax = -90.0, 90.0
	lonMin, lonMax = -180.0, 180.0
	positionParts  = map[string]*thingmodel.Schema{
		"lat": {Type: thingmodel.TypeNumber, Unit: "lat", Minimum: &latMin, Maximum: &latMax},
		"lon": {Type: thingmodel.TypeNumber, Unit: "lon", Minimum: &lonMin, Maximum: &lonMax},
		"alt": {Type: thingmodel.TypeNumber, Unit: "m"},
	}
)

// checkRecord checks a record as the hub's ingest does (docs/PROTOCOL.md
// §3.4): a declared property (or a position's part, "location/lat"), the
// model's unit, the type, the range, the enum.
func checkRecord(m *thingmodel.Model, r device.Record) error {
	if r.Time.IsZero() {
		return fmt.Errorf("%s: no time", r.Name)
	}
	var s *thingmodel.Schema
	if p, ok := m.Properties[r.Name]; ok {
		if p.Type == thingmodel.TypePosition {
			return fmt.Errorf("%s: a position is sent as %s/lat and %s/lon", r.Name, r.Name, r.Name)
		}
		s = &p.Schema
	} else if prop, part, ok := strings.Cut(r.Name, "/"); ok && m.Properties[prop] != nil && m.Properties[prop].Type == thingmodel.TypePosition {
		s = positionParts[part]
	}
	if s == nil {
		return fmt.Errorf("%s: not a property of %s", r.Name, m.Key())
	}
	if r.Unit != s.Unit {
		return fmt.Errorf("%s: unit %q, the model's is %q", r.Name, r.Unit, s.Unit)
	}
	return checkValue(r.Name, s, r.Value)
}

func checkValue(name string, s *thingmodel.Schema, v any) error {
	switch s.Type {
	case thingmodel.TypeNumber, thingmodel.TypeInteger:
		f, ok := thingmodel.Number(v)
		if !ok {
			return fmt.Errorf("%s: %T is not a number", name, v)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%s: %v is not finite", name, f)
		}
		if s.Type == thingmodel.TypeInteger && f != math.Trunc(f) {
			return fmt.Errorf("%s: %v is not an integer", name, f)
		}
		if s.Minimum != nil && f < *s.Minimum || s.Maximum != nil && f > *s.Maximum {
			return fmt.Errorf("%s: %v is outside [%v, %v]", name, f, deref(s.Minimum), deref(s.Maximum))
		}
	case thingmodel.TypeBoolean:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: %T is not a boolean", name, v)
		}
	case thingmodel.TypeString:
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %T is not a string", name, v)
		}
		if s.Enum != nil && !slices.Contains(s.Enum, str) {
			return fmt.Errorf("%s: %q is not one of %q", name, str, s.Enum)
		}
	case thingmodel.TypeObject:
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T is not an object", name, v)
		}
		return checkMembers(name, s.Properties, obj)
	default:
		return fmt.Errorf("%s: type %s not checked here", name, s.Type)
	}
	return nil
}

// checkMembers checks an object against its members' schemas: each member
// declared and of its schema, and (as the hub wants of command results and
// events alike) none missing.
func checkMembers(name string, schema map[string]*thingmodel.Schema, obj map[string]any) error {
	for k, v := range obj {
		s, ok := schema[k]
		if !ok {
			return fmt.Errorf("%s.%s: not declared", name, k)
		}
		if err := checkValue(name+"."+k, s, v); err != nil {
			return err
		}
	}
	for k := range schema {
		if _, ok := obj[k]; !ok {
			return fmt.Errorf("%s.%s: missing", name, k)
		}
	}
	return nil
}

func deref(p *float64) any {
	if p == nil {
		return "-"
	}
	return *p
}

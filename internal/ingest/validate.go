package ingest

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Value checks shared by SenML, plain JSON and mapped values.

// maxExactInt is the largest integer a float64 holds exactly; an integer
// property beyond it would silently round.
const maxExactInt = 1 << 53

// fmtNum formats a number for a message as encoding/json would: plain
// decimals unless very large or small, so "1767225600000" reads as sent.
func fmtNum(f float64) string {
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// number validates a number sent for a number or integer schema: converts
// from unit (the unit sent, "" for none) to the schema's unit, then checks
// integrality and range. name is the property (or member path) for messages;
// explicit says the unit was sent with the value rather than inherited from
// a SenML base unit, which is ignored where the model declares no unit.
func number(name string, s *thingmodel.Schema, v float64, unit string, explicit bool) (float64, *Rejection) {
	sent := v
	converted := false
	if unit != "" && unit != s.Unit {
		switch {
		case s.Unit == "" && !explicit:
		case s.Unit == "":
			return 0, Reject(UnitMismatch, "%s has no unit in the model; got %q", name, truncate(unit))
		default:
			out, ok := ConvertUnit(v, unit, s.Unit)
			if !ok {
				return 0, Reject(UnitMismatch, "%s: unit %q does not convert to %q", name, truncate(unit), s.Unit)
			}
			if !finite(out) {
				return 0, Reject(OutOfRange, "%s=%s %s is out of range in %s", name, fmtNum(v), unit, s.Unit)
			}
			v, converted = out, true
		}
	}
	// what names the value in messages, with what was sent if it was
	// converted, so a device author recognises their own number.
	what := func() string {
		if converted {
			return name + "=" + fmtNum(v) + " (from " + fmtNum(sent) + " " + unit + ")"
		}
		return name + "=" + fmtNum(v)
	}
	if s.Type == thingmodel.TypeInteger && (v != math.Trunc(v) || math.Abs(v) > maxExactInt) {
		return 0, Reject(TypeMismatch, "%s is not an integer", what())
	}
	if s.Maximum != nil && v > *s.Maximum {
		return 0, Reject(OutOfRange, "%s above maximum %s", what(), fmtNum(*s.Maximum))
	}
	if s.Minimum != nil && v < *s.Minimum {
		return 0, Reject(OutOfRange, "%s below minimum %s", what(), fmtNum(*s.Minimum))
	}
	return v, nil
}

// enum checks a string against a schema's enum.
func enum(name string, s *thingmodel.Schema, v string) *Rejection {
	if s.Enum != nil && !slices.Contains(s.Enum, v) {
		return Reject(OutOfRange, "%s=%q is not one of %s", name, truncate(v), quoteList(s.Enum))
	}
	return nil
}

func quoteList(vs []string) string {
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(v))
	}
	return b.String()
}

// position checks a position's coordinates.
func position(name string, lat, lon float64) *Rejection {
	switch {
	case lat > 90:
		return Reject(OutOfRange, "%s.lat=%s above maximum 90", name, fmtNum(lat))
	case lat < -90:
		return Reject(OutOfRange, "%s.lat=%s below minimum -90", name, fmtNum(lat))
	case lon > 180:
		return Reject(OutOfRange, "%s.lon=%s above maximum 180", name, fmtNum(lon))
	case lon < -180:
		return Reject(OutOfRange, "%s.lon=%s below minimum -180", name, fmtNum(lon))
	}
	return nil
}

func typeMismatch(name, want string, got jkind) *Rejection {
	return Reject(TypeMismatch, "%s must be %s, not %s", name, want, article(got))
}

// aType is a schema type with its article: "an integer", "a number".
func aType(t string) string {
	switch t {
	case thingmodel.TypeInteger, thingmodel.TypeObject, thingmodel.TypeArray:
		return "an " + t
	}
	return "a " + t
}

func article(k jkind) string {
	switch k {
	case jNull:
		return "null"
	case jArr, jObj:
		return "an " + k.String()
	}
	return "a " + k.String()
}

// jsonRecord turns the JSON value at nodes[idx] into a Record for property
// name at time ms.
func jsonRecord(name string, p *thingmodel.Property, nodes []jnode, idx int, ms int64) (Record, *Rejection) {
	r := Record{Property: name, Time: ms, Unit: p.Unit}
	n := &nodes[idx]
	switch p.Type {
	case thingmodel.TypeNumber, thingmodel.TypeInteger:
		if n.kind != jNum {
			return Record{}, typeMismatch(name, aType(p.Type), n.kind)
		}
		v, rej := number(name, &p.Schema, n.num, "", false)
		if rej != nil {
			return Record{}, rej
		}
		r.Kind, r.Float = KindFloat, v
	case thingmodel.TypeBoolean:
		if n.kind != jBool {
			return Record{}, typeMismatch(name, "a boolean", n.kind)
		}
		r.Kind, r.Bool = KindBool, n.b
	case thingmodel.TypeString:
		if n.kind != jStr {
			return Record{}, typeMismatch(name, "a string", n.kind)
		}
		if rej := enum(name, &p.Schema, n.str); rej != nil {
			return Record{}, rej
		}
		r.Kind, r.String = KindString, n.str
	case thingmodel.TypePosition:
		lat, lon, alt, hasAlt, rej := jsonPosition(name, nodes, idx)
		if rej != nil {
			return Record{}, rej
		}
		r.Kind, r.Lat, r.Lon, r.Alt, r.HasAlt = KindPosition, lat, lon, alt, hasAlt
	case thingmodel.TypeObject, thingmodel.TypeArray:
		if rej := checkValue(name, &p.Schema, nodes, idx); rej != nil {
			return Record{}, rej
		}
		r.Kind, r.Data = KindData, appendJSON(nil, nodes, idx)
	default:
		return Record{}, Reject(TypeMismatch, "%s has schema type %q, which ingest cannot store", name, p.Type)
	}
	return r, nil
}

// jsonPosition reads {"lat":..,"lon":..,"alt":..}; alt is optional.
func jsonPosition(name string, nodes []jnode, idx int) (lat, lon, alt float64, hasAlt bool, rej *Rejection) {
	n := &nodes[idx]
	if n.kind != jObj {
		return 0, 0, 0, false, typeMismatch(name, "a position {lat, lon, alt}", n.kind)
	}
	var hasLat, hasLon bool
	for c := idx + 1; c < int(n.end); c = int(nodes[c].end) {
		m := &nodes[c]
		var dst *float64
		switch m.key {
		case "lat":
			dst, hasLat = &lat, true
		case "lon":
			dst, hasLon = &lon, true
		case "alt":
			dst, hasAlt = &alt, true
		default:
			return 0, 0, 0, false, Reject(TypeMismatch, "%s.%s is not part of a position (lat, lon, alt)", name, truncate(m.key))
		}
		if m.kind != jNum {
			return 0, 0, 0, false, typeMismatch(name+"."+m.key, "a number", m.kind)
		}
		*dst = m.num
	}
	if !hasLat || !hasLon {
		return 0, 0, 0, false, Reject(TypeMismatch, "%s needs both lat and lon", name)
	}
	return lat, lon, alt, hasAlt, position(name, lat, lon)
}

// checkValue validates the JSON value at nodes[idx] against schema s, for
// event data and object and array properties. Declared object members may be
// left out (a device reports what it has); undeclared ones are refused.
func checkValue(name string, s *thingmodel.Schema, nodes []jnode, idx int) *Rejection {
	n := &nodes[idx]
	switch s.Type {
	case thingmodel.TypeNumber, thingmodel.TypeInteger:
		if n.kind != jNum {
			return typeMismatch(name, aType(s.Type), n.kind)
		}
		if _, rej := number(name, s, n.num, "", false); rej != nil {
			return rej
		}
	case thingmodel.TypeBoolean:
		if n.kind != jBool {
			return typeMismatch(name, "a boolean", n.kind)
		}
	case thingmodel.TypeString:
		if n.kind != jStr {
			return typeMismatch(name, "a string", n.kind)
		}
		if rej := enum(name, s, n.str); rej != nil {
			return rej
		}
	case thingmodel.TypePosition:
		if _, _, _, _, rej := jsonPosition(name, nodes, idx); rej != nil {
			return rej
		}
	case thingmodel.TypeObject:
		if n.kind != jObj {
			return typeMismatch(name, "an object", n.kind)
		}
		for c := idx + 1; c < int(n.end); c = int(nodes[c].end) {
			key := nodes[c].key
			ms := s.Properties[key]
			if ms == nil {
				return Reject(UnknownProperty, "%s.%s is not declared by the model", name, truncate(key))
			}
			if rej := checkValue(name+"."+key, ms, nodes, c); rej != nil {
				return rej
			}
		}
	case thingmodel.TypeArray:
		if n.kind != jArr {
			return typeMismatch(name, "an array", n.kind)
		}
		if s.Items == nil {
			return Reject(TypeMismatch, "%s: the model's array has no item schema", name)
		}
		i := 0
		for c := idx + 1; c < int(n.end); c = int(nodes[c].end) {
			if rej := checkValue(name+"["+strconv.Itoa(i)+"]", s.Items, nodes, c); rej != nil {
				return rej
			}
			i++
		}
	default:
		return Reject(TypeMismatch, "%s has schema type %q, which ingest cannot check", name, s.Type)
	}
	return nil
}

func quote(s string) string { return strconv.Quote(truncate(s)) }

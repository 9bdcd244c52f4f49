package thingmodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Errors from ValidateArgs.
var (
	// ErrUnknownAction: the model declares no action of that name.
	ErrUnknownAction = errors.New("unknown action")
	// ErrInvalidArgs: an argument is missing, undeclared or out of its schema.
	// Each such error names the argument.
	ErrInvalidArgs = errors.New("invalid action arguments")
)

// ValidateArgs checks decoded JSON arguments (map[string]any from
// encoding/json, with float64 or json.Number numbers) against the action's
// input schema. It reports every bad argument, each error naming it (nested
// members as "arg.member", array elements as "arg[i]").
func (m *Model) ValidateArgs(action string, args map[string]any) error {
	a, ok := m.Actions[action]
	if !ok || a == nil {
		return fmt.Errorf("thingmodel: %s: action %q: %w", m.Key(), action, ErrUnknownAction)
	}
	var errs []error
	report := func(name, format string, v ...any) {
		errs = append(errs, fmt.Errorf("thingmodel: action %q: argument %q: %w: %s",
			action, name, ErrInvalidArgs, fmt.Sprintf(format, v...)))
	}
	checkMembers(a.Input, args, "", report)
	return errors.Join(errs...)
}

type reportFn func(name, format string, v ...any)

func checkMembers(schema map[string]*Schema, vals map[string]any, prefix string, report reportFn) {
	for _, name := range sortedKeys(schema) {
		v, ok := vals[name]
		if !ok {
			report(prefix+name, "missing")
			continue
		}
		checkValue(schema[name], v, prefix+name, report)
	}
	for _, name := range sortedKeys(vals) {
		if _, ok := schema[name]; !ok {
			report(prefix+name, "not declared by the action")
		}
	}
}

func checkValue(s *Schema, v any, name string, report reportFn) {
	if v == nil {
		report(name, "must not be null")
		return
	}
	switch s.Type {
	case TypeNumber, TypeInteger:
		f, ok := toFloat(v)
		if !ok {
			report(name, "must be a %s, not %T", s.Type, v)
			return
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			report(name, "must be finite")
			return
		}
		if s.Type == TypeInteger && (f != math.Trunc(f) || math.Abs(f) > maxExactInt) {
			report(name, "%v is not an integer", f)
			return
		}
		if s.Minimum != nil && f < *s.Minimum {
			report(name, "%v is below the minimum %v", f, *s.Minimum)
		}
		if s.Maximum != nil && f > *s.Maximum {
			report(name, "%v is above the maximum %v", f, *s.Maximum)
		}
	case TypeBoolean:
		if _, ok := v.(bool); !ok {
			report(name, "must be a boolean, not %T", v)
		}
	case TypeString:
		str, ok := v.(string)
		if !ok {
			report(name, "must be a string, not %T", v)
			return
		}
		if s.Enum != nil && !slices.Contains(s.Enum, str) {
			report(name, "%q is not one of %q", str, s.Enum)
		}
	case TypePosition:
		obj, ok := v.(map[string]any)
		if !ok {
			report(name, "must be a position object {lat, lon, alt}, not %T", v)
			return
		}
		checkMembers(positionSchema(obj), obj, name+".", report)
	case TypeObject:
		obj, ok := v.(map[string]any)
		if !ok {
			report(name, "must be an object, not %T", v)
			return
		}
		checkMembers(s.Properties, obj, name+".", report)
	case TypeArray:
		arr, ok := v.([]any)
		if !ok {
			report(name, "must be an array, not %T", v)
			return
		}
		for i, e := range arr {
			checkValue(s.Items, e, name+"["+strconv.Itoa(i)+"]", report)
		}
	default:
		report(name, "schema type %q is not valid", s.Type)
	}
}

var (
	latMin, latMax = -90.0, 90.0
	lonMin, lonMax = -180.0, 180.0

	latSchema = &Schema{Type: TypeNumber, Unit: "lat", Minimum: &latMin, Maximum: &latMax}
	lonSchema = &Schema{Type: TypeNumber, Unit: "lon", Minimum: &lonMin, Maximum: &lonMax}
	altSchema = &Schema{Type: TypeNumber, Unit: "m"}
)

// positionSchema describes a position value; alt is optional, so it is part of
// the schema only when the value carries it.
func positionSchema(obj map[string]any) map[string]*Schema {
	s := map[string]*Schema{"lat": latSchema, "lon": lonSchema}
	if _, ok := obj["alt"]; ok {
		s["alt"] = altSchema
	}
	return s
}

// Number returns a decoded JSON number (float64, json.Number, or an integer
// type) as a float64; ok is false for anything else. Packages that check
// values against a Schema use it so that they agree on what is a number.
func Number(v any) (float64, bool) { return toFloat(v) }

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case uint32:
		return float64(n), true
	case json.Number:
		f, err := strconv.ParseFloat(string(n), 64)
		return f, err == nil
	}
	return 0, false
}

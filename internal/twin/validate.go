package twin

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// FieldError is an ErrInvalid that names the offending field, as a dotted
// path starting with the section: "desired.setpoint", "reported.load[2]".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return "twin: " + e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// maxExactInt is the largest integer a float64 holds exactly.
const maxExactInt = 1 << 53

// validate checks the members a patch sets against the model: each must be a
// declared property (not read-only when desired), and its merged value must
// fit the property's schema. Members the patch deletes are not checked.
func validate(m *thingmodel.Model, section string, desired bool, patch, merged map[string]any) error {
	var errs []error
	report := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	for _, name := range sortedKeys(patch) {
		if patch[name] == nil {
			continue
		}
		field := section + "." + name
		prop := m.Properties[name]
		if prop == nil {
			report(field, "not a property of model %s", m.Key())
			continue
		}
		if desired && prop.ReadOnly {
			report(field, "read-only property, only the device reports it")
			continue
		}
		checkValue(&prop.Schema, merged[name], field, report)
	}
	return errors.Join(errs...)
}

type reportFn func(field, format string, args ...any)

func checkValue(s *thingmodel.Schema, v any, field string, report reportFn) {
	if v == nil {
		report(field, "must not be null")
		return
	}
	switch s.Type {
	case thingmodel.TypeNumber, thingmodel.TypeInteger:
		f, ok := thingmodel.Number(v)
		if !ok {
			report(field, "must be %s, not %s", article(s.Type), kind(v))
			return
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			report(field, "must be finite")
			return
		}
		if s.Type == thingmodel.TypeInteger && (f != math.Trunc(f) || math.Abs(f) > maxExactInt) {
			report(field, "%v is not an integer", f)
			return
		}
		if s.Minimum != nil && f < *s.Minimum {
			report(field, "%v below minimum %v", f, *s.Minimum)
		}
		if s.Maximum != nil && f > *s.Maximum {
			report(field, "%v above maximum %v", f, *s.Maximum)
		}
	case thingmodel.TypeBoolean:
		if _, ok := v.(bool); !ok {
			report(field, "must be a boolean, not %s", kind(v))
		}
	case thingmodel.TypeString:
		str, ok := v.(string)
		if !ok {
			report(field, "must be a string, not %s", kind(v))
			return
		}
		if s.Enum != nil && !slices.Contains(s.Enum, str) {
			report(field, "%q is not one of %q", str, s.Enum)
		}
	case thingmodel.TypePosition:
		obj, ok := v.(map[string]any)
		if !ok {
			report(field, "must be a position object {lat, lon, alt}, not %s", kind(v))
			return
		}
		for _, k := range []string{"lat", "lon"} {
			if _, ok := obj[k]; !ok {
				report(field+"."+k, "missing")
			}
		}
		for _, k := range sortedKeys(obj) {
			ps, ok := positionSchema[k]
			if !ok {
				report(field+"."+k, "not a member of a position (lat, lon, alt)")
				continue
			}
			checkValue(ps, obj[k], field+"."+k, report)
		}
	case thingmodel.TypeObject:
		obj, ok := v.(map[string]any)
		if !ok {
			report(field, "must be an object, not %s", kind(v))
			return
		}
		for _, k := range sortedKeys(obj) {
			ms := s.Properties[k]
			if ms == nil {
				report(field+"."+k, "not declared by the schema")
				continue
			}
			checkValue(ms, obj[k], field+"."+k, report)
		}
	case thingmodel.TypeArray:
		arr, ok := v.([]any)
		if !ok {
			report(field, "must be an array, not %s", kind(v))
			return
		}
		if s.Items == nil {
			return
		}
		for i, e := range arr {
			checkValue(s.Items, e, field+"["+strconv.Itoa(i)+"]", report)
		}
	default:
		report(field, "schema type %q is not valid", s.Type)
	}
}

func article(typ string) string {
	if typ == thingmodel.TypeInteger {
		return "an integer"
	}
	return "a " + typ
}

var (
	latMin, latMax = -90.0, 90.0
	lonMin, lonMax = -180.0, 180.0

	positionSchema = map[string]*thingmodel.Schema{
		"lat": {Type: thingmodel.TypeNumber, Unit: "lat", Minimum: &latMin, Maximum: &latMax},
		"lon": {Type: thingmodel.TypeNumber, Unit: "lon", Minimum: &lonMin, Maximum: &lonMax},
		"alt": {Type: thingmodel.TypeNumber, Unit: "m"},
	}
)

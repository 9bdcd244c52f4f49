package thingmodel

import (
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wanwu-iot/wanwu/internal/code"
)

var (
	// Affordance names become SenML record names, CEL identifiers and topic
	// levels, so they are plain identifiers.
	affordanceName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,63}$`)

	// Semantic Versioning 2.0.0 without build metadata: build metadata does not
	// take part in precedence, so two versions differing only in it would be
	// distinct registry keys that compare equal.
	semver = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)` +
		`(-(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*)?$`)
)

const maxVersionLen = 64

// maxExactInt is the largest integer a float64 holds exactly; integer bounds
// beyond it would silently round.
const maxExactInt = 1 << 53

func validClassification(s string) bool {
	switch s {
	case ClassPublic, ClassInternal, ClassImportant, ClassCore:
		return true
	}
	return false
}

func validType(t string) bool {
	switch t {
	case TypeNumber, TypeInteger, TypeBoolean, TypeString, TypePosition, TypeObject, TypeArray:
		return true
	}
	return false
}

func (m *Model) validate(c *checker) {
	switch {
	case m.ID == "":
		c.add("$.id", "is required")
	default:
		// A model id is a code so that it can name a model in topics,
		// subjects and URLs exactly as object codes do.
		if _, err := code.Parse(m.ID); err != nil {
			c.add("$.id", "%v", err)
		}
	}
	switch {
	case m.Version == "":
		c.add("$.version", "is required")
	case len(m.Version) > maxVersionLen || !semver.MatchString(m.Version):
		c.add("$.version", "%q is not a semantic version MAJOR.MINOR.PATCH[-PRERELEASE]", m.Version)
	}
	checkText(c, "$.title", m.Title)
	checkText(c, "$.description", m.Description)
	if n := len(m.Properties) + len(m.Events) + len(m.Actions); n > MaxAffordances {
		c.add("$", "%d affordances, more than the limit of %d", n, MaxAffordances)
	}

	for _, name := range sortedKeys(m.Properties) {
		p := child("$.properties", name)
		checkName(c, p, name)
		prop := m.Properties[name]
		if prop == nil {
			c.add(p, "must not be null")
			continue
		}
		checkClassification(c, p, prop.Classification)
		checkPriority(c, p, prop.Priority, PriorityTelemetry, PriorityBulk, PriorityAlarm)
		if prop.Sampling != "" {
			if d, err := time.ParseDuration(prop.Sampling); err != nil || d <= 0 {
				c.add(p+".sampling", "%q is not a positive duration such as \"10s\"", prop.Sampling)
			}
		}
		checkSchema(c, p, &prop.Schema, 1)
	}
	for _, name := range sortedKeys(m.Events) {
		p := child("$.events", name)
		checkName(c, p, name)
		ev := m.Events[name]
		if ev == nil {
			c.add(p, "must not be null")
			continue
		}
		checkText(c, p+".description", ev.Description)
		checkClassification(c, p, ev.Classification)
		checkPriority(c, p, ev.Priority, PriorityControl, PriorityAlarm, PriorityTelemetry, PriorityBulk)
		if ev.Data != nil {
			checkSchema(c, p+".data", ev.Data, 1)
		}
	}
	for _, name := range sortedKeys(m.Actions) {
		p := child("$.actions", name)
		checkName(c, p, name)
		a := m.Actions[name]
		if a == nil {
			c.add(p, "must not be null")
			continue
		}
		checkText(c, p+".description", a.Description)
		checkClassification(c, p, a.Classification)
		checkArgs(c, p+".input", a.Input)
		checkArgs(c, p+".output", a.Output)
	}
	if m.Mapping != nil {
		m.Mapping.validate(c, m)
	}
}

func (mp *Mapping) validate(c *checker, m *Model) {
	pp := "$.mapping.properties"
	// Without a Modbus mapping the expressions are the mapping; with one
	// they may be left out, but not given empty.
	if len(mp.Properties) == 0 && (mp.Modbus == nil || mp.Properties != nil) {
		c.add(pp, "a mapping needs at least one property")
	}
	if mp.Time != "" && len(mp.Properties) == 0 {
		c.add("$.mapping.time", "a time expression needs property expressions beside it")
	}
	if mp.Modbus != nil {
		mp.Modbus.validate(c, m)
	}
	for _, name := range sortedKeys(mp.Properties) {
		p := child(pp, name)
		if _, ok := m.Properties[name]; !ok {
			c.add(p, "%q is not a property of the model", name)
			continue
		}
		checkExpression(c, p, mp.Properties[name], true)
	}
	checkExpression(c, "$.mapping.time", mp.Time, false)
}

func checkExpression(c *checker, path, expr string, required bool) {
	switch {
	case expr == "" && required:
		c.add(path, "must not be empty")
	case len(expr) > MaxExpressionLen:
		c.add(path, "expression is %d bytes, more than the limit of %d", len(expr), MaxExpressionLen)
	case !utf8.ValidString(expr):
		c.add(path, "is not valid UTF-8")
	}
}

func checkName(c *checker, path, name string) {
	if !affordanceName.MatchString(name) {
		c.add(path, "name %q must match [a-zA-Z][a-zA-Z0-9_]{0,63}", name)
	}
}

func checkText(c *checker, path, s string) {
	if !utf8.ValidString(s) {
		c.add(path, "is not valid UTF-8")
	}
}

// checkClassification accepts "" because a model built in code may leave the
// default implicit; Parse has already filled it in.
func checkClassification(c *checker, path, class string) {
	if class != "" && !validClassification(class) {
		c.add(path+".classification", "%q is not one of public, internal, important, core", class)
	}
}

// checkPriority accepts "" (the default) and the listed classes.
func checkPriority(c *checker, path, priority string, allowed ...string) {
	if priority == "" || slices.Contains(allowed, priority) {
		return
	}
	c.add(path+".priority", "%q is not one of %s", priority, strings.Join(allowed, ", "))
}

func checkArgs(c *checker, path string, args map[string]*Schema) {
	for _, name := range sortedKeys(args) {
		p := child(path, name)
		checkName(c, p, name)
		if args[name] == nil {
			c.add(p, "must not be null")
			continue
		}
		checkSchema(c, p, args[name], 1)
	}
}

func checkSchema(c *checker, path string, s *Schema, depth int) {
	if depth > MaxSchemaDepth {
		c.add(path, "nested deeper than %d levels", MaxSchemaDepth)
		return
	}
	checkText(c, path+".description", s.Description)
	switch {
	case s.Type == "":
		c.add(path+".type", "is required")
	case !validType(s.Type):
		c.add(path+".type", "%q is not one of number, integer, boolean, string, position, object, array", s.Type)
	}
	numeric := s.Type == TypeNumber || s.Type == TypeInteger
	// With no usable type, "not allowed on this type" would only echo the
	// type problem; such checks wait until the type is fixed.
	typed := validType(s.Type)

	if s.Unit != "" {
		switch {
		case !numeric && typed:
			c.add(path+".unit", "unit is allowed only on number and integer, not on %s", s.Type)
		case !KnownUnit(s.Unit):
			c.add(path+".unit", "unknown unit %q: not in the SenML units registries (RFC 8428 §12.1, RFC 8798)", s.Unit)
		}
	}

	for _, b := range []struct {
		name string
		v    *float64
	}{{"minimum", s.Minimum}, {"maximum", s.Maximum}} {
		if b.v == nil {
			continue
		}
		bp := path + "." + b.name
		switch {
		case !numeric && typed:
			c.add(bp, "%s is allowed only on number and integer, not on %s", b.name, s.Type)
		case math.IsNaN(*b.v) || math.IsInf(*b.v, 0):
			c.add(bp, "must be finite")
		case s.Type == TypeInteger && (*b.v != math.Trunc(*b.v) || math.Abs(*b.v) > maxExactInt):
			c.add(bp, "%v is not an integer within ±2^53", *b.v)
		}
	}
	if numeric && s.Minimum != nil && s.Maximum != nil && *s.Minimum > *s.Maximum {
		c.add(path+".minimum", "minimum %v is greater than maximum %v", *s.Minimum, *s.Maximum)
	}

	if s.Enum != nil {
		ep := path + ".enum"
		switch {
		case s.Type != TypeString && typed:
			c.add(ep, "enum is allowed only on string, not on %s", s.Type)
		case len(s.Enum) == 0:
			c.add(ep, "must not be empty")
		default:
			seen := make(map[string]bool, len(s.Enum))
			for i, v := range s.Enum {
				if seen[v] {
					c.add(index(ep, i), "duplicate value %q", v)
				}
				seen[v] = true
				checkText(c, index(ep, i), v)
			}
		}
	}

	pp := path + ".properties"
	switch {
	case s.Type == TypeObject && len(s.Properties) == 0:
		c.add(pp, "an object needs at least one property")
	case s.Type == TypeObject:
		for _, name := range sortedKeys(s.Properties) {
			p := child(pp, name)
			checkName(c, p, name)
			if s.Properties[name] == nil {
				c.add(p, "must not be null")
				continue
			}
			checkSchema(c, p, s.Properties[name], depth+1)
		}
	case s.Properties != nil && typed:
		c.add(pp, "properties are allowed only on object, not on %s", s.Type)
	}

	ip := path + ".items"
	switch {
	case s.Type == TypeArray && s.Items == nil:
		c.add(ip, "an array needs items")
	case s.Type == TypeArray:
		checkSchema(c, ip, s.Items, depth+1)
	case s.Items != nil && typed:
		c.add(ip, "items are allowed only on array, not on %s", s.Type)
	}
}

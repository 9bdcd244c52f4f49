package thingmodel

import (
	"math"
	"strconv"
)

// decode* functions turn the generic tree into a Model, reporting wrong JSON
// types, unknown fields and duplicate keys. Semantic rules (grammar, units,
// ranges) are left to validate, which also serves models built in code.

// members calls fn for each member of object n, reporting duplicates. It
// reports n itself if it is not an object and returns false.
func members(c *checker, path string, n *node, fn func(key, path string, v *node)) bool {
	if n.kind != kindObject {
		c.add(path, "must be an object, not %s", n.kind)
		return false
	}
	seen := make(map[string]bool, len(n.keys))
	for i, k := range n.keys {
		p := child(path, k)
		if seen[k] {
			c.add(p, "duplicate key")
			continue
		}
		seen[k] = true
		fn(k, p, n.vals[i])
	}
	return true
}

func unknown(c *checker, path string) { c.add(path, "unknown field") }

func str(c *checker, path string, n *node) string {
	if n.kind != kindString {
		c.add(path, "must be a string, not %s", n.kind)
		return ""
	}
	return n.str
}

func boolean(c *checker, path string, n *node) bool {
	if n.kind != kindBool {
		c.add(path, "must be a boolean, not %s", n.kind)
		return false
	}
	return n.b
}

func number(c *checker, path string, n *node) *float64 {
	if n.kind != kindNumber {
		c.add(path, "must be a number, not %s", n.kind)
		return nil
	}
	f, err := strconv.ParseFloat(string(n.num), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		c.add(path, "number %s is out of range", n.num)
		return nil
	}
	return &f
}

func decodeModel(c *checker, root *node) *Model {
	m := &Model{}
	ok := members(c, "$", root, func(k, p string, v *node) {
		switch k {
		case "id":
			m.ID = str(c, p, v)
		case "version":
			m.Version = str(c, p, v)
		case "title":
			m.Title = str(c, p, v)
		case "description":
			m.Description = str(c, p, v)
		case "properties":
			m.Properties = make(map[string]*Property)
			members(c, p, v, func(name, p string, v *node) {
				m.Properties[name] = decodeProperty(c, p, v)
			})
		case "events":
			m.Events = make(map[string]*Event)
			members(c, p, v, func(name, p string, v *node) {
				m.Events[name] = decodeEvent(c, p, v)
			})
		case "actions":
			m.Actions = make(map[string]*Action)
			members(c, p, v, func(name, p string, v *node) {
				m.Actions[name] = decodeAction(c, p, v)
			})
		case "mapping":
			m.Mapping = decodeMapping(c, p, v)
		default:
			unknown(c, p)
		}
	})
	if !ok {
		return nil
	}
	return m
}

// A value that is not an object decodes to nil, which validate reports at the
// same path and the checker then folds into the first problem.

func decodeProperty(c *checker, path string, n *node) *Property {
	p := &Property{}
	ok := members(c, path, n, func(k, kp string, v *node) {
		switch k {
		case "sampling":
			p.Sampling = str(c, kp, v)
		case "classification":
			p.Classification = str(c, kp, v)
		case "readOnly":
			p.ReadOnly = boolean(c, kp, v)
		case "priority":
			p.Priority = str(c, kp, v)
		default:
			decodeSchemaField(c, &p.Schema, k, kp, v)
		}
	})
	if !ok {
		return nil
	}
	return p
}

func decodeEvent(c *checker, path string, n *node) *Event {
	e := &Event{}
	ok := members(c, path, n, func(k, kp string, v *node) {
		switch k {
		case "description":
			e.Description = str(c, kp, v)
		case "classification":
			e.Classification = str(c, kp, v)
		case "data":
			e.Data = decodeSchema(c, kp, v)
		case "priority":
			e.Priority = str(c, kp, v)
		default:
			unknown(c, kp)
		}
	})
	if !ok {
		return nil
	}
	return e
}

func decodeAction(c *checker, path string, n *node) *Action {
	a := &Action{}
	ok := members(c, path, n, func(k, kp string, v *node) {
		switch k {
		case "description":
			a.Description = str(c, kp, v)
		case "classification":
			a.Classification = str(c, kp, v)
		case "input":
			a.Input = decodeSchemaMap(c, kp, v)
		case "output":
			a.Output = decodeSchemaMap(c, kp, v)
		default:
			unknown(c, kp)
		}
	})
	if !ok {
		return nil
	}
	return a
}

func decodeSchemaMap(c *checker, path string, n *node) map[string]*Schema {
	m := make(map[string]*Schema)
	members(c, path, n, func(name, p string, v *node) {
		m[name] = decodeSchema(c, p, v)
	})
	return m
}

func decodeSchema(c *checker, path string, n *node) *Schema {
	s := &Schema{}
	ok := members(c, path, n, func(k, kp string, v *node) {
		decodeSchemaField(c, s, k, kp, v)
	})
	if !ok {
		return nil
	}
	return s
}

func decodeSchemaField(c *checker, s *Schema, k, path string, v *node) {
	switch k {
	case "type":
		s.Type = str(c, path, v)
	case "unit":
		s.Unit = str(c, path, v)
	case "minimum":
		s.Minimum = number(c, path, v)
	case "maximum":
		s.Maximum = number(c, path, v)
	case "description":
		s.Description = str(c, path, v)
	case "enum":
		if v.kind != kindArray {
			c.add(path, "must be an array of strings, not %s", v.kind)
			return
		}
		s.Enum = make([]string, 0, len(v.elems))
		for i, e := range v.elems {
			s.Enum = append(s.Enum, str(c, index(path, i), e))
		}
	case "properties":
		s.Properties = decodeSchemaMap(c, path, v)
	case "items":
		s.Items = decodeSchema(c, path, v)
	default:
		unknown(c, path)
	}
}

func decodeMapping(c *checker, path string, n *node) *Mapping {
	mp := &Mapping{}
	ok := members(c, path, n, func(k, kp string, v *node) {
		switch k {
		case "properties":
			mp.Properties = make(map[string]string)
			members(c, kp, v, func(name, p string, v *node) {
				mp.Properties[name] = str(c, p, v)
			})
		case "time":
			// Time "" means "no time expression" in the struct; an explicit
			// empty string in a document is a mistake worth naming.
			if mp.Time = str(c, kp, v); v.kind == kindString && mp.Time == "" {
				c.add(kp, "must not be empty")
			}
		case "modbus":
			// One that is not an object stands in as an empty one, so
			// that validate does not also miss the expressions.
			if mp.Modbus = decodeModbus(c, kp, v); mp.Modbus == nil {
				mp.Modbus = &ModbusMapping{}
			}
		default:
			unknown(c, kp)
		}
	})
	if !ok {
		return nil
	}
	return mp
}

package thingmodel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// JSON returns the model's canonical form: object keys in a fixed order
// (struct fields in declaration order, map keys sorted), defaults written out,
// empty collections left out, no insignificant whitespace. Equal models give
// equal bytes, so the registry can hash and compare what it stores.
func (m *Model) JSON() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("thingmodel: canonical form of %s: %w", m.Key(), err)
	}
	n := m.clone()
	n.fillDefaults()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // descriptions stay readable; the form is stable either way
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("thingmodel: encode %s: %w", m.Key(), err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// clone deep-copies m so that normalizing never changes the caller's model.
func (m *Model) clone() *Model {
	n := *m
	n.Properties = cloneMap(m.Properties, func(p *Property) *Property {
		q := *p
		q.Schema = *p.Schema.clone()
		return &q
	})
	n.Events = cloneMap(m.Events, func(e *Event) *Event {
		f := *e
		f.Data = e.Data.clone()
		return &f
	})
	n.Actions = cloneMap(m.Actions, func(a *Action) *Action {
		b := *a
		b.Input = cloneMap(a.Input, (*Schema).clone)
		b.Output = cloneMap(a.Output, (*Schema).clone)
		return &b
	})
	if m.Mapping != nil {
		mp := *m.Mapping
		mp.Properties = maps.Clone(m.Mapping.Properties)
		mp.Modbus = m.Mapping.Modbus.clone()
		n.Mapping = &mp
	}
	return &n
}

func (s *Schema) clone() *Schema {
	if s == nil {
		return nil
	}
	t := *s
	if s.Minimum != nil {
		v := *s.Minimum
		t.Minimum = &v
	}
	if s.Maximum != nil {
		v := *s.Maximum
		t.Maximum = &v
	}
	t.Enum = slices.Clone(s.Enum)
	t.Properties = cloneMap(s.Properties, (*Schema).clone)
	t.Items = s.Items.clone()
	return &t
}

func cloneMap[V any](m map[string]*V, f func(*V) *V) map[string]*V {
	if m == nil {
		return nil
	}
	n := maps.Clone(m)
	for k, v := range n {
		if v != nil {
			n[k] = f(v)
		}
	}
	return n
}

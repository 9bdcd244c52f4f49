package thingmodel

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// WoT vocabulary used by ThingDescription.
const (
	TDContext      = "https://www.w3.org/2022/wot/td/v1.1"
	WanwuTDContext = "https://wanwu.dev/ns/td#"
)

// ThingDescription exports the model as a W3C WoT Thing Description 1.1
// document of @type "tm:ThingModel". A Thing Model carries no forms or
// security: those belong to a concrete Thing, which wanwu describes through
// its own endpoints. wanwu terms the TD vocabulary lacks (classification,
// sampling, the model code) live under the "wanwu" prefix.
func (m *Model) ThingDescription() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("thingmodel: thing description of %s: %w", m.Key(), err)
	}
	title := m.Title
	if title == "" {
		title = m.ID // TD requires a title
	}
	td := map[string]any{
		"@context":    []any{TDContext, map[string]string{"wanwu": WanwuTDContext}},
		"@type":       "tm:ThingModel",
		"title":       title,
		"version":     map[string]string{"model": m.Version},
		"wanwu:model": m.ID,
	}
	if m.Description != "" {
		td["description"] = m.Description
	}

	props := make(map[string]any, len(m.Properties))
	for name, p := range m.Properties {
		ds := tdSchema(&p.Schema)
		ds["readOnly"] = p.ReadOnly
		ds["wanwu:classification"] = classOrDefault(p.Classification)
		if p.Sampling != "" {
			ds["wanwu:sampling"] = p.Sampling
		}
		props[name] = ds
	}
	events := make(map[string]any, len(m.Events))
	for name, e := range m.Events {
		a := map[string]any{"wanwu:classification": classOrDefault(e.Classification)}
		if e.Description != "" {
			a["description"] = e.Description
		}
		if e.Data != nil {
			a["data"] = tdSchema(e.Data)
		}
		events[name] = a
	}
	actions := make(map[string]any, len(m.Actions))
	for name, act := range m.Actions {
		a := map[string]any{"wanwu:classification": classOrDefault(act.Classification)}
		if act.Description != "" {
			a["description"] = act.Description
		}
		if act.Input != nil {
			a["input"] = tdObject(act.Input)
		}
		if act.Output != nil {
			a["output"] = tdObject(act.Output)
		}
		actions[name] = a
	}
	td["properties"] = props
	td["events"] = events
	td["actions"] = actions

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(td); err != nil {
		return nil, fmt.Errorf("thingmodel: encode thing description of %s: %w", m.Key(), err)
	}
	return buf.Bytes(), nil
}

func classOrDefault(c string) string {
	if c == "" {
		return DefaultClassification
	}
	return c
}

// tdObject maps a set of named arguments to an object DataSchema. Every
// argument is required, matching ValidateArgs.
func tdObject(args map[string]*Schema) map[string]any {
	props := make(map[string]any, len(args))
	required := make([]string, 0, len(args))
	for _, name := range sortedKeys(args) {
		props[name] = tdSchema(args[name])
		required = append(required, name)
	}
	return map[string]any{"type": "object", "properties": props, "required": required}
}

func tdSchema(s *Schema) map[string]any {
	ds := map[string]any{}
	if s.Description != "" {
		ds["description"] = s.Description
	}
	switch s.Type {
	case TypePosition:
		// WoT has no position type; this is the object ingest takes
		// ({"lat","lon","alt"}, PROTOCOL.md §3.2), with SenML units for the
		// coordinates: one schema for the export and the wire.
		ds["type"] = "object"
		ds["properties"] = map[string]any{
			"lat": map[string]any{"type": "number", "unit": "lat", "minimum": -90, "maximum": 90},
			"lon": map[string]any{"type": "number", "unit": "lon", "minimum": -180, "maximum": 180},
			"alt": map[string]any{"type": "number", "unit": "m"},
		}
		ds["required"] = []string{"lat", "lon"}
		ds["additionalProperties"] = false
		return ds
	case TypeObject:
		// Data (a property's or an event's): ingest refuses members the
		// model does not declare and takes any subset of those it does, so
		// none is required. Action arguments are another matter (tdObject).
		props := make(map[string]any, len(s.Properties))
		for name, ps := range s.Properties {
			props[name] = tdSchema(ps)
		}
		ds["type"] = "object"
		ds["properties"] = props
		ds["additionalProperties"] = false
		return ds
	case TypeArray:
		ds["items"] = tdSchema(s.Items)
	}
	ds["type"] = s.Type
	if s.Unit != "" {
		ds["unit"] = s.Unit
	}
	if s.Minimum != nil {
		ds["minimum"] = *s.Minimum
	}
	if s.Maximum != nil {
		ds["maximum"] = *s.Maximum
	}
	if s.Enum != nil {
		ds["enum"] = s.Enum
	}
	return ds
}

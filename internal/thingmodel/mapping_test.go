package thingmodel

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMapping(t *testing.T) {
	const head = `"id":"acme:v","version":"1.0.0","properties":{"t":{"type":"number"},"m":{"type":"string"}}`
	m, err := Parse([]byte(`{` + head + `,"mapping":{"properties":{"t":"payload.t / 10.0","m":"payload.m"},"time":"payload.ts"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Mapping{Properties: map[string]string{"t": "payload.t / 10.0", "m": "payload.m"}, Time: "payload.ts"}
	if !reflect.DeepEqual(m.Mapping, want) {
		t.Fatalf("Mapping = %+v, want %+v", m.Mapping, want)
	}
	canon, err := m.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(canon), `"mapping":{"properties":{"m":"payload.m","t":"payload.t / 10.0"},"time":"payload.ts"}`) {
		t.Errorf("canonical form lacks the mapping: %s", canon)
	}
	m2, err := Parse(canon)
	if err != nil || !reflect.DeepEqual(m, m2) {
		t.Fatalf("round trip: %v", err)
	}
	// The clone behind JSON must not share the mapping with the original.
	c := m.clone()
	c.Mapping.Properties["t"] = "x"
	if m.Mapping.Properties["t"] != "payload.t / 10.0" {
		t.Errorf("clone shares the mapping's properties")
	}

	tests := []struct {
		name, mapping string
		paths         []string
	}{
		{"not an object", `[]`, []string{"$.mapping"}},
		{"null", `null`, []string{"$.mapping"}},
		{"no properties", `{}`, []string{"$.mapping.properties"}},
		{"empty properties", `{"properties":{}}`, []string{"$.mapping.properties"}},
		{"unknown property", `{"properties":{"x":"1"}}`, []string{"$.mapping.properties.x"}},
		{"empty expression", `{"properties":{"t":""}}`, []string{"$.mapping.properties.t"}},
		{"not a string", `{"properties":{"t":1,"m":null}}`, []string{"$.mapping.properties.m", "$.mapping.properties.t"}},
		{"too long", `{"properties":{"t":"` + strings.Repeat("1", MaxExpressionLen+1) + `"}}`, []string{"$.mapping.properties.t"}},
		{"empty time", `{"properties":{"t":"1"},"time":""}`, []string{"$.mapping.time"}},
		{"time not a string", `{"properties":{"t":"1"},"time":5}`, []string{"$.mapping.time"}},
		{"unknown field", `{"properties":{"t":"1"},"when":"x"}`, []string{"$.mapping.when"}},
		{"duplicate", `{"properties":{"t":"1","t":"2"}}`, []string{"$.mapping.properties.t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(`{` + head + `,"mapping":` + tt.mapping + `}`))
			ve, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			var paths []string
			for _, p := range ve.Problems {
				paths = append(paths, p.Path)
			}
			if !reflect.DeepEqual(paths, tt.paths) {
				t.Fatalf("paths %v, want %v (%v)", paths, tt.paths, err)
			}
		})
	}
}

func TestValidateMappingInCode(t *testing.T) {
	m := &Model{ID: "acme:v", Version: "1.0.0", Properties: map[string]*Property{"t": {Schema: Schema{Type: TypeNumber}}},
		Mapping: &Mapping{Properties: map[string]string{"t": "payload.t", "u": "1"}}}
	err := m.Validate()
	ve, ok := err.(*ValidationError)
	if !ok || len(ve.Problems) != 1 || ve.Problems[0].Path != "$.mapping.properties.u" {
		t.Fatalf("Validate = %v", err)
	}
}

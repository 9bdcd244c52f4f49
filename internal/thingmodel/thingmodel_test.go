package thingmodel

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func readPump(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/pump.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseValid(t *testing.T) {
	m, err := Parse(readPump(t))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := m.Key(), "acme:pump@1.2.0"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
	temp := m.Properties["temperature"]
	if temp.Type != TypeNumber || temp.Unit != "Cel" || *temp.Minimum != -40 || *temp.Maximum != 125 ||
		!temp.ReadOnly || temp.Sampling != "10s" || temp.Classification != ClassInternal {
		t.Errorf("temperature = %+v", temp)
	}
	if got := m.Properties["running"].Classification; got != DefaultClassification {
		t.Errorf("default classification = %q, want %q", got, DefaultClassification)
	}
	if got := m.Events["started"].Classification; got != DefaultClassification {
		t.Errorf("event default classification = %q", got)
	}
	if got := m.Actions["setSpeed"].Input["rpm"].Unit; got != "1/min" {
		t.Errorf("setSpeed.rpm unit = %q", got)
	}
	if m.Actions["stop"].Input != nil {
		t.Errorf("stop input = %v, want nil", m.Actions["stop"].Input)
	}
}

func TestParseInvalid(t *testing.T) {
	const head = `"id":"acme:pump","version":"1.0.0"`
	tests := []struct {
		name  string
		doc   string
		paths []string // every path expected, exactly
	}{
		{"not json", `{`, []string{"$"}},
		{"not an object", `[]`, []string{"$"}},
		{"trailing data", `{` + head + `} {}`, []string{"$"}},
		{"missing id and version", `{}`, []string{"$.id", "$.version"}},
		{"bad id", `{"id":"Acme:pump","version":"1.0.0"}`, []string{"$.id"}},
		{"id without namespace", `{"id":"pump","version":"1.0.0"}`, []string{"$.id"}},
		{"id wrong type", `{"id":7,"version":"1.0.0"}`, []string{"$.id"}},
		{"leading zero version", `{"id":"acme:pump","version":"01.0.0"}`, []string{"$.version"}},
		{"short version", `{"id":"acme:pump","version":"1.0"}`, []string{"$.version"}},
		{"build metadata", `{"id":"acme:pump","version":"1.0.0+abc"}`, []string{"$.version"}},
		{"unknown top-level field", `{` + head + `,"colour":"red"}`, []string{"$.colour"}},
		{"odd unknown key is quoted", `{` + head + `,"a b":1}`, []string{`$["a b"]`}},
		{"duplicate key", `{` + head + `,"title":"a","title":"b"}`, []string{"$.title"}},
		{"unknown property field", `{` + head + `,"properties":{"t":{"type":"number","colour":1}}}`,
			[]string{"$.properties.t.colour"}},
		{"unknown unit", `{` + head + `,"properties":{"t":{"type":"number","unit":"furlong"}}}`,
			[]string{"$.properties.t.unit"}},
		{"unit on string", `{` + head + `,"properties":{"t":{"type":"string","unit":"Cel"}}}`,
			[]string{"$.properties.t.unit"}},
		{"min greater than max", `{` + head + `,"properties":{"temperature":{"type":"number","minimum":10,"maximum":5}}}`,
			[]string{"$.properties.temperature.minimum"}},
		{"min on boolean", `{` + head + `,"properties":{"t":{"type":"boolean","minimum":1}}}`,
			[]string{"$.properties.t.minimum"}},
		{"fractional bound on integer", `{` + head + `,"properties":{"t":{"type":"integer","maximum":2.5}}}`,
			[]string{"$.properties.t.maximum"}},
		{"huge number", `{` + head + `,"properties":{"t":{"type":"number","maximum":1e999}}}`,
			[]string{"$.properties.t.maximum"}},
		{"enum on number", `{` + head + `,"properties":{"t":{"type":"number","enum":["a"]}}}`,
			[]string{"$.properties.t.enum"}},
		{"empty enum", `{` + head + `,"properties":{"t":{"type":"string","enum":[]}}}`,
			[]string{"$.properties.t.enum"}},
		{"duplicate enum", `{` + head + `,"properties":{"t":{"type":"string","enum":["a","b","a"]}}}`,
			[]string{"$.properties.t.enum[2]"}},
		{"enum not strings", `{` + head + `,"properties":{"t":{"type":"string","enum":["a",1]}}}`,
			[]string{"$.properties.t.enum[1]"}},
		{"bad classification", `{` + head + `,"properties":{"t":{"type":"number","classification":"secret"}}}`,
			[]string{"$.properties.t.classification"}},
		{"bad priority", `{` + head + `,"properties":{"t":{"type":"number","priority":"control"}},"events":{"e":{"priority":"urgent"}}}`,
			[]string{"$.events.e.priority", "$.properties.t.priority"}},
		{"bad sampling", `{` + head + `,"properties":{"a":{"type":"number","sampling":"often"},"b":{"type":"number","sampling":"-1s"}}}`,
			[]string{"$.properties.a.sampling", "$.properties.b.sampling"}},
		{"missing type", `{` + head + `,"properties":{"t":{"unit":"Cel"}}}`,
			[]string{"$.properties.t.type"}},
		{"unknown type", `{` + head + `,"properties":{"t":{"type":"float"}}}`,
			[]string{"$.properties.t.type"}},
		{"bad affordance name", `{` + head + `,"properties":{"1st":{"type":"number"}},"events":{"a-b":{}},"actions":{"x":{"input":{"_y":{"type":"number"}}}}}`,
			[]string{`$.actions.x.input._y`, `$.events["a-b"]`, `$.properties["1st"]`}},
		{"object without properties", `{` + head + `,"properties":{"t":{"type":"object"}}}`,
			[]string{"$.properties.t.properties"}},
		{"array without items", `{` + head + `,"properties":{"t":{"type":"array"}}}`,
			[]string{"$.properties.t.items"}},
		{"items on number", `{` + head + `,"properties":{"t":{"type":"number","items":{"type":"number"}}}}`,
			[]string{"$.properties.t.items"}},
		{"properties on string", `{` + head + `,"properties":{"t":{"type":"string","properties":{"a":{"type":"number"}}}}}`,
			[]string{"$.properties.t.properties"}},
		{"too deep", `{` + head + `,"properties":{"a":{"type":"object","properties":{"b":{"type":"array","items":{"type":"object","properties":{"c":{"type":"array","items":{"type":"number"}}}}}}}}}`,
			[]string{"$.properties.a.properties.b.items.properties.c.items"}},
		{"readOnly on event data", `{` + head + `,"events":{"e":{"data":{"type":"number","readOnly":true}}}}`,
			[]string{"$.events.e.data.readOnly"}},
		{"null property", `{` + head + `,"properties":{"t":null}}`, []string{"$.properties.t"}},
		{"event data not object", `{` + head + `,"events":{"e":{"data":5}}}`, []string{"$.events.e.data"}},
		{"action input wrong shape", `{` + head + `,"actions":{"a":{"input":[]}}}`, []string{"$.actions.a.input"}},
		{"unknown action field", `{` + head + `,"actions":{"a":{"inputs":{}}}}`, []string{"$.actions.a.inputs"}},
		{"many problems at once", `{"id":"x","version":"v1","properties":{"t":{"type":"number","unit":"Fahrenheit","minimum":"low"}},"extra":true}`,
			[]string{"$.extra", "$.id", "$.properties.t.minimum", "$.properties.t.unit", "$.version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse accepted %s as %+v", tt.doc, m)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError", err)
			}
			var got []string
			for _, p := range ve.Problems {
				got = append(got, p.Path)
				if p.Message == "" {
					t.Errorf("problem at %s has no message", p.Path)
				}
			}
			if !slices.Equal(got, tt.paths) {
				t.Errorf("problem paths = %q, want %q\n%v", got, tt.paths, err)
			}
		})
	}
}

func TestUnknownUnitNamed(t *testing.T) {
	_, err := Parse([]byte(`{"id":"a:b","version":"1.0.0","properties":{"t":{"type":"number","unit":"furlong"}}}`))
	if err == nil || !strings.Contains(err.Error(), `"furlong"`) {
		t.Fatalf("error %v does not name the unit", err)
	}
}

func TestLimits(t *testing.T) {
	big := make([]byte, MaxDocumentSize+1)
	if _, err := Parse(big); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized document: %v", err)
	}
	var b strings.Builder
	b.WriteString(`{"id":"a:b","version":"1.0.0","properties":{`)
	for i := 0; i <= MaxAffordances; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"p` + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + `":{"type":"boolean"}`)
	}
	b.WriteString(`}}`)
	_, err := Parse([]byte(b.String()))
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Problems[0].Path != "$" {
		t.Errorf("too many affordances: %v", err)
	}
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	if _, err := Parse([]byte(deep)); !errors.Is(err, ErrInvalid) {
		t.Errorf("deep nesting: %v", err)
	}
}

func TestUnitRegistry(t *testing.T) {
	for _, u := range []string{"Cel", "1/min", "%RH", "kWh", "hPa", "dBm", "/", "B", "deg", "km/h", "ppm"} {
		if !KnownUnit(u) {
			t.Errorf("KnownUnit(%q) = false", u)
		}
	}
	for _, u := range []string{"", "primary", "degC", "°C", "rpm", "#"} {
		if KnownUnit(u) {
			t.Errorf("KnownUnit(%q) = true", u)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	m, err := Parse(readPump(t))
	if err != nil {
		t.Fatal(err)
	}
	b1, err := m.JSON()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Parse(b1)
	if err != nil {
		t.Fatalf("re-Parse canonical form: %v\n%s", err, b1)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Errorf("round trip changed the model:\n%+v\n%+v", m, m2)
	}
	b2, err := m2.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(b1) != string(b2) {
		t.Errorf("canonical form not stable:\n%s\n%s", b1, b2)
	}
	// Key order in the source must not matter.
	reordered := `{"version":"1.0.0","properties":{"b":{"type":"number","unit":"m"},"a":{"unit":"m","type":"number"}},"id":"a:b"}`
	inOrder := `{"id":"a:b","version":"1.0.0","properties":{"a":{"type":"number","unit":"m"},"b":{"type":"number","unit":"m","classification":"internal"}}}`
	x, err := Parse([]byte(reordered))
	if err != nil {
		t.Fatal(err)
	}
	y, err := Parse([]byte(inOrder))
	if err != nil {
		t.Fatal(err)
	}
	xj, _ := x.JSON()
	yj, _ := y.JSON()
	if string(xj) != string(yj) {
		t.Errorf("equivalent documents differ:\n%s\n%s", xj, yj)
	}
	const want = `{"id":"a:b","version":"1.0.0","properties":{"a":{"type":"number","unit":"m","classification":"internal"},"b":{"type":"number","unit":"m","classification":"internal"}}}`
	if string(xj) != want {
		t.Errorf("canonical form\n got %s\nwant %s", xj, want)
	}
}

func TestValidateInCode(t *testing.T) {
	lo, hi := 5.0, 1.0
	m := &Model{
		ID: "acme:fan", Version: "2.0.0-rc.1",
		Properties: map[string]*Property{
			"speed": {Schema: Schema{Type: TypeInteger, Minimum: &lo, Maximum: &hi}},
			"bad":   nil,
		},
	}
	err := m.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v", err)
	}
	want := []Problem{
		{"$.properties.bad", "must not be null"},
		{"$.properties.speed.minimum", "minimum 5 is greater than maximum 1"},
	}
	if !reflect.DeepEqual(ve.Problems, want) {
		t.Errorf("problems = %v, want %v", ve.Problems, want)
	}
	if _, err := m.JSON(); !errors.Is(err, ErrInvalid) {
		t.Errorf("JSON of invalid model: %v", err)
	}
	m.Properties["speed"].Maximum = &lo
	delete(m.Properties, "bad")
	if err := m.Validate(); err != nil {
		t.Errorf("Validate fixed model: %v", err)
	}
	// JSON fills the default without touching the caller's model.
	b, err := m.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"classification":"internal"`) || m.Properties["speed"].Classification != "" {
		t.Errorf("JSON = %s; model classification = %q", b, m.Properties["speed"].Classification)
	}
	if err := (*Model)(nil).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil model: %v", err)
	}
}

func TestThingDescription(t *testing.T) {
	m, err := Parse(readPump(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.ThingDescription()
	if err != nil {
		t.Fatal(err)
	}
	var td map[string]any
	if err := json.Unmarshal(b, &td); err != nil {
		t.Fatalf("TD is not JSON: %v", err)
	}
	checks := []struct {
		path string
		want any
	}{
		{"@context.0", TDContext},
		{"@context.1.wanwu", WanwuTDContext},
		{"@type", "tm:ThingModel"},
		{"title", "Pump"},
		{"description", "Centrifugal pump with a variable-speed drive."},
		{"version.model", "1.2.0"},
		{"wanwu:model", "acme:pump"},
		{"properties.temperature.type", "number"},
		{"properties.temperature.unit", "Cel"},
		{"properties.temperature.minimum", -40.0},
		{"properties.temperature.maximum", 125.0},
		{"properties.temperature.readOnly", true},
		{"properties.temperature.description", "Bearing temperature."},
		{"properties.temperature.wanwu:classification", "internal"},
		{"properties.temperature.wanwu:sampling", "10s"},
		{"properties.mode.enum.1", "manual"},
		{"properties.mode.wanwu:classification", "public"},
		{"properties.running.readOnly", false},
		{"properties.position.type", "object"},
		{"properties.position.properties.lat.type", "number"},
		{"properties.position.properties.lon.type", "number"},
		{"properties.position.properties.alt.type", "number"},
		{"properties.position.required.1", "lon"},
		{"properties.config.additionalProperties", false},
		{"properties.config.required", nil},
		{"events.overheat.data.required", nil},
		{"properties.load.items.unit", "%RH"},
		{"properties.config.properties.limits.properties.rpm.maximum", 3000.0},
		{"events.overheat.wanwu:classification", "important"},
		{"events.overheat.data.properties.temp.unit", "Cel"},
		{"actions.setSpeed.input.type", "object"},
		{"actions.setSpeed.input.properties.rpm.type", "integer"},
		{"actions.setSpeed.input.properties.rpm.maximum", 3000.0},
		{"actions.setSpeed.input.required.0", "ramp"},
		{"actions.setSpeed.output.properties.accepted.type", "boolean"},
		{"actions.moveTo.wanwu:classification", "core"},
	}
	for _, c := range checks {
		if got := lookup(td, c.path); !reflect.DeepEqual(got, c.want) {
			t.Errorf("TD %s = %#v, want %#v", c.path, got, c.want)
		}
	}
	if _, ok := td["forms"]; ok {
		t.Error("a Thing Model must not carry forms")
	}
	// Stable output: the registry may serve it with an ETag.
	b2, _ := m.ThingDescription()
	if string(b) != string(b2) {
		t.Error("ThingDescription is not deterministic")
	}
}

// lookup walks a dotted path through decoded JSON; numeric segments index arrays.
func lookup(v any, path string) any {
	for _, seg := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[seg]
		case []any:
			i := 0
			for _, r := range seg {
				i = i*10 + int(r-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func TestValidateArgs(t *testing.T) {
	m, err := Parse(readPump(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		action  string
		args    string // JSON object
		wantErr error
		names   []string // argument names the error must mention
	}{
		{"ok", "setSpeed", `{"rpm":1500,"ramp":"soft"}`, nil, nil},
		{"no args", "stop", `{}`, nil, nil},
		{"position", "moveTo", `{"target":{"lat":48.1,"lon":11.5},"path":[{"lat":0,"lon":0,"alt":12}]}`, nil, nil},
		{"unknown action", "explode", `{}`, ErrUnknownAction, nil},
		{"above max", "setSpeed", `{"rpm":3500,"ramp":"soft"}`, ErrInvalidArgs, []string{`"rpm"`}},
		{"below min", "setSpeed", `{"rpm":-1,"ramp":"soft"}`, ErrInvalidArgs, []string{`"rpm"`}},
		{"not integer", "setSpeed", `{"rpm":1.5,"ramp":"soft"}`, ErrInvalidArgs, []string{`"rpm"`}},
		{"wrong type", "setSpeed", `{"rpm":"fast","ramp":"soft"}`, ErrInvalidArgs, []string{`"rpm"`}},
		{"not in enum", "setSpeed", `{"rpm":1,"ramp":"medium"}`, ErrInvalidArgs, []string{`"ramp"`}},
		{"missing", "setSpeed", `{"rpm":1}`, ErrInvalidArgs, []string{`"ramp"`}},
		{"undeclared", "setSpeed", `{"rpm":1,"ramp":"soft","force":true}`, ErrInvalidArgs, []string{`"force"`}},
		{"null", "setSpeed", `{"rpm":null,"ramp":"soft"}`, ErrInvalidArgs, []string{`"rpm"`}},
		{"all reported", "setSpeed", `{"rpm":9999,"ramp":1}`, ErrInvalidArgs, []string{`"rpm"`, `"ramp"`}},
		{"bad latitude", "moveTo", `{"target":{"lat":91,"lon":0},"path":[]}`, ErrInvalidArgs, []string{`"target.lat"`}},
		{"position extra key", "moveTo", `{"target":{"lat":1,"lon":0,"x":1},"path":[]}`, ErrInvalidArgs, []string{`"target.x"`}},
		{"bad array element", "moveTo", `{"target":{"lat":1,"lon":0},"path":[{"lat":1,"lon":0},{"lat":1}]}`, ErrInvalidArgs, []string{`"path[1].lon"`}},
		{"array not array", "moveTo", `{"target":{"lat":1,"lon":0},"path":{}}`, ErrInvalidArgs, []string{`"path"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var args map[string]any
			if err := json.Unmarshal([]byte(tt.args), &args); err != nil {
				t.Fatal(err)
			}
			err := m.ValidateArgs(tt.action, args)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ValidateArgs = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ValidateArgs = %v, want %v", err, tt.wantErr)
			}
			for _, n := range tt.names {
				if !strings.Contains(err.Error(), "argument "+n) {
					t.Errorf("error %q does not name argument %s", err, n)
				}
			}
		})
	}
	// Numbers decoded with UseNumber work too.
	if err := m.ValidateArgs("setSpeed", map[string]any{"rpm": json.Number("3001"), "ramp": "hard"}); !errors.Is(err, ErrInvalidArgs) {
		t.Errorf("json.Number above max: %v", err)
	}
}

// TestSyntaxErrorsSayWhere: a model that is not JSON is refused with the
// line and column of the problem.
func TestSyntaxErrorsSayWhere(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"{\"id\": \"acme:x\",\n \"version\": \"1.0.0\",\n \"properties\": {\n", "line 4, column 1: the document ends before its value does"},
		{"{\"id\": \"acme:x\",\n \"version\": 1.0.0\n}", "line 2, column 16"},
		{"{\"id\": \"acme:x\"} trailing", "line 1, column"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", tc.doc, err, tc.want)
		}
	}
}

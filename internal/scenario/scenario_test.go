package scenario

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/netprofile"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

func TestParseGood(t *testing.T) {
	s, err := Parse([]byte(`
name: small
seed: -5
classes:
  - name: line
    kind: cnc
    count: 3
    interval: 2s
    params: {wear_rate: 100, rpm: 8000}
    faults:
      - {kind: chatter, at: 1m, duration: 30s, devices: 2}
      - {kind: overheat, devices: 50%}
  - name: meters
    kind: water-meter
    count: 100
    protocol: mqtt
    network: lte-cat1
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "small" || s.Tenant != "demo" || s.Seed != -5 || len(s.Classes) != 2 {
		t.Fatalf("%+v", s)
	}
	c := s.Classes[0]
	want := Class{Name: "line", Kind: KindCNC, Model: "demo:cnc-spindle@1.0.0", Count: 3, Network: netprofile.Ethernet, Protocol: "mqtt",
		Interval: 2 * time.Second, Params: map[string]float64{"wear_rate": 100, "rpm": 8000},
		Faults: []Fault{{Kind: FaultChatter, At: time.Minute, Duration: 30 * time.Second, Count: 2}, {Kind: FaultOverheat, Fraction: 0.5}}}
	if !equalClass(c, want) {
		t.Errorf("class 0:\n got %+v\nwant %+v", c, want)
	}
	m := s.Classes[1]
	if m.Network != netprofile.LTECat1 || m.Protocol != "mqtt" || m.Interval != time.Hour || m.Model != "demo:water-meter@1.0.0" {
		t.Errorf("class 1: %+v", m)
	}
	// Defaults from the network profile.
	s, err = Parse([]byte("name: x\ntenant: acme\nclasses:\n- {name: g, kind: gas-meter, count: 1}\n- {name: f, kind: flood, count: 1, network: lte-cat1, model: 'std:flood-sensor@1.0.0'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if g := s.Classes[0]; g.Network != netprofile.NBIoT || g.Protocol != "coap" || g.Model != "acme:gas-meter@1.0.0" {
		t.Errorf("gas defaults: %+v", g)
	}
	if f := s.Classes[1]; f.Protocol != "mqtt" || f.Model != "std:flood-sensor@1.0.0" {
		t.Errorf("flood: %+v", f)
	}
}

func equalClass(a, b Class) bool {
	if a.Name != b.Name || a.Kind != b.Kind || a.Model != b.Model || a.Count != b.Count || a.Network != b.Network ||
		a.Protocol != b.Protocol || a.Interval != b.Interval || len(a.Params) != len(b.Params) || len(a.Faults) != len(b.Faults) {
		return false
	}
	for k, v := range a.Params {
		if b.Params[k] != v {
			return false
		}
	}
	for i := range a.Faults {
		if a.Faults[i] != b.Faults[i] {
			return false
		}
	}
	return true
}

func TestParseBad(t *testing.T) {
	const ok = "name: x\nclasses:\n"
	cls := func(body string) string { return ok + "  - {name: c, kind: cnc, count: 2, " + body + "}\n" }
	for _, tc := range []struct {
		name, doc string
		want      string // a line of the error: the field, then the reason
	}{
		{"empty", "", `scenario: the file is empty`},
		{"not yaml", "name: [", `scenario: not valid YAML`},
		{"not a mapping", "- 1\n", `scenario: must be a mapping`},
		{"unknown top", ok + "  - {name: c, kind: cnc, count: 1}\ncolour: red\n", `colour: unknown field`},
		{"no name", "classes:\n  - {name: c, kind: cnc, count: 1}\n", `name: is required`},
		{"bad name", "name: 'a b'\nclasses: []\n", `name: "a b" is not a name`},
		{"bad tenant", "name: x\ntenant: Acme\nclasses:\n  - {name: c, kind: cnc, count: 1}\n", `tenant: `},
		{"seed not int", "name: x\nseed: 1.5\nclasses:\n  - {name: c, kind: cnc, count: 1}\n", `seed: must be an integer`},
		{"no classes", "name: x\n", `classes: is required`},
		{"empty classes", "name: x\nclasses: []\n", `classes: must have at least one class`},
		{"classes not list", "name: x\nclasses: {a: 1}\n", `classes: must be a list`},
		{"class unknown field", cls("colour: red"), `classes[0].colour: unknown field`},
		{"count zero", cls("count: 0"), `classes[0].count: given twice`},
		{"count range", ok + "  - {name: c, kind: cnc, count: 0}\n  - {name: d, kind: cnc, count: 100001}\n", `classes[1].count: must be between 1 and 100000`},
		{"count missing", ok + "  - {name: c, kind: cnc}\n", `classes[0].count: is required`},
		{"count string", ok + "  - {name: c, kind: cnc, count: many}\n", `classes[0].count: must be an integer`},
		{"kind unknown", ok + "  - {name: c, kind: boiler, count: 1}\n", `classes[0].kind: "boiler" is not one of cnc, gas-meter, water-meter, flood, chiller, pump`},
		{"kind missing", ok + "  - {name: c, count: 1}\n", `classes[0].kind: is required`},
		{"name missing", ok + "  - {kind: cnc, count: 1}\n", `classes[0].name: is required`},
		{"name dup", ok + "  - {name: c, kind: cnc, count: 1}\n  - {name: c, kind: flood, count: 1}\n", `classes[1].name: "c" is also the name of classes[0]`},
		{"name bad", ok + "  - {name: 'c/1', kind: cnc, count: 1}\n", `classes[0].name: "c/1" is not a name`},
		{"network", cls("network: zigbee"), `classes[0].network: "zigbee" is not one of nb-iot, lte-cat1, 5g-redcap, wlan, ethernet`},
		{"protocol", cls("protocol: http"), `classes[0].protocol: "http" is not one of mqtt, coap`},
		{"interval bad", cls("interval: soon"), `classes[0].interval: "soon" is not a duration`},
		{"interval number", cls("interval: 5"), `classes[0].interval: must be a duration`},
		{"interval range", cls("interval: 100ms"), `classes[0].interval: must be between 1s and 1h0m0s for kind cnc`},
		{"model other kind", cls("model: 'demo:chiller@1.0.0'"), `classes[0].model: kind cnc reports the model cnc-spindle@1.0.0, not chiller@1.0.0`},
		{"model other tenant", cls("model: 'acme:cnc-spindle@1.0.0'"), `classes[0].model: model acme:cnc-spindle@1.0.0 is in namespace "acme"`},
		{"model no version", cls("model: 'demo:cnc-spindle'"), `classes[0].model: "demo:cnc-spindle" is not a model ref`},
		{"param unknown", cls("params: {leak_lps: 1}"), `classes[0].params.leak_lps: unknown field; the fields here are rpm, teeth`},
		{"param range", cls("params: {rpm: 50000}"), `classes[0].params.rpm: must be between 600 and 12000`},
		{"param type", cls("params: {rpm: fast}"), `classes[0].params.rpm: must be a number`},
		{"param inf", cls("params: {rpm: .inf}"), `classes[0].params.rpm: must be a finite number`},
		{"params list", cls("params: [1]"), `classes[0].params: must be a mapping`},
		{"param twice", ok + "  - name: c\n    kind: cnc\n    count: 1\n    params:\n      rpm: 1000\n      rpm: 2000\n", `classes[0].params.rpm: given twice`},
		{"fault kind", cls("faults: [{kind: leak}]"), `classes[0].faults[0].kind: "leak" is not a fault of kind cnc (chatter, imbalance, overheat)`},
		{"fault no kind", cls("faults: [{at: 1m}]"), `classes[0].faults[0].kind: is required`},
		{"fault field", cls("faults: [{kind: chatter, when: 1m}]"), `classes[0].faults[0].when: unknown field`},
		{"fault at", cls("faults: [{kind: chatter, at: -1m}]"), `classes[0].faults[0].at: must not be negative`},
		{"fault duration", cls("faults: [{kind: chatter, duration: 3}]"), `classes[0].faults[0].duration: must be a duration`},
		{"fault devices count", cls("faults: [{kind: chatter, devices: 3}]"), `classes[0].faults[0].devices: 3 devices, more than the class's 2`},
		{"fault devices zero", cls("faults: [{kind: chatter, devices: 0}]"), `classes[0].faults[0].devices: must be a number of devices`},
		{"fault devices share", cls("faults: [{kind: chatter, devices: 150%}]"), `classes[0].faults[0].devices: a share must be more than 0% and at most 100%`},
		{"fault devices float", cls("faults: [{kind: chatter, devices: 0.5}]"), `classes[0].faults[0].devices: must be a number of devices (3) or a share of them (25%)`},
		{"faults mapping", cls("faults: {kind: chatter}"), `classes[0].faults: must be a list of faults`},
		{"too large", "name: x\n" + strings.Repeat("#", MaxFileSize), `scenario: the file is`},
		{"key not scalar", "name: x\n? [a]\n: 1\nclasses: []\n", `scenario: a key must be a plain name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted: %+v", s)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !containsLine(err.Error(), tc.want) {
				t.Errorf("error:\n%v\nwant a line starting %q", err, tc.want)
			}
		})
	}
}

func containsLine(msg, prefix string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte("name: x\nclasses:\n  - {name: a, kind: cnc, count: 0, network: x}\n  - {name: b, kind: flood, count: 1, params: {gain: -1}}\n"))
	var fields []string
	for _, l := range strings.Split(err.Error(), "\n") {
		f, _, _ := strings.Cut(l, ":")
		fields = append(fields, f)
	}
	want := []string{"classes[0].count", "classes[0].network", "classes[1].params.gain"}
	if strings.Join(fields, " ") != strings.Join(want, " ") {
		t.Errorf("problems of %v, want %v:\n%v", fields, want, err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Line != 3 {
		t.Errorf("first problem %+v, want line 3", fe)
	}
}

func TestAnchors(t *testing.T) {
	s, err := Parse([]byte(`
name: x
classes:
  - {name: a, kind: cnc, count: 1, params: &p {wear_rate: 9}}
  - {name: b, kind: cnc, count: 1, params: *p}
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Classes[1].Params["wear_rate"] != 9 {
		t.Errorf("%+v", s.Classes[1])
	}
}

// TestTestdata parses the example files: good_*.yaml parse, bad_*.yaml fail
// with the error in their first line's comment.
func TestTestdata(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(b)
		switch base := filepath.Base(f); {
		case strings.HasPrefix(base, "good_"):
			if err != nil {
				t.Errorf("%s: %v", base, err)
			}
		case strings.HasPrefix(base, "bad_"):
			first, _, _ := strings.Cut(string(b), "\n")
			want := strings.TrimSpace(strings.TrimPrefix(first, "# error:"))
			if err == nil || !containsLine(err.Error(), want) {
				t.Errorf("%s: error %v, want %q", base, err, want)
			}
		default:
			t.Errorf("%s: name it good_ or bad_", base)
		}
	}
}

func TestBuiltin(t *testing.T) {
	models := Models()
	names := Builtins()
	if strings.Join(names, " ") != "city demo factory" {
		t.Errorf("built-ins %v", names)
	}
	for _, name := range names {
		s, err := Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		kinds := map[string]bool{}
		for _, c := range s.Classes {
			total += c.Count
			kinds[c.Kind] = true
			if _, ok := models[c.Model]; !ok {
				t.Errorf("%s: class %s: model %s is not in Models()", name, c.Name, c.Model)
			}
			if b, err := c.ModelJSON(); err != nil || len(b) == 0 {
				t.Errorf("%s: class %s: ModelJSON: %v", name, c.Name, err)
			}
		}
		t.Logf("%s: %d classes, %d devices", name, len(s.Classes), total)
		switch name {
		case "demo":
			if total < 150 || total > 250 || len(kinds) != len(Kinds()) {
				t.Errorf("demo: %d devices of %d kinds, want about 200 of every kind", total, len(kinds))
			}
		case "city":
			if kinds[KindCNC] || kinds[KindChiller] || total < 5000 {
				t.Errorf("city: %d devices, kinds %v", total, kinds)
			}
		case "factory":
			if !kinds[KindCNC] || !kinds[KindChiller] || len(kinds) != 2 {
				t.Errorf("factory: kinds %v", kinds)
			}
		}
	}
	if _, err := Builtin("nope"); err == nil || !strings.Contains(err.Error(), "city, demo, factory") {
		t.Errorf("unknown built-in: %v", err)
	}
}

func TestModels(t *testing.T) {
	models := Models()
	if len(models) != len(kinds) {
		t.Errorf("%d models for %d kinds", len(models), len(kinds))
	}
	for ref, doc := range models {
		m, err := thingmodel.Parse(doc)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if m.Key() != ref {
			t.Errorf("%s has key %s", ref, m.Key())
		}
	}
	// Another tenant gets the same model under its own id.
	c := Class{Name: "c", Kind: KindChiller, Model: "acme:chiller@1.0.0"}
	b, err := c.ModelJSON()
	if err != nil {
		t.Fatal(err)
	}
	m, err := thingmodel.Parse(b)
	if err != nil || m.Key() != "acme:chiller@1.0.0" {
		t.Fatalf("%v, %v", m, err)
	}
}

// TestDocTable keeps doc.go's parameter tables in step with the kinds'.
func TestDocTable(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		if !strings.Contains(string(doc), "//\t"+k.name+" ") {
			t.Errorf("doc.go has no row for kind %s", k.name)
		}
		for _, p := range k.params {
			re := regexp.MustCompile(`(?m)^//\t` + regexp.QuoteMeta(p.name) + `\b`)
			inList := regexp.MustCompile(`(?m)^//\t[a-z_, ]*\b` + regexp.QuoteMeta(p.name) + `\b`)
			if !re.Match(doc) && !inList.Match(doc) {
				t.Errorf("doc.go does not list parameter %s of %s", p.name, k.name)
			}
		}
	}
}

func TestDeviceID(t *testing.T) {
	for _, tc := range []struct {
		count, index int
		want         string
	}{{10, 7, "c-007"}, {1000, 7, "c-007"}, {1001, 7, "c-0007"}, {100000, 42, "c-00042"}} {
		c := Class{Name: "c", Count: tc.count}
		if got := c.DeviceID(tc.index); got != tc.want {
			t.Errorf("count %d index %d: %s, want %s", tc.count, tc.index, got, tc.want)
		}
	}
}

func TestFaultSelection(t *testing.T) {
	for _, tc := range []struct {
		f    Fault
		want int
	}{{Fault{Count: 3}, 3}, {Fault{Fraction: 0.25}, 25}, {Fault{Fraction: 0.001}, 1}, {Fault{Fraction: 1}, 100}} {
		c := Class{Name: "c", Count: 100, Faults: []Fault{tc.f}}
		n := 0
		for i := range c.Count {
			if c.affected(0, i, 7) {
				n++
			}
		}
		if n != tc.want {
			t.Errorf("%+v: %d devices, want %d", tc.f, n, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range Builtins() {
		b, _ := builtinFS.ReadFile("builtin/" + name + ".yaml")
		f.Add(b)
	}
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			for _, l := range strings.Split(err.Error(), "\n") {
				if f, _, ok := strings.Cut(l, ": "); !ok || f == "" {
					t.Fatalf("a problem without its field: %q", l)
				}
			}
			return
		}
		// What Parse accepts is complete and makes devices.
		if s.Name == "" || s.Tenant == "" || len(s.Classes) == 0 {
			t.Fatalf("accepted an incomplete scenario: %+v", s)
		}
		for i := range s.Classes {
			c := &s.Classes[i]
			if c.Count < 1 || c.Interval <= 0 || c.Network == "" || c.Protocol == "" || c.Model == "" {
				t.Fatalf("class without its defaults: %+v", c)
			}
			d := c.Device(c.Count-1, s.Seed)
			d.Step(start)
			d.Step(start.Add(time.Hour))
		}
	})
}

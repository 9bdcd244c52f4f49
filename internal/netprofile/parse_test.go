package netprofile

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParse(t *testing.T) {
	nb, _ := Lookup(NBIoT)
	eth, _ := Lookup(Ethernet)
	for _, tc := range []struct {
		name string
		file string
		want func() []Profile // nil: no check beyond success
	}{
		{"empty list", "profiles: []\n", func() []Profile { return nil }},
		{"base only", "profiles:\n  - {name: copy, base: ethernet}\n", func() []Profile {
			p := eth
			p.Name = "copy"
			return []Profile{p}
		}},
		{"nested override keeps the base's other fields", `
profiles:
  - name: slow
    base: nb-iot
    latency: {base: 2.5s}
    loss:
      good: 0.2
    sleep: {psm: false}
`, func() []Profile {
			p := nb
			p.Name, p.Latency.Base, p.Loss.Good, p.Sleep.PSM = "slow", 2500*time.Millisecond, 0.2, false
			return []Profile{p}
		}},
		{"base defined above, and a built-in name redefined", `
profiles:
  - {name: nb-iot, base: nb-iot, price_per_mb: 0.2}
  - {name: b, base: nb-iot, title: B}
`, func() []Profile {
			a := nb
			a.PricePerMB = 0.2
			b := a
			b.Name, b.Title = "b", "B"
			return []Profile{a, b}
		}},
		{"numbers written as YAML allows", `
profiles:
  - {name: n, base: ethernet, uplink_bps: 1e6, downlink_bps: 2_000_000, mtu: 0x5dc, daily_budget: 1.5e3, price_per_mb: 1}
`, func() []Profile {
			p := eth
			p.Name, p.UplinkBPS, p.DownlinkBPS, p.MTU, p.DailyBudget, p.PricePerMB = "n", 1e6, 2e6, 1500, 1500, 1
			return []Profile{p}
		}},
		{"aliases", `
profiles:
  - {name: a, base: ethernet, loss: &lossy {good: 0.1, bad: 0.5, good_to_bad: 0.1, bad_to_good: 0.1}}
  - {name: b, base: ethernet, loss: *lossy}
`, func() []Profile {
			p := eth
			p.Name, p.Loss = "a", Loss{Good: 0.1, Bad: 0.5, GoodToBad: 0.1, BadToGood: 0.1}
			q := p
			q.Name = "b"
			return []Profile{p, q}
		}},
		{"from scratch", `
profiles:
  - name: lab
    protocol: coap
    latency: {base: 1ms}
    uplink_bps: 1000
    downlink_bps: 2000
    mtu: 576
    max_payload: 64
`, func() []Profile {
			return []Profile{{Name: "lab", Protocol: "coap", Latency: Latency{Base: time.Millisecond},
				UplinkBPS: 1000, DownlinkBPS: 2000, MTU: 576, MaxPayload: 64}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.want(); !reflect.DeepEqual(got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       string // in the error's message
	}{
		{"empty file", "", "profiles: missing"},
		{"syntax", "profiles: [\n", "netprofile: yaml:"},
		{"not a mapping", "- a\n", "line 1: must be a mapping with the key profiles"},
		{"unknown top-level key", "profiles: []\nprofile: []\n", "line 2: profile: unknown key"},
		{"no profiles", "{}\n", "profiles: missing"},
		{"profiles not a list", "profiles: {}\n", "profiles: must be a list"},
		{"two documents", "profiles: []\n---\nprofiles: []\n", "line 2: a second YAML document"},
		{"profile not a mapping", "profiles: [wlan]\n", "profiles[0]: must be a mapping"},
		{"loss out of range", `
profiles:
  - {name: a, base: wlan}
  - {name: b, base: wlan}
  - name: c
    base: wlan
    loss:
      good: 1.5
`, "line 8: profiles[2].loss.good: must be in [0,1]"},
		{"unknown field", "profiles:\n  - {name: a, base: wlan, latncy: 1s}\n", "profiles[0].latncy: unknown field (known: name, title, protocol, latency,"},
		{"unknown nested field", "profiles:\n  - {name: a, base: wlan, loss: {god: 1}}\n", "profiles[0].loss.god: unknown field (known: good, bad, good_to_bad, bad_to_good)"},
		{"duration as a number", "profiles:\n  - {name: a, base: wlan, latency: {base: 5}}\n", "profiles[0].latency.base: must be a duration"},
		{"bad duration", "profiles:\n  - {name: a, base: wlan, latency: {jitter_max: 5 s}}\n", `profiles[0].latency.jitter_max: "5 s": must be a duration`},
		{"negative duration", "profiles:\n  - {name: a, base: wlan, latency: {base: -1s}}\n", "profiles[0].latency.base: must be in [0s,1h0m0s]"},
		{"string for a number", "profiles:\n  - {name: a, base: wlan, uplink_bps: fast}\n", "profiles[0].uplink_bps: must be an integer"},
		{"fraction for an integer", "profiles:\n  - {name: a, base: wlan, mtu: 1500.5}\n", "profiles[0].mtu: must be an integer"},
		{"integer overflow", "profiles:\n  - {name: a, base: wlan, daily_budget: 9223372036854775808}\n", "profiles[0].daily_budget: must be an integer"},
		{"NaN", "profiles:\n  - {name: a, base: wlan, price_per_mb: .nan}\n", "profiles[0].price_per_mb: must be a finite number"},
		{"bool as a string", "profiles:\n  - {name: a, base: nb-iot, sleep: {psm: \"no\"}}\n", "profiles[0].sleep.psm: must be true or false"},
		{"number as a name", "profiles:\n  - {name: 5, base: wlan}\n", "profiles[0].name: must be a string"},
		{"struct as a scalar", "profiles:\n  - {name: a, base: wlan, loss: 0.1}\n", "profiles[0].loss: must be a mapping"},
		{"null struct", "profiles:\n  - {name: a, base: wlan, loss: }\n", "profiles[0].loss: must be a mapping"},
		{"missing name", "profiles:\n  - {base: wlan}\n", "profiles[0].name: missing"},
		{"duplicate name", "profiles:\n  - {name: a, base: wlan}\n  - {name: a, base: wlan}\n", `line 3: profiles[1].name: "a" is already defined by profiles[0]`},
		{"duplicate key", "profiles:\n  - {name: a, base: wlan, mtu: 1400, mtu: 1300}\n", "profiles[0].mtu: given twice"},
		{"unknown base", "profiles:\n  - {name: a, base: wifi}\n", `profiles[0].base: "wifi" is neither a built-in profile (nb-iot, lte-cat1, 5g-redcap, wlan, ethernet) nor one defined above`},
		{"base defined below", "profiles:\n  - {name: a, base: b}\n  - {name: b, base: wlan}\n", `profiles[0].base: "b" is neither`},
		{"incomplete without a base", "profiles:\n  - {name: a, protocol: mqtt}\n", "line 2: profiles[0].uplink_bps: must be > 0"},
		{"non-string key", "profiles:\n  - {name: a, base: wlan, 1: 2}\n", "profiles[0]: keys must be strings"},
		{"merge key", "profiles:\n  - {name: a, base: wlan, sleep: &s {}}\n  - {name: b, base: wlan, <<: *s}\n", "profiles[1]: keys must be strings"},
		{"anchored top level key", "x: &x {mtu: 1400}\nprofiles: []\n", "line 1: x: unknown key"},
		{"rule across fields", "profiles:\n  - name: a\n    base: nb-iot\n    sleep:\n      active_timer: 25h\n", "line 5: profiles[0].sleep.active_timer: must be in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := Parse([]byte(tc.file))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", ps)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestParseExample reads the example in testdata, which docs/NETWORKS.md
// shows (checked here, so that the document cannot drift from it).
func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("testdata/profiles.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/NETWORKS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, example, _ := strings.Cut(string(data), "\n") // less its first comment line
	if !strings.Contains(string(doc), "```yaml\n"+example+"```") {
		t.Error("docs/NETWORKS.md does not show testdata/profiles.yaml as it is")
	}
	ps, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	if got, want := strings.Join(names, " "), "nb-iot-rural nb-iot-rural-edrx lte-cat1 lab-wifi"; got != want {
		t.Fatalf("profiles %s, want %s", got, want)
	}
	nb, _ := Lookup(NBIoT)
	rural, edrx := ps[0], ps[1]
	if rural.Latency != (Latency{Base: 3 * time.Second, JitterMedian: nb.Latency.JitterMedian, JitterMax: 10 * time.Second}) ||
		rural.Loss.GoodToBad != nb.Loss.GoodToBad || rural.Loss.Good != 0.03 || rural.UplinkBPS != 10000 || rural.MTU != nb.MTU {
		t.Errorf("nb-iot-rural = %+v", rural)
	}
	if edrx.Sleep != (Sleep{ActiveTimer: nb.Sleep.ActiveTimer, PeriodicUpdate: nb.Sleep.PeriodicUpdate, EDRXCycle: 81920 * time.Millisecond}) || edrx.Latency != rural.Latency {
		t.Errorf("nb-iot-rural-edrx = %+v", edrx)
	}
	if ps[2].PricePerMB != 0.15 || ps[2].DailyBudget != 50e6 {
		t.Errorf("lte-cat1 = %+v", ps[2])
	}
}

// FuzzParse checks that Parse never panics, that what it accepts is valid
// with distinct names, and that what it accepts survives being written back
// with Profile's yaml tags and read again.
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("testdata/profiles.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := Parse(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) && !strings.HasPrefix(err.Error(), "netprofile: yaml: ") {
				t.Fatalf("error of an unexpected kind: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for i, p := range ps {
			if err := p.Validate(); err != nil {
				t.Fatalf("profiles[%d] accepted but invalid: %v", i, err)
			}
			if seen[p.Name] {
				t.Fatalf("profiles[%d]: name %q accepted twice", i, p.Name)
			}
			seen[p.Name] = true
		}
		out, err := yaml.Marshal(struct {
			Profiles []Profile `yaml:"profiles"`
		}{ps})
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("written back, refused: %v\n%s", err, out)
		}
		if len(ps) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(again, ps) {
			t.Fatalf("written back and read again:\n%+v\nwant\n%+v", again, ps)
		}
	})
}

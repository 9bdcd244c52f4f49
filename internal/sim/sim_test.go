package sim_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/hubtest"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
	"github.com/wanwu-iot/wanwu/internal/scenario"
	"github.com/wanwu-iot/wanwu/internal/sim"
)

// start runs a fleet of the scenario against h, stopped with the test.
func start(t testing.TB, h *hubtest.Hub, yaml string, mutate ...func(*sim.Options)) *sim.Sim {
	t.Helper()
	sc, err := scenario.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	opts := sim.Options{Hub: h.URL, Token: h.AdminToken, Scenario: sc,
		MQTT: "mqtts://" + h.MQTT().Addr(mqtt.ListenerTLS), CoAP: "coaps://" + h.CoAP().Addr(coap.ListenerDTLS),
		StateFile: t.TempDir() + "/ids.json", Ramp: 200 * time.Millisecond}
	for _, m := range mutate {
		m(&opts)
	}
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func class(st sim.Stats, name string) sim.ClassStats {
	for _, c := range st.Classes {
		if c.Class == name {
			return c
		}
	}
	return sim.ClassStats{}
}

// fleetYAML has one class on every network profile.
const fleetYAML = `
name: every-network
seed: 7
classes:
  - {name: meter, kind: water-meter, count: 2, network: nb-iot, interval: 5s}
  - {name: flood, kind: flood, count: 2, network: lte-cat1, interval: 2s}
  - {name: cam, kind: cnc, count: 1, network: 5g-redcap, interval: 2s}
  - {name: chiller, kind: chiller, count: 2, network: wlan, interval: 2s}
  - {name: cnc, kind: cnc, count: 2, network: ethernet, interval: 2s}
`

// TestFleetOnEveryNetwork: devices of every link profile come online
// through their emulated links, over MQTT/TLS and CoAP/DTLS, their data
// becomes queryable at the hub, and each network's bytes on the air are
// counted.
func TestFleetOnEveryNetwork(t *testing.T) {
	h := hubtest.Start(t)
	s := start(t, h, fleetYAML)
	eventually(t, 90*time.Second, "every class online and reporting", func() error {
		st := s.Stats()
		for _, c := range st.Classes {
			if c.Online < int64(c.Devices) || c.Messages < int64(c.Devices) {
				return fmt.Errorf("%s (%s): %d/%d online, %d messages, reasons %v, last error %q", c.Class, c.Network, c.Online, c.Devices, c.Messages, c.Reasons, c.LastErr)
			}
		}
		return nil
	})
	st := s.Stats()
	if len(st.Networks) != len(netprofile.Names()) {
		t.Errorf("networks %+v, want all of %v", st.Networks, netprofile.Names())
	}
	for _, n := range st.Networks {
		if n.BytesUp == 0 || n.BytesDown == 0 {
			t.Errorf("%s: %d bytes up, %d down on the air", n.Network, n.BytesUp, n.BytesDown)
		}
	}
	for _, c := range st.Classes {
		code := "demo:" + c.Class + "-000"
		var latest struct{ Values map[string]any }
		eventually(t, 10*time.Second, code+" queryable", func() error {
			h.MustAdmin(200, "GET", "/api/v1/telemetry/"+code+"/latest", nil).JSON(t, &latest)
			if len(latest.Values) == 0 {
				return fmt.Errorf("no values")
			}
			return nil
		})
		var obj struct{ Network string }
		h.MustAdmin(200, "GET", "/api/v1/objects/"+code, nil).JSON(t, &obj)
		if obj.Network != c.Network {
			t.Errorf("%s registered with network %q, want %q", code, obj.Network, c.Network)
		}
	}
	if st.Refused != 0 {
		t.Errorf("%d messages refused: %+v", st.Refused, st.Classes)
	}
}

// TestRefusedClassGoesOn: when the hub refuses one class's devices (here:
// revoked), the fleet says why for that class and the others go on.
func TestRefusedClassGoesOn(t *testing.T) {
	h := hubtest.Start(t)
	s := start(t, h, `
name: two
classes:
  - {name: good, kind: chiller, count: 2, network: ethernet, interval: 1s}
  - {name: bad, kind: chiller, count: 2, network: ethernet, interval: 1s}
`)
	eventually(t, 60*time.Second, "both online", func() error {
		if st := s.Stats(); st.Online < 4 {
			return fmt.Errorf("%d online", st.Online)
		}
		return nil
	})
	for _, code := range []string{"demo:bad-000", "demo:bad-001"} {
		h.MustWanwu("ctl", "object", "revoke", code, "--reason", "test", "--yes")
	}
	eventually(t, 60*time.Second, "the bad class refused, with a reason", func() error {
		bad := class(s.Stats(), "bad")
		if bad.Online != 0 || len(bad.Reasons) == 0 || bad.LastErr == "" {
			return fmt.Errorf("bad: %+v", bad)
		}
		return nil
	})
	before := class(s.Stats(), "good").Messages
	eventually(t, 30*time.Second, "the good class goes on", func() error {
		if good := class(s.Stats(), "good"); good.Messages < before+4 || good.Online != 2 {
			return fmt.Errorf("good: %+v (had %d messages)", good, before)
		}
		return nil
	})
}

// TestPSMCommandWaitsForWake: a command for a sleeping NB-IoT meter stays
// queued at the hub, with its expected delivery and no attempt, and reaches
// the meter only after it wakes for its next report.
func TestPSMCommandWaitsForWake(t *testing.T) {
	h := hubtest.Start(t)
	s := start(t, h, `
name: psm
classes:
  - {name: meter, kind: water-meter, count: 1, network: nb-iot, interval: 40s}
`)
	eventually(t, 90*time.Second, "the meter's first report", func() error {
		if m := class(s.Stats(), "meter"); m.Messages < 1 {
			return fmt.Errorf("%+v", m)
		}
		return nil
	})
	// After its report the meter asks for what waits, stays reachable for
	// the active timer, and sleeps until its next report, 40 s after the
	// first.
	p, _ := netprofile.Lookup(netprofile.NBIoT)
	probes := 0
	eventually(t, p.Sleep.ActiveTimer+20*time.Second, "the hub sees the meter asleep", func() error {
		probes++
		id := fmt.Sprintf("probe-%d", probes)
		h.MustWanwu("ctl", "command", "send", "demo:meter-000", "closeValve", "--id", id)
		got := h.MustWanwu("ctl", "command", "get", id)
		h.Wanwu("ctl", "command", "cancel", id) // delivered while awake: it may have ended
		if !strings.Contains(got, "expected_delivery_at") {
			return fmt.Errorf("awake: %s", got)
		}
		return nil
	})
	asleepAt := class(s.Stats(), "meter").Messages
	h.MustWanwu("ctl", "command", "send", "demo:meter-000", "closeValve", "--id", "psm-1")
	got := h.MustWanwu("ctl", "command", "get", "psm-1")
	if !strings.Contains(got, `"status": "queued"`) || !strings.Contains(got, "expected_delivery_at") || !strings.Contains(got, `"attempts": 0`) {
		t.Errorf("while the meter sleeps: %s", got)
	}
	eventually(t, 90*time.Second, "the command carried out after the meter woke", func() error {
		got := h.MustWanwu("ctl", "command", "get", "psm-1")
		if !strings.Contains(got, `"status": "succeeded"`) {
			return fmt.Errorf("%s", got)
		}
		return nil
	})
	if m := class(s.Stats(), "meter"); m.Messages <= asleepAt {
		t.Errorf("carried out before the meter's next report: %+v", m)
	}
}

// TestNewRefuses: options a fleet cannot run with are refused before
// anything starts, each with what is wrong.
func TestNewRefuses(t *testing.T) {
	sc, err := scenario.Parse([]byte("name: x\nclasses:\n  - {name: m, kind: water-meter, count: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	rural, _ := netprofile.Lookup(netprofile.NBIoT)
	rural.Name = "nb-iot-rural"
	worse, _ := netprofile.Lookup(netprofile.NBIoT)
	worse.Loss.Good = 2
	for _, tc := range []struct {
		name string
		opts sim.Options
		want string
	}{
		{"no scenario", sim.Options{Hub: "http://127.0.0.1:1"}, "a scenario is required"},
		{"hub not a URL", sim.Options{Hub: "127.0.0.1:8080", Scenario: sc}, "want http://host:port"},
		{"a profile the hub does not know", sim.Options{Hub: "http://127.0.0.1:1", Scenario: sc, Profiles: []netprofile.Profile{rural}}, `profile "nb-iot-rural": not one of the networks the hub knows`},
		{"an invalid profile", sim.Options{Hub: "http://127.0.0.1:1", Scenario: sc, Profiles: []netprofile.Profile{worse}}, "loss.good"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sim.New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestClaimProvisioning: devices that claim their identities themselves,
// one claim token per class, are registered with their class's model,
// network and tag, and come online.
func TestClaimProvisioning(t *testing.T) {
	h := hubtest.Start(t)
	s := start(t, h, `
name: zero-touch
classes:
  - {name: line, kind: cnc, count: 3, network: wlan, interval: 2s}
  - {name: meter, kind: gas-meter, count: 2, network: nb-iot, interval: 5s}
`, func(o *sim.Options) { o.Claim = true; o.NoEmulation = true })
	eventually(t, 60*time.Second, "every device online", func() error {
		if st := s.Stats(); st.Online < 5 || st.Messages < 5 {
			return fmt.Errorf("%+v", st.Classes)
		}
		return nil
	})
	var obj struct {
		Network string
		Tags    map[string]string
		Model   struct{ ID, Version string }
	}
	h.MustAdmin(200, "GET", "/api/v1/objects/demo:meter-001", nil).JSON(t, &obj)
	if obj.Network != "nb-iot" || obj.Tags["class"] != "meter" || obj.Model.ID != "demo:gas-meter" {
		t.Errorf("claimed object %+v", obj)
	}
	if out := h.MustWanwu("ctl", "claim", "list"); !strings.Contains(out, "sim line") || !strings.Contains(out, "sim meter") {
		t.Errorf("claim tokens: %s", out)
	}
}

// TestSleepingSessionKept: the hub keeps the DTLS session of a device on a
// PSM profile across a sleep longer than coap.session_idle, so that the
// device wakes into it without a new handshake; a device that does not
// sleep has its idle session closed as before.
func TestSleepingSessionKept(t *testing.T) {
	h := hubtest.Start(t, func(c *config.Hub) { c.CoAP.SessionIdle = config.Duration(2 * time.Second) })
	var ids map[string]*device.Identity
	{
		s := start(t, h, `
name: keep
classes:
  - {name: meter, kind: water-meter, count: 1, network: nb-iot, protocol: coap}
  - {name: plc, kind: water-meter, count: 1, network: ethernet, protocol: coap}
`, func(o *sim.Options) { o.NoEmulation = true })
		ids = s.Identities()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, tc := range []struct {
		code      string
		handshake int // handshakes for the two reports
	}{
		{"demo:meter-000", 1},
		{"demo:plc-000", 2},
	} {
		var connects atomic.Int32
		c, err := device.Connect(context.Background(), device.Options{Identity: ids[tc.code], MemoryBuffer: true, ServerName: "localhost",
			CoAP: "coaps://" + h.CoAP().Addr(coap.ListenerDTLS), CoAPSessionIdle: time.Hour,
			OnConnect: func() { connects.Add(1) }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := range 2 {
			if i == 1 {
				time.Sleep(4 * time.Second) // asleep, twice coap.session_idle
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			err := c.Publish(ctx, device.Record{Name: "volume", Unit: "m3", Time: base.Add(time.Duration(i) * time.Second), Value: 10 + i})
			cancel()
			if err != nil {
				t.Fatalf("%s: report %d: %v", tc.code, i, err)
			}
		}
		if n := int(connects.Load()); n != tc.handshake {
			t.Errorf("%s: %d handshakes for two reports 4 s apart, want %d", tc.code, n, tc.handshake)
		}
	}
}

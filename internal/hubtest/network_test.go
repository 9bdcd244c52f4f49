package hubtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/netuse"
)

// TestNetworkField: an object's network profile round-trips through the
// API, ctl and the bulk CSV; a name that is not a profile is refused with
// the field and the valid names everywhere; CSVs without the column still
// import; an update is audited with old and new values.
func TestNetworkField(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)

	// ctl register and show.
	h.MustWanwu("ctl", "object", "register", "acme:meter-1", "--network", "nb-iot", "--kind", "asset")
	if out := h.MustWanwu("ctl", "object", "show", "acme:meter-1"); !strings.Contains(out, `"network": "nb-iot"`) {
		t.Errorf("object show: %s", out)
	}
	_, stderr, code := h.Wanwu("ctl", "object", "register", "acme:meter-2", "--network", "lora", "--kind", "asset")
	if code == 0 || !strings.Contains(stderr, "network") || !strings.Contains(stderr, "nb-iot, lte-cat1, 5g-redcap, wlan, ethernet") {
		t.Errorf("ctl register with a bad network: exit %d, %s", code, stderr)
	}

	// API register, get, update.
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:cam-1", "kind": "asset", "network": "wlan"})
	var o struct{ Network string }
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:cam-1", nil).JSON(t, &o)
	if o.Network != "wlan" {
		t.Errorf("API get: network %q", o.Network)
	}
	var apiErr struct {
		Error struct{ Code, Field, Message string }
	}
	h.MustAdmin(400, "POST", "/api/v1/objects", map[string]any{"code": "acme:cam-2", "kind": "asset", "network": "3g"}).JSON(t, &apiErr)
	if apiErr.Error.Field != "network" || !strings.Contains(apiErr.Error.Message, "wlan") {
		t.Errorf("API register with a bad network: %+v", apiErr)
	}
	h.MustAdmin(400, "PATCH", "/api/v1/objects/acme:cam-1", map[string]any{"network": "WLAN"}).JSON(t, &apiErr)
	if apiErr.Error.Field != "network" {
		t.Errorf("API update with a bad network: %+v", apiErr)
	}
	if out := h.MustWanwu("ctl", "object", "update", "acme:cam-1", "--network", "ethernet"); !strings.Contains(out, "network ethernet") {
		t.Errorf("ctl update: %s", out)
	}
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:cam-1", nil).JSON(t, &o)
	if o.Network != "ethernet" {
		t.Errorf("after update: network %q", o.Network)
	}
	entries := string(h.MustAdmin(200, "GET", "/api/v1/audit/entries", nil).Body)
	if !strings.Contains(entries, `"kind":"object.updated","subject":"acme:cam-1","data":{"changes":{"network":{"new":"ethernet","old":"wlan"}}}`) {
		t.Errorf("no object.updated entry naming the network change in %s", entries)
	}
	if out := h.MustWanwu("ctl", "object", "update", "acme:cam-1", "--network", "-"); !strings.Contains(out, "network none") {
		t.Errorf("ctl update clearing: %s", out)
	}

	// CSV: a network column, a bad row refused with its field, and a file
	// from before the column.
	dir := t.TempDir()
	csv := filepath.Join(dir, "fleet.csv")
	os.WriteFile(csv, []byte("code,kind,network\nacme:tank-1,asset,nb-iot\nacme:tank-2,asset,zigbee\n"), 0o600)
	out, _, _ := h.Wanwu("ctl", "object", "import", csv)
	if !strings.Contains(out, "zigbee") || !strings.Contains(out, "network") {
		t.Errorf("import with a bad network: %s", out)
	}
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:tank-1", nil).JSON(t, &o)
	if o.Network != "nb-iot" {
		t.Errorf("imported network %q", o.Network)
	}
	h.MustAdmin(404, "GET", "/api/v1/objects/acme:tank-2", nil)
	old := filepath.Join(dir, "old.csv")
	os.WriteFile(old, []byte("code,kind\nacme:tank-3,asset\n"), 0o600)
	h.MustWanwu("ctl", "object", "import", old)
	o.Network = ""
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:tank-3", nil).JSON(t, &o)
	if o.Network != "" {
		t.Errorf("a CSV without the column gave network %q", o.Network)
	}

	var list struct{ Objects []struct{ Code string } }
	h.MustAdmin(200, "GET", "/api/v1/objects?network=nb-iot", nil).JSON(t, &list)
	if len(list.Objects) != 2 || list.Objects[0].Code != "acme:meter-1" || list.Objects[1].Code != "acme:tank-1" {
		t.Errorf("list network=nb-iot: %+v", list.Objects)
	}
	var usage struct {
		Networks []struct {
			Network string
			Objects int
		}
	}
	h.MustAdmin(200, "GET", "/api/v1/networks/usage", nil).JSON(t, &usage)
	if len(usage.Networks) == 0 || usage.Networks[0].Network != "nb-iot" || usage.Networks[0].Objects != 2 {
		t.Errorf("networks usage %+v", usage.Networks)
	}
}

// bytesOf is a device's bytes today from the API, with the whole answer.
type bytesAnswer struct {
	Network string `json:"network"`
	Days    []netuse.Usage
	AsOf    time.Time `json:"as_of"` // the last flush
}

func bytesOf(t *testing.T, h *Hub, code string) bytesAnswer {
	t.Helper()
	var b bytesAnswer
	h.MustAdmin(200, "GET", "/api/v1/objects/"+code+"/bytes?days=2", nil).JSON(t, &b)
	if len(b.Days) != 2 {
		t.Fatalf("days %+v", b.Days)
	}
	return b
}

func budgetEvents(t *testing.T, h *Hub, code string) int {
	t.Helper()
	var evs struct{ Events []struct{ Name string } }
	h.MustAdmin(200, "GET", "/api/v1/events?device="+code+"&name="+netuse.EventBudgetExceeded+"&start=2000-01-01T00:00:00Z", nil).JSON(t, &evs)
	return len(evs.Events)
}

// TestDeviceBytes: a device's MQTT traffic (TLS records included) is
// counted per UTC day; the counters grow by at least the payloads, the
// API and the metric agree once the traffic stops, the rows survive a
// restart, and crossing the profile's daily budget (overridden in the
// configuration) emits one event, once.
func TestDeviceBytes(t *testing.T) {
	budget := config.ByteSize(12000)
	h := Start(t, func(c *config.Hub) {
		c.Networks.FlushEvery = config.Duration(100 * time.Millisecond)
		c.Networks.Profiles = map[string]config.ProfileOverride{"lte-cat1": {DailyBudget: &budget}}
	})
	setupAcme(t, h)
	d := register(t, h, "acme:pump-1", "--model", "acme:pump@1.0.0", "--network", "lte-cat1")
	c, _, err := connect5(t, h, d, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"temperature": 21.5, "vibration": 0.25}`)
	sent := 0
	publish := func(n int) {
		for range n {
			if r, err := publish5(t, c, d.topic("telemetry"), "", payload); err != nil || r.ReasonCode != 0 {
				t.Fatalf("publish: %v %+v", err, r)
			}
			sent += len(payload)
		}
	}
	publish(20)
	eventually(t, "bytes counted", func() error {
		b := bytesOf(t, h, d.Code)
		if today := b.Days[0]; today.Up < int64(sent) || today.Down == 0 || today.Network != "lte-cat1" || today.Budget != 12000 {
			return fmt.Errorf("today %+v, want up ≥ %d", today, sent)
		}
		return nil
	})
	if n := budgetEvents(t, h, d.Code); n != 0 {
		t.Fatalf("%d budget events below the budget", n)
	}
	// Past the budget: one event, and the over-budget gauge.
	publish(120)
	eventually(t, "budget crossed", func() error {
		if n := budgetEvents(t, h, d.Code); n != 1 {
			return fmt.Errorf("%d budget events", n)
		}
		return nil
	})
	if g := mcMetric(t, h, `wanwu_devices_over_budget{network="lte-cat1",tenant="acme"}`); g != 1 {
		t.Errorf("over budget gauge %v", g)
	}
	publish(10)
	_ = c.Disconnect(&paho.Disconnect{})
	stopped := time.Now()

	// Once the traffic stopped, the API and the metric say the same: two
	// answers with a flush between them, both flushed well after the
	// connection ended (a loaded machine may flush late), agree.
	var last netuse.Usage
	var lastAsOf time.Time
	eventually(t, "API and metric agree", func() error {
		b := bytesOf(t, h, d.Code)
		today := b.Days[0]
		up := mcMetric(t, h, `wanwu_device_bytes_total{direction="up",network="lte-cat1",tenant="acme"}`)
		down := mcMetric(t, h, `wanwu_device_bytes_total{direction="down",network="lte-cat1",tenant="acme"}`)
		stable := today.Up == last.Up && today.Down == last.Down && b.AsOf.After(lastAsOf) && lastAsOf.After(stopped.Add(500*time.Millisecond))
		if float64(today.Up) != up || float64(today.Down) != down || !stable {
			last, lastAsOf = today, b.AsOf
			return fmt.Errorf("API %+v, metric up %v down %v", today, up, down)
		}
		return nil
	})
	if last.Up < int64(sent) || last.OverBudgetAt == nil || last.PercentUsed <= 100 || last.Cost <= 0 {
		t.Errorf("today %+v (sent %d payload bytes)", last, sent)
	}
	if out := h.MustWanwu("ctl", "object", "bytes", d.Code, "--days", "1"); !strings.Contains(out, "lte-cat1") || !strings.Contains(out, "over since") {
		t.Errorf("ctl object bytes: %s", out)
	}
	if out := h.MustWanwu("ctl", "network", "usage"); !strings.Contains(out, "lte-cat1") {
		t.Errorf("ctl network usage: %s", out)
	}

	// The rows survive a restart; more traffic adds to them and crosses
	// nothing again.
	h.Restart()
	if got := bytesOf(t, h, d.Code).Days[0]; got.Up != last.Up || got.Down != last.Down {
		t.Fatalf("after restart %+v, want %+v", got, last)
	}
	c, _, err = connect5(t, h, d, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	publish(5)
	eventually(t, "bytes after restart", func() error {
		if got := bytesOf(t, h, d.Code).Days[0]; got.Up < last.Up+int64(5*len(payload)) {
			return fmt.Errorf("today %+v", got)
		}
		return nil
	})
	if n := budgetEvents(t, h, d.Code); n != 1 {
		t.Errorf("%d budget events after the restart, want 1", n)
	}
}

// TestPSMDownlinkHeld: an NB-IoT device (CoAP over DTLS, observing /c)
// sends telemetry and falls silent beyond its active timer (shortened in
// the configuration); a command issued then stays queued, with no
// attempt and its expected delivery time, and is not sent; the device's
// next uplink gets it delivered at once. Its second sleep is expected to
// end one reporting interval after its last uplink.
func TestPSMDownlinkHeld(t *testing.T) {
	const active = 2 * time.Second
	at, periodic := config.Duration(active), config.Duration(time.Hour)
	h := Start(t, func(c *config.Hub) {
		c.Networks.FlushEvery = config.Duration(100 * time.Millisecond)
		c.Networks.Profiles = map[string]config.ProfileOverride{"nb-iot": {ActiveTimer: &at, PeriodicUpdate: &periodic}}
	})
	setupAcme(t, h)
	d := register(t, h, "acme:meter-1", "--model", "acme:pump@1.0.0", "--network", "nb-iot")
	cc := dialPSK(t, h, d.Code)

	cmds := make(chan map[string]any, 4)
	obs, err := cc.Observe(coapCtx(t), "/c", func(m *pool.Message) {
		var v map[string]any
		if b, err := m.ReadBody(); err == nil && len(b) > 0 && json.Unmarshal(b, &v) == nil {
			cmds <- v
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Cancel(context.Background())
	post := func() time.Time {
		t.Helper()
		at := time.Now()
		if r := coapPost(t, cc, "/t", message.AppJSON, []byte(`{"temperature": 20.5}`)); r.Code() != codes.Changed {
			t.Fatalf("telemetry: %v %q", r.Code(), readBody(t, r))
		}
		return at
	}
	post()
	time.Sleep(active + 500*time.Millisecond) // asleep now

	type cmd struct {
		ID                 string     `json:"id"`
		Status             string     `json:"status"`
		Attempts           int        `json:"attempts"`
		ExpectedDeliveryAt *time.Time `json:"expected_delivery_at"`
	}
	var issued cmd
	out := h.MustWanwu("ctl", "command", "send", d.Code, "stop", "--id", "psm-1")
	if err := json.Unmarshal([]byte(out), &issued); err != nil {
		t.Fatalf("command send: %s", out)
	}
	if issued.Status != "queued" || issued.Attempts != 0 || issued.ExpectedDeliveryAt == nil {
		t.Fatalf("issued to a sleeping device: %s", out)
	}
	// Nothing known of its interval yet: its periodic update, an hour.
	if wait := time.Until(*issued.ExpectedDeliveryAt); wait < 50*time.Minute || wait > time.Hour {
		t.Errorf("expected delivery in %v, want about an hour", wait)
	}
	select {
	case v := <-cmds:
		t.Fatalf("a command reached a sleeping device: %v", v)
	case <-time.After(500 * time.Millisecond):
	}
	var got struct{ Command cmd }
	h.MustAdmin(200, "GET", "/api/v1/commands/psm-1", nil).JSON(t, &got)
	psm1 := got.Command
	if psm1.Status != "queued" || psm1.Attempts != 0 || psm1.ExpectedDeliveryAt == nil {
		t.Errorf("command get while asleep: %+v", psm1)
	}
	if out := h.MustWanwu("ctl", "command", "list", d.Code); !strings.Contains(out, `"expected_delivery_at"`) {
		t.Errorf("command list: %s", out)
	}

	// It wakes and sends: the command follows right away.
	woke := post()
	select {
	case v := <-cmds:
		if v["id"] != "psm-1" {
			t.Fatalf("on wake: %v", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no command after the device's uplink")
	}
	eventually(t, "delivered", func() error {
		got.Command = cmd{}
		h.MustAdmin(200, "GET", "/api/v1/commands/psm-1", nil).JSON(t, &got)
		if got.Command.Status != "delivered" || got.Command.Attempts != 1 || got.Command.ExpectedDeliveryAt != nil {
			return fmt.Errorf("%+v", got.Command)
		}
		return nil
	})
	if r := coapPost(t, cc, "/c/psm-1", message.AppJSON, []byte(`{"status":"succeeded"}`)); r.Code() != codes.Changed {
		t.Fatalf("result: %v", r.Code())
	}

	// Asleep again: now its interval is known (two wakes), and the next
	// command is expected about one interval after its last uplink.
	time.Sleep(active + 500*time.Millisecond)
	out = h.MustWanwu("ctl", "command", "send", d.Code, "stop", "--id", "psm-2")
	issued = cmd{}
	if err := json.Unmarshal([]byte(out), &issued); err != nil || issued.ExpectedDeliveryAt == nil {
		t.Fatalf("second command: %s", out)
	}
	if wait := issued.ExpectedDeliveryAt.Sub(woke); wait < active || wait > time.Minute {
		t.Errorf("expected %v after the last wake, want one reporting interval (a few seconds)", wait)
	}

	// CoAP over DTLS is counted too.
	eventually(t, "CoAP bytes", func() error {
		if today := bytesOf(t, h, d.Code).Days[0]; today.Up < 3*int64(len(`{"temperature": 20.5}`)) || today.Down == 0 {
			return fmt.Errorf("today %+v", today)
		}
		return nil
	})
}

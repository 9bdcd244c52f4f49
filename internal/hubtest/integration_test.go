package hubtest

// Integrations, the development listener and device events over MQTT
// (docs/PROTOCOL.md §1), with the MQTT statements they rely on. Helpers are
// in mqtt_conformance_test.go.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// TestIntegrationAccess: an integration's API token decides what it may
// read; it publishes nothing; a revoked token no longer connects.
//
//	[MQTT-3.8.4-7] [MQTT-3.9.3-2] SUBACK grants or refuses (0x87) each filter
//	[MQTT-3.4.2-1] [MQTT-3.5.2-1] PUBACK / PUBREC 0x87 for a publish
//	(3.1.1) [MQTT-3.3.5-2] an unauthorized QoS 1 publish closes the connection
//	[MQTT-3.1.4-2] [MQTT-3.2.2-7] a refused CONNECT: CONNACK 0x87, then close
func TestIntegrationAccess(t *testing.T) {
	h := mcHub(t)
	h.MustWanwu("ctl", "tenant", "create", "beta")
	d := mcPump(t, h, "int-1")
	tok := mcToken(t, h, "int-acme", "viewer", "acme")
	in := newMCInbox()
	conf := mcIntegration(tok, "int-acme")
	conf.inbox = in
	c := mustConnect5(t, h, conf)

	for _, tc := range []struct {
		filter string
		want   byte
	}{
		{"wanwu/v1/acme/+/telemetry", 1},
		{"wanwu/v1/acme/#", 1},
		{"wanwu/v1/acme/int-1/events/+", 1},
		{"$share/g/wanwu/v1/acme/+/status", 1},
		{"wanwu/v1/beta/+/telemetry", 0x87},
		{"$share/g/wanwu/v1/beta/#", 0x87},
		{"wanwu/v1/+/+/telemetry", 0x87},
		{"wanwu/v1/#", 0x87},
		{"#", 0x87},
		{"+/v1/acme/#", 0x87},
		{"$SYS/#", 0x87},
	} {
		if rc := c.sub(t, tc.filter, 1, 0); rc != tc.want {
			t.Errorf("[MQTT-3.9.3-2] subscribe %s: SUBACK 0x%02x, want 0x%02x", tc.filter, rc, tc.want)
		}
	}
	dev := mustConnect5(t, h, mcDevice(t, d))
	dev.mustPub(t, d.topic("telemetry"), 1, false, `{"temperature": 21}`)
	if m := in.next(t, "telemetry"); m.Topic != d.topic("telemetry") || string(m.Payload) != `{"temperature": 21}` {
		t.Errorf("integration received %s %q", m.Topic, m.Payload)
	}

	// Integrations publish nothing in v1, not even on their own tenant's topics.
	for _, qos := range []byte{1, 2} {
		if pr, _ := c.pub(t, d.topic("telemetry"), qos, false, `{"temperature": 99}`); pr == nil || pr.ReasonCode != 0x87 {
			t.Errorf("[MQTT-3.4.2-1] [MQTT-3.5.2-1] integration publish QoS %d: %+v, want 0x87", qos, pr)
		}
	}
	c3, ack := mcConnect3(t, h, "int-acme-3", "integration", tok, true, nil)
	if ack.Error() != nil {
		t.Fatal(ack.Error())
	}
	c3.Publish(d.topic("telemetry"), 1, false, `{"temperature": 99}`).WaitTimeout(2 * time.Second)
	eventually(t, "(3.1.1) [MQTT-3.3.5-2] connection closed after an unauthorized publish", func() error {
		if c3.IsConnectionOpen() {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	if v := latest(t, h, d.Code); v["temperature"].Value == 99.0 {
		t.Error("an integration's publish was stored")
	}

	// A deployment-wide token reads every tenant, still only under wanwu/.
	wide := mustConnect5(t, h, mcIntegration(mcToken(t, h, "int-wide", "viewer", ""), "int-wide"))
	for filter, want := range map[string]byte{"wanwu/v1/+/+/telemetry": 1, "wanwu/v1/beta/#": 1, "#": 0x87} {
		if rc := wide.sub(t, filter, 1, 0); rc != want {
			t.Errorf("deployment-wide token, %s: SUBACK 0x%02x, want 0x%02x", filter, rc, want)
		}
	}

	// Revoked: refused at CONNECT, in both versions.
	h.MustAdmin(200, "DELETE", "/api/v1/tokens/int-acme", nil)
	if cl, err := mcConnect5(t, h, mcIntegration(tok, "int-acme-again")); err == nil || cl.ack == nil || cl.ack.ReasonCode != 0x87 {
		t.Errorf("[MQTT-3.2.2-7] revoked token (MQTT 5): %v %+v", err, cl.ack)
	}
	if _, ack := mcConnect3(t, h, "int-acme-again3", "integration", tok, true, nil); ack.Error() == nil || ack.ReturnCode() != 0x05 {
		t.Errorf("[MQTT-3.2.2-5] (3.1.1) revoked token: %v return code 0x%02x, want 0x05", ack.Error(), ack.ReturnCode())
	}
}

// TestIntegrationSessionIsolation: an integration's client id cannot reach
// a device's or another tenant's session, and an integration cannot leave a
// will (it would publish where it may not).
//
//	[MQTT-3.1.3-8] a refused client identifier: CONNACK 0x85; (3.1.1) [MQTT-3.1.3-9] 0x02
//	[MQTT-3.1.4-3] (which would otherwise disconnect the session's owner)
func TestIntegrationSessionIsolation(t *testing.T) {
	h := mcHub(t)
	h.MustWanwu("ctl", "tenant", "create", "beta")
	d := mcPump(t, h, "iso-1")
	acme := mcToken(t, h, "iso-acme", "viewer", "acme")
	beta := mcToken(t, h, "iso-beta", "viewer", "beta")

	dev := mustConnect5(t, h, mcDevice(t, d))
	for _, tok := range []string{acme, beta} {
		if cl, err := mcConnect5(t, h, mcIntegration(tok, d.Code)); err == nil || cl.ack == nil || cl.ack.ReasonCode != 0x85 {
			t.Errorf("[MQTT-3.1.3-8] integration using a device's code as client id: %v %+v", err, cl.ack)
		}
	}
	if _, ack := mcConnect3(t, h, d.Code, "integration", acme, true, nil); ack.Error() == nil || ack.ReturnCode() != 0x02 {
		t.Errorf("[MQTT-3.1.3-9] (3.1.1) integration using a device's code: %v return code 0x%02x", ack.Error(), ack.ReturnCode())
	}
	dev.mustPub(t, d.topic("telemetry"), 1, false, `{"temperature": 20}`) // still connected
	// Its fan-out is done before anyone subscribes below.
	mcSync(t, dev, d)

	// acme's persistent session with queued telemetry cannot be taken over
	// by beta's integration under the same client id.
	conf := mcIntegration(acme, "iso-bridge")
	conf.expiry = 300
	a := mustConnect5(t, h, conf)
	a.mustSub(t, "wanwu/v1/acme/+/telemetry", 1)
	a.Disconnect(&paho.Disconnect{})
	mcWaitClients(t, h, 1)
	dev.mustPub(t, d.topic("telemetry"), 1, false, `{"temperature": 21}`)
	mcSync(t, dev, d)
	stolen := newMCInbox()
	bc := mcIntegration(beta, "iso-bridge")
	bc.resume, bc.inbox = true, stolen
	if cl, err := mcConnect5(t, h, bc); err == nil || cl.ack == nil || cl.ack.ReasonCode != 0x85 {
		t.Errorf("beta took over acme's session: %v %+v", err, cl.ack)
	}
	conf.resume, conf.inbox = true, newMCInbox()
	if a = mustConnect5(t, h, conf); !a.ack.SessionPresent {
		t.Error("acme's session was lost")
	}
	if m := conf.inbox.next(t, "acme's queued telemetry"); string(m.Payload) != `{"temperature": 21}` {
		t.Errorf("acme's session delivered %q", m.Payload)
	}
	select {
	case m := <-stolen:
		t.Errorf("beta received acme's telemetry %q", m.Payload)
	default:
	}

	// No wills for integrations, not even on their own tenant's topics.
	w := mcIntegration(acme, "iso-will")
	w.will = &paho.WillMessage{Topic: d.topic("status"), Payload: []byte("offline")}
	if cl, err := mcConnect5(t, h, w); err == nil || cl.ack == nil || cl.ack.ReasonCode != 0x87 {
		t.Errorf("[MQTT-3.1.4-2] integration with a will: %v %+v", err, cl.ack)
	}
}

// TestDevListener: the development listener admits anonymous clients only
// within mqtt.dev_acl, and is closed unless configured.
func TestDevListener(t *testing.T) {
	if addr := mcHub(t).MQTT().Addr(mqtt.ListenerDev); addr != "" {
		t.Fatalf("development listener open by default at %s", addr)
	}
	h := mcHub(t, func(c *config.Hub) { c.MQTT.DevListen = "127.0.0.1:0" })
	addr := h.MQTT().Addr(mqtt.ListenerDev)
	if addr == "" {
		t.Fatal("development listener not open")
	}
	d := mcPump(t, h, "dev-1")
	tok := mcToken(t, h, "dev-int", "viewer", "acme")
	watch := newMCInbox()
	wc := mcIntegration(tok, "dev-watch")
	wc.inbox = watch
	mustConnect5(t, h, wc).mustSub(t, "wanwu/v1/acme/#", 1)

	in := newMCInbox()
	c := mustConnect5(t, h, mcConn{addr: addr, id: "lab-1", inbox: in})
	c.mustSub(t, "wanwu/v1/dev/#", 1)
	for _, f := range []string{"wanwu/v1/acme/+/telemetry", "wanwu/v1/#", "#", "wanwu/v1/+/x", "$share/g/wanwu/v1/acme/#"} {
		if rc := c.sub(t, f, 1, 0); rc != 0x87 {
			t.Errorf("anonymous subscribe %s: SUBACK 0x%02x, want 0x87", f, rc)
		}
	}
	c.mustPub(t, "wanwu/v1/dev/lab/temp", 1, false, "21")
	if m := in.next(t, "dev topic"); m.Topic != "wanwu/v1/dev/lab/temp" || string(m.Payload) != "21" {
		t.Errorf("dev topic relayed %s %q", m.Topic, m.Payload)
	}
	for _, topic := range []string{d.topic("telemetry"), d.topic("status"), "elsewhere"} {
		if pr, _ := c.pub(t, topic, 1, false, `{"temperature": 99}`); pr == nil || pr.ReasonCode != 0x87 {
			t.Errorf("anonymous publish to %s: %+v, want PUBACK 0x87", topic, pr)
		}
	}

	// 3.1.1 anonymous client: SUBACK 0x80 outside the ACL.
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("lab-3").SetProtocolVersion(4).SetAutoReconnect(false)
	c3 := paho3.NewClient(o)
	if tk := c3.Connect(); !tk.WaitTimeout(mcWait) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	defer c3.Disconnect(50)
	st := c3.SubscribeMultiple(map[string]byte{"wanwu/v1/dev/+": 1, "wanwu/v1/acme/#": 1}, nil)
	st.WaitTimeout(mcWait)
	if r := st.(*paho3.SubscribeToken).Result(); r["wanwu/v1/dev/+"] != 1 || r["wanwu/v1/acme/#"] != 0x80 {
		t.Errorf("(3.1.1) [MQTT-3.9.3-2] anonymous SUBACK %v", r)
	}

	// A will outside the ACL is refused at CONNECT; one inside is published.
	bad := mcConn{addr: addr, id: "lab-will-bad", will: &paho.WillMessage{Topic: d.topic("status"), Payload: []byte("offline")}}
	if cl, err := mcConnect5(t, h, bad); err == nil || cl.ack == nil || cl.ack.ReasonCode != 0x87 {
		t.Errorf("[MQTT-3.1.4-2] anonymous will on a device's status: %v %+v", err, cl.ack)
	}
	good := mcConn{addr: addr, id: "lab-will", will: &paho.WillMessage{Topic: "wanwu/v1/dev/lab/status", Payload: []byte("gone")}}
	mustConnect5(t, h, good).conn.Close()
	if m := in.next(t, "[MQTT-3.1.2-8] anonymous will"); m.Topic != "wanwu/v1/dev/lab/status" || string(m.Payload) != "gone" {
		t.Errorf("anonymous will relayed %s %q", m.Topic, m.Payload)
	}
	// Nor can an anonymous client take a device's client id (and session).
	if cl, err := mcConnect5(t, h, mcConn{addr: addr, id: d.Code}); err == nil || cl.ack == nil || cl.ack.ReasonCode != 0x85 {
		t.Errorf("[MQTT-3.1.3-8] anonymous client with a device's code: %v %+v", err, cl.ack)
	}

	// Nothing an anonymous client did reached acme's topics.
	dev := mustConnect5(t, h, mcDevice(t, d))
	dev.mustPub(t, d.topic("telemetry"), 1, false, `{"temperature": 22}`)
	if m := watch.next(t, "acme's own telemetry"); string(m.Payload) != `{"temperature": 22}` {
		t.Errorf("acme's subscriber saw %s %q from the development listener", m.Topic, m.Payload)
	}
	// Anonymous clients are refused on the regular listener.
	if cl, err := mcConnect5(t, h, mcConn{id: "lab-2"}); err == nil || cl.ack == nil || cl.ack.ReasonCode != 0x87 {
		t.Errorf("anonymous client on the regular listener: %v %+v", err, cl.ack)
	}
}

// TestMQTTEvents: a device publishes an event of its thing model; it is
// stored, listed and relayed; an undeclared event is refused with a reason.
func TestMQTTEvents(t *testing.T) {
	h := mcHub(t)
	d := mcPump(t, h, "ev-1")
	tok := mcToken(t, h, "ev", "viewer", "acme")
	in := newMCInbox()
	conf := mcIntegration(tok, "ev-int")
	conf.inbox = in
	mustConnect5(t, h, conf).mustSub(t, "wanwu/v1/acme/+/events/#", 1)
	dev := mustConnect5(t, h, mcDevice(t, d))

	dev.mustPub(t, d.topic("events/overheat"), 1, false, `{"temperature": 130}`)
	if m := in.next(t, "event"); m.Topic != d.topic("events/overheat") || string(m.Payload) != `{"temperature": 130}` {
		t.Errorf("event relayed as %s %q", m.Topic, m.Payload)
	}
	var out struct {
		Events []struct {
			Device, Name string
			Data         map[string]any
		}
	}
	eventually(t, "event listed", func() error {
		h.MustAdmin(200, "GET", "/api/v1/events?device="+d.Code, nil).JSON(t, &out)
		if len(out.Events) != 1 {
			return fmt.Errorf("events %+v", out.Events)
		}
		return nil
	})
	if e := out.Events[0]; e.Device != d.Code || e.Name != "overheat" || e.Data["temperature"] != 130.0 {
		t.Errorf("event %+v", e)
	}
	// The viewer token sees it too.
	if r := h.Do("GET", "/api/v1/events?device="+d.Code, tok, nil); r.Status != 200 || !strings.Contains(string(r.Body), "overheat") {
		t.Errorf("viewer token: %d %s", r.Status, r.Body)
	}

	for _, tc := range []struct {
		name, topic, payload string
		code                 byte
		reason               string
	}{
		{"undeclared event", d.topic("events/explode"), `{"temperature": 130}`, 0x99, "unknown_property"},
		{"wrong data type", d.topic("events/overheat"), `{"temperature": "hot"}`, 0x99, "type_mismatch"},
		{"no data", d.topic("events/overheat"), ``, 0x99, "type_mismatch"},
		{"not an event name", d.topic("events/9lives"), `{}`, 0x87, ""},
	} {
		pr, err := dev.pub(t, tc.topic, 1, false, tc.payload)
		if err == nil || pr == nil || pr.ReasonCode != tc.code {
			t.Errorf("%s: %v %+v, want 0x%02x", tc.name, err, pr, tc.code)
			continue
		}
		if tc.reason != "" && (pr.Properties == nil || !strings.HasPrefix(pr.Properties.ReasonString, tc.reason)) {
			t.Errorf("%s: reason string %+v, want %s", tc.name, pr.Properties, tc.reason)
		}
	}
	// A QoS 2 event the hub rejects gets its reason in the PUBREC, which
	// ends the exchange [MQTT-3.3.4-1] [MQTT-3.5.2-1].
	ctx, cancel := context.WithTimeout(context.Background(), mcWait)
	defer cancel()
	pr, err := dev.Publish(ctx, &paho.Publish{Topic: d.topic("events/explode"), QoS: 2, Payload: []byte(`{}`)})
	if err != nil || pr == nil || pr.ReasonCode != 0x99 || pr.Properties == nil || !strings.HasPrefix(pr.Properties.ReasonString, "unknown_property") {
		t.Errorf("rejected QoS 2 event: %v %+v", err, pr)
	}
	// The device carries on; only the valid event was stored and relayed.
	dev.mustPub(t, d.topic("events/overheat"), 2, false, `{"temperature": 131}`)
	if m := in.next(t, "second event"); string(m.Payload) != `{"temperature": 131}` {
		t.Errorf("relayed %s %q, want only valid events", m.Topic, m.Payload)
	}
	eventually(t, "two events", func() error {
		h.MustAdmin(200, "GET", "/api/v1/events?device="+d.Code, nil).JSON(t, &out)
		if len(out.Events) != 2 {
			return fmt.Errorf("%d events", len(out.Events))
		}
		return nil
	})
	raw := mcRawDevice(t, h, d, 5, packets.ConnectParams{})
	raw.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: 5, TopicName: d.topic("events/explode"), Payload: []byte(`{}`)})
	if rec := raw.expect(packets.Pubrec); rec.PacketID != 5 || rec.ReasonCode != 0x99 {
		t.Errorf("[MQTT-3.3.4-1] rejected QoS 2 event answered with PUBREC %+v", rec)
	}
}

// TestAlarmsOnMQTT: an integration subscribed to its tenant's alarm
// topics hears a loop's alarm raised, and cleared, as it happens.
func TestAlarmsOnMQTT(t *testing.T) {
	h := mcHub(t)
	d := mcPump(t, h, "hot-1")
	h.MustAdmin(201, "POST", "/api/v1/loops", `
id: too-hot
tenant: acme
mode: active
on: {model: acme:pump}
perceive:
  temp: {property: temperature, fn: last}
decide: {when: temp > 90.0, clear: temp < 80.0}
act:
  alarm: {name: overheat, severity: critical, message: "'pump at ' + string(temp) + ' Cel'"}
`)
	in := newMCInbox()
	conf := mcIntegration(mcToken(t, h, "alarms-acme", "viewer", "acme"), "alarms-acme")
	conf.inbox = in
	c := mustConnect5(t, h, conf)
	if rc := c.sub(t, "wanwu/v1/acme/+/alarms", 1, 0); rc != 1 {
		t.Fatalf("subscribe to the alarms: SUBACK 0x%02x", rc)
	}
	dev := mustConnect5(t, h, mcDevice(t, d))
	dev.mustPub(t, d.topic("telemetry"), 1, false, `{"temperature": 95}`)
	var ev struct {
		Kind  string
		Alarm struct{ Name, Severity, State, Message, Object string }
	}
	m := in.next(t, "the alarm raised")
	if err := json.Unmarshal(m.Payload, &ev); err != nil || m.Topic != "wanwu/v1/acme/hot-1/alarms" || ev.Kind != "raised" ||
		ev.Alarm.Name != "overheat" || ev.Alarm.Severity != "critical" || ev.Alarm.State != "unack_active" || ev.Alarm.Message != "pump at 95 Cel" {
		t.Fatalf("%s: %s (%v)", m.Topic, m.Payload, err)
	}
	dev.mustPub(t, d.topic("telemetry"), 1, false, `{"temperature": 70}`)
	m = in.next(t, "the alarm cleared")
	if err := json.Unmarshal(m.Payload, &ev); err != nil || ev.Kind != "cleared" || ev.Alarm.State != "unack_cleared" {
		t.Fatalf("%s: %s (%v)", m.Topic, m.Payload, err)
	}
	// A device cannot publish there.
	if pr, _ := dev.pub(t, "wanwu/v1/acme/hot-1/alarms", 1, false, `{}`); pr == nil || pr.ReasonCode != 0x87 {
		t.Errorf("a device's publish to its alarms topic: %+v, want 0x87", pr)
	}
}

package hubtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// inbox collects what a device receives, by topic, in order.
type inbox struct {
	mu   sync.Mutex
	msgs []received
	more chan struct{}
}

type received struct {
	Topic   string
	Payload []byte
}

func newInbox() *inbox { return &inbox{more: make(chan struct{}, 1)} }

func (b *inbox) add(topic string, payload []byte) {
	b.mu.Lock()
	b.msgs = append(b.msgs, received{topic, append([]byte(nil), payload...)})
	b.mu.Unlock()
	select {
	case b.more <- struct{}{}:
	default:
	}
}

// wait returns the first message not yet taken whose topic ends with suffix
// and whose payload satisfies match (nil matches all), failing after 10 s.
func (b *inbox) wait(t *testing.T, suffix string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		b.mu.Lock()
		for i, m := range b.msgs {
			if !strings.HasSuffix(m.Topic, suffix) {
				continue
			}
			var v map[string]any
			if err := json.Unmarshal(m.Payload, &v); err != nil {
				b.mu.Unlock()
				t.Fatalf("%s: payload %q is not JSON: %v", m.Topic, m.Payload, err)
			}
			if match == nil || match(v) {
				b.msgs = append(b.msgs[:i:i], b.msgs[i+1:]...)
				b.mu.Unlock()
				return v
			}
		}
		b.mu.Unlock()
		select {
		case <-b.more:
		case <-deadline:
			b.mu.Lock()
			defer b.mu.Unlock()
			t.Fatalf("no message on …%s within 10s; got %d others", suffix, len(b.msgs))
		}
	}
}

func subscribe5(t *testing.T, c *paho.Client, qos byte, filters ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var subs []paho.SubscribeOptions
	for _, f := range filters {
		subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: qos})
	}
	ack, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
	if err != nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	for i, r := range ack.Reasons {
		if r > 2 {
			t.Fatalf("subscribe %s refused: 0x%02x", filters[i], r)
		}
	}
}

func versionIs(v float64) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["version"] == v }
}

// TestTwinOverMQTT: desired state set while the device is away reaches it
// when it subscribes; its report clears the delta; a stale update is
// refused with the current version; a change is pushed at once; a device
// that reconnects resumes from the latest state.
func TestTwinOverMQTT(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, "acme:pump-1", "--model", "acme:pump@1.0.0")

	// Offline: the operator sets desired state with ctl.
	out := h.MustWanwu("ctl", "twin", "set", d.Code, "speed=1200", "mode=auto")
	if !strings.Contains(out, `"version": 1`) {
		t.Fatalf("twin set printed %s", out)
	}

	box := newInbox()
	c, ack, err := connect5(t, h, d, true, func(p paho.PublishReceived) { box.add(p.Packet.Topic, p.Packet.Payload) })
	if err != nil {
		t.Fatalf("connect: %v (%+v)", err, ack)
	}
	subscribe5(t, c, 1, d.topic("twin/desired"), d.topic("twin/delta"))
	delta := box.wait(t, "/twin/delta", versionIs(1))
	if want := map[string]any{"speed": 1200.0, "mode": "auto"}; fmt.Sprint(delta["delta"]) != fmt.Sprint(want) {
		t.Errorf("delta on subscribe = %v, want %v", delta["delta"], want)
	}
	desired := box.wait(t, "/twin/desired", versionIs(1))
	if fmt.Sprint(desired["desired"]) != fmt.Sprint(map[string]any{"speed": 1200.0, "mode": "auto"}) {
		t.Errorf("desired = %v", desired)
	}

	// The device applies it and reports; PUBACK only after the report is stored.
	if r, err := publish5(t, c, d.topic("twin/reported"), "", []byte(`{"speed":1200,"mode":"auto","running":true}`)); err != nil || r.ReasonCode != 0 {
		t.Fatalf("report: %v %+v", err, r)
	}
	var tw struct {
		Version         int64
		ReportedVersion int64 `json:"reported_version"`
		Reported        map[string]any
		Delta           map[string]any
		Metadata        struct {
			Reported map[string]struct{ Updated time.Time }
		}
	}
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:pump-1/twin", nil).JSON(t, &tw)
	if len(tw.Delta) != 0 || tw.Reported["running"] != true || tw.Metadata.Reported["speed"].Updated.IsZero() {
		t.Errorf("twin after report: %+v", tw)
	}

	// A report outside the model is refused with a reason, nothing changes.
	// (paho returns the PUBACK with an error for a reason code >= 0x80.)
	r, err := publish5(t, c, d.topic("twin/reported"), "", []byte(`{"speed":"fast"}`))
	if r == nil || r.ReasonCode != 0x99 || !strings.Contains(r.Properties.ReasonString, "speed") {
		t.Errorf("bad report answered %v %+v, want 0x99 naming speed", err, r)
	}

	// Optimistic concurrency: an update based on version 0 is stale.
	resp := h.Do("PATCH", "/api/v1/objects/acme:pump-1/twin/desired?version=0", h.AdminToken, `{"speed":900}`)
	if resp.Status != 409 || !strings.Contains(string(resp.Body), `"current_version": 1`) {
		t.Fatalf("stale update: %d %s", resp.Status, resp.Body)
	}
	// The current version applies, and the change is pushed at once.
	h.MustAdmin(200, "PATCH", "/api/v1/objects/acme:pump-1/twin/desired?version=1", `{"speed":900}`)
	delta = box.wait(t, "/twin/delta", versionIs(2))
	if fmt.Sprint(delta["delta"]) != fmt.Sprint(map[string]any{"speed": 900.0}) {
		t.Errorf("pushed delta = %v", delta)
	}
	// Writing a read-only property is refused with the field named.
	resp = h.Admin("PATCH", "/api/v1/objects/acme:pump-1/twin/desired", `{"temperature":20}`)
	if resp.Status != 400 || !strings.Contains(string(resp.Body), "temperature") {
		t.Errorf("read-only desired: %d %s", resp.Status, resp.Body)
	}

	// The device goes away; the desired state changes; it comes back (a
	// device restart) and resumes from the latest state.
	_ = c.Disconnect(&paho.Disconnect{})
	h.MustAdmin(200, "PATCH", "/api/v1/objects/acme:pump-1/twin/desired", `{"mode":"manual"}`)
	h.Restart()
	box2 := newInbox()
	c2, ack, err := connect5(t, h, d, true, func(p paho.PublishReceived) { box2.add(p.Packet.Topic, p.Packet.Payload) })
	if err != nil {
		t.Fatalf("reconnect: %v (%+v)", err, ack)
	}
	subscribe5(t, c2, 1, d.topic("twin/delta"))
	delta = box2.wait(t, "/twin/delta", versionIs(3))
	if fmt.Sprint(delta["delta"]) != fmt.Sprint(map[string]any{"speed": 900.0, "mode": "manual"}) {
		t.Errorf("delta after restart = %v", delta)
	}
	// twin/get asks again at any time.
	if _, err := publish5(t, c2, d.topic("twin/get"), "", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	box2.wait(t, "/twin/delta", versionIs(3))
}

// TestCommandsOverMQTT: commands issued while the device is offline wait
// for it and arrive in order when it subscribes; PUBACK marks them
// delivered, results finish them; bad arguments are refused naming the
// argument; an MQTT 3.1.1 device works the same way.
func TestCommandsOverMQTT(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, "acme:pump-1", "--model", "acme:pump@1.0.0")

	resp := h.Admin("POST", "/api/v1/objects/acme:pump-1/commands", map[string]any{"action": "setSpeed", "args": map[string]any{"rpm": 9000}})
	if resp.Status != 400 || !strings.Contains(string(resp.Body), "rpm") {
		t.Fatalf("out-of-range argument: %d %s", resp.Status, resp.Body)
	}
	resp = h.Admin("POST", "/api/v1/objects/acme:pump-1/commands", map[string]any{"action": "explode"})
	if resp.Status != 400 || !strings.Contains(string(resp.Body), "explode") {
		t.Fatalf("unknown action: %d %s", resp.Status, resp.Body)
	}

	var ids []string
	for i, rpm := range []int{100, 200, 300} {
		var c struct{ ID, Status string }
		h.MustAdmin(201, "POST", "/api/v1/objects/acme:pump-1/commands", map[string]any{
			"id": fmt.Sprintf("cmd-%d", i), "action": "setSpeed", "args": map[string]any{"rpm": rpm},
		}).JSON(t, &c)
		if c.Status != "queued" {
			t.Fatalf("command %d status %q, want queued", i, c.Status)
		}
		ids = append(ids, c.ID)
	}
	// The same id again is the same command (idempotent), with 200.
	h.MustAdmin(200, "POST", "/api/v1/objects/acme:pump-1/commands", map[string]any{
		"id": "cmd-0", "action": "setSpeed", "args": map[string]any{"rpm": 100},
	})

	// An MQTT 3.1.1 device, by device token.
	box := newInbox()
	opts := paho3.NewClientOptions().AddBroker("tcp://" + h.MQTT().Addr(mqtt.ListenerTCP)).
		SetClientID(d.Code).SetUsername(d.Code).SetPassword(d.token(t)).SetCleanSession(true).SetAutoReconnect(false)
	c3 := paho3.NewClient(opts)
	if tok := c3.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect 3.1.1: %v", tok.Error())
	}
	defer c3.Disconnect(100)
	tok := c3.Subscribe(d.topic("commands/+"), 1, func(_ paho3.Client, m paho3.Message) { box.add(m.Topic(), m.Payload()) })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	// All three arrive, in the order they were issued (one outstanding
	// delivery per device at a time), each confirmed by the device's PUBACK.
	eventually(t, "three commands delivered", func() error {
		box.mu.Lock()
		defer box.mu.Unlock()
		if len(box.msgs) < 3 {
			return fmt.Errorf("%d received", len(box.msgs))
		}
		return nil
	})
	box.mu.Lock()
	arrived := append([]received(nil), box.msgs...)
	box.mu.Unlock()
	for i, id := range ids {
		var m map[string]any
		if err := json.Unmarshal(arrived[i].Payload, &m); err != nil {
			t.Fatal(err)
		}
		args, _ := m["args"].(map[string]any)
		if !strings.HasSuffix(arrived[i].Topic, "/commands/"+id) || m["id"] != id || m["action"] != "setSpeed" || args["rpm"] != float64(100*(i+1)) {
			t.Errorf("delivery %d = %s %v, want %s", i, arrived[i].Topic, m, id)
		}
		eventually(t, "delivered "+id, func() error {
			var got struct{ Command struct{ Status string } }
			h.MustAdmin(200, "GET", "/api/v1/commands/"+id, nil).JSON(t, &got)
			if got.Command.Status != "delivered" {
				return fmt.Errorf("status %s", got.Command.Status)
			}
			return nil
		})
		result := `{"status":"succeeded","output":{"rpm":` + fmt.Sprint(100*(i+1)) + `}}`
		if i == 2 {
			result = `{"status":"failed","reason":"motor fault"}`
		}
		if tk := c3.Publish(d.topic("commands/"+id+"/result"), 1, false, result); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("result: %v", tk.Error())
		}
	}
	for i, id := range ids {
		want := "succeeded"
		if i == 2 {
			want = "failed"
		}
		eventually(t, "result of "+id, func() error {
			var got struct {
				Command struct{ Status, Reason string }
				Events  []struct{ Kind string }
			}
			h.MustAdmin(200, "GET", "/api/v1/commands/"+id, nil).JSON(t, &got)
			if got.Command.Status != want || len(got.Events) < 3 {
				return fmt.Errorf("command %+v", got)
			}
			if i == 2 && got.Command.Reason != "motor fault" {
				return fmt.Errorf("reason %q", got.Command.Reason)
			}
			return nil
		})
	}
	// A result for a command that is not the device's is refused (3.1.1:
	// on the errors topic).
	errs := newInbox()
	c3.Subscribe(d.topic("errors"), 0, func(_ paho3.Client, m paho3.Message) { errs.add(m.Topic(), m.Payload()) }).WaitTimeout(5 * time.Second)
	c3.Publish(d.topic("commands/nope/result"), 1, false, `{"status":"succeeded"}`).WaitTimeout(5 * time.Second)
	if e := errs.wait(t, "/errors", nil); e["reason"] != "not_authorized" {
		t.Errorf("foreign result answered %v", e)
	}
	// ctl shows the list.
	if out := h.MustWanwu("ctl", "command", "list", d.Code, "--status", "succeeded"); strings.Count(out, `"status": "succeeded"`) != 2 {
		t.Errorf("ctl command list: %s", out)
	}
}

// TestDevicePublishIsNotTheCommandsAck: the packet ids of a device's
// PUBLISHes and of the hub's PUBLISHes to it are two separate spaces
// [MQTT-2.2.1-4]; the hub acknowledging a device's QoS 1 telemetry whose id
// equals that of a command still waiting for the device's PUBACK neither
// marks the command delivered nor forgets it.
func TestDevicePublishIsNotTheCommandsAck(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, "acme:pump-1", "--model", "acme:pump@1.0.0")
	conn, err := net.Dial("tcp", h.MQTT().Addr(mqtt.ListenerTCP))
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan *paho.Publish, 4)
	c := paho.NewClient(paho.ClientConfig{
		ClientID: d.Code, Conn: conn, EnableManualAcknowledgment: true,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			received <- p.Packet
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: d.Code, KeepAlive: 30, CleanStart: true, UsernameFlag: true, Username: d.Code, PasswordFlag: true, Password: []byte(d.token(t))}
	if ack, err := c.Connect(ctx, cp); err != nil {
		t.Fatalf("connect: %v (%+v)", err, ack)
	}
	defer c.Disconnect(&paho.Disconnect{})
	// Both sides count their packet ids from 1, and the device's SUBSCRIBE
	// took its 1: a desired-state push first moves the hub's count on, so
	// that the command's id is one the device's publishes will take.
	subscribe5(t, c, 1, d.topic("commands/+"), d.topic("twin/desired"))
	h.MustWanwu("ctl", "twin", "set", d.Code, "speed=1200")
	h.MustAdmin(201, "POST", "/api/v1/objects/acme:pump-1/commands", map[string]any{
		"id": "cmd-held", "action": "setSpeed", "args": map[string]any{"rpm": 100},
	})
	var cmd *paho.Publish
	for cmd == nil {
		select {
		case p := <-received:
			if strings.HasSuffix(p.Topic, "/commands/cmd-held") {
				cmd = p
			} else if err := c.Ack(p); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("the command did not arrive")
		}
	}
	status := func() string {
		var got struct{ Command struct{ Status string } }
		h.MustAdmin(200, "GET", "/api/v1/commands/cmd-held", nil).JSON(t, &got)
		return got.Command.Status
	}

	// Not acknowledged yet. The device's own QoS 1 publishes take ids from
	// 2 up, which cover the command's.
	if cmd.PacketID < 2 {
		t.Fatalf("the command has packet id %d: no device publish would take it", cmd.PacketID)
	}
	for i := range int(cmd.PacketID) + 3 {
		payload := fmt.Sprintf(`[{"n":"temperature","u":"Cel","v":%d}]`, 20+i)
		if r, err := publish5(t, c, d.topic("telemetry"), "application/senml+json", []byte(payload)); err != nil || r.ReasonCode != 0 {
			t.Fatalf("telemetry %d: %v %+v", i, err, r)
		}
	}
	for range 5 {
		if s := status(); s != string(command.Queued) {
			t.Fatalf("the device's own publishes made the unacknowledged command %q", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.Ack(cmd); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivered by the device's PUBACK", func() error {
		if s := status(); s != string(command.Delivered) {
			return fmt.Errorf("status %s", s)
		}
		return nil
	})
}

// TestCtlCommandArgsForms: command send takes its arguments as key=value
// pairs, like twin set, or as one JSON object; both issue the same command.
func TestCtlCommandArgsForms(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	register(t, h, "acme:pump-args", "--model", "acme:pump@1.0.0")
	for id, args := range map[string][]string{
		"kv":   {"rpm=750"},
		"json": {`{"rpm": 750}`},
	} {
		h.MustWanwu(append([]string{"ctl", "command", "send", "acme:pump-args", "setSpeed", "--id", "form-" + id}, args...)...)
		r := h.MustAdmin(200, "GET", "/api/v1/commands/form-"+id, nil)
		if !strings.Contains(string(r.Body), `"args": {`) || !strings.Contains(string(r.Body), `"rpm": 750`) {
			t.Errorf("%s: %s", id, r.Body)
		}
	}
	if _, stderr, code := h.Wanwu("ctl", "command", "send", "acme:pump-args", "setSpeed", "rpm"); code == 0 || !strings.Contains(stderr, "key=value") {
		t.Errorf("a bare word: exit %d, %q", code, stderr)
	}
}

// TestLateResultSaysSo: a command result that arrives after the command
// ended (its result timeout passed) is recorded as a late result, and the
// MQTT 5 PUBACK says so: success, with a reason string naming it.
func TestLateResultSaysSo(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, "acme:pump-late", "--model", "acme:pump@1.0.0")
	c, _, err := connect5(t, h, d, false, func(paho.PublishReceived) {})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	h.MustAdmin(201, "POST", "/api/v1/objects/acme:pump-late/commands", map[string]any{
		"id": "late-1", "action": "stop", "result_timeout": "1s",
	})
	subscribe5(t, c, 1, d.topic("commands/+"))
	eventually(t, "the command timed out", func() error {
		var got struct{ Command struct{ Status string } }
		h.MustAdmin(200, "GET", "/api/v1/commands/late-1", nil).JSON(t, &got)
		if got.Command.Status != "timed_out" {
			return fmt.Errorf("status %s", got.Command.Status)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Publish(ctx, &paho.Publish{Topic: d.topic("commands/late-1/result"), QoS: 1, Payload: []byte(`{"status":"succeeded"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ReasonCode != 0 || resp.Properties == nil || !strings.HasPrefix(resp.Properties.ReasonString, "late_result: ") ||
		!strings.Contains(resp.Properties.ReasonString, "timed_out") {
		t.Fatalf("PUBACK %d %+v", resp.ReasonCode, resp.Properties)
	}
	var got struct {
		Events []struct{ Kind string } `json:"events"`
	}
	h.MustAdmin(200, "GET", "/api/v1/commands/late-1", nil).JSON(t, &got)
	if k := got.Events[len(got.Events)-1].Kind; k != "late_result" {
		t.Errorf("last event %q", k)
	}
}

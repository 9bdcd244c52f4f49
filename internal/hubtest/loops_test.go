package hubtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

const spindleModel = `{"id":"acme:spindle","version":"1.0.0",
 "properties":{"band":{"type":"number","unit":"m/s2","minimum":0,"maximum":100},"feed":{"type":"number","unit":"%","minimum":0,"maximum":150}},
 "actions":{"setFeed":{"input":{"feed":{"type":"number","unit":"%","minimum":0,"maximum":150}}}}}`

const edgeChatterLoop = `
id: chatter
tenant: acme
mode: active
on: {model: acme:spindle}
perceive:
  band: {property: band, fn: last}
  feed: {property: feed, fn: last}
decide:
  when: band > 1.0
  clear: band < 0.5
act:
  command: setFeed
  args: {feed: feed * 0.8}
  alarm: {name: chatter, severity: high}
guard:
  bounds: {feed: [40, 120]}
`

// edgeGet reads the edge's own API with its admin token.
func edgeGet(t *testing.T, e *Edge, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s at the edge: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

type evidenceRow struct {
	ID      int64  `json:"id"`
	Loop    string `json:"loop"`
	Object  string `json:"object"`
	Kind    string `json:"kind"`
	State   string `json:"state"`
	Refusal string `json:"refusal"`
	Origin  string `json:"origin"`
	Action  *struct {
		Args      map[string]float64 `json:"args"`
		CommandID string             `json:"command_id"`
	} `json:"action"`
}

// TestEdgeLoopActsOfflineAndReportsLater: a loop defined at the hub
// reaches the edge; with the link cut, a device behind the edge chatters,
// the edge's loop sends it a command and raises an alarm on its own; once
// the link is back the hub holds the evidence and the alarm, as the edge
// wrote them. A kill switch engaged at the hub stops the loop at the edge.
// edgeSpindle is a hub with a loop, an edge behind a cuttable link, and a
// spindle at the edge that answers every command.
type edgeSpindle struct {
	h        *Hub
	e        *Edge
	proxy    *LinkProxy
	answered atomic.Int64
	publish  func(band, feed float64)
}

func startEdgeSpindle(t *testing.T, loopDef string, deviceLater ...bool) *edgeSpindle {
	t.Helper()
	es := &edgeSpindle{}

	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(spindleModel))
	var target atomic.Value
	target.Store(h.HTTPSAddr())
	proxy := NewLinkProxy(t, func() string { return target.Load().(string) })
	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	register := func() string {
		var reg struct {
			PrivateKey string `json:"private_key"`
		}
		h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:s-1", "edge": "acme:edge-1",
			"model": map[string]string{"id": "acme:spindle", "version": "1.0.0"}}).JSON(t, &reg)
		key, err := keys.ParsePrivateKeyPEM([]byte(reg.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := devtoken.Sign(key, "acme:s-1", time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	late := len(deviceLater) > 0 && deviceLater[0]
	var tok string
	if !late {
		tok = register()
	}
	h.MustAdmin(201, "POST", "/api/v1/loops", loopDef)
	e := StartEdge(t, dir, "https://"+proxy.Addr())
	eventually(t, "the loop at the edge", func() error {
		var out struct {
			Loops []struct {
				Loop struct{ Key string } `json:"loop"`
			} `json:"loops"`
		}
		edgeGet(t, e, "/api/v1/loops", &out)
		if len(out.Loops) != 1 || out.Loops[0].Loop.Key != "acme:chatter" {
			return fmt.Errorf("loops at the edge: %+v", out.Loops)
		}
		return nil
	})
	if late {
		// The edge has the loop but no object of its model (nor the
		// model): the device, placed behind it now, comes with the next
		// snapshot, and the loop runs for it from then on.
		tok = register()
	}

	// The spindle at the edge does what it is told.
	var c *paho.Client
	eventually(t, "the spindle admitted at the edge", func() error {
		conn, err := net.Dial("tcp", e.Listeners()["mqtt/tcp"])
		if err != nil {
			return err
		}
		c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(p paho.PublishReceived) (bool, error) {
				var cmd struct{ ID string }
				if json.Unmarshal(p.Packet.Payload, &cmd) == nil && cmd.ID != "" {
					go func() {
						_, _ = c.Publish(context.Background(), &paho.Publish{Topic: "wanwu/v1/acme/s-1/commands/" + cmd.ID + "/result", QoS: 1,
							Payload: []byte(`{"status":"succeeded","output":{}}`)})
						es.answered.Add(1)
					}()
				}
				return true, nil
			}}})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = c.Connect(ctx, &paho.Connect{ClientID: "acme:s-1", KeepAlive: 30, CleanStart: true,
			Username: "acme:s-1", UsernameFlag: true, Password: []byte(tok), PasswordFlag: true})
		if err != nil {
			conn.Close()
		}
		return err
	})
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	subscribe5(t, c, 1, "wanwu/v1/acme/s-1/commands/+")
	publish := func(band, feed float64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Publish(ctx, &paho.Publish{Topic: "wanwu/v1/acme/s-1/telemetry", QoS: 1,
			Payload: []byte(fmt.Sprintf(`{"band":%g,"feed":%g}`, band, feed))}); err != nil {
			t.Fatal(err)
		}
	}

	es.h, es.e, es.proxy, es.publish = h, e, proxy, publish
	return es
}

func TestEdgeLoopActsOfflineAndReportsLater(t *testing.T) {
	es := startEdgeSpindle(t, edgeChatterLoop)
	h, e, proxy, publish := es.h, es.e, es.proxy, es.publish
	answered := &es.answered
	proxy.Cut()
	publish(2.5, 100)
	var atEdge []evidenceRow
	eventually(t, "the edge's loop acted offline and the command succeeded", func() error {
		var out struct{ Evidence []evidenceRow }
		edgeGet(t, e, "/api/v1/evidence?loop=acme:chatter", &out)
		atEdge = out.Evidence
		if len(atEdge) != 1 || atEdge[0].State != "done" {
			return fmt.Errorf("evidence at the edge: %+v", atEdge)
		}
		return nil
	})
	if answered.Load() != 1 || atEdge[0].Action == nil || atEdge[0].Action.Args["feed"] != 80 {
		t.Fatalf("answered %d, evidence %+v: want one setFeed 80", answered.Load(), atEdge[0])
	}
	var hubNow struct{ Evidence []evidenceRow }
	h.MustAdmin(200, "GET", "/api/v1/evidence?loop=acme:chatter", nil).JSON(t, &hubNow)
	if len(hubNow.Evidence) != 0 {
		t.Fatalf("the hub has evidence during the outage: %+v", hubNow.Evidence)
	}

	proxy.Restore()
	eventually(t, "the evidence and the alarm at the hub", func() error {
		var out struct{ Evidence []evidenceRow }
		h.MustAdmin(200, "GET", "/api/v1/evidence?loop=acme:chatter", nil).JSON(t, &out)
		if len(out.Evidence) != 1 || out.Evidence[0].State != "done" || out.Evidence[0].Origin != "acme:edge-1" || out.Evidence[0].Action.CommandID != atEdge[0].Action.CommandID {
			return fmt.Errorf("evidence at the hub: %+v", out.Evidence)
		}
		var al struct {
			Alarms []struct{ Name, State, Origin string }
		}
		h.MustAdmin(200, "GET", "/api/v1/alarms?object=acme:s-1", nil).JSON(t, &al)
		if len(al.Alarms) != 1 || al.Alarms[0].Name != "chatter" || al.Alarms[0].Origin != "acme:edge-1" {
			return fmt.Errorf("alarms at the hub: %+v", al.Alarms)
		}
		return nil
	})

	// The hub's kill switch reaches the edge: the next decision is refused there.
	h.MustAdmin(200, "POST", "/api/v1/loops/acme:chatter/kill", map[string]any{"reason": "tool change"})
	eventually(t, "the kill switch at the edge", func() error {
		var out struct {
			Loop struct{ Killed string } `json:"loop"`
		}
		edgeGet(t, e, "/api/v1/loops/acme:chatter", &out)
		if out.Loop.Killed != "tool change" {
			return fmt.Errorf("killed %q", out.Loop.Killed)
		}
		return nil
	})
	before := answered.Load()
	publish(0.1, 80) // the decision clears
	publish(2.5, 80) // and turns on again
	eventually(t, "the refusal at the edge", func() error {
		var out struct{ Evidence []evidenceRow }
		edgeGet(t, e, "/api/v1/evidence?loop=acme:chatter&state=refused", &out)
		if len(out.Evidence) == 0 {
			return fmt.Errorf("no refusal yet")
		}
		if out.Evidence[0].Refusal != "killed" {
			return fmt.Errorf("refused by %q, want killed", out.Evidence[0].Refusal)
		}
		return nil
	})
	if n := answered.Load(); n != before {
		t.Errorf("the device got %d commands after the kill switch, want none", n-before)
	}
}

// TestEdgeApprovalFromHub: an action of a loop at the edge waits for
// approval; its record reaches the hub, an operator approves it there, the
// vote goes down the link, the edge sends the command, and the record at
// the hub ends done. A second wait is rejected from the hub.
func TestEdgeApprovalFromHub(t *testing.T) {
	es := startEdgeSpindle(t, strings.Replace(edgeChatterLoop, "  bounds: {feed: [40, 120]}", "  bounds: {feed: [40, 120]}\n  approval: {required: 1, expires: 10m}", 1))
	h := es.h
	waiting := func() evidenceRow {
		t.Helper()
		var row evidenceRow
		eventually(t, "an action waiting for approval at the hub", func() error {
			var out struct{ Approvals []evidenceRow }
			h.MustAdmin(200, "GET", "/api/v1/approvals", nil).JSON(t, &out)
			if len(out.Approvals) != 1 || out.Approvals[0].Origin != "acme:edge-1" {
				return fmt.Errorf("approvals at the hub: %+v", out.Approvals)
			}
			row = out.Approvals[0]
			return nil
		})
		return row
	}
	es.publish(2.5, 100)
	row := waiting()
	if es.answered.Load() != 0 {
		t.Fatal("a command went before the approval")
	}
	h.MustAdmin(202, "POST", fmt.Sprintf("/api/v1/evidence/%d/approve", row.ID), map[string]any{"note": "ok"})
	eventually(t, "the approved action done, at the hub", func() error {
		var out struct{ Evidence evidenceRow }
		h.MustAdmin(200, "GET", fmt.Sprintf("/api/v1/evidence/%d", row.ID), nil).JSON(t, &out)
		if out.Evidence.State != "done" {
			return fmt.Errorf("state %s", out.Evidence.State)
		}
		return nil
	})
	if n := es.answered.Load(); n != 1 {
		t.Fatalf("the device got %d commands, want 1", n)
	}
	es.publish(0.1, 80)
	es.publish(2.5, 80)
	row = waiting()
	h.MustAdmin(202, "POST", fmt.Sprintf("/api/v1/evidence/%d/reject", row.ID), map[string]any{"note": "not now"})
	eventually(t, "the rejection at the hub", func() error {
		var out struct{ Evidence evidenceRow }
		h.MustAdmin(200, "GET", fmt.Sprintf("/api/v1/evidence/%d", row.ID), nil).JSON(t, &out)
		if out.Evidence.State != "rejected" {
			return fmt.Errorf("state %s", out.Evidence.State)
		}
		return nil
	})
	// A vote on a decided action is refused at the hub.
	if r := h.Admin("POST", fmt.Sprintf("/api/v1/evidence/%d/approve", row.ID), nil); r.Status != 409 {
		t.Fatalf("a vote on a rejected action: %d %s", r.Status, r.Body)
	}
	if n := es.answered.Load(); n != 1 {
		t.Fatalf("the device got %d commands, want 1", n)
	}
}

// TestEdgeLoopForALaterDevice: a loop reaches the edge before any object
// of its model is behind it; once a device is placed there (the next
// identity snapshot brings it and its model), the loop runs for it.
func TestEdgeLoopForALaterDevice(t *testing.T) {
	es := startEdgeSpindle(t, edgeChatterLoop, true)
	es.publish(2.5, 100)
	eventually(t, "the loop acted for the device placed later", func() error {
		var out struct{ Evidence []evidenceRow }
		edgeGet(t, es.e, "/api/v1/evidence?loop=acme:chatter", &out)
		if len(out.Evidence) == 0 || out.Evidence[0].State != "done" {
			es.publish(0.1, 100)
			es.publish(2.5, 100)
			return fmt.Errorf("evidence at the edge: %+v", out.Evidence)
		}
		return nil
	})
}

package hubtest

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// contains fails the test for each want the page lacks.
func contains(t *testing.T, what, page string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(page, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, consoletest.Text(page))
		}
	}
}

func lacks(t *testing.T, what, page string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(page, w) {
			t.Errorf("%s has %q", what, w)
		}
	}
}

// TestConsoleDevice drives the device page of a real hub through the test
// browser: identity with certificate and credential, the twin and its
// edit-desired form (saved, stale, invalid), commands (issued, refused,
// listed and refreshed, canceled, run by a real MQTT device to success),
// events and dead letters, and the lifecycle actions behind their
// confirmation (quarantine, reinstate, rotate, revoke).
func TestConsoleDevice(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, "acme:pump-1", "--model", "acme:pump@1.0.0")
	const page = "/objects/acme:pump-1"

	b := consoletest.New(t, h.URL, nil)
	p := b.MustSignIn(h.AdminToken, page).Body
	contains(t, "device page", p,
		`href="#identity"`, `href="#twin"`, `href="#commands"`, `href="#events"`, `href="#lifecycle"`,
		`href="/models/acme:pump"`, "Certificate", "Credential", "valid", "did:key:",
		"Desired version <strong>0</strong>", "Nothing desired or reported yet",
		`name="p.speed"`, `name="p.mode"`, `min="0"`, `max="3000"`, "1/min", `<option>auto</option>`,
		`name="a.rpm"`, "Send setSpeed", "Send stop", "No commands sent yet",
		"No events from this object yet", "No dead letters",
		"/objects/acme:pump-1/confirm/quarantine", "/objects/acme:pump-1/confirm/rotate", "/objects/acme:pump-1/confirm/revoke")
	lacks(t, "device page", p, `name="p.temperature"`, `name="p.running"`, "/confirm/reinstate")

	// Edit desired: saved at the version read; the twin shows it.
	a := b.Change(page+"/twin", url.Values{"version": {"0"}, "p.speed": {"1200"}, "p.mode": {"auto"}, "p.location": {""}})
	if a.Status != http.StatusSeeOther || a.Location() != page+"?done=desired#twin" {
		t.Fatalf("edit desired: %d to %q: %s", a.Status, a.Location(), a.Text())
	}
	var tw struct {
		Version int64
		Desired map[string]any
	}
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:pump-1/twin", nil).JSON(t, &tw)
	if tw.Version != 1 || tw.Desired["speed"] != 1200.0 || tw.Desired["mode"] != "auto" || len(tw.Desired) != 2 {
		t.Fatalf("twin after the form: %+v", tw)
	}
	p = b.MustGet(200, a.Location()).Body
	contains(t, "page after saving", p, "Desired state saved", "Desired version <strong>1</strong>", "1200", `name="version" value="1"`, "pending")

	// A stale version: the conflict, the current state and the user's values.
	a = b.Change(page+"/twin", url.Values{"version": {"0"}, "p.speed": {"1500"}})
	if a.Status != http.StatusConflict {
		t.Fatalf("stale edit: %d: %s", a.Status, a.Text())
	}
	contains(t, "conflict", a.Body, "Conflict.", "Someone changed the desired state since you loaded it", `value="1500"`, `name="version" value="1"`, "now 1200")
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:pump-1/twin", nil).JSON(t, &tw)
	if tw.Version != 1 || tw.Desired["speed"] != 1200.0 {
		t.Fatalf("a stale edit changed the twin: %+v", tw)
	}

	// An invalid value: the API's own message beside the form.
	r := h.Admin("PATCH", "/api/v1/objects/acme:pump-1/twin/desired", map[string]any{"speed": 5000})
	var apiErr struct{ Error struct{ Message string } }
	r.JSON(t, &apiErr)
	if r.Status != 400 || apiErr.Error.Message == "" {
		t.Fatalf("API PATCH speed=5000: %d %s", r.Status, r.Body)
	}
	a = b.Change(page+"/twin", url.Values{"version": {"1"}, "p.speed": {"5000"}})
	if a.Status != http.StatusBadRequest {
		t.Fatalf("invalid edit: %d: %s", a.Status, a.Text())
	}
	contains(t, "invalid edit", a.Body, html.EscapeString(apiErr.Error.Message), `value="5000"`, `name="version" value="1"`)
	a = b.Change(page+"/twin", url.Values{"version": {"1"}})
	if a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "Nothing to change") {
		t.Errorf("empty edit: %d: %s", a.Status, a.Text())
	}

	// Commands: an invalid argument shows the API's message; a good one is
	// issued and listed, and the list reloads itself while it is pending.
	a = b.Change(page+"/commands", url.Values{"action": {"setSpeed"}, "a.rpm": {"99999"}})
	if a.Status != http.StatusBadRequest {
		t.Fatalf("invalid command: %d: %s", a.Status, a.Text())
	}
	contains(t, "invalid command", a.Body, "above the maximum", `value="99999"`)
	a = b.Change(page+"/commands", url.Values{"action": {"setSpeed"}, "a.rpm": {"900"}, "ttl": {"1h"}})
	if a.Status != http.StatusSeeOther || a.Location() != page+"?done=command#commands" {
		t.Fatalf("command: %d to %q: %s", a.Status, a.Location(), a.Text())
	}
	var cmds struct {
		Commands []struct{ ID, Action, Status, Actor string }
	}
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:pump-1/commands", nil).JSON(t, &cmds)
	if len(cmds.Commands) != 1 || cmds.Commands[0].Action != "setSpeed" || cmds.Commands[0].Status != "queued" {
		t.Fatalf("commands after the form: %+v", cmds)
	}
	speedID := cmds.Commands[0].ID
	p = b.MustGet(200, a.Location()).Body
	contains(t, "page with a command", p, "Command issued", speedID, `{&#34;rpm&#34;:900}`, "queued", `hx-trigger="every 3s"`, "/commands/"+speedID+"/cancel")
	frag := b.MustGet(200, page+"/commands", b.HX(page)...).Body
	contains(t, "command fragment", frag, `id="command-list"`, speedID, `hx-trigger="every 3s"`, `name="csrf"`)
	lacks(t, "command fragment", frag, "<html", "Edit desired state")
	if a := b.Get(page + "/commands"); a.Status != http.StatusSeeOther || a.Location() != page+"#commands" {
		t.Errorf("command list without htmx: %d to %q", a.Status, a.Location())
	}

	// Cancel: a second command, canceled from the page.
	h.MustAdmin(201, "POST", "/api/v1/objects/acme:pump-1/commands", map[string]any{"id": "cmd-cancel", "action": "stop"})
	a = b.Change(page+"/commands/cmd-cancel/cancel", nil)
	if a.Status != http.StatusSeeOther || a.Location() != page+"?done=canceled#commands" {
		t.Fatalf("cancel: %d to %q: %s", a.Status, a.Location(), a.Text())
	}
	var one struct{ Command struct{ Status string } }
	h.MustAdmin(200, "GET", "/api/v1/commands/cmd-cancel", nil).JSON(t, &one)
	if one.Command.Status != "canceled" {
		t.Fatalf("canceled command is %s", one.Command.Status)
	}
	if a := b.Change(page+"/commands/cmd-cancel/cancel", nil); a.Status != http.StatusConflict {
		t.Errorf("cancel a canceled command: %d", a.Status)
	}

	// A real device (MQTT 3.1.1) receives the command and succeeds; the
	// list shows it with its events and stops reloading.
	box := newInbox()
	opts := paho3.NewClientOptions().AddBroker("tcp://" + h.MQTT().Addr(mqtt.ListenerTCP)).
		SetClientID(d.Code).SetUsername(d.Code).SetPassword(d.token(t)).SetCleanSession(true).SetAutoReconnect(false)
	c3 := paho3.NewClient(opts)
	if tok := c3.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if tok := c3.Subscribe(d.topic("commands/+"), 1, func(_ paho3.Client, m paho3.Message) { box.add(m.Topic(), m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	box.wait(t, "/commands/"+speedID, nil)
	if tok := c3.Publish(d.topic("commands/"+speedID+"/result"), 1, false, `{"status":"succeeded","output":{"rpm":900}}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("result: %v", tok.Error())
	}
	eventually(t, "the command succeeded on the page", func() error {
		frag := b.MustGet(200, page+"/commands", b.HX(page)...).Body
		if !strings.Contains(frag, "cmd-succeeded") || strings.Contains(frag, "hx-trigger") {
			return fmt.Errorf("fragment: %s", consoletest.Text(frag))
		}
		return nil
	})
	c3.Disconnect(100)

	// Events and dead letters, newest first.
	tok := d.token(t)
	if r := postIngest(t, http.DefaultClient, h.URL+"/api/v1/ingest/acme:pump-1/events/overheat", tok, "application/json", `{"temperature": 130}`); r.StatusCode/100 != 2 {
		t.Fatalf("event: %d %s", r.StatusCode, r.body)
	}
	if r := postIngest(t, http.DefaultClient, h.URL+"/api/v1/ingest/acme:pump-1/telemetry", tok, "application/json", `{"temperature": 1000}`); r.StatusCode != 422 {
		t.Fatalf("bad telemetry: %d %s", r.StatusCode, r.body)
	}
	eventually(t, "events and dead letters on the page", func() error {
		p := b.MustGet(200, page).Body
		for _, w := range []string{"overheat", "130", "out_of_range", "temperature&#34;: 1000"} {
			if !strings.Contains(p, w) {
				return fmt.Errorf("page lacks %q", w)
			}
		}
		return nil
	})
	if p := b.MustGet(200, page+"?limit=1").Body; !strings.Contains(p, "?limit=4#events") {
		t.Errorf("a full list offers no more: %s", consoletest.Text(p))
	}

	// Tokens that may not: a viewer sees no controls and is refused; a
	// token of another tenant finds nothing; a change without the CSRF
	// token is refused.
	var vt, bt struct{ Secret string }
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "v", "role": "viewer"}).JSON(t, &vt)
	h.MustWanwu("ctl", "tenant", "create", "beta")
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "beta-op", "role": "operator", "tenant": "beta"}).JSON(t, &bt)
	viewer := consoletest.New(t, h.URL, nil)
	p = viewer.MustSignIn(vt.Secret, page).Body
	contains(t, "viewer's page", p, "Twin", "1200", "setSpeed", "cmd-succeeded", "can view it only")
	lacks(t, "viewer's page", p, "Save desired state", "Send setSpeed", ">Cancel<", "/confirm/")
	other := consoletest.New(t, h.URL, nil)
	other.MustSignIn(bt.Secret, "/")
	for _, c := range []struct {
		name    string
		b       *consoletest.Browser
		path    string
		form    url.Values
		want    int
		noCSRF  bool
		getOnly bool
	}{
		{"viewer edits desired", viewer, page + "/twin", url.Values{"version": {"1"}, "p.speed": {"1"}}, 403, false, false},
		{"viewer sends a command", viewer, page + "/commands", url.Values{"action": {"stop"}}, 403, false, false},
		{"viewer cancels", viewer, page + "/commands/" + speedID + "/cancel", nil, 403, false, false},
		{"viewer quarantines", viewer, page + "/confirm/quarantine", url.Values{"reason": {"x"}, "confirm": {"yes"}}, 403, false, false},
		{"beta opens the page", other, page, nil, 404, false, true},
		{"beta opens a confirmation", other, page + "/confirm/revoke", nil, 404, false, true},
		{"beta reloads the commands", other, page + "/commands", nil, 404, false, true},
		{"beta edits desired", other, page + "/twin", url.Values{"version": {"1"}, "p.speed": {"1"}}, 404, false, false},
		{"beta sends a command", other, page + "/commands", url.Values{"action": {"stop"}}, 404, false, false},
		{"beta revokes", other, page + "/confirm/revoke", url.Values{"reason": {"x"}, "confirm": {"yes"}}, 404, false, false},
		{"no CSRF: edit desired", b, page + "/twin", url.Values{"version": {"1"}, "p.speed": {"1"}}, 403, true, false},
		{"no CSRF: command", b, page + "/commands", url.Values{"action": {"stop"}}, 403, true, false},
		{"no CSRF: cancel", b, page + "/commands/" + speedID + "/cancel", url.Values{}, 403, true, false},
		{"no CSRF: revoke", b, page + "/confirm/revoke", url.Values{"reason": {"x"}, "confirm": {"yes"}}, 403, true, false},
	} {
		var a consoletest.Answer
		switch {
		case c.getOnly:
			a = c.b.Get(c.path, c.b.HX(page)...)
		case c.noCSRF:
			a = c.b.Post(c.path, c.form, c.b.Origin()...)
		default:
			a = c.b.Change(c.path, c.form)
		}
		if a.Status != c.want {
			t.Errorf("%s: %d, want %d: %s", c.name, a.Status, c.want, a.Text())
		}
	}
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:pump-1/twin", nil).JSON(t, &tw)
	if tw.Version != 1 {
		t.Errorf("a refused change changed the twin: %+v", tw)
	}

	// Lifecycle: each action behind its confirmation step.
	p = b.MustGet(200, page+"/confirm/quarantine").Body
	contains(t, "quarantine confirmation", p, "refuses its connections", `name="reason"`, `name="confirm"`, "required")
	if a := b.Change(page+"/confirm/quarantine", url.Values{"reason": {"leak"}}); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "Tick the box") {
		t.Errorf("quarantine unconfirmed: %d %s", a.Status, a.Text())
	}
	if a := b.Change(page+"/confirm/quarantine", url.Values{"confirm": {"yes"}}); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "Give a reason") {
		t.Errorf("quarantine without a reason: %d %s", a.Status, a.Text())
	}
	b.MustGet(404, page+"/confirm/explode")
	status := func() (st, reason string) {
		var o struct {
			Status       string
			StatusReason string `json:"status_reason"`
		}
		h.MustAdmin(200, "GET", "/api/v1/objects/acme:pump-1", nil).JSON(t, &o)
		return o.Status, o.StatusReason
	}
	for _, step := range []struct {
		action, reason, status string
		page                   []string
	}{
		{"quarantine", "suspected leak", "quarantined", []string{"The object is quarantined", "suspected leak", "/confirm/reinstate"}},
		{"reinstate", "", "active", []string{"The object is active again", "/confirm/quarantine"}},
	} {
		a := b.Change(page+"/confirm/"+step.action, url.Values{"reason": {step.reason}, "confirm": {"yes"}})
		if a.Status != http.StatusSeeOther || a.Location() != page+"?done="+step.action+"#lifecycle" {
			t.Fatalf("%s: %d to %q: %s", step.action, a.Status, a.Location(), a.Text())
		}
		if st, _ := status(); st != step.status {
			t.Fatalf("after %s the object is %s", step.action, st)
		}
		contains(t, "page after "+step.action, b.MustGet(200, a.Location()).Body, step.page...)
	}

	// Rotate: the new credentials, shown once.
	a = b.Change(page+"/confirm/rotate", url.Values{"confirm": {"yes"}, "overlap": {"1h"}})
	if a.Status != http.StatusOK {
		t.Fatalf("rotate: %d %s", a.Status, a.Text())
	}
	contains(t, "rotated", a.Body, "shown only this once", "PRIVATE KEY", "BEGIN CERTIFICATE", "credential.jwt")
	if cc := a.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("the new credentials are cacheable: %q", cc)
	}
	if a := b.Change(page+"/confirm/rotate", url.Values{"confirm": {"yes"}, "overlap": {"soon"}}); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "overlap") {
		t.Errorf("rotate with a bad overlap: %d %s", a.Status, a.Text())
	}

	a = b.Change(page+"/confirm/revoke", url.Values{"reason": {"stolen"}, "confirm": {"yes"}})
	if a.Status != http.StatusSeeOther {
		t.Fatalf("revoke: %d %s", a.Status, a.Text())
	}
	if st, reason := status(); st != "revoked" || reason != "stolen" {
		t.Fatalf("after revoke: %s (%s)", st, reason)
	}
	p = b.MustGet(200, a.Location()).Body
	contains(t, "revoked page", p, "The object is revoked", "its life has ended")
	lacks(t, "revoked page", p, "/confirm/")
}

// TestConsoleDeviceKinds: an object without a model gets no forms and says
// so; an asset has no twin, commands or credentials.
func TestConsoleDeviceKinds(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:bare-1"})
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:site-1", "kind": "asset"})
	b := consoletest.New(t, h.URL, nil)
	p := b.MustSignIn(h.AdminToken, "/objects/acme:bare-1").Body
	contains(t, "page without a model", p, "has no thing model", "wanwu ctl object update acme:bare-1 --model", `href="#twin"`, "Certificate")
	lacks(t, "page without a model", p, "Save desired state", `action="/objects/acme:bare-1/commands"`)
	if a := b.Change("/objects/acme:bare-1/twin", url.Values{"version": {"0"}, "p.x": {"1"}}); a.Status != http.StatusBadRequest {
		t.Errorf("desired without a model: %d", a.Status)
	}
	p = b.MustGet(200, "/objects/acme:site-1").Body
	lacks(t, "asset page", p, `href="#twin"`, `id="commands"`, `id="certificate"`, "/confirm/rotate")
	contains(t, "asset page", p, `href="#events"`, "/confirm/quarantine")
}

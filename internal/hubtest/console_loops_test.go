package hubtest

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// The loops used by the console's loop pages' tests: one proposes a
// command that waits for a person's approval, the other raises an alarm.
const (
	consoleFeedLoop = `
id: feed
tenant: acme
title: Chatter → lower the feed
mode: active
on: {model: acme:spindle}
perceive:
  band: {property: band, fn: last}
  feed: {property: feed, fn: last}
decide: {when: band > 1.0, clear: band < 0.5}
act:
  command: setFeed
  args: {feed: feed * 0.8}
guard:
  bounds: {feed: [40, 120]}
  approval: {required: 1, expires: 10m}
`
	consoleHotLoop = `
id: hot
tenant: acme
mode: active
on: {model: acme:spindle}
perceive:
  band: {property: band, fn: last}
decide: {when: band > 1.0, clear: band < 0.5}
act:
  alarm: {name: chatter, severity: high, message: "'band at ' + string(band)"}
`
)

// consoleLoopsHub is a hub with tenants acme and beta, a spindle in acme
// that reported chatter, an action of loop acme:feed waiting for approval
// and an alarm of loop acme:hot; with an operator's, a viewer's and
// another tenant's tokens.
type consoleLoopsHub struct {
	h                       *Hub
	operator, viewer, other string
	evidence                int64  // the waiting action's record
	alarm                   string // the alarm's id
}

func startConsoleLoops(t *testing.T) *consoleLoopsHub {
	t.Helper()
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "beta"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(spindleModel))
	var reg struct {
		PrivateKey string `json:"private_key"`
	}
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:s-1", "path": "plant-1/hall-2",
		"model": map[string]string{"id": "acme:spindle", "version": "1.0.0"}}).JSON(t, &reg)
	key, err := keys.ParsePrivateKeyPEM([]byte(reg.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	dev, err := devtoken.Sign(key, "acme:s-1", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h.MustAdmin(201, "POST", "/api/v1/loops", consoleFeedLoop)
	h.MustAdmin(201, "POST", "/api/v1/loops", consoleHotLoop)
	s := &consoleLoopsHub{h: h,
		operator: mcToken(t, h, "olivia", "operator", "acme"),
		viewer:   mcToken(t, h, "victor", "viewer", "acme"),
		other:    mcToken(t, h, "bea", "viewer", "beta")}
	if r := h.Do("POST", "/api/v1/ingest/acme:s-1/telemetry", dev, `{"band": 2.5, "feed": 100}`); r.Status >= 300 {
		t.Fatalf("telemetry: %d %s", r.Status, r.Body)
	}
	eventually(t, "an action waiting for approval and an alarm", func() error {
		var ap struct {
			Approvals []struct{ ID int64 }
		}
		h.MustAdmin(200, "GET", "/api/v1/approvals", nil).JSON(t, &ap)
		var al struct {
			Alarms []struct{ ID string }
		}
		h.MustAdmin(200, "GET", "/api/v1/alarms", nil).JSON(t, &al)
		if len(ap.Approvals) != 1 || len(al.Alarms) != 1 {
			return fmt.Errorf("approvals %+v, alarms %+v", ap.Approvals, al.Alarms)
		}
		s.evidence, s.alarm = ap.Approvals[0].ID, al.Alarms[0].ID
		return nil
	})
	return s
}

// mustContain fails unless the page's text holds every string.
func mustContain(t *testing.T, what string, page consoletest.Answer, want ...string) {
	t.Helper()
	text := html.UnescapeString(page.Text())
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q: %s", what, w, text)
		}
	}
}

// mustRedirect fails unless the answer is a 303 to want.
func mustRedirect(t *testing.T, what string, a consoletest.Answer, want string) {
	t.Helper()
	if a.Status != http.StatusSeeOther || a.Location() != want {
		t.Fatalf("%s: %d to %q, want 303 to %q: %s", what, a.Status, a.Location(), want, a.Text())
	}
}

// TestConsoleLoops: the loops, approvals and alarms pages over a real hub:
// the loop list with its counts, a loop's definition and evidence, mode,
// kill switches, bypasses (approved by someone else), the approval queue
// (an htmx vote moves the action on), alarms acknowledged and shelved;
// viewers see no change controls and are refused changes, another
// tenant's token sees none of it, and a change without the CSRF token is
// refused.
func TestConsoleLoops(t *testing.T) {
	s := startConsoleLoops(t)
	h := s.h
	admin := consoletest.New(t, h.URL, nil)
	admin.MustSignIn(h.AdminToken, "/loops")
	op := consoletest.New(t, h.URL, nil)
	op.MustSignIn(s.operator, "/loops")
	viewer := consoletest.New(t, h.URL, nil)
	viewer.MustSignIn(s.viewer, "/loops")
	evPath := "/evidence/" + strconv.FormatInt(s.evidence, 10)

	t.Run("list", func(t *testing.T) {
		page := admin.MustGet(200, "/loops")
		mustContain(t, "/loops", page, "acme:feed", "Chatter → lower the feed", "acme:hot", "model acme:spindle",
			"awaiting_approval 1", "recorded 1", "Approval queue: 1 action waiting")
		if !strings.Contains(page.Body, `href="/loops/acme:feed"`) || !strings.Contains(page.Body, `href="/approvals"`) {
			t.Error("/loops does not link the loop and the queue")
		}
		if !strings.Contains(page.Body, `action="/loops/site-kill"`) {
			t.Error("an admin sees no site kill form")
		}
		if strings.Contains(viewer.MustGet(200, "/loops").Body, `action="/loops/site-kill"`) {
			t.Error("a viewer sees the site kill form")
		}
	})

	t.Run("loop page", func(t *testing.T) {
		page := admin.MustGet(200, "/loops/acme:feed")
		mustContain(t, "the loop page", page, `"command": "setFeed"`, `"when": "band > 1.0"`, `"required": 1`, "Versions", "awaiting_approval", "setFeed feed=80", "No bypass of this loop")
		for _, want := range []string{`href="/objects/acme:s-1"`, `href="` + evPath + `"`, `action="/loops/acme:feed/mode"`, `action="/loops/acme:feed/kill"`, `action="/loops/acme:feed/bypasses"`} {
			if !strings.Contains(page.Body, want) {
				t.Errorf("the loop page lacks %s", want)
			}
		}
		mustContain(t, "filtered", admin.MustGet(200, "/loops/acme:feed?state=refused"), "No decisions match")
		mustContain(t, "by object", admin.MustGet(200, "/loops/acme:feed?object=acme:s-1&state=awaiting_approval"), "setFeed feed=80")
		vp := viewer.MustGet(200, "/loops/acme:feed")
		for _, form := range []string{"/mode", "/kill", "/bypasses"} {
			if strings.Contains(vp.Body, `action="/loops/acme:feed`+form+`"`) {
				t.Errorf("a viewer sees the %s form", form)
			}
		}
		admin.MustGet(404, "/loops/acme:nope")
	})

	t.Run("mode", func(t *testing.T) {
		mustRedirect(t, "mode shadow", op.Change("/loops/acme:hot/mode", url.Values{"mode": {"shadow"}}), "/loops/acme:hot?done=mode")
		mustContain(t, "after the mode change", op.MustGet(200, "/loops/acme:hot?done=mode"), "The loop's mode was changed.", "acme:hot shadow")
		bad := op.Change("/loops/acme:hot/mode", url.Values{"mode": {"sometimes"}})
		if bad.Status != http.StatusBadRequest || !strings.Contains(bad.Text(), "sometimes") {
			t.Errorf("an unknown mode: %d %s", bad.Status, bad.Text())
		}
		refused := viewer.Change("/loops/acme:hot/mode", url.Values{"mode": {"disabled"}})
		if refused.Status != http.StatusForbidden {
			t.Errorf("a viewer's mode change: %d %s", refused.Status, refused.Text())
		}
		mustRedirect(t, "mode active", op.Change("/loops/acme:hot/mode", url.Values{"mode": {"active"}}), "/loops/acme:hot?done=mode")
	})

	t.Run("kill and release", func(t *testing.T) {
		noReason := op.Change("/loops/acme:feed/kill", url.Values{"reason": {" "}})
		if noReason.Status != http.StatusBadRequest || !strings.Contains(noReason.Text(), "say why the loop is killed") {
			t.Errorf("a kill without a reason: %d %s", noReason.Status, noReason.Text())
		}
		mustRedirect(t, "kill", op.Change("/loops/acme:feed/kill", url.Values{"reason": {"tool change"}}), "/loops/acme:feed?done=killed")
		mustContain(t, "killed", op.MustGet(200, "/loops/acme:feed"), "Kill switch engaged: tool change", "Release the kill switch")
		mustContain(t, "/loops killed", op.MustGet(200, "/loops"), "killed tool change")
		mustRedirect(t, "release", op.Change("/loops/acme:feed/release", nil), "/loops/acme:feed?done=released")
		mustRedirect(t, "release again", op.Change("/loops/acme:feed/release", nil), "/loops/acme:feed?done=not-killed")
		if strings.Contains(op.MustGet(200, "/loops/acme:feed").Text(), "Kill switch engaged") {
			t.Error("still killed after the release")
		}
	})

	t.Run("site kill switch", func(t *testing.T) {
		mustRedirect(t, "site kill", op.Change("/loops/site-kill", url.Values{"site": {"acme:plant-1"}, "reason": {"fire drill"}}), "/loops?done=site-killed")
		mustContain(t, "site killed", op.MustGet(200, "/loops"), "killed acme:plant-1", "fire drill")
		bad := op.Change("/loops/site-kill", url.Values{"site": {"plant-1"}, "reason": {"x"}})
		if bad.Status != http.StatusBadRequest || !strings.Contains(bad.Text(), "a site is tenant:site") || !strings.Contains(bad.Body, `value="plant-1"`) {
			t.Errorf("a site without a tenant: %d %s", bad.Status, bad.Text())
		}
		mustRedirect(t, "site release", op.Change("/loops/site-release", url.Values{"site": {"acme:plant-1"}}), "/loops?done=site-released")
		mustContain(t, "site released", op.MustGet(200, "/loops"), "No site is killed.")
	})

	t.Run("bypass", func(t *testing.T) {
		form := url.Values{"guard": {"bounds:feed"}, "duration": {"30m"}, "reason": {"trial cut"}}
		mustRedirect(t, "request", admin.Change("/loops/acme:feed/bypasses", form), "/loops/acme:feed?done=bypass")
		var out struct {
			Bypasses []struct {
				ID    int64
				State string
			}
		}
		h.MustAdmin(200, "GET", "/api/v1/bypasses", nil).JSON(t, &out)
		if len(out.Bypasses) != 1 || out.Bypasses[0].State != "pending" {
			t.Fatalf("bypasses: %+v", out.Bypasses)
		}
		base := fmt.Sprintf("/loops/acme:feed/bypasses/%d/", out.Bypasses[0].ID)
		page := admin.MustGet(200, "/loops/acme:feed")
		mustContain(t, "requested", page, "bounds:feed", "pending", "trial cut")
		// The requester cannot approve it: the API's message is shown.
		self := admin.Change(base+"approve", nil)
		if self.Status != http.StatusConflict || !strings.Contains(self.Text(), "a bypass needs an approver other than its requester") {
			t.Errorf("approved by its requester: %d %s", self.Status, self.Text())
		}
		if strings.Contains(viewer.MustGet(200, "/loops/acme:feed").Body, `action="`+base+`approve"`) {
			t.Error("a viewer sees the bypass's approve button")
		}
		if a := viewer.Change(base+"approve", nil); a.Status != http.StatusForbidden {
			t.Errorf("a viewer's approval: %d", a.Status)
		}
		mustRedirect(t, "approve", op.Change(base+"approve", url.Values{"note": {"ok for the trial"}}), "/loops/acme:feed?done=bypass-approve")
		mustContain(t, "approved", op.MustGet(200, "/loops/acme:feed"), "active", "olivia approve")
		mustRedirect(t, "end", op.Change(base+"end", nil), "/loops/acme:feed?done=bypass-end")
		mustContain(t, "ended", op.MustGet(200, "/loops/acme:feed"), "ended")
	})

	t.Run("approval queue", func(t *testing.T) {
		vq := viewer.MustGet(200, "/approvals")
		mustContain(t, "the viewer's queue", vq, "acme:feed", "acme:s-1", "setFeed feed=80", "0 of 1", "bounds:feed: pass")
		if strings.Contains(vq.Body, `action="`+evPath+`/approve"`) {
			t.Error("a viewer sees the approve button")
		}
		if a := viewer.Change(evPath+"/approve", url.Values{"back": {"approvals"}}); a.Status != http.StatusForbidden {
			t.Errorf("a viewer's vote: %d %s", a.Status, a.Text())
		}
		page := op.MustGet(200, "/approvals")
		if !strings.Contains(page.Body, `hx-post="`+evPath+`/approve"`) {
			t.Fatalf("no approve button: %s", page.Body)
		}
		// htmx: the row comes back, saying what became of the vote.
		form := url.Values{"csrf": {op.CSRF}, "back": {"approvals"}, "note": {"go ahead"}}
		row := op.Post(evPath+"/approve", form, append(op.Origin(), op.HX("/approvals")...)...)
		if row.Status != 200 || strings.Contains(row.Body, "<html") || !strings.HasPrefix(strings.TrimSpace(row.Body), "<tr id=\"approval-") ||
			!strings.Contains(row.Text(), "Your approval was recorded: the action is now") {
			t.Fatalf("the htmx vote: %d %s", row.Status, row.Body)
		}
		// The decision shows the vote, and has no buttons any more.
		ev := op.MustGet(200, evPath)
		mustContain(t, "the decision", ev, "olivia approve go ahead", "1 of 1 approvals", "Input digest", "bounds", "setFeed feed=80")
		if strings.Contains(ev.Body, `action="`+evPath+`/approve"`) {
			t.Error("the decided action still has an approve button")
		}
		// Voting again without htmx: the API's refusal beside the form.
		again := op.Change(evPath+"/reject", url.Values{"back": {"approvals"}})
		if again.Status != http.StatusConflict || !strings.Contains(again.Text(), "not waiting for approval") {
			t.Errorf("a second vote: %d %s", again.Status, again.Text())
		}
		mustContain(t, "the empty queue", op.MustGet(200, "/approvals"), "Nothing waits for approval")
	})

	t.Run("alarms", func(t *testing.T) {
		alPath := "/alarms/" + s.alarm
		list := viewer.MustGet(200, "/alarms")
		mustContain(t, "the alarms", list, "high", "unack_active", "acme:s-1", "chatter", "band at 2.5", "loop acme:hot")
		if strings.Contains(list.Body, `action="`+alPath+`/ack"`) {
			t.Error("a viewer sees the acknowledge button")
		}
		if a := viewer.Change(alPath+"/ack", nil); a.Status != http.StatusForbidden {
			t.Errorf("a viewer's acknowledgement: %d", a.Status)
		}
		// The list alone, as htmx reloads it.
		frag := op.MustGet(200, "/alarms", op.HX("/alarms")...)
		if !strings.HasPrefix(strings.TrimSpace(frag.Body), `<section id="alarm-list"`) || !strings.Contains(frag.Body, `hx-trigger="every 10s"`) {
			t.Errorf("the alarm list fragment: %s", frag.Body)
		}
		mustRedirect(t, "ack", op.Change(alPath+"/ack", url.Values{"back": {"/alarms"}}), "/alarms?done=ack")
		mustContain(t, "acknowledged", op.MustGet(200, "/alarms?done=ack"), "The alarm was acknowledged.", "ack_active")
		bad := op.Change(alPath+"/shelve", url.Values{"duration": {"forever"}, "reason": {"maintenance"}})
		if bad.Status != http.StatusBadRequest || !strings.Contains(bad.Text(), "how long to shelve") || !strings.Contains(bad.Body, `value="maintenance"`) {
			t.Errorf("a shelve for ever: %d %s", bad.Status, bad.Text())
		}
		mustRedirect(t, "shelve", op.Change(alPath+"/shelve", url.Values{"duration": {"1h"}, "reason": {"maintenance"}}), alPath+"?done=shelve")
		mustContain(t, "shelved", op.MustGet(200, alPath+"?done=shelve"), "The alarm was shelved.", "by olivia: maintenance", "acked", "shelved")
		if strings.Contains(op.MustGet(200, "/alarms").Text(), "band at 2.5") {
			t.Error("a shelved alarm needs attention")
		}
		mustContain(t, "the shelved view", op.MustGet(200, "/alarms?view=shelved"), "band at 2.5")
		mustRedirect(t, "unshelve", op.Change(alPath+"/unshelve", nil), alPath+"?done=unshelve")
		mustContain(t, "history", op.MustGet(200, alPath), "raised", "unshelved", "olivia")
		mustContain(t, "no cleared ones", op.MustGet(200, "/alarms?view=history"), "No cleared alarms.")
	})

	t.Run("another tenant", func(t *testing.T) {
		beta := consoletest.New(t, h.URL, nil)
		page := beta.MustSignIn(s.other, "/loops")
		if strings.Contains(page.Body, "acme:") {
			t.Errorf("beta sees acme's loops: %s", page.Text())
		}
		mustContain(t, "beta's loops", page, "No loops yet")
		for _, p := range []string{"/loops/acme:feed", evPath, "/alarms/" + s.alarm} {
			if a := beta.Get(p); a.Status != http.StatusNotFound {
				t.Errorf("beta opens %s: %d", p, a.Status)
			}
		}
		for _, p := range []string{"/approvals", "/alarms", "/alarms?view=shelved"} {
			if strings.Contains(beta.MustGet(200, p).Body, "acme:") {
				t.Errorf("beta sees acme's things on %s", p)
			}
		}
		if a := beta.Change("/loops/acme:feed/kill", url.Values{"reason": {"x"}}); a.Status != http.StatusNotFound {
			t.Errorf("beta kills acme's loop: %d", a.Status)
		}
	})

	t.Run("CSRF", func(t *testing.T) {
		for _, p := range []string{"/loops/acme:feed/kill", "/loops/site-kill", "/loops/acme:feed/mode", evPath + "/approve", "/alarms/" + s.alarm + "/ack"} {
			a := op.Post(p, url.Values{"reason": {"x"}, "site": {"acme:plant-1"}, "mode": {"disabled"}}, op.Origin()...)
			if a.Status != http.StatusForbidden || !strings.Contains(a.Text(), "CSRF") {
				t.Errorf("POST %s without the CSRF token: %d", p, a.Status)
			}
		}
		if strings.Contains(op.MustGet(200, "/loops/acme:feed").Text(), "Kill switch engaged") {
			t.Error("a change without the CSRF token was made")
		}
	})
}

// TestConsoleLoopsEdgeVote: an action waiting at an edge is approved from
// the hub's console without JavaScript; the hub relays the vote (202),
// and the console says it was sent to the edge rather than done. The
// record at the hub ends done once the edge answers.
func TestConsoleLoopsEdgeVote(t *testing.T) {
	es := startEdgeSpindle(t, strings.Replace(edgeChatterLoop, "  bounds: {feed: [40, 120]}", "  bounds: {feed: [40, 120]}\n  approval: {required: 1, expires: 10m}", 1))
	h := es.h
	es.publish(2.5, 100)
	var id int64
	eventually(t, "the edge's action waiting at the hub", func() error {
		var out struct {
			Approvals []struct {
				ID     int64
				Origin string
			}
		}
		h.MustAdmin(200, "GET", "/api/v1/approvals", nil).JSON(t, &out)
		if len(out.Approvals) != 1 || out.Approvals[0].Origin != "acme:edge-1" {
			return fmt.Errorf("approvals: %+v", out.Approvals)
		}
		id = out.Approvals[0].ID
		return nil
	})
	b := consoletest.New(t, h.URL, nil)
	mustContain(t, "the queue", b.MustSignIn(h.AdminToken, "/approvals"), "at edge acme:edge-1", "setFeed feed=80")
	evPath := "/evidence/" + strconv.FormatInt(id, 10)
	mustRedirect(t, "the vote", b.Change(evPath+"/approve", url.Values{"back": {"approvals"}}), "/approvals?done=relayed")
	mustContain(t, "after the vote", b.MustGet(200, "/approvals?done=relayed"), "Your vote was sent to the edge whose loop decided")
	eventually(t, "the action done at the edge, seen at the hub", func() error {
		if page := b.MustGet(200, evPath); !strings.Contains(page.Text(), "Decision "+strconv.FormatInt(id, 10)+" done") {
			return fmt.Errorf("decision page: %s", page.Text())
		}
		return nil
	})

	// With htmx, the queue's row says the same.
	es.publish(0.1, 80)
	es.publish(2.5, 80)
	eventually(t, "a second action waiting", func() error {
		var out struct{ Approvals []struct{ ID int64 } }
		h.MustAdmin(200, "GET", "/api/v1/approvals", nil).JSON(t, &out)
		if len(out.Approvals) != 1 || out.Approvals[0].ID == id {
			return fmt.Errorf("approvals: %+v", out.Approvals)
		}
		id = out.Approvals[0].ID
		return nil
	})
	b.MustGet(200, "/approvals")
	evPath = "/evidence/" + strconv.FormatInt(id, 10)
	row := b.Post(evPath+"/reject", url.Values{"csrf": {b.CSRF}, "back": {"approvals"}}, append(b.Origin(), b.HX("/approvals")...)...)
	if row.Status != 200 || !strings.Contains(row.Text(), "Sent to the edge acme:edge-1") {
		t.Errorf("the htmx vote relayed: %d %s", row.Status, row.Text())
	}
}

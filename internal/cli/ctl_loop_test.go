package cli_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/hubtest"
)

// The loops the test defines: t-feed acts on demo:s1 (a command and an
// alarm), t-approve on demo:s2 and demo:s3 (desired state, one approval).
const (
	tFeedLoop = `id: t-feed
title: test feed loop
mode: active
placement: hub
on:
  model: demo:cnc-spindle
  objects: [demo:s1]
perceive:
  band: {property: vibBandHigh, fn: last}
  feed: {property: feedRate, fn: last}
decide:
  when: band > 1.0
  clear: band < 0.5
act:
  command: setFeedRate
  args:
    feedRate: feed * 0.8
  alarm:
    name: chatter
    severity: high
    message: "'chatter band ' + string(band)"
guard:
  bounds:
    feedRate: [40, 120]
  max_step:
    feedRate: 30
`
	tApproveLoop = `id: t-approve
mode: active
placement: hub
on:
  model: demo:cnc-spindle
  objects: [demo:s2, demo:s3]
perceive:
  band: {property: vibBandHigh, fn: last}
  feed: {property: feedRate, fn: last}
decide:
  when: band > 1.0
act:
  desired:
    feedRate: feed * 0.8
guard:
  bounds:
    feedRate: [40, 120]
  approval: {required: 1, expires: 10m}
`
	brokenLoop = `id: t-broken
mode: active
on:
  model: demo:cnc-spindle
perceive:
  band: {property: noSuchProperty, fn: mean, window: 10s}
decide:
  when: band > 1.0
act:
  command: fly
`
)

// ctlHub is a hub with tenant demo, the cnc-spindle model and three
// spindles under demo:plant-1, and the device tokens to publish as them.
type ctlHub struct {
	*hubtest.Hub
	t      *testing.T
	tokens map[string]string
}

func startCtlHub(t *testing.T) *ctlHub {
	h := &ctlHub{Hub: hubtest.Start(t), t: t, tokens: map[string]string{}}
	h.MustWanwu("ctl", "tenant", "create", "demo")
	h.MustWanwu("ctl", "model", "register", filepath.Join("..", "..", "examples", "models", "cnc-spindle.model.json"))
	keys := t.TempDir()
	for _, code := range []string{"demo:s1", "demo:s2", "demo:s3"} {
		dir := filepath.Join(keys, strings.ReplaceAll(code, ":", "_"))
		h.MustWanwu("ctl", "object", "register", code, "--model", "demo:cnc-spindle@1.0.0", "--path", "plant-1/hall-1", "--out", dir)
		h.tokens[code] = strings.TrimSpace(h.MustWanwu("ctl", "device", "token", code, "--key", filepath.Join(dir, "key.pem")))
	}
	return h
}

// publish posts telemetry as the device, through the hub's HTTP ingest.
func (h *ctlHub) publish(code, body string) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.URL+"/api/v1/ingest/"+code+"/telemetry", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+h.tokens[code])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		h.t.Fatalf("ingest %s: status %d", code, resp.StatusCode)
	}
}

// file writes content to a file and returns its path.
func (h *ctlHub) file(name, content string) string {
	p := filepath.Join(h.t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// waitJSON runs a ctl command with --json until done accepts its answer.
func (h *ctlHub) waitJSON(what string, out any, done func() bool, args ...string) {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := json.Unmarshal([]byte(h.MustWanwu(append(args, "--json")...)), out); err != nil {
			h.t.Fatalf("%s: %v", what, err)
		}
		if done() {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: not within 15s: %+v", what, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantLines fails unless out contains every one of want.
func wantLines(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

type evidenceList struct {
	Evidence []struct {
		ID     int64  `json:"id"`
		Object string `json:"object"`
		Kind   string `json:"kind"`
		State  string `json:"state"`
	} `json:"evidence"`
}

// TestLoopCommands drives the loop, site and alarm commands against a real
// hub: definitions, modes and versions, kill switches, decisions made on
// telemetry the devices posted and explained, approvals, a bypass approved
// by a second person, the shadow comparison and the alarm's lifecycle.
func TestLoopCommands(t *testing.T) {
	h := startCtlHub(t)
	chatter := filepath.Join("..", "..", "examples", "loops", "chatter-feed.yaml")

	t.Run("apply", func(t *testing.T) {
		out := h.MustWanwu("ctl", "loop", "apply", "-f", chatter, "--tenant", "demo")
		if out != "loop demo:chatter-feed version 1 (changed)\n" {
			t.Errorf("first apply: %q", out)
		}
		if out := h.MustWanwu("ctl", "loop", "apply", "-f", chatter, "--tenant", "demo"); out != "loop demo:chatter-feed version 1 (unchanged)\n" {
			t.Errorf("second apply: %q", out)
		}
		stdout, stderr, code := h.Wanwu("ctl", "loop", "apply", "-f", h.file("broken.yaml", brokenLoop), "--tenant", "demo")
		if code != 1 || stdout != "" {
			t.Errorf("broken loop: exit %d, stdout %q", code, stdout)
		}
		// Every problem on a line of its own, with its path.
		wantLines(t, "the refusal", stderr, "invalid_loop", "\n  $.perceive.band.property: ", "\n  $.act.command: ")
		if _, stderr, code := h.Wanwu("ctl", "loop", "apply", "--tenant", "demo"); code != 2 || !strings.Contains(stderr, "-f FILE is required") {
			t.Errorf("apply without -f: exit %d, %s", code, stderr)
		}
	})

	t.Run("list show versions mode", func(t *testing.T) {
		out := h.MustWanwu("ctl", "loop", "list")
		wantLines(t, "loop list", out, "LOOP", "VERSION", "MODE", "KILLED", "OBJECTS", "ACTING", "AWAITING", "demo:chatter-feed")
		if f := rowFields(out, "demo:chatter-feed"); len(f) != 13 || f[1] != "1" || f[2] != "active" || f[3] != "-" {
			t.Errorf("chatter-feed's row: %q\n%s", f, out)
		}
		out = h.MustWanwu("ctl", "loop", "mode", "demo:chatter-feed", "shadow")
		if out != "loop demo:chatter-feed version 2: shadow\n" {
			t.Errorf("mode: %q", out)
		}
		// A bare id is the one loop the token sees with that id.
		h.MustWanwu("ctl", "loop", "mode", "chatter-feed", "disabled")
		out = h.MustWanwu("ctl", "loop", "versions", "chatter-feed")
		for i, mode := range []string{"active", "shadow", "disabled"} {
			if f := rowFields(out, fmt.Sprint(i+1)); len(f) < 2 || f[1] != mode {
				t.Errorf("version %d: %q, want mode %s\n%s", i+1, f, mode, out)
			}
		}
		out = h.MustWanwu("ctl", "loop", "show", "demo:chatter-feed")
		wantLines(t, "loop show", out, "loop      demo:chatter-feed version 3\n", "mode      disabled\n",
			"\nid: chatter-feed\n", "tenant: demo\n", "  band:\n    property: vibBandHigh\n    fn: mean\n    window: {duration: 15s}\n", "    feedRate: {min: 40, max: 120}\n",
			"  rate_limit: {count: 6, per: 10m0s}\n", "  feed: {property: feedRate, fn: last}\n", "  when: band > 1.0 && cutting > 0.5\n")
		out = h.MustWanwu("ctl", "loop", "show", "demo:chatter-feed", "--version", "1")
		wantLines(t, "loop show --version 1", out, "version 1\n", "\nmode: active\n")
		var js struct {
			Loops []struct {
				Loop struct{ Key string }
			}
		}
		if err := json.Unmarshal([]byte(h.MustWanwu("ctl", "loop", "list", "--json")), &js); err != nil || len(js.Loops) != 1 || js.Loops[0].Loop.Key != "demo:chatter-feed" {
			t.Errorf("loop list --json: %+v, %v", js, err)
		}
		if _, stderr, code := h.Wanwu("ctl", "loop", "mode", "demo:chatter-feed", "sideways"); code != 2 || !strings.Contains(stderr, "active, shadow or disabled") {
			t.Errorf("bad mode: exit %d, %s", code, stderr)
		}
		if _, stderr, code := h.Wanwu("ctl", "loop", "show", "nosuch"); code != 1 || !strings.Contains(stderr, `no loop "nosuch"`) {
			t.Errorf("unknown loop: exit %d, %s", code, stderr)
		}
	})

	t.Run("kill release", func(t *testing.T) {
		if out := h.MustWanwu("ctl", "loop", "kill", "demo:chatter-feed", "--reason", "tool change"); !strings.HasPrefix(out, "loop demo:chatter-feed killed: tool change") {
			t.Errorf("kill: %q", out)
		}
		if f := rowFields(h.MustWanwu("ctl", "loop", "list"), "demo:chatter-feed"); len(f) < 5 || f[3] != "tool" {
			t.Errorf("killed loop's row: %q", f)
		}
		if out := h.MustWanwu("ctl", "loop", "release", "demo:chatter-feed"); out != "loop demo:chatter-feed released\n" {
			t.Errorf("release: %q", out)
		}
		if out := h.MustWanwu("ctl", "loop", "release", "demo:chatter-feed"); out != "loop demo:chatter-feed was not killed\n" {
			t.Errorf("release again: %q", out)
		}
		if _, stderr, code := h.Wanwu("ctl", "loop", "kill", "demo:chatter-feed"); code != 2 || !strings.Contains(stderr, "--reason is required") {
			t.Errorf("kill without a reason: exit %d, %s", code, stderr)
		}
		h.MustWanwu("ctl", "site", "kill", "demo:plant-1", "--reason", "maintenance")
		wantLines(t, "loop list with a site killed", h.MustWanwu("ctl", "loop", "list"), "site demo:plant-1 killed: maintenance\n")
		if out := h.MustWanwu("ctl", "site", "release", "demo:plant-1"); out != "site demo:plant-1 released\n" {
			t.Errorf("site release: %q", out)
		}
		if strings.Contains(h.MustWanwu("ctl", "loop", "list"), "site demo:plant-1") {
			t.Error("the site is still listed as killed")
		}
		if _, stderr, code := h.Wanwu("ctl", "site", "kill", "plant-1", "--reason", "x"); code != 2 || !strings.Contains(stderr, "tenant:site") {
			t.Errorf("site without a tenant: exit %d, %s", code, stderr)
		}
	})

	h.MustWanwu("ctl", "loop", "apply", "-f", h.file("t-feed.yaml", tFeedLoop), "--tenant", "demo")
	h.MustWanwu("ctl", "loop", "apply", "-f", h.file("t-approve.yaml", tApproveLoop), "--tenant", "demo")
	for _, code := range []string{"demo:s1", "demo:s2", "demo:s3"} {
		h.publish(code, `{"vibBandHigh": 1.6, "feedRate": 100, "spindleSpeed": 8000}`)
	}

	var feedID int64
	t.Run("evidence explain", func(t *testing.T) {
		var evs evidenceList
		h.waitJSON("t-feed's action", &evs, func() bool { return len(evs.Evidence) > 0 && evs.Evidence[0].State == "sent" },
			"ctl", "loop", "evidence", "demo:t-feed")
		feedID = evs.Evidence[0].ID
		id := fmt.Sprint(feedID)
		out := h.MustWanwu("ctl", "loop", "evidence", "demo:t-feed")
		if f := rowFields(out, id); len(f) < 8 || f[3] != "demo:t-feed@1" || f[4] != "demo:s1" || f[5] != "action" || f[6] != "sent" || f[7] != "command" {
			t.Errorf("evidence row: %q\n%s", f, out)
		}
		if out := h.MustWanwu("ctl", "loop", "evidence", "--object", "demo:s1", "--state", "done,refused"); strings.Contains(out, "demo:t-feed@1") {
			t.Errorf("--state done,refused listed a sent record:\n%s", out)
		}
		explain := h.MustWanwu("ctl", "loop", "evidence", "--id", id)
		wantLines(t, "the explanation", explain,
			"evidence "+id+": the decision turned on and proposed its action\n",
			"  loop        demo:t-feed version 1 (active)",
			"  object      demo:s1\n",
			"  features    band=1.6 feed=100\n",
			"  current     ", "spindleSpeed=8000",
			"  digest      ",
			"guards", "  kill ", "no kill switch engaged", "bounds", "max_step",
			"  command     setFeedRate feedRate=80\n",
			"  after the guards  feedRate=80\n",
			"  command id  loop-"+id,
			"alarm         ",
			"steps", "proposed", "sent  ", "issued",
			"outcome: not yet (sent)\n")
		if again := h.MustWanwu("ctl", "loop", "explain", id); again != explain {
			t.Errorf("loop explain differs from evidence --id:\n%s\n%s", again, explain)
		}
		if _, stderr, code := h.Wanwu("ctl", "loop", "explain", "999999"); code != 1 || !strings.Contains(stderr, "404") {
			t.Errorf("explain of no record: exit %d, %s", code, stderr)
		}
	})

	t.Run("approvals", func(t *testing.T) {
		var ap struct {
			Approvals []struct {
				ID     int64  `json:"id"`
				Object string `json:"object"`
			} `json:"approvals"`
		}
		h.waitJSON("two approvals", &ap, func() bool { return len(ap.Approvals) == 2 }, "ctl", "loop", "approvals")
		out := h.MustWanwu("ctl", "loop", "approvals")
		for _, a := range ap.Approvals {
			f := rowFields(out, fmt.Sprint(a.ID))
			if len(f) < 11 || f[3] != "demo:t-approve@1" || f[4] != a.Object || f[5] != "desired" || f[6] != "feedRate=80" || f[7] != "0" {
				t.Errorf("approval row: %q\n%s", f, out)
			}
		}
		ok, no := fmt.Sprint(ap.Approvals[0].ID), fmt.Sprint(ap.Approvals[1].ID)
		out = h.MustWanwu("ctl", "loop", "approve", ok, "--note", "fine")
		if !strings.HasPrefix(out, "evidence "+ok+" (demo:t-approve, ") || !strings.Contains(out, " is sent: desired state version ") {
			t.Errorf("approve: %q", out)
		}
		if out := h.MustWanwu("ctl", "loop", "reject", no, "--note", "not now"); !strings.Contains(out, " is rejected") {
			t.Errorf("reject: %q", out)
		}
		if out := h.MustWanwu("ctl", "loop", "approvals"); strings.Count(out, "\n") != 1 {
			t.Errorf("approvals left:\n%s", out)
		}
		wantLines(t, "the approved action's story", h.MustWanwu("ctl", "loop", "explain", ok),
			"approval: 1 required of any operator but the requester", "approve  fine", "  desired     feedRate=80\n", "awaiting_approval")
		if _, stderr, code := h.Wanwu("ctl", "loop", "approve", ok); code != 1 || !strings.Contains(stderr, "409") {
			t.Errorf("approving a decided action: exit %d, %s", code, stderr)
		}
	})

	t.Run("bypass", func(t *testing.T) {
		out := h.MustWanwu("ctl", "loop", "bypass", "demo:t-feed", "--guard", "bounds", "--for", "30m", "--reason", "calibration", "--object", "demo:s1")
		if !strings.HasPrefix(out, "bypass 1 of bounds on demo:t-feed for demo:s1 for 30m0s: pending;") {
			t.Errorf("bypass: %q", out)
		}
		// The requester cannot approve their own bypass.
		if _, stderr, code := h.Wanwu("ctl", "loop", "bypass-approve", "1"); code == 0 {
			t.Errorf("the requester approved their own bypass: %s", stderr)
		}
		var tok struct{ Secret string }
		if err := json.Unmarshal([]byte(h.MustWanwu("ctl", "token", "create", "second", "--role", "operator")), &tok); err != nil || tok.Secret == "" {
			t.Fatalf("token: %+v %v", tok, err)
		}
		out = h.MustWanwu("ctl", "loop", "bypass-approve", "1", "--token", tok.Secret, "--note", "checked")
		if !strings.HasPrefix(out, "bypass 1 of bounds on demo:t-feed for demo:s1 is active until ") {
			t.Errorf("bypass-approve: %q", out)
		}
		out = h.MustWanwu("ctl", "loop", "bypasses")
		if f := rowFields(out, "1"); len(f) < 9 || f[1] != "demo:t-feed" || f[3] != "bounds" || f[4] != "active" || f[5] != "30m0s" || !strings.Contains(out, "second approve") {
			t.Errorf("bypasses: %q\n%s", f, out)
		}
		if out := h.MustWanwu("ctl", "loop", "bypass-end", "1"); out != "bypass 1 of bounds on demo:t-feed for demo:s1 is ended\n" {
			t.Errorf("bypass-end: %q", out)
		}
		if out := h.MustWanwu("ctl", "loop", "bypasses"); strings.Contains(out, "demo:t-feed") {
			t.Errorf("an ended bypass is listed without --all:\n%s", out)
		}
		if f := rowFields(h.MustWanwu("ctl", "loop", "bypasses", "--all"), "1"); len(f) < 5 || f[4] != "ended" {
			t.Errorf("bypasses --all: %q", f)
		}
		h.MustWanwu("ctl", "loop", "bypass", "demo:t-feed", "--guard", "cooldown", "--for", "1h", "--reason", "x")
		if out := h.MustWanwu("ctl", "loop", "bypass-reject", "2", "--token", tok.Secret); !strings.HasSuffix(out, " is rejected\n") {
			t.Errorf("bypass-reject: %q", out)
		}
		if _, stderr, code := h.Wanwu("ctl", "loop", "bypass", "demo:t-feed", "--guard", "kill", "--for", "1h", "--reason", "x"); code != 1 || !strings.Contains(stderr, "cannot be bypassed") {
			t.Errorf("bypassing the kill switch: exit %d, %s", code, stderr)
		}
	})

	t.Run("compare", func(t *testing.T) {
		out := h.MustWanwu("ctl", "loop", "compare", "demo:t-feed", "demo:t-approve", "--since", "1h", "--window", "1m")
		wantLines(t, "compare", out, "demo:t-feed beside demo:t-approve since ", "(same decision: within 1m0s)",
			"both 0, only demo:t-feed 1, only demo:t-approve 2: agreement 0.0 %", "OBJECT")
		for obj, want := range map[string][]string{"demo:s1": {"0", "1", "0"}, "demo:s2": {"0", "0", "1"}, "demo:s3": {"0", "0", "1"}} {
			if f := rowFields(out, obj); strings.Join(f[1:], " ") != strings.Join(want, " ") {
				t.Errorf("compare %s: %q", obj, f)
			}
		}
	})

	t.Run("alarms", func(t *testing.T) {
		var al struct {
			Alarms []struct {
				ID     string `json:"id"`
				Object string `json:"object"`
			} `json:"alarms"`
		}
		h.waitJSON("the chatter alarm", &al, func() bool { return len(al.Alarms) == 1 }, "ctl", "alarm", "list")
		id := al.Alarms[0].ID
		out := h.MustWanwu("ctl", "alarm", "list", "--severity", "high")
		if f := rowFields(out, id); len(f) < 8 || f[1] != "demo:s1" || f[2] != "chatter" || f[3] != "high" || f[4] != "unack_active" || f[5] != "-" {
			t.Errorf("alarm row: %q\n%s", f, out)
		}
		if out := h.MustWanwu("ctl", "alarm", "list", "--severity", "critical"); strings.Contains(out, id) {
			t.Errorf("--severity critical listed a high alarm:\n%s", out)
		}
		if out := h.MustWanwu("ctl", "alarm", "ack", id, "--note", "seen"); out != "alarm "+id+" acknowledged: ack_active\n" {
			t.Errorf("ack: %q", out)
		}
		if out := h.MustWanwu("ctl", "alarm", "shelve", id, "--for", "1h", "--reason", "known chatter"); !strings.HasPrefix(out, "alarm "+id+" shelved until ") {
			t.Errorf("shelve: %q", out)
		}
		if out := h.MustWanwu("ctl", "alarm", "list", "--shelved", "true"); !strings.Contains(out, id) {
			t.Errorf("--shelved true lacks the alarm:\n%s", out)
		}
		if out := h.MustWanwu("ctl", "alarm", "list", "--shelved", "false"); strings.Contains(out, id) {
			t.Errorf("--shelved false lists the shelved alarm:\n%s", out)
		}
		if out := h.MustWanwu("ctl", "alarm", "unshelve", id); out != "alarm "+id+" unshelved: ack_active\n" {
			t.Errorf("unshelve: %q", out)
		}
		out = h.MustWanwu("ctl", "alarm", "show", id)
		wantLines(t, "alarm show", out, "object      demo:s1\n", "name        chatter (from loop:demo:t-feed)\n", "severity    high\n",
			"message     chatter band 1.6\n", "acked       ", "seen", "history", "raised", "acked", "shelved", "known chatter", "unshelved")
		var js struct {
			Alarm struct{ State string }
		}
		if err := json.Unmarshal([]byte(h.MustWanwu("ctl", "alarm", "ack", id, "--json")), &js); err != nil || js.Alarm.State != "ack_active" {
			t.Errorf("ack --json: %+v %v", js, err)
		}
		if _, stderr, code := h.Wanwu("ctl", "alarm", "list", "--shelved", "maybe"); code != 2 || !strings.Contains(stderr, "true or false") {
			t.Errorf("--shelved maybe: exit %d, %s", code, stderr)
		}
		if _, stderr, code := h.Wanwu("ctl", "alarm", "show", "000000000000000000000000"); code != 1 || !strings.Contains(stderr, "404") {
			t.Errorf("unknown alarm: exit %d, %s", code, stderr)
		}
	})

	t.Run("show round trip", func(t *testing.T) {
		// What show prints below its header is the definition: applied
		// again, it changes nothing.
		for _, key := range []string{"demo:chatter-feed", "demo:t-feed"} {
			out := h.MustWanwu("ctl", "loop", "show", key)
			_, def, ok := strings.Cut(out, "\n\n")
			if !ok {
				t.Fatalf("show %s: no definition:\n%s", key, out)
			}
			got := h.MustWanwu("ctl", "loop", "apply", "-f", h.file("shown.yaml", def))
			if !strings.HasPrefix(got, "loop "+key+" version ") || !strings.HasSuffix(got, " (unchanged)\n") {
				t.Errorf("applying what show printed of %s: %q\n%s", key, got, def)
			}
		}
	})

	t.Run("list counts", func(t *testing.T) {
		out := h.MustWanwu("ctl", "loop", "list")
		// KEY VERSION MODE KILLED OBJECTS ON, then the evidence records
		// by their state now: ACTING DONE FAILED REFUSED AWAITING SHADOW
		// ERROR.
		if f := rowFields(out, "demo:t-feed"); strings.Join(f[1:], " ") != "1 active - 1 1 1 0 0 0 0 0 0" {
			t.Errorf("t-feed's row: %q\n%s", f, out)
		}
		if f := rowFields(out, "demo:t-approve"); strings.Join(f[1:], " ") != "1 active - 2 2 1 0 0 0 0 0 0" {
			t.Errorf("t-approve's row: %q\n%s", f, out)
		}
		wantLines(t, "loop show's stats", h.MustWanwu("ctl", "loop", "show", "demo:t-approve"),
			"objects   2, decision on for 2\n", "records   awaiting_approval 3, sent 1, rejected 1\n")
	})
}

// rowFields returns the fields of the first line of a table whose first
// field is key.
func rowFields(table, key string) []string {
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == key {
			return f
		}
	}
	return nil
}

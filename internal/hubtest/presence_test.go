package hubtest

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/presence"
)

// presenceOf answers the hub's presence of a device.
func presenceOf(t *testing.T, h *Hub, code string) (presence.State, []presence.Event) {
	t.Helper()
	var out struct {
		Presence presence.State   `json:"presence"`
		Events   []presence.Event `json:"events"`
	}
	h.MustAdmin(200, "GET", "/api/v1/objects/"+code+"/presence", nil).JSON(t, &out)
	return out.Presence, out.Events
}

// waitPresence waits until the device's state satisfies ok.
func waitPresence(t *testing.T, h *Hub, code, what string, ok func(presence.State) bool) presence.State {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := presenceOf(t, h, code)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: presence never became %s: %+v", code, what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func offlineWith(reason string) func(presence.State) bool {
	return func(st presence.State) bool { return !st.Online && st.LastReason == reason }
}

func onlineOver(protocols string) func(presence.State) bool {
	return func(st presence.State) bool { return st.Online && strings.Join(st.Protocols, ",") == protocols }
}

// TestPresence: a device's sessions on MQTT and its HTTP traffic make it
// online; each way a session ends is recorded with its reason; the state,
// the events, the metrics and ctl agree; the events reach the PRESENCE
// stream; a restart ends the sessions it interrupted.
func TestPresence(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	d := newTokenDevice(t, h, "acme:pr-1")
	addr := h.MQTT().Addr(mqtt.ListenerTCP)

	st, evs := presenceOf(t, h, d.code)
	if st.Online || !st.LastSeen.IsZero() || len(evs) != 0 {
		t.Fatalf("a device never seen: %+v %+v", st, evs)
	}

	// A clean disconnect.
	c := mustDialToken5(t, addr, d.code, d.token)
	st = waitPresence(t, h, d.code, "online over mqtt", onlineOver("mqtt"))
	if st.Remote == "" || st.LastSeen.IsZero() {
		t.Errorf("online: %+v", st)
	}
	if m := string(h.Do("GET", "/metrics", "", nil).Body); !strings.Contains(m, `wanwu_devices_online{protocol="mqtt",tenant="acme"} 1`) {
		t.Error("/metrics lacks wanwu_devices_online for the device")
	}
	c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	waitPresence(t, h, d.code, "offline (clean)", offlineWith(presence.ReasonClean))

	// The connection breaks.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c = paho.NewClient(paho.ClientConfig{Conn: conn, OnClientError: func(error) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: d.code, KeepAlive: 30, CleanStart: true,
		Username: d.code, UsernameFlag: true, Password: []byte(d.token), PasswordFlag: true}); err != nil {
		t.Fatal(err)
	}
	waitPresence(t, h, d.code, "online over mqtt", onlineOver("mqtt"))
	conn.Close()
	waitPresence(t, h, d.code, "offline (network)", offlineWith(presence.ReasonNetwork))

	// Another connection with the same identity takes over (once the
	// first is online: on a loaded machine the takeover could otherwise
	// come before the hub has seen the session it ends).
	mustDialToken5(t, addr, d.code, d.token)
	waitPresence(t, h, d.code, "online again", onlineOver("mqtt"))
	mustDialToken5(t, addr, d.code, d.token)
	waitPresence(t, h, d.code, "online after a takeover", func(st presence.State) bool {
		return st.Online && st.LastReason == presence.ReasonTakenOver
	})

	// HTTP traffic as well: online over both.
	resp := postIngest(t, http.DefaultClient, h.URL+"/api/v1/ingest/"+d.code+"/telemetry", d.token, "application/senml+json", `[{"n":"t","v":1}]`)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("ingest: %d %s", resp.StatusCode, resp.body)
	}
	waitPresence(t, h, d.code, "online over http and mqtt", onlineOver("http,mqtt"))

	// Revoked: the MQTT session ends for that reason; HTTP presence stays
	// until it idles.
	out := h.MustWanwu("ctl", "object", "revoke", d.code, "--yes")
	_ = out
	waitPresence(t, h, d.code, "mqtt ended (revoked)", func(st presence.State) bool {
		return st.LastReason == presence.ReasonRevoked && strings.Join(st.Protocols, ",") == "http"
	})

	// Events are written within a second (presence.Options.FlushEvery).
	var got []string
	for deadline := time.Now().Add(5 * time.Second); len(got) < 9 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, evs = presenceOf(t, h, d.code)
		got = got[:0]
		for _, e := range evs {
			got = append(got, e.Kind+"/"+e.Protocol+"/"+e.Reason)
		}
	}
	want := []string{
		"connected/mqtt/", "disconnected/mqtt/clean",
		"connected/mqtt/", "disconnected/mqtt/network",
		"connected/mqtt/", "connected/mqtt/", "disconnected/mqtt/taken_over",
		"connected/http/", "disconnected/mqtt/revoked",
	}
	// The takeover's new session may be recorded before or after the old
	// one's end; compare as multisets in that window.
	if len(got) != len(want) || strings.Join(got[:4], " ") != strings.Join(want[:4], " ") || got[7] != want[7] || got[8] != want[8] {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// ctl shows the same, for people and for scripts.
	if text := h.MustWanwu("ctl", "object", "show", d.code); !strings.Contains(text, `"code": "acme:pr-1"`) || !strings.Contains(text, "disconnected (revoked)") {
		t.Errorf("ctl object show:\n%s", text)
	}
	text := h.MustWanwu("ctl", "presence", "get", d.code)
	if !strings.Contains(text, "online") || !strings.Contains(text, "disconnected (revoked)") {
		t.Errorf("ctl presence get:\n%s", text)
	}
	var list struct {
		Presence []presence.State `json:"presence"`
	}
	if err := json.Unmarshal([]byte(h.MustWanwu("ctl", "presence", "list", "--tenant", "acme", "--online", "--json")), &list); err != nil || len(list.Presence) != 1 {
		t.Errorf("ctl presence list --online --json: %+v %v", list, err)
	}
	if text := h.MustWanwu("ctl", "presence", "events", "--device", d.code); strings.Count(text, "\n") != len(want)+1 {
		t.Errorf("ctl presence events:\n%s", text)
	}

	// The events reach the PRESENCE stream, in order, each once.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var seqs []uint64
		err := h.Bus().PresenceEvents().ReadAll(context.Background(), func(b []byte) error {
			var e presence.Event
			if err := json.Unmarshal(b, &e); err != nil {
				return err
			}
			seqs = append(seqs, e.Seq)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) == len(evs) {
			for i := range seqs {
				if seqs[i] != evs[i].Seq {
					t.Fatalf("stream sequences %v, database %+v", seqs, evs)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream holds %d events, database %d", len(seqs), len(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A restart ends what it interrupted.
	h.Restart()
	st = waitPresence(t, h, d.code, "offline after the restart", offlineWith(presence.ReasonRestart))
	if st.LastSeen.IsZero() {
		t.Errorf("last seen lost: %+v", st)
	}
}

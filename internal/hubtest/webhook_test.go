package hubtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/webhook"
)

// hookReceiver is an integration's endpoint: it checks each delivery's
// signature and counts deliveries by event id.
type hookReceiver struct {
	secret atomic.Value // string
	down   atomic.Bool  // answer 503
	mu     sync.Mutex
	byID   map[string]int
	types  map[string]int
	bad    []string
}

func (r *hookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.down.Load() {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	secret, _ := r.secret.Load().(string)
	if err := webhook.Verify(secret, req.Header.Get("Wanwu-Signature"), body, time.Now(), time.Minute); err != nil {
		r.bad = append(r.bad, err.Error())
	}
	var d struct {
		ID, Type, Tenant, Device string
	}
	if err := json.Unmarshal(body, &d); err != nil || d.Tenant != "acme" {
		r.bad = append(r.bad, fmt.Sprintf("body %s: %v", body, err))
	}
	r.byID[d.ID]++
	r.types[d.Type]++
	w.WriteHeader(http.StatusNoContent)
}

func (r *hookReceiver) snapshot() (types map[string]int, dup []string, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	types = map[string]int{}
	for k, v := range r.types {
		types[k] = v
	}
	for id, n := range r.byID {
		if n > 1 {
			dup = append(dup, id)
		}
	}
	return types, dup, append([]string(nil), r.bad...)
}

// TestWebhooks: device events, command events and presence changes reach a
// webhook, signed; deliveries a receiver refuses wait in the outbox across
// a hub restart and arrive once it answers; another tenant's events never
// reach it.
func TestWebhooks(t *testing.T) {
	rc := &hookReceiver{byID: map[string]int{}, types: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rc}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	h := Start(t)
	setupAcme(t, h)
	h.MustWanwu("ctl", "tenant", "create", "other")
	out := h.MustWanwu("ctl", "webhook", "create", "http://"+ln.Addr().String()+"/wanwu", "--tenant", "acme", "--description", "test receiver")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	secret := lines[len(lines)-1]
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("ctl webhook create said:\n%s", out)
	}
	rc.secret.Store(secret)
	if list := h.MustWanwu("ctl", "webhook", "list", "--json"); strings.Contains(list, "whsec_") || !strings.Contains(list, "test receiver") {
		t.Fatalf("ctl webhook list shows a secret or misses the webhook:\n%s", list)
	}
	hookID := strings.Fields(lines[0])[1]

	// One of each: an event over HTTP, a command, an MQTT session.
	pump := register(t, h, "acme:pump-wh", "--model", "acme:pump@1.0.0")
	d := newTokenDevice(t, h, "acme:dev-wh")
	other := newTokenDevice(t, h, "other:dev-wh")
	resp := postIngest(t, http.DefaultClient, h.URL+"/api/v1/ingest/acme:pump-wh/events/overheat", pump.token(t), "application/json", `{"temperature": 91}`)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("event: %d %s", resp.StatusCode, resp.body)
	}
	h.MustAdmin(201, "POST", "/api/v1/objects/acme:pump-wh/commands", map[string]any{"id": "wh-1", "action": "stop"})
	c := mustDialToken5(t, h.MQTT().Addr(mqtt.ListenerTCP), d.code, d.token)
	mustDialToken5(t, h.MQTT().Addr(mqtt.ListenerTCP), other.code, other.token)
	eventually(t, "an event, a command event and a presence change delivered", func() error {
		types, dup, bad := rc.snapshot()
		if len(bad) > 0 || len(dup) > 0 {
			t.Fatalf("bad deliveries %v, duplicates %v", bad, dup)
		}
		if types["event"] != 1 || types["command"] < 1 || types["presence"] < 1 {
			return fmt.Errorf("delivered %v", types)
		}
		return nil
	})

	// The receiver goes down; what happens meanwhile waits in the outbox,
	// also across a restart of the hub, and arrives once it is back.
	rc.down.Store(true)
	c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	h.MustAdmin(200, "POST", "/api/v1/commands/wh-1/cancel", nil)
	eventually(t, "deliveries waiting", func() error {
		var ds struct {
			Deliveries []json.RawMessage `json:"deliveries"`
		}
		h.MustAdmin(200, "GET", "/api/v1/webhooks/"+hookID+"/deliveries?status=pending", nil).JSON(t, &ds)
		if len(ds.Deliveries) < 2 {
			return fmt.Errorf("%d pending", len(ds.Deliveries))
		}
		return nil
	})
	before, _, _ := rc.snapshot()
	h.Restart()
	rc.down.Store(false)
	eventually(t, "the waiting deliveries after the restart", func() error {
		types, dup, bad := rc.snapshot()
		if len(bad) > 0 || len(dup) > 0 {
			t.Fatalf("bad deliveries %v, duplicates %v", bad, dup)
		}
		// The cancel, the clean disconnect, and the restart's end of the
		// other sessions (none in acme is online any more).
		if types["command"] <= before["command"] || types["presence"] <= before["presence"] {
			return fmt.Errorf("delivered %v (before the outage %v)", types, before)
		}
		return nil
	})
	text := h.MustWanwu("ctl", "webhook", "deliveries", hookID)
	if strings.Count(strings.TrimSpace(text), "\n") != 0 {
		t.Errorf("failed deliveries listed:\n%s", text)
	}
	h.MustWanwu("ctl", "webhook", "delete", hookID)
	if r := h.Admin("GET", "/api/v1/webhooks/"+hookID, nil); r.Status != http.StatusNotFound {
		t.Errorf("a deleted webhook: %d", r.Status)
	}
}

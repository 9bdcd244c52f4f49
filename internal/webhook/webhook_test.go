package webhook

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/store"
)

func TestSignAndVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"e1"}`)
	h := Sign("whsec_x", now, body)
	if h != "t=1800000000,v1="+strings.Split(h, "v1=")[1] || len(strings.Split(h, "v1=")[1]) != 64 {
		t.Fatalf("header %q", h)
	}
	cases := []struct {
		name   string
		secret string
		header string
		body   string
		at     time.Time
		ok     bool
	}{
		{"good", "whsec_x", h, string(body), now, true},
		{"within tolerance", "whsec_x", h, string(body), now.Add(4 * time.Minute), true},
		{"too old", "whsec_x", h, string(body), now.Add(6 * time.Minute), false},
		{"from the future", "whsec_x", h, string(body), now.Add(-6 * time.Minute), false},
		{"other secret", "whsec_y", h, string(body), now, false},
		{"body changed", "whsec_x", h, `{"id":"e2"}`, now, false},
		{"time changed", "whsec_x", strings.Replace(h, "t=1800000000", "t=1800000001", 1), string(body), now, false},
		{"no signature", "whsec_x", "t=1800000000", string(body), now, false},
		{"garbage", "whsec_x", "v1=,t=", string(body), now, false},
		{"spaces", "whsec_x", strings.Replace(h, ",", ", ", 1), string(body), now, true},
	}
	for _, c := range cases {
		err := Verify(c.secret, c.header, []byte(c.body), c.at, 5*time.Minute)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// FuzzVerify: any header and body are answered without a panic, and only
// a header carrying the body's HMAC for its own time passes.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(Sign("s", now, []byte("b")), []byte("b"))
	f.Add("t=,v1=", []byte(""))
	f.Add("t=1800000000,v1=zz,v1=00", []byte("{}"))
	f.Add(",,,=,=", []byte("x"))
	f.Add("t=1799999999 ,v1="+strings.Repeat("0", 64), []byte("x"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		if Verify("s", header, body, now, 5*time.Minute) != nil {
			return
		}
		for sec := now.Unix() - 300; sec <= now.Unix()+300; sec++ {
			want := Sign("s", time.Unix(sec, 0), body)
			if strings.Contains(header, want[strings.Index(want, "v1="):]) {
				return
			}
		}
		t.Fatalf("accepted %q for %q", header, body)
	})
}

func TestCheckURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://hooks.example.com/wanwu": true,
		"http://127.0.0.1:9000/x":         true,
		"http://[::1]:9000/x":             true,
		"http://localhost/x":              true,
		"http://hooks.example.com/x":      false,
		"ftp://example.com":               false,
		"/relative":                       false,
		"https://":                        false,
		"::":                              false,
	} {
		if err := checkURL(raw); (err == nil) != ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("%q: %v", raw, err)
		}
	}
}

// receiver is a webhook receiver that fails its first failures requests.
type receiver struct {
	mu       sync.Mutex
	secret   string
	failures atomic.Int32
	got      []map[string]any
	bad      []string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if r.failures.Add(-1) >= 0 {
		http.Error(w, "not now", http.StatusServiceUnavailable)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := Verify(r.secret, req.Header.Get("Wanwu-Signature"), body, time.Now(), time.Minute); err != nil {
		r.bad = append(r.bad, err.Error())
	}
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	if m["id"] != req.Header.Get("Wanwu-Event-Id") || m["type"] != req.Header.Get("Wanwu-Event-Type") {
		r.bad = append(r.bad, "headers do not match the body")
	}
	r.got = append(r.got, m)
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// eventsPath is where open puts a test's event store.
func eventsPath(t *testing.T) string { return filepath.Join(t.TempDir(), "..", "events.db") }

func open(t *testing.T, o Options) (*Service, *presence.Service) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	al, err := audit.Open(ctx, db.W, key, "test")
	if err != nil {
		t.Fatal(err)
	}
	pres, err := presence.Open(ctx, presence.Options{DB: db, FlushEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := eventstore.Open(ctx, eventsPath(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ev.Close() })
	o.DB, o.Audit, o.Presence, o.Events = db, al, pres, ev
	if o.Poll == 0 {
		o.Poll = 20 * time.Millisecond
	}
	s, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	pres.Start()
	s.Start()
	t.Cleanup(func() {
		s.Shutdown(ctx)
		pres.Shutdown(ctx)
		db.Close()
	})
	return s, pres
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

// TestRetriesThenFails: a receiver that fails is tried again with backoff
// until MaxAttempts; the delivery then stays as failed with its last error,
// and Retry makes it due again.
func TestRetriesThenFails(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, pres := open(t, Options{MaxAttempts: 3, Backoff: 10 * time.Millisecond})
	hook, err := s.Create(context.Background(), "test", Webhook{Tenant: "acme", URL: srv.URL + "/hook", Types: []string{TypePresence}})
	if err != nil {
		t.Fatal(err)
	}
	rc.secret = hook.Secret
	if !strings.HasPrefix(hook.Secret, "whsec_") || s.List("acme")[0].Secret != "" {
		t.Fatalf("the secret is shown once: %+v / %+v", hook, s.List("acme"))
	}

	// Two failures, then success: delivered, signed, once.
	rc.failures.Store(2)
	pres.Connected("acme:d1", "acme", "mqtt", "")
	waitFor(t, "a delivery after two failures", func() bool { return rc.count() == 1 })
	if len(rc.bad) > 0 || rc.got[0]["type"] != TypePresence || rc.got[0]["device"] != "acme:d1" {
		t.Fatalf("got %+v, bad %v", rc.got, rc.bad)
	}
	waitFor(t, "the outbox empties", func() bool {
		ds, _ := s.Deliveries(context.Background(), hook.ID, "", 10)
		return len(ds) == 0
	})

	// Every attempt fails: kept as failed, with the reason.
	rc.failures.Store(1000)
	pres.Disconnected("acme:d1", "acme", "mqtt", presence.ReasonClean)
	pres.Connected("acme:other", "other", "mqtt", "") // another tenant: not for this webhook
	var failed []Delivery
	waitFor(t, "a failed delivery", func() bool {
		failed, _ = s.Deliveries(context.Background(), hook.ID, "failed", 10)
		return len(failed) == 1
	})
	if failed[0].Attempts != 3 || !strings.Contains(failed[0].LastError, "503") {
		t.Fatalf("failed: %+v", failed[0])
	}
	rc.failures.Store(0)
	if n, err := s.Retry(context.Background(), hook.ID); err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	waitFor(t, "the retried delivery", func() bool { return rc.count() == 2 })
	if got := rc.got[1]; got["device"] != "acme:d1" {
		t.Fatalf("retried %+v", got)
	}
	if err := s.Delete(context.Background(), "test", hook.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(hook.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestCreateRefuses(t *testing.T) {
	s, _ := open(t, Options{})
	for _, w := range []Webhook{
		{URL: "https://x.example/h"},                                           // no tenant
		{Tenant: "acme", URL: "http://x.example/h"},                            // not https
		{Tenant: "acme", URL: "https://x.example/h", Types: []string{"alarm"}}, // unknown type
	} {
		if _, err := s.Create(context.Background(), "test", w); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", w, err)
		}
	}
}

// TestStoredEvents: device events come from the event store, each once,
// also when the store numbers its events from 1 again (retention emptied
// it) while the webhook's cursor is further on.
func TestStoredEvents(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, _ := open(t, Options{})
	hook, err := s.Create(context.Background(), "test", Webhook{Tenant: "acme", URL: srv.URL, Types: []string{TypeEvent}})
	if err != nil {
		t.Fatal(err)
	}
	rc.secret = hook.Secret
	now := time.Now().UnixMilli()
	write := func(n int) {
		var evs []eventstore.Event
		for i := range n {
			evs = append(evs, eventstore.Event{Tenant: "acme", Device: "acme:d", Name: "overheat", Time: now + int64(i), Data: []byte(`{"t":1}`), Received: now})
		}
		if err := s.o.Events.Write(context.Background(), evs, nil); err != nil {
			t.Fatal(err)
		}
		s.Wake()
	}
	write(3)
	write(3) // the same events again (a batch read back): nothing new
	waitFor(t, "three deliveries", func() bool { return rc.count() == 3 })
	time.Sleep(100 * time.Millisecond)
	if rc.count() != 3 || len(rc.bad) > 0 {
		t.Fatalf("%d deliveries, bad %v", rc.count(), rc.bad)
	}
	// Retention empties the table; the next events are numbered from 1.
	raw, err := sql.Open("sqlite", eventsPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`DELETE FROM events`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	now += 1000
	write(2)
	waitFor(t, "the events after the store started again", func() bool { return rc.count() == 5 })
}

package presence

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wanwu-iot/wanwu/internal/store"
)

// clock is a clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     *testing.T
	dir   string
	db    *store.DB
	clk   *clock
	reg   *prometheus.Registry
	s     *Service
	woken int
}

func open(t *testing.T, dir string, clk *clock) *env {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(dir, "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, db: db, clk: clk, reg: prometheus.NewRegistry()}
	e.s, err = Open(ctx, Options{DB: db, Now: clk.now, Metrics: e.reg, Idle: time.Minute, OnEvent: func() { e.woken++ }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.close() })
	return e
}

func (e *env) close() {
	if e.s == nil {
		return
	}
	if err := e.s.Shutdown(context.Background()); err != nil {
		e.t.Error(err)
	}
	e.db.Close()
	e.s = nil
}

func (e *env) flush() {
	e.t.Helper()
	if err := e.s.flush(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) state(code string) State {
	e.t.Helper()
	st, err := e.s.Get(context.Background(), code)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// summary writes events as "kind/protocol/reason/online" lines.
func summary(evs []Event) string {
	var b []string
	for _, e := range evs {
		on := "offline"
		if e.Online {
			on = "online"
		}
		b = append(b, e.Code+" "+e.Kind+"/"+e.Protocol+"/"+e.Reason+"/"+on)
	}
	return strings.Join(b, "\n")
}

// TestSessionsAndTraffic walks a device through the ways it comes and
// goes, checking its state, its events and the gauges at each step.
func TestSessionsAndTraffic(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
	e := open(t, t.TempDir(), clk)
	s := e.s
	const dev = "acme:pump-1"
	steps := []struct {
		name      string
		do        func()
		online    bool
		protocols string
		reason    string
		gauge     map[string]float64 // protocol → devices online in acme
	}{
		{"mqtt connect", func() { s.Connected(dev, "acme", "mqtt", "10.0.0.5:50000") }, true, "mqtt", "", map[string]float64{"mqtt": 1}},
		{"http traffic as well", func() { clk.add(time.Second); s.Seen(dev, "acme", "http") }, true, "http,mqtt", "", map[string]float64{"mqtt": 1, "http": 1}},
		{"mqtt keep-alive timeout", func() { s.Disconnected(dev, "acme", "mqtt", ReasonKeepAlive) }, true, "http", ReasonKeepAlive, map[string]float64{"mqtt": 0, "http": 1}},
		{"http idle", func() { clk.add(2 * time.Minute); s.expireIdle() }, false, "", ReasonIdle, map[string]float64{"mqtt": 0, "http": 0}},
		{"a disconnect never connected is ignored", func() { s.Disconnected(dev, "acme", "mqtt", ReasonNetwork) }, false, "", ReasonIdle, map[string]float64{"mqtt": 0}},
		{"two mqtt sessions (a takeover)", func() {
			s.Connected(dev, "acme", "mqtt", "10.0.0.5:1")
			s.Connected(dev, "acme", "mqtt", "10.0.0.6:2")
			s.Disconnected(dev, "acme", "mqtt", ReasonTakenOver)
		}, true, "mqtt", ReasonTakenOver, map[string]float64{"mqtt": 1}},
		{"revoked", func() { s.Disconnected(dev, "acme", "mqtt", ReasonRevoked) }, false, "", ReasonRevoked, map[string]float64{"mqtt": 0}},
	}
	for _, st := range steps {
		st.do()
		got := e.state(dev)
		if got.Online != st.online || strings.Join(got.Protocols, ",") != st.protocols || got.LastReason != st.reason {
			t.Fatalf("%s: state %+v", st.name, got)
		}
		for p, want := range st.gauge {
			if n := testutil.ToFloat64(s.online.WithLabelValues("acme", p)); n != want {
				t.Fatalf("%s: wanwu_devices_online{protocol=%q} = %v, want %v", st.name, p, n, want)
			}
		}
		e.flush()
		if got2 := e.state(dev); got2.Online != got.Online || got2.LastReason != got.LastReason || !got2.LastSeen.Equal(got.LastSeen) {
			t.Fatalf("%s: written %+v, in memory %+v", st.name, got2, got)
		}
	}
	evs, err := s.Events(context.Background(), Filter{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		dev + " connected/mqtt//online",
		dev + " connected/http//online",
		dev + " disconnected/mqtt/keepalive_timeout/online",
		dev + " disconnected/http/idle/offline",
		dev + " connected/mqtt//online",
		dev + " connected/mqtt//online",
		dev + " disconnected/mqtt/taken_over/online",
		dev + " disconnected/mqtt/revoked/offline",
	}, "\n")
	if got := summary(evs); got != want {
		t.Fatalf("events:\n%s\nwant:\n%s", got, want)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq <= evs[i-1].Seq {
			t.Fatalf("sequences out of order: %+v", evs)
		}
	}
	after, _ := s.EventsAfter(context.Background(), evs[5].Seq, time.Time{}, 10)
	if len(after) != 2 || after[0].Seq != evs[6].Seq {
		t.Fatalf("EventsAfter: %+v", after)
	}
	if e.woken == 0 {
		t.Error("OnEvent never called")
	}
	if n := testutil.ToFloat64(s.ended.WithLabelValues("mqtt", ReasonRevoked)); n != 1 {
		t.Errorf("sessions ended (revoked) = %v", n)
	}
}

// TestOnlineByTenant: devices online per tenant, each once however many
// protocols it is online over; offline ones are not counted.
func TestOnlineByTenant(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
	e := open(t, t.TempDir(), clk)
	s := e.s
	s.Connected("acme:a", "acme", "mqtt", "10.0.0.1:1")
	s.Seen("acme:a", "acme", "coap")
	s.Seen("acme:b", "acme", "http")
	s.Connected("beta:a", "beta", "mqtt", "10.0.0.2:1")
	s.Connected("beta:b", "beta", "mqtt", "10.0.0.3:1")
	s.Disconnected("beta:b", "beta", "mqtt", ReasonClean)
	got := s.OnlineByTenant()
	if len(got) != 2 || got["acme"] != 2 || got["beta"] != 1 {
		t.Errorf("online by tenant %v, want acme 2, beta 1", got)
	}
	if n := s.OnlineCount(); n != 3 {
		t.Errorf("online count %d, want 3", n)
	}
	s.Disconnected("beta:a", "beta", "mqtt", ReasonNetwork)
	if got := s.OnlineByTenant(); len(got) != 1 || got["acme"] != 2 {
		t.Errorf("after beta went offline: %v", got)
	}
}

// TestRestartEndsSessions: a device online when the process stopped is
// offline at the next start, reason restart, with its last-seen kept.
func TestRestartEndsSessions(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
	e := open(t, dir, clk)
	e.s.Connected("acme:a", "acme", "mqtt", "10.0.0.1:1")
	e.s.Seen("acme:b", "acme", "coap")
	e.s.Seen("acme:a", "acme", "mqtt")
	seen := clk.now()
	e.close()
	clk.add(time.Hour)
	e = open(t, dir, clk)
	for _, code := range []string{"acme:a", "acme:b"} {
		st := e.state(code)
		if st.Online || st.LastReason != ReasonRestart || !st.LastSeen.Equal(seen) {
			t.Errorf("%s after restart: %+v", code, st)
		}
	}
	evs, _ := e.s.Events(context.Background(), Filter{Tenant: "acme"})
	if got := summary(evs[len(evs)-2:]); !strings.Contains(got, "acme:a disconnected/mqtt/restart/offline") ||
		!strings.Contains(got, "acme:b disconnected/coap/restart/offline") {
		t.Fatalf("events:\n%s", got)
	}
	online := true
	if l, _ := e.s.List(context.Background(), Filter{Tenant: "acme", Online: &online}); len(l) != 0 {
		t.Errorf("online after restart: %+v", l)
	}
}

// TestSeenConcurrent: accepting messages from a device already present never
// takes the write lock, so it runs alongside a flush.
func TestSeenConcurrent(t *testing.T) {
	clk := &clock{t: time.Now()}
	e := open(t, t.TempDir(), clk)
	e.s.Start()
	var wg sync.WaitGroup
	for d := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code := "acme:d" + string(rune('0'+d))
			e.s.Connected(code, "acme", "mqtt", "")
			for range 2000 {
				e.s.Seen(code, "acme", "mqtt")
				e.s.Seen(code, "acme", "http")
			}
			e.s.Disconnected(code, "acme", "mqtt", ReasonClean)
		}()
	}
	wg.Wait()
	e.flush()
	l, err := e.s.List(context.Background(), Filter{Tenant: "acme"})
	if err != nil || len(l) != 8 {
		t.Fatalf("%d states, %v", len(l), err)
	}
	for _, st := range l {
		if !st.Online || strings.Join(st.Protocols, ",") != "http" {
			t.Errorf("%+v", st)
		}
	}
}

// TestWakes: an uplink more than WakeGap after the previous one is a wake;
// OnWake hears of it, and Uplinks gives the latest uplink and the one
// before the latest wake, over any protocol; a device known only from the
// database has its last-seen time and no interval.
func TestWakes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	db, err := store.Open(ctx, filepath.Join(dir, "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mu sync.Mutex
	var woke []string
	s, err := Open(ctx, Options{DB: db, Now: clk.now, WakeGap: 10 * time.Second, OnWake: func(code string) {
		mu.Lock()
		woke = append(woke, code)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := clk.now()
	steps := []struct {
		after    time.Duration
		do       func()
		woke     bool
		last     time.Duration // since t0
		prev     time.Duration // since t0, -1: none
		protocol string
	}{
		{0, func() { s.Seen("acme:m", "acme", "coap") }, true, 0, -1, "first uplink"},
		{2 * time.Second, func() { s.Seen("acme:m", "acme", "coap") }, false, 2 * time.Second, -1, "same wake"},
		{time.Hour, func() { s.Seen("acme:m", "acme", "coap") }, true, time.Hour + 2*time.Second, 2 * time.Second, "next wake"},
		{time.Second, func() { s.Seen("acme:m", "acme", "mqtt") }, false, time.Hour + 3*time.Second, 2 * time.Second, "another protocol, same wake"},
		{time.Hour, func() { s.Connected("acme:m", "acme", "mqtt", "192.0.2.1:1") }, true, 2*time.Hour + 3*time.Second, time.Hour + 3*time.Second, "a session start"},
	}
	for _, st := range steps {
		clk.add(st.after)
		mu.Lock()
		woke = nil
		mu.Unlock()
		st.do()
		last, prev, err := s.Uplinks(ctx, "acme:m")
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		gotWoke := len(woke) == 1 && woke[0] == "acme:m"
		mu.Unlock()
		wantPrev := time.Time{}
		if st.prev >= 0 {
			wantPrev = t0.Add(st.prev)
		}
		if gotWoke != st.woke || !last.Equal(t0.Add(st.last)) || !prev.Equal(wantPrev) {
			t.Errorf("%s: woke %v last %v prev %v; want %v %v %v", st.protocol, gotWoke, last, prev, st.woke, t0.Add(st.last), wantPrev)
		}
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// A new run knows the device from the database only.
	s, err = Open(ctx, Options{DB: db, Now: clk.now, WakeGap: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(ctx)
	if last, prev, err := s.Uplinks(ctx, "acme:m"); err != nil || !last.Equal(t0.Add(2*time.Hour+3*time.Second)) || !prev.IsZero() {
		t.Errorf("after a restart: %v %v %v", last, prev, err)
	}
	if last, prev, err := s.Uplinks(ctx, "acme:never"); err != nil || !last.IsZero() || !prev.IsZero() {
		t.Errorf("a device never seen: %v %v %v", last, prev, err)
	}
}

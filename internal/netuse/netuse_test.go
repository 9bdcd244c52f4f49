package netuse

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
	"github.com/wanwu-iot/wanwu/internal/store"
)

var errUnknown = errors.New("unknown device")

// env is an Accountant over a database in a temporary directory, with a
// clock the test moves and networks it sets.
type env struct {
	t      *testing.T
	dir    string
	db     *store.DB
	events *eventstore.Store
	a      *Accountant
	reg    *prometheus.Registry

	mu       sync.Mutex
	now      time.Time
	networks map[string]string
	budgets  map[string]int64
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir(), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		networks: map[string]string{}, budgets: map[string]int64{}}
	e.open()
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func (e *env) open() {
	ctx := context.Background()
	var err error
	if e.db, err = store.Open(ctx, filepath.Join(e.dir, "wanwu.db"), store.Options{}); err != nil {
		e.t.Fatal(err)
	}
	if e.events, err = eventstore.Open(ctx, filepath.Join(e.dir, "events.db")); err != nil {
		e.t.Fatal(err)
	}
	e.reg = prometheus.NewRegistry()
	e.a, err = Open(ctx, Options{
		DB: e.db, Events: e.events, Now: e.clock, Metrics: e.reg,
		Network: func(_ context.Context, code string) (string, error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			n, ok := e.networks[code]
			if !ok {
				return "", errUnknown
			}
			return n, nil
		},
		Profile: func(name string) (netprofile.Profile, bool) {
			p, ok := netprofile.Lookup(name)
			e.mu.Lock()
			defer e.mu.Unlock()
			if b, set := e.budgets[name]; set {
				p.DailyBudget = b
			}
			return p, ok
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(e.close)
}

func (e *env) close() {
	if e.a == nil {
		return
	}
	if err := e.a.Shutdown(context.Background()); err != nil {
		e.t.Error(err)
	}
	e.events.Close()
	e.db.Close()
	e.a = nil
}

func (e *env) flush() {
	e.t.Helper()
	if err := e.a.Flush(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) budgetEvents(device string) []eventstore.Event {
	e.t.Helper()
	evs, err := e.events.Events(context.Background(), eventstore.EventFilter{Devices: []string{device}, Name: EventBudgetExceeded, End: time.Now().Add(1000 * 24 * time.Hour)})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func (e *env) days(code string, n int) []Usage {
	e.t.Helper()
	u, _, err := e.a.Days(context.Background(), code, e.networks[code], n)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// TestAccountant: meters attributed to devices are drained into their
// rows of the day; a meter's bytes from before its attribution count;
// the metrics agree with the rows; a budget crossing is recorded and its
// event written once, also across a restart; a new UTC day starts at
// zero; old rows are pruned.
func TestAccountant(t *testing.T) {
	e := newEnv(t)
	e.networks["acme:m1"], e.networks["acme:w1"], e.networks["acme:x"] = "nb-iot", "wlan", ""
	e.budgets["nb-iot"] = 1000

	var m1, m1b, w1, x Meter
	m1.Up(100) // a handshake before the device is known
	e.a.Attribute(&m1, "acme:m1", "acme")
	m1.Up(200)
	m1.Down(50)
	e.a.Attribute(&m1b, "acme:m1", "acme") // a second connection of the same device
	m1b.Down(25)
	e.a.Attribute(&w1, "acme:w1", "acme")
	w1.Up(5000)
	e.a.Attribute(&x, "acme:x", "acme")
	x.Down(7)
	var stray Meter // never attributed: not counted
	stray.Up(999)
	e.flush()

	want := map[string][2]int64{"acme:m1": {300, 75}, "acme:w1": {5000, 0}, "acme:x": {0, 7}}
	for code, w := range want {
		d := e.days(code, 1)[0]
		if d.Up != w[0] || d.Down != w[1] || d.Total != w[0]+w[1] || d.Day != "2026-03-01" {
			t.Errorf("%s: %+v, want up %d down %d", code, d, w[0], w[1])
		}
	}
	for _, c := range []struct {
		network, dir string
		want         float64
	}{{"nb-iot", "up", 300}, {"nb-iot", "down", 75}, {"wlan", "up", 5000}, {NoNetwork, "down", 7}} {
		if got := testutil.ToFloat64(e.a.bytes.WithLabelValues("acme", c.network, c.dir)); got != c.want {
			t.Errorf("wanwu_device_bytes_total{network=%s,direction=%s} = %v, want %v", c.network, c.dir, got, c.want)
		}
	}
	d := e.days("acme:m1", 1)[0]
	if d.Budget != 1000 || d.PercentUsed != 37.5 || d.Cost != 375.0/1e6 || d.Currency != Currency || d.OverBudgetAt != nil {
		t.Errorf("priced day %+v", d)
	}

	// Past the budget: one crossing, one event, one gauge count.
	m1.Up(700)
	e.flush()
	if evs := e.budgetEvents("acme:m1"); len(evs) != 1 || !strings.Contains(string(evs[0].Data), `"budget":1000`) {
		t.Fatalf("events after crossing %+v", evs)
	}
	if got := testutil.ToFloat64(e.a.over.WithLabelValues("acme", "nb-iot")); got != 1 {
		t.Errorf("over budget gauge %v", got)
	}
	if d := e.days("acme:m1", 1)[0]; d.OverBudgetAt == nil || d.PercentUsed <= 100 {
		t.Errorf("day after crossing %+v", d)
	}
	m1.Up(10)
	e.flush()
	if n := len(e.budgetEvents("acme:m1")); n != 1 {
		t.Errorf("%d events after more bytes, want still 1", n)
	}

	// The connection ends: its last bytes are written with the next flush.
	m1b.Down(5)
	e.a.Release(&m1b)
	m1b.Down(1000) // after the release: not the device's any more
	e.flush()
	if d := e.days("acme:m1", 1)[0]; d.Up != 1010 || d.Down != 80 {
		t.Errorf("after release %+v", d)
	}

	// A network change: the next bytes count under the new profile.
	e.networks["acme:w1"] = "ethernet"
	e.a.NetworkChanged("acme:w1", "ethernet")
	w1.Down(1)
	e.flush()
	if got := testutil.ToFloat64(e.a.bytes.WithLabelValues("acme", "ethernet", "down")); got != 1 {
		t.Errorf("bytes after a network change %v", got)
	}

	// A restart keeps the day's totals and its crossing: no second event.
	w1.Up(3)
	e.close()
	e.open()
	if d := e.days("acme:w1", 1)[0]; d.Up != 5003 || d.Network != "ethernet" {
		t.Errorf("after restart %+v", d)
	}
	if got := testutil.ToFloat64(e.a.over.WithLabelValues("acme", "nb-iot")); got != 1 {
		t.Errorf("over budget gauge after restart %v", got)
	}
	var m1c Meter
	e.a.Attribute(&m1c, "acme:m1", "acme")
	m1c.Up(1)
	e.flush()
	if n := len(e.budgetEvents("acme:m1")); n != 1 {
		t.Errorf("%d events after restart, want 1", n)
	}

	// Fleet view of today.
	nets, _, err := e.a.Networks(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]NetworkUsage{}
	for _, n := range nets {
		got[n.Network] = n
	}
	if n := got["nb-iot"]; n.Devices != 1 || n.Up != 1011 || n.Down != 80 || n.OverBudget != 1 || n.Budget != 1000 {
		t.Errorf("nb-iot today %+v", n)
	}
	if n := got[NoNetwork]; n.Devices != 1 || n.Down != 7 {
		t.Errorf("no network today %+v", n)
	}
	if other, _, _ := e.a.Networks(context.Background(), "beta"); len(other) != 0 {
		t.Errorf("another tenant sees %+v", other)
	}

	// The next UTC day starts at zero; yesterday keeps its row.
	e.advance(13 * time.Hour)
	m1c.Up(40)
	e.flush()
	days := e.days("acme:m1", 3)
	if len(days) != 3 || days[0].Day != "2026-03-02" || days[0].Up != 40 || days[0].OverBudgetAt != nil ||
		days[1].Day != "2026-03-01" || days[1].Up != 1011 || days[2].Total != 0 || days[2].Network != "nb-iot" {
		t.Errorf("days %+v", days)
	}
	if got := testutil.ToFloat64(e.a.over.WithLabelValues("acme", "nb-iot")); got != 0 {
		t.Errorf("over budget gauge on a new day %v", got)
	}

	e.advance(500 * 24 * time.Hour)
	if err := e.a.prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := e.days("acme:m1", 600); d[500].Day != "2026-03-02" || d[500].Total != 0 || d[501].Total != 0 {
		t.Errorf("old rows kept: %+v", d[500:502])
	}
}

// TestAccountantUnknownNetwork: a device the registry cannot name (yet)
// is counted without a network and looked up again at the next flush.
func TestAccountantUnknownNetwork(t *testing.T) {
	e := newEnv(t)
	var m Meter
	e.a.Attribute(&m, "acme:new", "acme")
	m.Up(10)
	e.flush()
	if got := testutil.ToFloat64(e.a.bytes.WithLabelValues("acme", NoNetwork, "up")); got != 10 {
		t.Errorf("unknown network: %v", got)
	}
	e.mu.Lock()
	e.networks["acme:new"] = "lte-cat1"
	e.mu.Unlock()
	m.Up(5)
	e.flush()
	if got := testutil.ToFloat64(e.a.bytes.WithLabelValues("acme", "lte-cat1", "up")); got != 5 {
		t.Errorf("after the network is known: %v", got)
	}
}

// TestNilAccountant: adapters without an Accountant call it all the same.
func TestNilAccountant(t *testing.T) {
	var a *Accountant
	var m Meter
	a.Attribute(&m, "acme:x", "acme")
	a.Release(&m)
	a.NetworkChanged("acme:x", "wlan")
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestPSMReach: reachable within the active timer after an uplink, then
// asleep until the interval between the last two wakes has passed again,
// or T3412 when that is not known or has passed; never expected in the past.
func TestPSMReach(t *testing.T) {
	s := netprofile.Sleep{PSM: true, ActiveTimer: 10 * time.Second, PeriodicUpdate: 24 * time.Hour}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name            string
		last, prev, now time.Time
		want            Reach
	}{
		{"never heard from", time.Time{}, time.Time{}, t0, Reach{Asleep: true}},
		{"just sent", t0, time.Time{}, t0.Add(3 * time.Second), Reach{}},
		{"asleep, interval unknown", t0, time.Time{}, t0.Add(11 * time.Second), Reach{Asleep: true, Next: t0.Add(24 * time.Hour)}},
		{"asleep, reports hourly", t0, t0.Add(-time.Hour), t0.Add(time.Minute), Reach{Asleep: true, Next: t0.Add(time.Hour)}},
		{"late for its hourly report", t0, t0.Add(-time.Hour), t0.Add(2 * time.Hour), Reach{Asleep: true, Next: t0.Add(24 * time.Hour)}},
		{"past its periodic update", t0, time.Time{}, t0.Add(25 * time.Hour), Reach{Asleep: true, Next: t0.Add(25 * time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := psmReach(s, tt.last, tt.prev, tt.now); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestReachability: only PSM profiles sleep; eDRX-only and unset profiles
// count as reachable; a network change is read again.
func TestReachability(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	networks := map[string]string{"acme:nb": "nb-iot", "acme:edrx": "lte-cat1", "acme:none": ""}
	lookups := 0
	r := NewReachability(ReachOptions{
		Network: func(_ context.Context, code string) (string, error) {
			lookups++
			return networks[code], nil
		},
		Profile: func(name string) (netprofile.Profile, bool) {
			p, ok := netprofile.Lookup(name)
			if name == "lte-cat1" {
				p.Sleep = netprofile.Sleep{EDRXCycle: 80 * time.Second}
			}
			return p, ok
		},
		Uplinks: func(context.Context, string) (time.Time, time.Time, error) { return t0, time.Time{}, nil },
		Now:     func() time.Time { return t0.Add(time.Minute) },
	})
	ctx := context.Background()
	for code, asleep := range map[string]bool{"acme:nb": true, "acme:edrx": false, "acme:none": false} {
		got, err := r.Reach(ctx, code)
		if err != nil || got.Asleep != asleep {
			t.Errorf("%s: %+v %v, want asleep %v", code, got, err, asleep)
		}
	}
	_, _ = r.Reach(ctx, "acme:nb")
	if lookups != 3 {
		t.Errorf("%d network lookups, want 3 (cached)", lookups)
	}
	networks["acme:nb"] = "wlan"
	r.NetworkChanged("acme:nb")
	if got, _ := r.Reach(ctx, "acme:nb"); got.Asleep {
		t.Errorf("after the change to wlan: %+v", got)
	}
	if g := WakeGap(netprofile.Lookup); g != 10*time.Second {
		t.Errorf("WakeGap = %v", g)
	}
}

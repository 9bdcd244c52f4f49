package rollout

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/store"
)

func testPlan() *Plan {
	p := &Plan{ID: "ro-1", Tenant: "demo", Artifact: "spindle-normal", Version: "2", Baseline: "1",
		Targets: Targets{Hub: true}, State: Running,
		Stages: StageSpecs{Shadow: StageSpec{MinSamples: 50, MinDuration: Duration(time.Minute)},
			Canary: StageSpec{MinSamples: 50, MinDuration: Duration(time.Minute)}, JudgeAfter: 20}}
	p.Defaults()
	return p
}

func TestEvaluate(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	good := map[string]float64{FigureErrorRate: 0, FigureLatencyP99: 1, FigureScoreShift: 0.02, FigureDisagreement: 0.01}
	with := func(k string, v float64) map[string]float64 {
		m := map[string]float64{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	forced := testPlan()
	forced.Force = &Force{Stage: Active, By: "ops", Reason: "urgent"}
	nodeForced := testPlan()
	nodeForced.NodeForce = map[string]*Force{"hub": {Stage: RolledBack, By: "ops"}}
	aborted := testPlan()
	aborted.State = Aborted
	cases := []struct {
		name    string
		plan    *Plan
		stage   string
		age     time.Duration
		samples int
		values  map[string]float64
		to      string
		reason  string
	}{
		{"shadow too few samples", testPlan(), Shadow, 2 * time.Minute, 10, good, "", "10 of 50 samples"},
		{"shadow too young", testPlan(), Shadow, 30 * time.Second, 60, good, "", "30s of 1m0s"},
		{"shadow promoted", testPlan(), Shadow, 2 * time.Minute, 60, good, Canary, "gates passed after 60 samples"},
		{"canary promoted", testPlan(), Canary, 2 * time.Minute, 60, good, Active, "gates passed"},
		{"error rate rolls back", testPlan(), Shadow, time.Second, 25, with(FigureErrorRate, 0.2), RolledBack, "error_rate 0.2 above 0.01"},
		{"failing gate before judge_after waits", testPlan(), Shadow, time.Second, 5, with(FigureErrorRate, 1), "", "5 of 50 samples"},
		{"disagreement in canary", testPlan(), Canary, time.Hour, 500, with(FigureDisagreement, 0.5), RolledBack, "disagreement 0.5 above 0.05"},
		{"score shift", testPlan(), Shadow, time.Hour, 500, with(FigureScoreShift, 3), RolledBack, "score_shift 3 above 0.25"},
		{"false alarms", testPlan(), Canary, time.Hour, 500, with(FigureFalseAlarmRate, 0.5), RolledBack, "false_alarm_rate"},
		{"latency", testPlan(), Canary, time.Hour, 500, with(FigureLatencyP99, 80), RolledBack, "latency_p99_ms 80 above 20"},
		{"unmeasured gate does not hold", testPlan(), Shadow, time.Hour, 500, map[string]float64{FigureErrorRate: 0}, Canary, "gates passed"},
		{"active is final", testPlan(), Active, time.Hour, 500, with(FigureErrorRate, 1), "", "final"},
		{"forced", forced, Shadow, 0, 0, nil, Active, "forced by ops: urgent"},
		{"node forced", nodeForced, Canary, 0, 0, nil, RolledBack, "forced by ops"},
		{"aborted plan", aborted, Canary, 0, 0, nil, RolledBack, "was rolled back"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Evaluate(c.plan, HubNode, c.stage, t0, Figures{Samples: c.samples, Values: c.values}, t0.Add(c.age))
			if v.To != c.to || !strings.Contains(v.Reason, c.reason) {
				t.Fatalf("got to %q reason %q; want to %q reason containing %q", v.To, v.Reason, c.to, c.reason)
			}
		})
	}
}

func TestParsePlan(t *testing.T) {
	p, err := ParsePlan([]byte(`{"artifact":"m","version":"3","targets":{"edges":["demo:edge-1"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != KindModel || p.Canary.Fraction != DefaultFraction || p.Stages.Shadow.MinSamples != DefaultMinSamples || len(p.Gates) != len(DefaultGates) {
		t.Fatalf("defaults not filled: %+v", p)
	}
	for _, c := range []struct{ body, want string }{
		{`{"artifact":"m","version":"3"}`, "targets"},
		{`{"artifact":"M!","version":"3","targets":{"hub":true}}`, "artifact"},
		{`{"artifact":"m","version":"x","targets":{"hub":true}}`, "version"},
		{`{"artifact":"m","version":"3","baseline":"3","targets":{"hub":true}}`, "baseline"},
		{`{"artifact":"m","version":"3","targets":{"hub":true},"canary":{"fraction":2}}`, "canary.fraction"},
		{`{"artifact":"m","version":"3","targets":{"hub":true},"gates":{"speed":{"max":1}}}`, "gates.speed"},
		{`{"artifact":"m","version":"3","targets":{"hub":true},"gates":{"error_rate":{"max":-1}}}`, "gates.error_rate.max"},
		{`{"artifact":"m","version":"3","targets":{"hub":true},"stages":{"shadow":{"min_duration":"soon"}}}`, "duration"},
		{`{"artifact":"m","version":"3","targets":{"hub":true},"colour":1}`, "unknown field"},
		{`{"artifact":"m","version":"3","targets":{"sites":["plant"]}}`, "targets.sites[0]: must be tenant:site"},
	} {
		if _, err := ParsePlan([]byte(c.body)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an invalid plan naming %s", c.body, err, c.want)
		}
	}
}

func TestSites(t *testing.T) {
	p, err := ParsePlan([]byte(`{"artifact":"m","version":"3","targets":{"sites":["acme:plant-2"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.TargetsNode(HubNode, false) || !p.TargetsNode("acme:edge-1", true) || p.TargetsNode("acme:edge-2", false) {
		t.Error("a plan of sites alone runs wherever the artifact is used")
	}
	if !p.InSites("acme:plant-2") || p.InSites("acme:plant-1") || p.InSites("") {
		t.Error("InSites")
	}
	p.Targets.Edges = []string{"acme:edge-1"}
	if p.TargetsNode(HubNode, true) || !p.TargetsNode("acme:edge-1", true) || p.TargetsNode("acme:edge-2", true) {
		t.Error("sites with edges: those edges, for the sites' objects")
	}
}

func TestInCanaryIsStableAndProportional(t *testing.T) {
	p := testPlan()
	p.Canary = CanarySpec{Fraction: 0.25, Objects: []string{"demo:listed"}}
	in := 0
	for i := range 4000 {
		code := fmt.Sprintf("demo:obj-%d", i)
		if p.InCanary(code) != p.InCanary(code) {
			t.Fatal("not stable")
		}
		if p.InCanary(code) {
			in++
		}
	}
	if in < 850 || in > 1150 {
		t.Fatalf("%d of 4000 in a 25%% canary", in)
	}
	if !p.InCanary("demo:listed") {
		t.Fatal("a listed object is not in the canary")
	}
}

type env struct {
	ctx   context.Context
	st    *Store
	audit *audit.Log
	now   time.Time
	mu    sync.Mutex
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

func open(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, key, _ := ed25519.GenerateKey(nil)
	al, err := audit.Open(ctx, db.W, key, "wanwu.hub/test")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ctx: ctx, audit: al, now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	if e.st, err = Open(ctx, Options{DB: db, Audit: al, Now: e.clock}); err != nil {
		t.Fatal(err)
	}
	return e
}

// fakeMeter gives the figures a test sets.
type fakeMeter struct {
	mu     sync.Mutex
	f      Figures
	resets int
}

func (m *fakeMeter) Figures(string) Figures {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.f
}

func (m *fakeMeter) Reset(string) {
	m.mu.Lock()
	m.resets++
	m.f = Figures{}
	m.mu.Unlock()
}

func (m *fakeMeter) set(samples int, v map[string]float64) {
	m.mu.Lock()
	m.f = Figures{Samples: samples, Values: v}
	m.mu.Unlock()
}

func kinds(t *testing.T, e *env) []string {
	t.Helper()
	n, err := e.audit.Size(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, err := e.audit.Entries(e.ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, en := range all {
		out = append(out, en.Kind)
	}
	return out
}

// A plan moves through shadow and canary to active at the node by its
// gates, every step a record with its figures and an audit entry; the
// assignment says what the node runs at each stage.
func TestControllerPromotesAndRollsBack(t *testing.T) {
	e := open(t)
	m := &fakeMeter{}
	var recs []*Record
	c, err := NewController(ControllerOptions{Store: e.st, Node: HubNode, Meter: m, Now: e.clock,
		OnRecord: func(_ context.Context, r *Record) { recs = append(recs, r) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Lookup("demo", KindModel, "spindle-normal"); ok {
		t.Fatal("an assignment before any plan")
	}
	p := testPlan()
	p.ID = ""
	if _, err := e.st.Create(e.ctx, "alice", p); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Create(e.ctx, "alice", testPlan()); !errors.Is(err, ErrConflict) {
		t.Fatalf("a second running plan of the model: %v", err)
	}
	step := func(samples int, v map[string]float64, d time.Duration) Assignment {
		t.Helper()
		m.set(samples, v)
		e.advance(d)
		if err := c.Evaluate(e.ctx); err != nil {
			t.Fatal(err)
		}
		a, ok := c.Lookup("demo", KindModel, "spindle-normal")
		if !ok {
			t.Fatal("no assignment")
		}
		return a
	}
	good := map[string]float64{FigureErrorRate: 0, FigureDisagreement: 0}
	if a := step(0, nil, 0); a.Stage != Shadow || a.Version != "1" || a.Plan == nil {
		t.Fatalf("after deploy: %+v", a)
	}
	if a := step(60, good, 2*time.Minute); a.Stage != Canary {
		t.Fatalf("after a good shadow: %+v", a)
	}
	if a := step(60, good, 2*time.Minute); a.Stage != "" || a.Plan != nil || a.Version != "2" {
		t.Fatalf("after a good canary: %+v", a)
	}
	if len(recs) != 3 || recs[2].To != Active || recs[2].Figures.Samples != 60 || len(recs[2].Results) == 0 {
		t.Fatalf("records: %+v", recs)
	}
	got, err := e.st.Records(e.ctx, "demo", "ro-1", 0)
	if err != nil || len(got) != 3 || got[0].To != Shadow || got[1].To != Canary || got[2].To != Active || got[2].Seq != 3 {
		t.Fatalf("stored records %+v, %v", got, err)
	}

	// The next version fails its error gate in shadow: rolled back, the
	// node runs version 2 still.
	if _, err := e.st.SetState(e.ctx, "rollout", "demo", "ro-1", Done, "active at hub"); err != nil {
		t.Fatal(err)
	}
	p3 := testPlan()
	p3.Version, p3.Baseline = "3", "2"
	if _, err := e.st.Create(e.ctx, "alice", p3); err != nil {
		t.Fatal(err)
	}
	if a := step(0, nil, 0); a.Stage != Shadow || a.Plan.Version != "3" || a.Version != "2" {
		t.Fatalf("v3 in shadow: %+v", a)
	}
	if a := step(25, map[string]float64{FigureErrorRate: 0.5}, time.Second); a.Plan != nil || a.Version != "2" {
		t.Fatalf("after v3's gate failed: %+v", a)
	}
	last := recs[len(recs)-1]
	if last.To != RolledBack || !strings.Contains(last.Reason, "error_rate 0.5 above 0.01") {
		t.Fatalf("rollback record %+v", last)
	}
	if m.resets != 5 {
		t.Fatalf("meter reset %d times, want one per stage change (5)", m.resets)
	}
	k := strings.Join(kinds(t, e), " ")
	if strings.Count(k, KindStage) != 5 || strings.Count(k, KindCreated) != 2 || strings.Count(k, KindState) != 1 {
		t.Fatalf("audit kinds %s", k)
	}
}

// An operator's promotion and rollback reach the node through the plan;
// a global rollback ends the plan; an edge's records are imported once.
func TestForceAndImport(t *testing.T) {
	e := open(t)
	p := testPlan()
	p.Targets = Targets{Hub: true, Edges: []string{"demo:edge-1"}}
	p, err := e.st.Create(e.ctx, "alice", p)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewController(ControllerOptions{Store: e.st, Node: HubNode, Now: e.clock})
	if err := c.Evaluate(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.ForceStage(e.ctx, "bob", "demo", p.ID, HubNode, Canary, "look at it"); err != nil {
		t.Fatal(err)
	}
	if err := c.Evaluate(e.ctx); err != nil {
		t.Fatal(err)
	}
	if a, _ := c.Lookup("demo", KindModel, p.Artifact); a.Stage != Canary {
		t.Fatalf("after a forced canary: %+v", a)
	}
	rec := &Record{Plan: p.ID, Tenant: "demo", Node: "demo:edge-1", Seq: 1, At: e.clock(), To: Shadow, Reason: "deployed"}
	for range 2 {
		if err := e.st.Import(e.ctx, "demo:edge-1", rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.st.Import(e.ctx, "demo:edge-2", rec); !errors.Is(err, ErrInvalid) {
		t.Fatalf("another edge's record: %v", err)
	}
	other := *rec
	other.Tenant = "acme"
	if err := e.st.Import(e.ctx, "demo:edge-1", &other); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a record of another tenant's plan: %v", err)
	}
	nodes, _ := e.st.Nodes(e.ctx, p.ID)
	if len(nodes) != 2 || nodes[0].Node != "demo:edge-1" || nodes[1].Stage != Canary {
		t.Fatalf("nodes %+v", nodes)
	}
	if _, err := e.st.ForceStage(e.ctx, "bob", "demo", p.ID, "", RolledBack, "wrong data"); err != nil {
		t.Fatal(err)
	}
	got, _ := e.st.Get(e.ctx, "demo", p.ID)
	if got.State != Aborted || got.Rev != 3 {
		t.Fatalf("after a global rollback: %+v", got)
	}
	if err := c.Evaluate(e.ctx); err != nil {
		t.Fatal(err)
	}
	if a, _ := c.Lookup("demo", KindModel, p.Artifact); a.Plan != nil || a.Version != "1" {
		t.Fatalf("after the rollback: %+v", a)
	}
	if _, err := e.st.ForceStage(e.ctx, "bob", "demo", p.ID, "", Active, ""); !errors.Is(err, ErrConflict) {
		t.Fatalf("promoting an ended rollout: %v", err)
	}
	// The edge keeps the hub's plan by revision.
	e2 := open(t)
	if ok, err := e2.st.Put(e2.ctx, got); !ok || err != nil {
		t.Fatal(ok, err)
	}
	older := *got
	older.Rev = 1
	if ok, _ := e2.st.Put(e2.ctx, &older); ok {
		t.Fatal("an older revision replaced a newer one")
	}
}

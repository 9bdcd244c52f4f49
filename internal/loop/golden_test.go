package loop

// Golden tests: scripts in testdata/*.test drive an engine over real
// services (SQLite, the registry, twins, commands, alarms) with a clock
// the script moves, and state what must come out, record by record.
//
// Script lines (# starts a comment):
//
//	object <code> model=<id> [path=a/b] [tags=k:v,...] [edge=<code>]
//	loop                      # a definition follows, YAML, up to "end"
//	...
//	end
//	mode <loop key> <mode>
//	at <duration>             # the clock: the base time plus it
//	sample <code> <prop>=<number|true|false> ... [t=<duration>]   # at the clock, or at base+t
//	reported <code> <JSON>    # the device reports twin state
//	desired <code> <JSON>     # an operator sets desired state
//	tick                      # the engine's periodic work
//	result <code> succeeded|failed   # the device answers its latest command
//	vote <evidence #> <actor> approve|reject
//	kill loop|site <target> <reason...> / release loop|site <target>
//	bypass <loop key> guard=<g> by=<actor> approver=<actor> for=<duration> [object=<code>]
//	expect evidence <kind> <state> [loop=] [object=] [refusal=] [alarm=yes] [event=name]
//	       [args.<n>=v] [desired.<n>=v] [guard.<name>=<outcome>] [outcome~<text>] [feature.<n>=v]
//	expect no evidence        # nothing new since the last expect
//	expect record <id> <state> [...as above]   # a record written earlier, as it is now
//	expect alarm <code> <name> <state>
//	expect counts <loop key> <state>=<n> ... refused.<guard kind>=<n>
//	expect error <substring>  # the previous command (loop, vote, bypass) failed so
//
// Every record must be expected, in order: a script ends with nothing left.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/examples/models"
	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

var goldenBase = time.Date(2026, 6, 1, 2, 0, 0, 0, time.UTC) // 10:00 in Asia/Shanghai

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// env is an engine over real services, driven by hand (its goroutine
// does not run: the test calls what the goroutine would).
type env struct {
	t        testing.TB
	ctx      context.Context
	clock    *clock
	db       *store.DB
	reg      *registry.Registry
	twins    *twin.Service
	commands *command.Service
	alarms   *alarm.Service
	engine   *Engine
	events   []ingest.Message
	mu       sync.Mutex
}

func newEnv(t testing.TB, role, edge string) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{t: t, ctx: ctx, clock: &clock{t: goldenBase}}
	var err error
	if e.db, err = store.Open(ctx, filepath.Join(dir, "wanwu.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	log, err := audit.Open(ctx, e.db.W, key, "wanwu.hub/test")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := ca.LoadOrCreate(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if e.reg, err = registry.New(registry.Options{DB: e.db, CA: c, Signer: key, Audit: log, DeploymentID: "0123456789abcdef", Now: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.CreateTenant(ctx, "test", "demo", "Demo", ""); err != nil {
		t.Fatal(err)
	}
	docs, _ := models.FS.ReadDir(".")
	for _, d := range docs {
		if !strings.HasSuffix(d.Name(), ".model.json") {
			continue
		}
		b, _ := models.FS.ReadFile(d.Name())
		if _, _, err := e.reg.RegisterModel(ctx, "test", b, nil); err != nil {
			t.Fatal(err)
		}
	}
	modelOf := func(ctx context.Context, code string) (*thingmodel.Model, error) {
		o, err := e.reg.Object(ctx, code)
		if err != nil {
			return nil, err
		}
		return e.reg.ModelOf(ctx, o)
	}
	if e.twins, err = twin.Open(ctx, twin.Options{DB: e.db, Audit: log, Now: e.clock.Now, Model: modelOf}); err != nil {
		t.Fatal(err)
	}
	if e.commands, err = command.Open(ctx, command.Options{DB: e.db, Audit: log, Now: e.clock.Now, Model: modelOf}); err != nil {
		t.Fatal(err)
	}
	if e.alarms, err = alarm.Open(ctx, alarm.Options{DB: e.db, Audit: log, Now: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(ctx, e.db, log, nil, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if e.engine, err = NewEngine(Options{
		Store: st, Objects: e.reg, Commands: e.commands, Twins: e.twins, Alarms: e.alarms,
		Emit: func(_ context.Context, m ingest.Message) error {
			e.mu.Lock()
			e.events = append(e.events, m)
			e.mu.Unlock()
			return nil
		},
		Role: role, Edge: edge, Now: e.clock.Now,
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.engine.load(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) object(code, model, path, tags, edge string) {
	e.t.Helper()
	req := registry.RegisterRequest{Code: code, Kind: "device", Tags: map[string]string{}, Edge: edge}
	if model != "" {
		id, ver, _ := strings.Cut(model, "@")
		if ver == "" {
			ver = "1.0.0"
		}
		req.Model = &registry.ModelRef{ID: id, Version: ver}
	}
	if path != "" {
		req.Path = strings.Split(path, "/")
	}
	for _, kv := range strings.Split(tags, ",") {
		if k, v, ok := strings.Cut(kv, ":"); ok {
			req.Tags[k] = v
		}
	}
	if edge != "" {
		if _, err := e.reg.Object(e.ctx, edge); err != nil {
			if _, err := e.reg.Register(e.ctx, "test", registry.RegisterRequest{Code: edge, Kind: "edge"}); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	if _, err := e.reg.Register(e.ctx, "test", req); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) sample(code string, at time.Time, kv map[string]any) {
	msg := ingest.Message{Device: code, Tenant: strings.SplitN(code, ":", 2)[0], Kind: ingest.Telemetry, Received: at.UnixMilli()}
	for _, k := range slices.Sorted(mapsKeys(kv)) {
		r := ingest.Record{Property: k, Time: at.UnixMilli()}
		switch v := kv[k].(type) {
		case bool:
			r.Kind, r.Bool = ingest.KindBool, v
		case float64:
			r.Kind, r.Float = ingest.KindFloat, v
		}
		msg.Records = append(msg.Records, r)
	}
	e.feed([]ingest.Message{msg})
}

// feed hands messages to the engine as the pipeline would, and runs the
// batch as the engine's goroutine would.
func (e *env) feed(msgs []ingest.Message) {
	var out []sample
	e.engine.collect(msgs, &out)
	e.engine.ingest(e.ctx, out)
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.test"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden scripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".test"), func(t *testing.T) { runScript(t, f) })
	}
}

func runScript(t *testing.T, file string) {
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	e := newEnv(t, "hub", "")
	var seen int64 // the last evidence id expected
	var lastErr error
	errChecked := false
	lineNo := 0
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s:%d: %s", file, lineNo, fmt.Sprintf(format, args...))
	}
	next := func() *Evidence {
		evs, err := e.engine.opts.Store.ListEvidence(e.ctx, EvidenceFilter{Limit: 1000})
		if err != nil {
			fail("%v", err)
		}
		slices.Reverse(evs)
		for _, ev := range evs {
			if ev.ID > seen {
				return ev
			}
		}
		return nil
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		args := kvArgs(f[1:])
		if f[0] != "expect" {
			if lastErr != nil && !errChecked {
				fail("unexpected error: %v", lastErr)
			}
			lastErr, errChecked = nil, false
		}
		switch f[0] {
		case "role":
			e = newEnv(t, f[1], args["edge"])
		case "object":
			e.object(f[1], args["model"], args["path"], args["tags"], args["edge"])
		case "loop":
			var doc strings.Builder
			for sc.Scan() {
				lineNo++
				if strings.TrimSpace(sc.Text()) == "end" {
					break
				}
				doc.WriteString(sc.Text() + "\n")
			}
			_, _, lastErr = e.engine.Define(e.ctx, "author", "demo", []byte(doc.String()))
			if err := e.engine.load(e.ctx); err != nil {
				fail("%v", err)
			}
		case "mode":
			_, lastErr = e.engine.SetMode(e.ctx, "author", f[1], Mode(f[2]))
			if err := e.engine.load(e.ctx); err != nil {
				fail("%v", err)
			}
		case "at":
			d, err := time.ParseDuration(f[1])
			if err != nil {
				fail("%v", err)
			}
			e.clock.set(goldenBase.Add(d))
		case "sample":
			at := e.clock.Now()
			kv := map[string]any{}
			for _, a := range f[2:] {
				k, v, _ := strings.Cut(a, "=")
				if k == "t" {
					d, err := time.ParseDuration(v)
					if err != nil {
						fail("%v", err)
					}
					at = goldenBase.Add(d)
					continue
				}
				switch v {
				case "true", "false":
					kv[k] = v == "true"
				default:
					x, err := strconv.ParseFloat(v, 64)
					if err != nil {
						fail("%s: %v", a, err)
					}
					kv[k] = x
				}
			}
			e.sample(f[1], at, kv)
		case "reported":
			if _, err := e.twins.Report(e.ctx, f[1], []byte(strings.Join(f[2:], " "))); err != nil {
				fail("%v", err)
			}
		case "desired":
			if _, err := e.twins.SetDesired(e.ctx, "operator", f[1], []byte(strings.Join(f[2:], " ")), -1); err != nil {
				fail("%v", err)
			}
		case "tick":
			e.engine.tick(e.ctx)
		case "result":
			cmds, err := e.commands.List(e.ctx, f[1], "", 1)
			if err != nil || len(cmds) == 0 {
				fail("no command for %s: %v", f[1], err)
			}
			if _, err := e.commands.Result(e.ctx, f[1], cmds[0].ID, command.Result{Status: f[2]}); err != nil {
				fail("%v", err)
			}
		case "vote":
			n, _ := strconv.ParseInt(f[1], 10, 64)
			_, lastErr = e.engine.vote(e.ctx, f[2], n, f[3] == "approve", "")
		case "kill":
			tenant, _, _ := strings.Cut(f[2], ":")
			lastErr = e.engine.opts.Store.Kill(e.ctx, "op", f[1], f[2], tenant, strings.Join(f[3:], " "))
			_ = e.engine.load(e.ctx)
		case "release":
			tenant, _, _ := strings.Cut(f[2], ":")
			_, lastErr = e.engine.opts.Store.Release(e.ctx, "op", f[1], f[2], tenant)
			_ = e.engine.load(e.ctx)
		case "bypass":
			d, _ := time.ParseDuration(args["for"])
			tenant, _, _ := strings.Cut(f[1], ":")
			var b *Bypass
			b, lastErr = e.engine.opts.Store.RequestBypass(e.ctx, args["by"], Bypass{Loop: f[1], Tenant: tenant, Object: args["object"], Guard: args["guard"], Reason: "golden test", Duration: d})
			if lastErr == nil && args["approver"] != "" {
				_, lastErr = e.engine.opts.Store.VoteBypass(e.ctx, args["approver"], b.ID, true, "")
			}
			_ = e.engine.load(e.ctx)
		case "expect":
			switch {
			case f[1] == "error":
				want := strings.Join(f[2:], " ")
				if lastErr == nil || !strings.Contains(lastErr.Error(), want) {
					fail("want an error containing %q, got %v", want, lastErr)
				}
				errChecked = true
			case f[1] == "record":
				n, _ := strconv.ParseInt(f[2], 10, 64)
				ev, err := e.engine.opts.Store.GetEvidence(e.ctx, n)
				if err != nil {
					fail("%v", err)
				}
				checkEvidence(t, fail, ev, ev.Kind, f[3], kvArgs(f[4:]))
			case f[1] == "counts":
				all, err := e.engine.opts.Store.Counts(e.ctx, "")
				if err != nil {
					fail("%v", err)
				}
				c := all[f[2]]
				if c == nil {
					fail("no counts for %s", f[2])
				}
				for k, v := range kvArgs(f[3:]) {
					got := c.States[k]
					if r, ok := strings.CutPrefix(k, "refused."); ok {
						got = c.Refusals[r]
					}
					if strconv.Itoa(got) != v {
						fail("counts of %s: %s = %d, want %s (%+v)", f[2], k, got, v, c)
					}
				}
			case f[1] == "no":
				if ev := next(); ev != nil {
					fail("want no new evidence, got %s", describe(ev))
				}
			case f[1] == "alarm":
				as, err := e.alarms.List(e.ctx, alarm.Filter{Object: f[2]})
				if err != nil {
					fail("%v", err)
				}
				var got []string
				found := false
				for _, a := range as {
					got = append(got, a.Name+"="+string(a.State))
					if a.Name == f[3] && string(a.State) == f[4] {
						found = true
					}
				}
				if !found {
					fail("want alarm %s %s on %s, have %v", f[3], f[4], f[2], got)
				}
			case f[1] == "evidence":
				if lastErr != nil && !errChecked {
					fail("unexpected error: %v", lastErr)
				}
				ev := next()
				if ev == nil {
					fail("want evidence %s %s, got none", f[2], f[3])
				}
				seen = ev.ID
				checkEvidence(t, fail, ev, f[2], f[3], kvArgs(f[4:]))
			case f[1] == "event":
				e.mu.Lock()
				n := len(e.events)
				var last ingest.Message
				if n > 0 {
					last = e.events[n-1]
					e.events = e.events[:0]
				}
				e.mu.Unlock()
				if n == 0 || last.Event != f[2] {
					fail("want event %s, got %d events (last %q)", f[2], n, last.Event)
				}
			default:
				fail("unknown expectation %q", f[1])
			}
		default:
			fail("unknown command %q", f[0])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if lastErr != nil && !errChecked {
		t.Fatalf("%s: unexpected error at the end: %v", file, lastErr)
	}
	if ev := next(); ev != nil {
		t.Fatalf("%s: evidence not expected by the script: %s", file, describe(ev))
	}
}

func kvArgs(f []string) map[string]string {
	m := map[string]string{}
	for _, a := range f {
		if k, v, ok := strings.Cut(a, "~"); ok && !strings.Contains(k, "=") {
			m[k+"~"] = v
			continue
		}
		if k, v, ok := strings.Cut(a, "="); ok {
			m[k] = v
		}
	}
	return m
}

func describe(ev *Evidence) string {
	b, _ := json.Marshal(map[string]any{"id": ev.ID, "loop": ev.Loop, "object": ev.Object, "kind": ev.Kind, "state": ev.State, "refusal": ev.Refusal, "outcome": ev.Outcome, "action": ev.Action, "guards": ev.Guards, "error": ev.Error, "features": ev.Features})
	return string(b)
}

func checkEvidence(t *testing.T, fail func(string, ...any), ev *Evidence, kind, state string, want map[string]string) {
	t.Helper()
	if ev.Kind != kind || ev.State != state {
		fail("want evidence %s %s, got %s", kind, state, describe(ev))
	}
	num := func(k, v string, got float64, ok bool) {
		w, err := strconv.ParseFloat(v, 64)
		if err != nil {
			fail("%s: %v", k, err)
		}
		if !ok || math.Abs(got-w) > 1e-6*math.Max(1, math.Abs(w)) {
			fail("%s: want %v, got %v (present %v) in %s", k, w, got, ok, describe(ev))
		}
	}
	for k, v := range want {
		switch {
		case k == "loop":
			if ev.Loop != v {
				fail("loop: want %s, got %s", v, ev.Loop)
			}
		case k == "object":
			if ev.Object != v {
				fail("object: want %s, got %s", v, ev.Object)
			}
		case k == "refusal":
			if ev.Refusal != v {
				fail("refusal: want %q, got %q in %s", v, ev.Refusal, describe(ev))
			}
		case k == "alarm":
			if (ev.Alarm != "") != (v == "yes") {
				fail("alarm: want %s, got %q", v, ev.Alarm)
			}
		case k == "event":
			if ev.Event != v {
				fail("event: want %q, got %q", v, ev.Event)
			}
		case k == "outcome~":
			if !strings.Contains(ev.Outcome, v) {
				fail("outcome: want it to contain %q, got %q", v, ev.Outcome)
			}
		case k == "error~":
			if !strings.Contains(ev.Error, v) {
				fail("error: want it to contain %q, got %q", v, ev.Error)
			}
		case strings.HasPrefix(k, "args."), strings.HasPrefix(k, "desired."):
			if ev.Action == nil {
				fail("%s: no action in %s", k, describe(ev))
			}
			m := ev.Action.Args
			if strings.HasPrefix(k, "desired.") {
				m = ev.Action.Desired
			}
			x, ok := m[strings.SplitN(k, ".", 2)[1]].(float64)
			num(k, v, x, ok)
		case strings.HasPrefix(k, "feature."):
			x, ok := ev.Features[strings.TrimPrefix(k, "feature.")]
			num(k, v, x, ok)
		case strings.HasPrefix(k, "guard."):
			name := strings.TrimPrefix(k, "guard.")
			found := false
			for _, r := range ev.Guards {
				if r.Guard == name {
					found = true
					if string(r.Outcome) != v {
						fail("guard %s: want %s, got %s (%s)", name, v, r.Outcome, r.Detail)
					}
				}
			}
			if !found {
				fail("guard %s: no result in %s", name, describe(ev))
			}
		default:
			fail("unknown evidence field %q", k)
		}
	}
}

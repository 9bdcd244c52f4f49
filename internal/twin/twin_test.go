package twin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// thermostat is the model most tests use.
const thermostat = `{
  "id": "acme:thermostat", "version": "1.0.0",
  "properties": {
    "temperature": {"type": "number", "unit": "Cel", "minimum": -40, "maximum": 125, "readOnly": true},
    "setpoint":    {"type": "number", "unit": "Cel", "minimum": 5, "maximum": 125},
    "mode":        {"type": "string", "enum": ["auto", "manual"]},
    "on":          {"type": "boolean"},
    "fan":         {"type": "integer", "minimum": 0, "maximum": 3},
    "where":       {"type": "position"},
    "schedule":    {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "config":      {"type": "object", "properties": {"limits": {"type": "object", "properties": {"rpm": {"type": "integer", "maximum": 3000}}}, "label": {"type": "string"}}}
  }
}`

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testEnv is a twin service on a real SQLite file with a real audit log, a
// fake clock, and recorders for OnChange and OnAudit.
type testEnv struct {
	tb     testing.TB
	ctx    context.Context
	dir    string
	db     *store.DB
	audit  *audit.Log
	svc    *Service
	clock  *fakeClock
	models map[string]*thingmodel.Model // by code; absent → ErrNotFound

	mu      sync.Mutex
	changes []Change
	audits  int
}

func newEnv(tb testing.TB, dir string, edit func(*Options)) *testEnv {
	tb.Helper()
	m, err := thingmodel.Parse([]byte(thermostat))
	if err != nil {
		tb.Fatal(err)
	}
	e := &testEnv{
		tb: tb, ctx: context.Background(), dir: dir,
		clock:  &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)},
		models: map[string]*thingmodel.Model{"acme:t-1": m, "acme:t-2": m, "acme:free": nil, "beta:free": nil},
	}
	e.open(edit)
	return e
}

func (e *testEnv) open(edit func(*Options)) {
	tb := e.tb
	tb.Helper()
	var err error
	if e.db, err = store.Open(e.ctx, filepath.Join(e.dir, "wanwu.db"), store.Options{}); err != nil {
		tb.Fatal(err)
	}
	db := e.db
	tb.Cleanup(func() { db.Close() })
	signer, _, err := keys.LoadOrCreateEd25519(filepath.Join(e.dir, "signing.key"))
	if err != nil {
		tb.Fatal(err)
	}
	if e.audit, err = audit.Open(e.ctx, e.db.W, signer, "wanwu.hub/test"); err != nil {
		tb.Fatal(err)
	}
	opts := Options{
		DB: e.db, Audit: e.audit, Now: e.clock.Now,
		Model: func(_ context.Context, c string) (*thingmodel.Model, error) {
			m, ok := e.models[c]
			if !ok {
				return nil, fmt.Errorf("registry says: %w", ErrNotFound)
			}
			return m, nil
		},
		OnAudit: func() {
			e.mu.Lock()
			e.audits++
			e.mu.Unlock()
		},
		OnChange: func(c Change) {
			e.mu.Lock()
			e.changes = append(e.changes, c)
			e.mu.Unlock()
		},
	}
	if edit != nil {
		edit(&opts)
	}
	if e.svc, err = Open(e.ctx, opts); err != nil {
		tb.Fatal(err)
	}
}

// reopen closes the database and opens everything again on the same files.
func (e *testEnv) reopen() {
	e.tb.Helper()
	if err := e.db.Close(); err != nil {
		e.tb.Fatal(err)
	}
	e.open(nil)
}

func (e *testEnv) takeChanges() []Change {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.changes
	e.changes = nil
	return c
}

func (e *testEnv) report(c, patch string) *Twin {
	e.tb.Helper()
	tw, err := e.svc.Report(e.ctx, c, []byte(patch))
	if err != nil {
		e.tb.Fatalf("Report(%s, %s): %v", c, patch, err)
	}
	return tw
}

func (e *testEnv) desire(c, patch string, ifVersion int64) *Twin {
	e.tb.Helper()
	tw, err := e.svc.SetDesired(e.ctx, "admin", c, []byte(patch), ifVersion)
	if err != nil {
		e.tb.Fatalf("SetDesired(%s, %s, %d): %v", c, patch, ifVersion, err)
	}
	return tw
}

func (e *testEnv) get(c string) *Twin {
	e.tb.Helper()
	tw, err := e.svc.Get(e.ctx, c)
	if err != nil {
		e.tb.Fatalf("Get(%s): %v", c, err)
	}
	return tw
}

func js(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestGetEmptyAndUnknown(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	tw := e.get("acme:t-1")
	if tw.Code != "acme:t-1" || tw.Tenant != "acme" || tw.Version != 0 || tw.ReportedVersion != 0 || !tw.UpdatedAt.IsZero() {
		t.Errorf("empty twin = %+v", tw)
	}
	if tw.Desired == nil || tw.Reported == nil || tw.Metadata.Desired == nil || tw.Metadata.Reported == nil {
		t.Errorf("empty twin has nil maps: %+v", tw)
	}
	if got := js(t, tw.Delta()); got != `{}` {
		t.Errorf("Delta = %s", got)
	}
	for _, op := range []func() error{
		func() error { _, err := e.svc.Get(e.ctx, "acme:nope"); return err },
		func() error { _, err := e.svc.Report(e.ctx, "acme:nope", []byte(`{}`)); return err },
		func() error { _, err := e.svc.SetDesired(e.ctx, "admin", "acme:nope", []byte(`{}`), -1); return err },
	} {
		if err := op(); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown device: err = %v, want ErrNotFound", err)
		}
	}
	if _, err := e.svc.Get(e.ctx, "not a code"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad code: err = %v, want ErrInvalid", err)
	}
	if _, err := e.svc.SetDesired(e.ctx, "", "acme:t-1", []byte(`{}`), -1); err == nil {
		t.Error("SetDesired without an actor succeeded")
	}
	if _, err := e.svc.SetDesired(e.ctx, "admin", "acme:t-1", []byte(`{}`), -2); !errors.Is(err, ErrInvalid) {
		t.Errorf("ifVersion -2: err = %v, want ErrInvalid", err)
	}
}

func TestReportMerges(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	steps := []struct {
		patch   string
		want    string
		version int64
	}{
		{`{"a":1,"n":{"x":1,"y":{"p":"q"}}}`, `{"a":1,"n":{"x":1,"y":{"p":"q"}}}`, 1},
		{`{"n":{"y":{"r":true}}}`, `{"a":1,"n":{"x":1,"y":{"p":"q","r":true}}}`, 2},
		{`{"a":null,"n":{"x":null}}`, `{"n":{"y":{"p":"q","r":true}}}`, 3},
		{`{"n":[1,2]}`, `{"n":[1,2]}`, 4},
		{`{"n":[1,2]}`, `{"n":[1,2]}`, 4}, // no change: no version step
		{`{"n":null,"gone":null}`, `{}`, 5},
	}
	for _, s := range steps {
		tw := e.report("acme:free", s.patch)
		if got := js(t, tw.Reported); got != s.want {
			t.Errorf("after %s: reported = %s, want %s", s.patch, got, s.want)
		}
		if tw.ReportedVersion != s.version || tw.Version != 0 {
			t.Errorf("after %s: versions = %d/%d, want 0/%d", s.patch, tw.Version, tw.ReportedVersion, s.version)
		}
		if got := js(t, e.get("acme:free").Reported); got != s.want {
			t.Errorf("after %s: stored reported = %s, want %s", s.patch, got, s.want)
		}
	}
}

func TestDesiredVersions(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	const c = "acme:t-1"
	if tw := e.desire(c, `{"setpoint":21}`, 0); tw.Version != 1 {
		t.Fatalf("first version = %d", tw.Version)
	}
	if tw := e.desire(c, `{"mode":"auto"}`, 1); tw.Version != 2 {
		t.Fatalf("second version = %d", tw.Version)
	}
	tests := []struct {
		name      string
		ifVersion int64
		current   int64
	}{
		{"stale", 1, 2},
		{"never set", 0, 2},
		{"future", 7, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.SetDesired(e.ctx, "admin", c, []byte(`{"setpoint":30}`), tc.ifVersion)
			var ce *ConflictError
			if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) {
				t.Fatalf("err = %v, want *ConflictError", err)
			}
			if ce.Current != tc.current || ce.IfVersion != tc.ifVersion {
				t.Errorf("conflict = %+v", ce)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprint(tc.ifVersion)) || !strings.Contains(msg, fmt.Sprint(tc.current)) {
				t.Errorf("message %q does not name both versions", msg)
			}
		})
	}
	if got := e.get(c).Desired["setpoint"]; got != 21.0 {
		t.Errorf("a refused update changed setpoint to %v", got)
	}
	// Unconditional.
	tw := e.desire(c, `{"setpoint":30}`, -1)
	if tw.Version != 3 || tw.Desired["setpoint"] != 30.0 {
		t.Errorf("unconditional: %+v", tw)
	}
	// A no-op keeps the version but still checks it.
	if tw := e.desire(c, `{"setpoint":30.0}`, 3); tw.Version != 3 {
		t.Errorf("no-op moved the version to %d", tw.Version)
	}
	if _, err := e.svc.SetDesired(e.ctx, "admin", c, []byte(`{"setpoint":30}`), 2); !errors.Is(err, ErrConflict) {
		t.Errorf("stale no-op: err = %v, want ErrConflict", err)
	}
	// Reports do not move the desired version, nor desired the reported one.
	tw = e.report(c, `{"setpoint":30,"temperature":20}`)
	if tw.Version != 3 || tw.ReportedVersion != 1 {
		t.Errorf("versions after report = %d/%d", tw.Version, tw.ReportedVersion)
	}
	if got := js(t, tw.Delta()); got != `{"mode":"auto"}` {
		t.Errorf("Delta = %s", got)
	}
}

// TestConcurrentDesired: writers that retry on conflict never lose an update.
func TestConcurrentDesired(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	const c, writers, each = "acme:free", 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				for {
					cur, err := e.svc.Get(e.ctx, c)
					if err != nil {
						errs <- err
						return
					}
					patch := fmt.Sprintf(`{"w%d_%d":%d}`, w, i, cur.Version)
					_, err = e.svc.SetDesired(e.ctx, "admin", c, []byte(patch), cur.Version)
					if errors.Is(err, ErrConflict) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	tw := e.get(c)
	if tw.Version != writers*each || len(tw.Desired) != writers*each {
		t.Errorf("version %d with %d members, want %d", tw.Version, len(tw.Desired), writers*each)
	}
}

func TestModelValidation(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	const c = "acme:t-1"
	e.desire(c, `{"config":{"label":"x"}}`, -1)
	e.report(c, `{"config":{"label":"x"}}`)
	tests := []struct {
		name    string
		desired bool
		patch   string
		want    []string // each a message fragment naming the field
	}{
		{"undeclared", true, `{"bogus":1}`, []string{"desired.bogus: not a property of model acme:thermostat@1.0.0"}},
		{"read-only", true, `{"temperature":20}`, []string{"desired.temperature: read-only property"}},
		{"above maximum", true, `{"setpoint":300}`, []string{"desired.setpoint: 300 above maximum 125"}},
		{"below minimum", true, `{"setpoint":1}`, []string{"desired.setpoint: 1 below minimum 5"}},
		{"enum", true, `{"mode":"turbo"}`, []string{`desired.mode: "turbo" is not one of ["auto" "manual"]`}},
		{"type", true, `{"on":"yes"}`, []string{"desired.on: must be a boolean, not a string"}},
		{"integer", true, `{"fan":1.5}`, []string{"desired.fan: 1.5 is not an integer"}},
		{"number type", true, `{"setpoint":"21"}`, []string{"desired.setpoint: must be a number, not a string"}},
		{"array item", true, `{"schedule":[1,-2,"x"]}`, []string{"desired.schedule[1]: -2 below minimum 0", "desired.schedule[2]: must be an integer"}},
		{"nested member", true, `{"config":{"limits":{"rpm":4000}}}`, []string{"desired.config.limits.rpm: 4000 above maximum 3000"}},
		{"nested undeclared", true, `{"config":{"extra":1}}`, []string{"desired.config.extra: not declared"}},
		{"position", true, `{"where":{"lat":100}}`, []string{"desired.where.lat: 100 above maximum 90", "desired.where.lon: missing"}},
		{"several at once", true, `{"setpoint":300,"mode":"x"}`, []string{"desired.mode", "desired.setpoint"}},
		{"reported undeclared", false, `{"bogus":1}`, []string{"reported.bogus: not a property"}},
		{"reported range", false, `{"temperature":200}`, []string{"reported.temperature: 200 above maximum 125"}},
		{"reported nested", false, `{"config":{"limits":{"rpm":"fast"}}}`, []string{"reported.config.limits.rpm: must be an integer, not a string"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.desired {
				_, err = e.svc.SetDesired(e.ctx, "admin", c, []byte(tc.patch), -1)
			} else {
				_, err = e.svc.Report(e.ctx, c, []byte(tc.patch))
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("err %v is not a *FieldError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	tw := e.get(c)
	if tw.Version != 1 || tw.ReportedVersion != 1 {
		t.Errorf("rejected patches changed versions: %d/%d", tw.Version, tw.ReportedVersion)
	}

	// What the model allows.
	for _, p := range []string{
		`{"setpoint":21.5,"mode":"manual","on":true,"fan":3,"schedule":[1,2]}`,
		`{"where":{"lat":48.1,"lon":11.5,"alt":520}}`,
		`{"config":{"limits":{"rpm":2000}}}`, // partial object: label stays, limits added
		`{"bogus":null,"temperature":null}`,  // deleting is always allowed
	} {
		e.desire(c, p, -1)
	}
	e.report(c, `{"temperature":22.5,"setpoint":21.5}`) // read-only is fine for reports
	if got := js(t, e.get(c).Desired["config"]); got != `{"label":"x","limits":{"rpm":2000}}` {
		t.Errorf("config = %s", got)
	}

	// Without a model, anything goes.
	e.desire("acme:free", `{"bogus":{"deep":[1,"x",null]}}`, -1)
}

func TestLimitsEnforced(t *testing.T) {
	e := newEnv(t, t.TempDir(), func(o *Options) { o.Limits = Limits{MaxDocBytes: 100, MaxDepth: 3} })
	const c = "acme:free"
	e.desire(c, `{"a":"`+strings.Repeat("x", 80)+`"}`, -1) // 88 bytes
	tests := []struct {
		name    string
		desired bool
		patch   string
		err     error
		want    string
	}{
		{"desired too large", true, `{"b":"0123456789"}`, ErrTooLarge, "desired would be 105 bytes as compact JSON, the limit is 100"},
		{"reported too large", false, `{"b":"` + strings.Repeat("y", 100) + `"}`, ErrTooLarge, "reported would be 108 bytes as compact JSON, the limit is 100"},
		{"patch too large", false, `{"b":"` + strings.Repeat("y", 400) + `"}`, ErrTooLarge, "patch is 408 bytes, the limit is 400"},
		{"too deep", false, `{"a":{"b":{"c":{"d":1}}}}`, ErrInvalid, "patch nests 4 levels deep, the limit is 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.desired {
				_, err = e.svc.SetDesired(e.ctx, "admin", c, []byte(tc.patch), -1)
			} else {
				_, err = e.svc.Report(e.ctx, c, []byte(tc.patch))
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	// Replacing the big member with a small one fits again.
	if tw := e.desire(c, `{"a":null,"b":"0123456789"}`, -1); tw.Version != 2 {
		t.Errorf("version = %d", tw.Version)
	}
	if o := e.svc.Limits(); o.MaxDocBytes != 100 || o.MaxDepth != 3 {
		t.Errorf("Limits = %+v", o)
	}
}

func TestMetadataMovesOnlyForChangedLeaves(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	const c = "acme:free"
	t0 := e.clock.Now()
	e.report(c, `{"a":1,"n":{"x":1,"y":2},"l":[1]}`)
	e.clock.Advance(time.Minute)
	t1 := e.clock.Now()
	tw := e.report(c, `{"a":1.0,"n":{"y":3,"z":4},"l":[1]}`)

	want := map[string]FieldMeta{
		"a":   {Updated: t0, Version: 1}, // same value (1 == 1.0)
		"l":   {Updated: t0, Version: 1},
		"n.x": {Updated: t0, Version: 1},
		"n.y": {Updated: t1, Version: 2},
		"n.z": {Updated: t1, Version: 2},
	}
	check := func(label string, got map[string]FieldMeta) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: metadata = %v, want %v", label, got, want)
		}
		for p, w := range want {
			if g, ok := got[p]; !ok || !g.Updated.Equal(w.Updated) || g.Version != w.Version {
				t.Errorf("%s: metadata[%s] = %+v, want %+v", label, p, g, w)
			}
		}
	}
	check("returned", tw.Metadata.Reported)
	check("stored", e.get(c).Metadata.Reported)
	if !tw.UpdatedAt.Equal(t1) {
		t.Errorf("UpdatedAt = %v, want %v", tw.UpdatedAt, t1)
	}

	// Deleting a leaf drops its metadata; replacing an object by a scalar
	// leaves one entry.
	e.clock.Advance(time.Minute)
	tw = e.report(c, `{"a":null,"n":5}`)
	if _, ok := tw.Metadata.Reported["a"]; ok {
		t.Error("deleted leaf a keeps metadata")
	}
	if m := tw.Metadata.Reported["n"]; m.Version != 3 || len(tw.Metadata.Reported) != 2 {
		t.Errorf("metadata after replace = %v", tw.Metadata.Reported)
	}
	// A no-op report moves nothing.
	e.clock.Advance(time.Minute)
	before := tw.UpdatedAt
	tw = e.report(c, `{"n":5}`)
	if !tw.UpdatedAt.Equal(before) || tw.ReportedVersion != 3 || tw.Metadata.Reported["n"].Version != 3 {
		t.Errorf("no-op report moved something: %+v", tw)
	}
	// Desired metadata is kept separately and counts desired versions.
	tw = e.desire(c, `{"n":{"k":1}}`, -1)
	if m := tw.Metadata.Desired["n.k"]; m.Version != 1 || !m.Updated.Equal(e.clock.Now()) {
		t.Errorf("desired metadata = %v", tw.Metadata.Desired)
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir, nil)
	const c = "acme:t-1"
	e.desire(c, `{"setpoint":21,"config":{"limits":{"rpm":100}}}`, -1)
	e.desire(c, `{"mode":"auto"}`, 1)
	e.report(c, `{"setpoint":20,"temperature":19.5}`)
	before := e.get(c)

	e.reopen()
	after := e.get(c)
	if js(t, before) != js(t, after) {
		t.Errorf("after restart:\n%s\nwant\n%s", js(t, after), js(t, before))
	}
	// Versions carry on where they were.
	if _, err := e.svc.SetDesired(e.ctx, "admin", c, []byte(`{"mode":"manual"}`), 1); !errors.Is(err, ErrConflict) {
		t.Errorf("stale after restart: err = %v", err)
	}
	if tw := e.desire(c, `{"mode":"manual"}`, 2); tw.Version != 3 {
		t.Errorf("version after restart = %d", tw.Version)
	}
	if got := js(t, e.get(c).Delta()); got != `{"config":{"limits":{"rpm":100}},"mode":"manual","setpoint":21}` {
		t.Errorf("Delta after restart = %s", got)
	}
}

func TestOnChangeAndAudit(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	const c = "acme:t-2"
	var seen []Change
	var sizeSeen []uint64
	e.svc.opts.OnChange = func(ch Change) {
		// Called after commit: the change is visible to a fresh reader,
		// and the audit entry is committed.
		tw, err := e.svc.Get(e.ctx, ch.Code)
		if err != nil {
			t.Error(err)
		} else if tw.Version != ch.Version || tw.ReportedVersion != ch.ReportedVersion {
			t.Errorf("OnChange %+v before the commit is visible (stored %d/%d)", ch, tw.Version, tw.ReportedVersion)
		}
		n, err := e.audit.Size(e.ctx)
		if err != nil {
			t.Error(err)
		}
		seen = append(seen, ch)
		sizeSeen = append(sizeSeen, n)
	}
	size0, err := e.audit.Size(e.ctx)
	if err != nil {
		t.Fatal(err)
	}

	e.desire(c, `{"setpoint":21}`, -1)
	e.report(c, `{"temperature":20}`)
	e.report(c, `{"temperature":20}`)                                          // no-op: no change
	e.desire(c, `{"setpoint":21}`, -1)                                         // no-op: no change, no audit
	_, _ = e.svc.SetDesired(e.ctx, "admin", c, []byte(`{"setpoint":500}`), -1) // invalid
	_, _ = e.svc.SetDesired(e.ctx, "admin", c, []byte(`{"setpoint":22}`), 0)   // conflict
	e.desire(c, `{"setpoint":22,"mode":"auto"}`, 1)

	want := []Change{
		{Code: c, Tenant: "acme", Desired: true, Version: 1, ReportedVersion: 0},
		{Code: c, Tenant: "acme", Desired: false, Version: 1, ReportedVersion: 1},
		{Code: c, Tenant: "acme", Desired: true, Version: 2, ReportedVersion: 1},
	}
	if js(t, seen) != js(t, want) {
		t.Errorf("changes = %+v, want %+v", seen, want)
	}
	if len(sizeSeen) == 3 && (sizeSeen[0] != size0+1 || sizeSeen[1] != size0+1 || sizeSeen[2] != size0+2) {
		t.Errorf("audit size at OnChange = %v (start %d)", sizeSeen, size0)
	}
	if e.audits != 2 {
		t.Errorf("OnAudit called %d times, want 2", e.audits)
	}

	entries, err := e.audit.Entries(e.ctx, size0, size0+10)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%d audit entries, want 2: %+v", len(entries), entries)
	}
	last := entries[1]
	if last.Kind != "twin.desired" || last.Actor != "admin" || last.Tenant != "acme" || last.Subject != c {
		t.Errorf("audit entry = %+v", last)
	}
	var data struct {
		Version     int64    `json:"version"`
		PrevVersion int64    `json:"prev_version"`
		Sha         string   `json:"patch_sha256"`
		Keys        []string `json:"keys"`
	}
	if err := json.Unmarshal(last.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.Version != 2 || data.PrevVersion != 1 || len(data.Sha) != 64 || js(t, data.Keys) != `["mode","setpoint"]` {
		t.Errorf("audit data = %s", last.Data)
	}
	// The digest does not depend on how the patch was spelled.
	e2 := newEnv(t, t.TempDir(), nil)
	e2.desire(c, `{"setpoint":21}`, -1)
	e2.desire(c, "{ \"mode\" : \"auto\",\n \"setpoint\": 22.0 }", 1)
	e2entries, err := e2.audit.Entries(e2.ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(e2entries) != 2 || js(t, e2entries[1].Data) != js(t, last.Data) {
		t.Errorf("audit data differs for the same patch spelled differently: %s vs %s", e2entries[len(e2entries)-1].Data, last.Data)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	e.report("acme:t-1", `{"temperature":1}`)
	e.desire("beta:free", `{"x":1}`, -1)
	codes := []string{"beta:free", "acme:missing", "acme:t-1", "beta:free"}
	got, err := e.svc.List(e.ctx, codes)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(codes) {
		t.Fatalf("%d twins for %d codes", len(got), len(codes))
	}
	for i, c := range codes {
		if got[i].Code != c {
			t.Errorf("twin %d is %s, want %s", i, got[i].Code, c)
		}
	}
	if got[0].Version != 1 || got[0].Tenant != "beta" || got[1].Version != 0 || got[1].Tenant != "acme" ||
		got[1].Desired == nil || got[2].ReportedVersion != 1 {
		t.Errorf("List = %s", js(t, got))
	}
	if got[0] == got[3] {
		t.Error("a repeated code shares its twin")
	} else if js(t, got[0]) != js(t, got[3]) {
		t.Error("a repeated code got a different twin")
	}
	if out, err := e.svc.List(e.ctx, nil); err != nil || len(out) != 0 {
		t.Errorf("List(nil) = %v, %v", out, err)
	}
	if _, err := e.svc.List(e.ctx, []string{"acme:t-1", "bad"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad code: err = %v", err)
	}
	// More codes than one query takes.
	many := make([]string, 2*listChunk+3)
	for i := range many {
		many[i] = fmt.Sprintf("acme:d-%d", i)
	}
	many[listChunk+1] = "acme:t-1"
	out, err := e.svc.List(e.ctx, many)
	if err != nil || len(out) != len(many) || out[listChunk+1].ReportedVersion != 1 {
		t.Errorf("List(many): %d twins, err %v", len(out), err)
	}
}

func TestOpenOptions(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	if _, err := Open(e.ctx, Options{DB: e.db}); err == nil {
		t.Error("Open without Audit succeeded")
	}
	if _, err := Open(e.ctx, Options{DB: e.db, Audit: e.audit, Limits: Limits{MaxDepth: -1}}); err == nil {
		t.Error("Open with a negative limit succeeded")
	}
	s, err := Open(e.ctx, Options{DB: e.db, Audit: e.audit})
	if err != nil {
		t.Fatal(err)
	}
	if l := s.Limits(); l.MaxDocBytes != DefaultMaxDocBytes || l.MaxDepth != DefaultMaxDepth {
		t.Errorf("default limits = %+v", l)
	}
	// Model nil: no existence or schema checks.
	if _, err := s.SetDesired(e.ctx, "admin", "zed:anything", []byte(`{"temperature":1000}`), -1); err != nil {
		t.Errorf("without Model: %v", err)
	}
}

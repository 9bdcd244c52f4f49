package alarm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/store"
)

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

// testEnv is an alarm service on a real SQLite file with a real audit log,
// a fake clock, and recorders for OnEvent and OnAudit.
type testEnv struct {
	tb    testing.TB
	ctx   context.Context
	dir   string
	db    *store.DB
	audit *audit.Log
	svc   *Service
	clock *fakeClock
	edit  func(*Options)

	mu     sync.Mutex
	events []Event
	audits int
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newEnv(tb testing.TB, edit func(*Options)) *testEnv {
	tb.Helper()
	e := &testEnv{tb: tb, ctx: context.Background(), dir: tb.TempDir(), clock: &fakeClock{t: t0}, edit: edit}
	e.open()
	return e
}

func (e *testEnv) open() {
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
		DB: e.db, Audit: e.audit, Now: e.clock.Now, Logger: slog.New(slog.DiscardHandler),
		OnAudit: func() {
			e.mu.Lock()
			e.audits++
			e.mu.Unlock()
		},
		OnEvent: func(ev Event) {
			e.mu.Lock()
			e.events = append(e.events, ev)
			e.mu.Unlock()
		},
	}
	if e.edit != nil {
		e.edit(&opts)
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
	e.open()
}

// take returns the kinds of the events delivered since the last take.
func (e *testEnv) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var kinds []string
	for _, ev := range e.events {
		kinds = append(kinds, ev.Kind)
	}
	e.events = nil
	return kinds
}

func (e *testEnv) takeEvents() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	evs := e.events
	e.events = nil
	return evs
}

func req(object, name string, sev Severity) RaiseRequest {
	return RaiseRequest{Source: "loop:feed", Object: object, Name: name, Severity: sev, Message: name + " on " + object}
}

func (e *testEnv) raise(r RaiseRequest) *Alarm {
	e.tb.Helper()
	a, _, err := e.svc.Raise(e.ctx, r)
	if err != nil {
		e.tb.Fatalf("Raise(%+v): %v", r, err)
	}
	return a
}

func (e *testEnv) clear(r RaiseRequest) *Alarm {
	e.tb.Helper()
	a, _, err := e.svc.Clear(e.ctx, r.Source, r.Object, r.Name, time.Time{})
	if err != nil {
		e.tb.Fatalf("Clear(%s): %v", r.Name, err)
	}
	return a
}

func (e *testEnv) get(id string) *Alarm {
	e.tb.Helper()
	a, err := e.svc.Get(e.ctx, id)
	if err != nil {
		e.tb.Fatalf("Get(%s): %v", id, err)
	}
	return a
}

func (e *testEnv) auditSize() uint64 {
	e.tb.Helper()
	n, err := e.audit.Size(e.ctx)
	if err != nil {
		e.tb.Fatal(err)
	}
	return n
}

func js(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// TestTransitions walks every ISA-18.2 transition: each case starts a new
// alarm, applies the steps and checks the state, the flags, Count, Version
// and the events after every step.
func TestTransitions(t *testing.T) {
	type step struct {
		op      string // raise, clear, ack
		state   State
		count   int
		version int64
		changed bool
		events  []string
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"raise, ack, clear", []step{
			{"raise", UnackActive, 1, 1, true, []string{"raised"}},
			{"ack", AckActive, 1, 2, true, []string{"acked"}},
			{"clear", Cleared, 1, 3, true, []string{"cleared"}},
		}},
		{"raise, clear, ack", []step{
			{"raise", UnackActive, 1, 1, true, []string{"raised"}},
			{"clear", UnackCleared, 1, 2, true, []string{"cleared"}},
			{"ack", Cleared, 1, 3, true, []string{"acked"}},
		}},
		{"unack_cleared raised again", []step{
			{"raise", UnackActive, 1, 1, true, []string{"raised"}},
			{"clear", UnackCleared, 1, 2, true, []string{"cleared"}},
			{"raise", UnackActive, 2, 3, true, []string{"raised"}},
		}},
		{"cleared raised again", []step{
			{"raise", UnackActive, 1, 1, true, []string{"raised"}},
			{"ack", AckActive, 1, 2, true, []string{"acked"}},
			{"clear", Cleared, 1, 3, true, []string{"cleared"}},
			{"raise", UnackActive, 2, 4, true, []string{"raised"}},
			{"ack", AckActive, 2, 5, true, []string{"acked"}},
		}},
		{"no-ops", []step{
			{"raise", UnackActive, 1, 1, true, []string{"raised"}},
			{"raise", UnackActive, 1, 1, false, nil},
			{"ack", AckActive, 1, 2, true, []string{"acked"}},
			{"ack", AckActive, 1, 2, false, nil},
			{"raise", AckActive, 1, 2, false, nil},
			{"clear", Cleared, 1, 3, true, []string{"cleared"}},
			{"clear", Cleared, 1, 3, false, nil},
			{"ack", Cleared, 1, 3, false, nil},
		}},
		{"clear of unack_cleared", []step{
			{"raise", UnackActive, 1, 1, true, []string{"raised"}},
			{"clear", UnackCleared, 1, 2, true, []string{"cleared"}},
			{"clear", UnackCleared, 1, 2, false, nil},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			r := req("acme:pump-1", "overheat", High)
			id := ID(r.Source, r.Object, r.Name)
			for i, st := range tc.steps {
				e.clock.Advance(time.Second)
				var (
					a       *Alarm
					changed bool
					err     error
				)
				switch st.op {
				case "raise":
					a, changed, err = e.svc.Raise(e.ctx, r)
				case "clear":
					a, changed, err = e.svc.Clear(e.ctx, r.Source, r.Object, r.Name, time.Time{})
				case "ack":
					before := e.get(id)
					a, err = e.svc.Ack(e.ctx, "op", id, "seen")
					changed = err == nil && a.Version != before.Version
				}
				if err != nil {
					t.Fatalf("step %d %s: %v", i, st.op, err)
				}
				active, acked, _ := st.state.flags()
				if a.State != st.state || a.Active != active || a.Acked != acked || a.Count != st.count ||
					a.Version != st.version || changed != st.changed {
					t.Errorf("step %d %s: state %s active %t acked %t count %d version %d changed %t, want %s count %d version %d changed %t",
						i, st.op, a.State, a.Active, a.Acked, a.Count, a.Version, changed, st.state, st.count, st.version, st.changed)
				}
				if got := e.take(); !slices.Equal(got, st.events) {
					t.Errorf("step %d %s: events %v, want %v", i, st.op, got, st.events)
				}
				if stored := e.get(id); js(t, stored) != js(t, a) {
					t.Errorf("step %d %s: returned %s, stored %s", i, st.op, js(t, a), js(t, stored))
				}
				if a.Active == (a.ClearedAt != nil) {
					t.Errorf("step %d %s: active %t with ClearedAt %v", i, st.op, a.Active, a.ClearedAt)
				}
				if a.Acked == (a.AckedAt == nil) || a.Acked != (a.AckedBy == "op") {
					t.Errorf("step %d %s: acked %t with AckedAt %v, AckedBy %q", i, st.op, a.Acked, a.AckedAt, a.AckedBy)
				}
			}
			hist, err := e.svc.History(e.ctx, id, 0)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, st := range tc.steps {
				want = append(want, st.events...)
			}
			var got []string
			for _, ev := range hist {
				got = append(got, ev.Kind)
			}
			if !slices.Equal(got, want) {
				t.Errorf("history %v, want %v", got, want)
			}
		})
	}
}

func TestRaiseFields(t *testing.T) {
	e := newEnv(t, nil)
	r := req("acme:pump-1", "overheat", High)
	r.Data = json.RawMessage(`{ "temp" : 97.5,
		"limit": 90 }`)
	at := t0.Add(-time.Minute + 123456789*time.Nanosecond)
	r.At = at
	a := e.raise(r)
	want := Alarm{
		ID: ID("loop:feed", "acme:pump-1", "overheat"), Tenant: "acme", Object: "acme:pump-1", Source: "loop:feed",
		Name: "overheat", Severity: High, Message: r.Message, State: UnackActive, Active: true,
		RaisedAt: at.Truncate(time.Millisecond), UpdatedAt: t0, Count: 1, Version: 1,
		Data: json.RawMessage(`{"temp":97.5,"limit":90}`),
	}
	if js(t, a) != js(t, want) {
		t.Errorf("raised\n %s\nwant\n %s", js(t, a), js(t, want))
	}
	ev := e.takeEvents()
	if len(ev) != 1 || ev[0].Kind != KindRaised || ev[0].Actor != "loop:feed" || !ev[0].Time.Equal(want.RaisedAt) ||
		js(t, ev[0].Alarm) != js(t, want) || ev[0].Seq == 0 {
		t.Errorf("events %s", js(t, ev))
	}
	// Re-raising with another severity and message updates them, with no
	// new activation; the same request again changes nothing.
	e.clock.Advance(time.Minute)
	r.Severity, r.Message, r.At = Critical, "hotter", time.Time{}
	a2, changed, err := e.svc.Raise(e.ctx, r)
	if err != nil || !changed {
		t.Fatalf("re-raise: changed %t, %v", changed, err)
	}
	if a2.Severity != Critical || a2.Message != "hotter" || a2.Count != 1 || a2.Version != 2 ||
		!a2.RaisedAt.Equal(want.RaisedAt) || !a2.UpdatedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("re-raised %s", js(t, a2))
	}
	if got := e.take(); !slices.Equal(got, []string{KindUpdated}) {
		t.Errorf("events %v, want [updated]", got)
	}
	r.Data = json.RawMessage(`{"temp":97.5,"limit":90}`)
	if _, changed, err := e.svc.Raise(e.ctx, r); err != nil || changed {
		t.Errorf("same request again: changed %t, %v", changed, err)
	}
	r.Data = json.RawMessage(`{"temp":99}`)
	if a3, changed, err := e.svc.Raise(e.ctx, r); err != nil || !changed || string(a3.Data) != `{"temp":99}` || a3.Count != 1 {
		t.Errorf("new data: changed %t, %v, %+v", changed, err, a3)
	}
	if got := e.take(); !slices.Equal(got, []string{KindUpdated}) {
		t.Errorf("events %v, want [updated]", got)
	}
	// The id does not depend on the node: the same key, the same id.
	if ID("loop:feed", "acme:pump-1", "overheat") != a.ID || len(a.ID) != 24 || checkID(a.ID) != nil {
		t.Errorf("id %q", a.ID)
	}
	if ID("loop:feed", "acme:pump-1", "overheat2") == a.ID || ID("loop:fee", "dacme:pump-1", "overheat") == a.ID {
		t.Error("ids of different keys collide")
	}
}

func TestValidation(t *testing.T) {
	e := newEnv(t, nil)
	ok := req("acme:pump-1", "overheat", High)
	id := e.raise(ok).ID
	size0 := e.auditSize()
	e.take()
	big := `{"x":"` + strings.Repeat("a", MaxDataBytes) + `"}`
	raises := []struct {
		name  string
		edit  func(*RaiseRequest)
		field string
	}{
		{"bad severity", func(r *RaiseRequest) { r.Severity = "urgent" }, "severity"},
		{"no severity", func(r *RaiseRequest) { r.Severity = "" }, "severity"},
		{"long message", func(r *RaiseRequest) { r.Message = strings.Repeat("m", MaxMessageBytes+1) }, "message"},
		{"message not UTF-8", func(r *RaiseRequest) { r.Message = "\xff" }, "message"},
		{"empty name", func(r *RaiseRequest) { r.Name = "" }, "name"},
		{"name with space", func(r *RaiseRequest) { r.Name = "over heat" }, "name"},
		{"name with colon", func(r *RaiseRequest) { r.Name = "a:b" }, "name"},
		{"long name", func(r *RaiseRequest) { r.Name = strings.Repeat("n", 65) }, "name"},
		{"empty source", func(r *RaiseRequest) { r.Source = "" }, "source"},
		{"source with slash", func(r *RaiseRequest) { r.Source = "loop/x" }, "source"},
		{"bad object", func(r *RaiseRequest) { r.Object = "no-namespace" }, "object"},
		{"data array", func(r *RaiseRequest) { r.Data = json.RawMessage(`[1]`) }, "data"},
		{"data null", func(r *RaiseRequest) { r.Data = json.RawMessage(`null`) }, "data"},
		{"data not JSON", func(r *RaiseRequest) { r.Data = json.RawMessage(`{"a":}`) }, "data"},
		{"data trailing", func(r *RaiseRequest) { r.Data = json.RawMessage(`{} {}`) }, "data"},
		{"data too large", func(r *RaiseRequest) { r.Data = json.RawMessage(big) }, "data"},
	}
	for _, tc := range raises {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.edit(&r)
			_, _, err := e.svc.Raise(e.ctx, r)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
	// Data at the limit is accepted; whitespace does not count.
	atLimit := ok
	atLimit.Name = "limit"
	atLimit.Data = json.RawMessage(`{"x": "` + strings.Repeat("a", MaxDataBytes-8) + `" }`)
	if a := e.raise(atLimit); len(a.Data) != MaxDataBytes {
		t.Errorf("data of %d bytes", len(a.Data))
	}
	e.take()
	far := t0.Add(MaxShelve + time.Second)
	ops := []struct {
		name  string
		op    func() error
		field string
		is    error
	}{
		{"ack unknown id", func() error { _, err := e.svc.Ack(e.ctx, "op", strings.Repeat("0", 24), ""); return err }, "", ErrNotFound},
		{"ack malformed id", func() error { _, err := e.svc.Ack(e.ctx, "op", "nope", ""); return err }, "id", ErrInvalid},
		{"ack no actor", func() error { _, err := e.svc.Ack(e.ctx, "", id, ""); return err }, "actor", ErrInvalid},
		{"ack long note", func() error { _, err := e.svc.Ack(e.ctx, "op", id, strings.Repeat("n", 1025)); return err }, "note", ErrInvalid},
		{"shelve in the past", func() error { _, err := e.svc.Shelve(e.ctx, "op", id, "r", t0.Add(-time.Second)); return err }, "until", ErrInvalid},
		{"shelve now", func() error { _, err := e.svc.Shelve(e.ctx, "op", id, "r", t0); return err }, "until", ErrInvalid},
		{"shelve too far", func() error { _, err := e.svc.Shelve(e.ctx, "op", id, "r", far); return err }, "until", ErrInvalid},
		{"shelve no reason", func() error { _, err := e.svc.Shelve(e.ctx, "op", id, "", t0.Add(time.Hour)); return err }, "reason", ErrInvalid},
		{"shelve unknown id", func() error {
			_, err := e.svc.Shelve(e.ctx, "op", strings.Repeat("a", 24), "r", t0.Add(time.Hour))
			return err
		}, "", ErrNotFound},
		{"unshelve unknown id", func() error { _, err := e.svc.Unshelve(e.ctx, "op", strings.Repeat("b", 24)); return err }, "", ErrNotFound},
		{"unshelve no actor", func() error { _, err := e.svc.Unshelve(e.ctx, "", id); return err }, "actor", ErrInvalid},
		{"clear never raised", func() error {
			_, _, err := e.svc.Clear(e.ctx, "loop:feed", "acme:pump-1", "other", time.Time{})
			return err
		}, "", ErrNotFound},
		{"clear bad name", func() error {
			_, _, err := e.svc.Clear(e.ctx, "loop:feed", "acme:pump-1", "a b", time.Time{})
			return err
		}, "name", ErrInvalid},
		{"get malformed id", func() error { _, err := e.svc.Get(e.ctx, "ABCDEF"); return err }, "id", ErrInvalid},
		{"history unknown id", func() error { _, err := e.svc.History(e.ctx, strings.Repeat("c", 24), 0); return err }, "", ErrNotFound},
		{"list bad state", func() error { _, err := e.svc.List(e.ctx, Filter{States: []State{"open"}}); return err }, "states", ErrInvalid},
		{"list bad severity", func() error { _, err := e.svc.List(e.ctx, Filter{MinSeverity: "x"}); return err }, "severity", ErrInvalid},
	}
	for _, tc := range ops {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op()
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			var fe *FieldError
			if tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field) {
				t.Errorf("err = %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
	if n := e.auditSize(); n != size0 {
		t.Errorf("failed operations appended %d audit entries", n-size0)
	}
	if got := e.take(); len(got) != 0 {
		t.Errorf("failed operations produced events %v", got)
	}
	if e.audits != 0 {
		t.Errorf("OnAudit called %d times", e.audits)
	}
}

func TestAudit(t *testing.T) {
	e := newEnv(t, nil)
	a := e.raise(req("acme:pump-1", "overheat", High))
	size0 := e.auditSize()
	until := t0.Add(2 * time.Hour)
	steps := []struct {
		name    string
		op      func() (*Alarm, error)
		kind    string // audit kind; "" = no entry
		details map[string]any
	}{
		{"ack", func() (*Alarm, error) { return e.svc.Ack(e.ctx, "alice", a.ID, "on it") }, "alarm.ack", map[string]any{"note": "on it"}},
		{"ack again", func() (*Alarm, error) { return e.svc.Ack(e.ctx, "bob", a.ID, "me too") }, "", nil},
		{"unshelve not shelved", func() (*Alarm, error) { return e.svc.Unshelve(e.ctx, "bob", a.ID) }, "", nil},
		{"shelve", func() (*Alarm, error) { return e.svc.Shelve(e.ctx, "bob", a.ID, "sensor swap", until) }, "alarm.shelve",
			map[string]any{"reason": "sensor swap", "until": "2025-03-01T14:00:00Z"}},
		{"shelve the same", func() (*Alarm, error) { return e.svc.Shelve(e.ctx, "bob", a.ID, "sensor swap", until) }, "", nil},
		{"unshelve", func() (*Alarm, error) { return e.svc.Unshelve(e.ctx, "carol", a.ID) }, "alarm.unshelve",
			map[string]any{"reason": "sensor swap", "until": "2025-03-01T14:00:00Z", "shelved_by": "bob"}},
	}
	for _, st := range steps {
		before := e.auditSize()
		got, err := st.op()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		n := e.auditSize()
		if st.kind == "" {
			if n != before {
				t.Errorf("%s: appended %d entries, want none", st.name, n-before)
			}
			continue
		}
		if n != before+1 {
			t.Fatalf("%s: appended %d entries, want 1", st.name, n-before)
		}
		entries, err := e.audit.Entries(e.ctx, before, n)
		if err != nil {
			t.Fatal(err)
		}
		en := entries[0]
		actor := map[string]string{"alarm.ack": "alice", "alarm.shelve": "bob", "alarm.unshelve": "carol"}[st.kind]
		if st.kind == "alarm.ack" && (got.AckNote != "on it" || got.AckedBy != "alice" || !got.AckedAt.Equal(t0)) {
			t.Errorf("acked %s", js(t, got))
		}
		if en.Kind != st.kind || en.Actor != actor || en.Tenant != "acme" || en.Subject != a.ID || !en.Time.Equal(t0) {
			t.Errorf("%s: entry %+v", st.name, en)
		}
		var data map[string]any
		if err := json.Unmarshal(en.Data, &data); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"object": "acme:pump-1", "source": "loop:feed", "name": "overheat",
			"state": string(got.State), "count": float64(1), "version": float64(got.Version)}
		for k, v := range st.details {
			want[k] = v
		}
		if js(t, data) != js(t, want) {
			t.Errorf("%s: audit data %s, want %s", st.name, js(t, data), js(t, want))
		}
	}
	if n := e.auditSize(); n != size0+3 || e.audits != 3 {
		t.Errorf("%d entries, OnAudit %d times; want 3", n-size0, e.audits)
	}
	if got := e.take(); !slices.Equal(got, []string{"raised", "acked", "shelved", "unshelved"}) {
		t.Errorf("events %v", got)
	}
}

func TestShelving(t *testing.T) {
	e := newEnv(t, nil)
	r := req("acme:pump-1", "overheat", High)
	a := e.raise(r)
	e.take()
	until := t0.Add(time.Hour)
	sh, err := e.svc.Shelve(e.ctx, "bob", a.ID, "maintenance", until)
	if err != nil {
		t.Fatal(err)
	}
	if sh.Shelved == nil || *sh.Shelved != (Shelve{By: "bob", Reason: "maintenance", Until: until}) || !sh.Silenced() || sh.NeedsAttention() {
		t.Errorf("shelved %s", js(t, sh))
	}
	yes, no := true, false
	list := func(f Filter) []string {
		t.Helper()
		as, err := e.svc.List(e.ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, a := range as {
			ids = append(ids, a.Name)
		}
		return ids
	}
	other := e.raise(req("acme:pump-2", "overheat", Low))
	if got := list(Filter{Shelved: &yes}); !slices.Equal(got, []string{"overheat"}) {
		t.Errorf("shelved: %v", got)
	}
	if got := list(Filter{Attention: true}); len(got) != 1 {
		t.Errorf("attention: %v", got)
	}
	if got, _ := e.svc.List(e.ctx, Filter{Shelved: &no}); len(got) != 1 || got[0].ID != other.ID {
		t.Errorf("not shelved: %v", got)
	}
	// A shelved alarm keeps its lifecycle, and its events are recorded.
	e.clear(r)
	e.raise(r)
	if got := e.take(); !slices.Equal(got, []string{"shelved", "raised", "cleared", "raised"}) {
		t.Errorf("events while shelved: %v", got)
	}
	if a := e.get(a.ID); a.Shelved == nil || a.Count != 2 {
		t.Errorf("after reactivation: %s", js(t, a))
	}
	// Expiry: reads treat an expired shelving as gone at once; Sweep
	// records it.
	e.clock.Advance(time.Hour - time.Millisecond)
	if err := e.svc.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.take(); len(got) != 0 {
		t.Errorf("sweep before expiry: %v", got)
	}
	e.clock.Advance(time.Millisecond)
	got := e.get(a.ID)
	if got.Shelved != nil || !got.NeedsAttention() {
		t.Errorf("expired shelving still shown: %s", js(t, got))
	}
	if ids := list(Filter{Shelved: &yes}); len(ids) != 0 {
		t.Errorf("expired shelving listed: %v", ids)
	}
	v := got.Version
	size := e.auditSize()
	if err := e.svc.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	evs := e.takeEvents()
	if len(evs) != 1 || evs[0].Kind != KindUnshelved || evs[0].Actor != "system" || evs[0].Alarm.Shelved != nil ||
		evs[0].Alarm.Version != v+1 || !evs[0].Time.Equal(e.clock.Now()) {
		t.Errorf("sweep events %s", js(t, evs))
	}
	if e.auditSize() != size {
		t.Error("expiry was audited")
	}
	if err := e.svc.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.take(); len(got) != 0 {
		t.Errorf("second sweep: %v", got)
	}
	// Shelving again replaces the shelving.
	if _, err := e.svc.Shelve(e.ctx, "bob", a.ID, "one", e.clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	sh, err = e.svc.Shelve(e.ctx, "carol", a.ID, "two", e.clock.Now().Add(2*time.Hour))
	if err != nil || sh.Shelved.By != "carol" || sh.Shelved.Reason != "two" {
		t.Errorf("reshelve: %v %s", err, js(t, sh))
	}
	// At most MaxShelve ahead.
	if _, err := e.svc.Shelve(e.ctx, "bob", a.ID, "long", e.clock.Now().Add(MaxShelve)); err != nil {
		t.Errorf("shelve for MaxShelve: %v", err)
	}
}

func TestChattering(t *testing.T) {
	edit := func(o *Options) {
		o.Chatter = ChatterPolicy{Count: 3, Window: time.Minute, Quiet: 5 * time.Minute}
		o.Flood.Count = -1
	}
	e := newEnv(t, edit)
	r := req("acme:valve-1", "stuck", Medium)
	cycle := func() {
		e.raise(r)
		e.clock.Advance(10 * time.Second)
		e.clear(r)
		e.clock.Advance(10 * time.Second)
	}
	cycle()
	cycle()
	if got := e.take(); !slices.Equal(got, []string{"raised", "cleared", "raised", "cleared"}) {
		t.Fatalf("events %v", got)
	}
	a := e.raise(r) // third activation within 40 s
	if a.Suppressed != SuppressedChattering || !a.Silenced() {
		t.Fatalf("not suppressed after 3 activations in a minute: %s", js(t, a))
	}
	if got := e.take(); !slices.Equal(got, []string{"raised", "suppressed"}) {
		t.Errorf("events %v", got)
	}
	// Activations go on: still suppressed, no new suppressed event.
	e.clear(r)
	e.clock.Advance(4 * time.Minute)
	e.raise(r)
	if got := e.take(); !slices.Equal(got, []string{"cleared", "raised"}) {
		t.Errorf("events %v", got)
	}
	// Sweep ends it only after Quiet without an activation.
	e.clock.Advance(5*time.Minute - time.Millisecond)
	if err := e.svc.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.take(); len(got) != 0 {
		t.Errorf("sweep before quiet: %v", got)
	}
	e.clock.Advance(time.Millisecond)
	if err := e.svc.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.take(); !slices.Equal(got, []string{"unsuppressed"}) {
		t.Errorf("sweep after quiet: %v", got)
	}
	a = e.get(a.ID)
	if a.Suppressed != "" {
		t.Errorf("still suppressed: %s", js(t, a))
	}
	// The count starts again: two activations do not suppress.
	e.clear(r)
	cycle()
	a = e.raise(r)
	if a.Suppressed != "" {
		t.Errorf("suppressed after two activations: %s", js(t, a))
	}
	e.clear(r)
	e.raise(r) // third within the window
	if got := e.take(); !slices.Equal(got, []string{"cleared", "raised", "cleared", "raised", "cleared", "raised", "suppressed"}) {
		t.Errorf("events %v", got)
	}
	// An activation after Quiet ends the suppression without Sweep.
	e.clear(r)
	e.clock.Advance(6 * time.Minute)
	a = e.raise(r)
	if a.Suppressed != "" {
		t.Errorf("suppressed after quiet: %s", js(t, a))
	}
	if got := e.take(); !slices.Equal(got, []string{"cleared", "unsuppressed", "raised"}) {
		t.Errorf("events %v", got)
	}
	// Activations spread wider than the window never chatter.
	for range 5 {
		e.clear(r)
		e.clock.Advance(31 * time.Second)
		if a := e.raise(r); a.Suppressed != "" {
			t.Fatalf("suppressed at one activation per 31 s: %s", js(t, a))
		}
	}
	// Chattering survives a restart.
	e.clock.Advance(time.Hour)
	for range 3 {
		e.clear(r)
		e.raise(r)
	}
	e.reopen()
	if a := e.get(a.ID); a.Suppressed != SuppressedChattering {
		t.Errorf("after restart: %s", js(t, a))
	}
}

// TestChatteringCountsAfresh: with Quiet shorter than Window, the
// activations before a suppression ended do not count again.
func TestChatteringCountsAfresh(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Chatter = ChatterPolicy{Count: 3, Window: 10 * time.Minute, Quiet: time.Minute}
		o.Flood.Count = -1
	})
	// The suppression ends by Sweep, or by the first activation after
	// Quiet.
	for _, sweep := range []bool{true, false} {
		r := req("acme:valve-1", fmt.Sprintf("stuck-%t", sweep), Medium)
		for range 3 {
			e.raise(r)
			e.clear(r)
		}
		if a := e.get(ID(r.Source, r.Object, r.Name)); a.Suppressed != SuppressedChattering {
			t.Fatalf("sweep %t: not chattering: %s", sweep, js(t, a))
		}
		e.clock.Advance(time.Minute)
		if sweep {
			if err := e.svc.Sweep(e.ctx); err != nil {
				t.Fatal(err)
			}
		}
		if a := e.raise(r); a.Suppressed != "" {
			t.Errorf("sweep %t: suppressed again at the first activation after the suppression ended: %s", sweep, js(t, a))
		}
		e.clear(r)
		if a := e.raise(r); a.Suppressed != "" {
			t.Errorf("sweep %t: suppressed again at the second activation: %s", sweep, js(t, a))
		}
		e.clear(r)
		if a := e.raise(r); a.Suppressed != SuppressedChattering {
			t.Errorf("sweep %t: not suppressed at the third activation: %s", sweep, js(t, a))
		}
	}
}

func TestFlood(t *testing.T) {
	edit := func(o *Options) {
		o.Flood = FloodPolicy{Count: 3, Window: time.Minute}
		o.Chatter.Count = -1
	}
	e := newEnv(t, edit)
	a1 := e.raise(req("acme:p-1", "high", High)) // acme: 1
	// Shelved alarms are not annunciated: their activations do not count.
	if _, err := e.svc.Shelve(e.ctx, "op", a1.ID, "known", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.clear(req("acme:p-1", "high", High))
	e.raise(req("acme:p-1", "high", High)) // shelved: still 1
	e.clock.Advance(10 * time.Second)
	e.raise(req("beta:p-1", "high", High)) // another tenant
	e.raise(req("acme:p-2", "high", High)) // acme: 2
	// A re-raise of an active alarm is no activation.
	e.raise(req("acme:p-2", "high", Critical))
	if e.svc.Flooding("acme") {
		t.Fatal("flooding after two annunciated activations")
	}
	if got := e.take(); !slices.Equal(got, []string{"raised", "shelved", "cleared", "raised", "raised", "raised", "updated"}) {
		t.Errorf("events %v", got)
	}
	e.raise(req("acme:p-3", "high", High)) // acme: 3
	evs := e.takeEvents()
	if !e.svc.Flooding("acme") || e.svc.Flooding("beta") {
		t.Fatalf("flooding acme %t beta %t", e.svc.Flooding("acme"), e.svc.Flooding("beta"))
	}
	if len(evs) != 2 || evs[0].Kind != KindRaised || evs[1].Kind != KindFloodStarted || evs[1].Alarm.Tenant != "acme" ||
		evs[1].Alarm.ID != "" || evs[1].Actor != "system" || !evs[1].Time.Equal(e.clock.Now()) {
		t.Errorf("flood events %s", js(t, evs))
	}
	// More activations during the flood start no new one.
	e.raise(req("acme:p-5", "high", High))
	if got := e.take(); !slices.Equal(got, []string{"raised"}) {
		t.Errorf("during flood: %v", got)
	}
	// A restart keeps the flood.
	e.reopen()
	if !e.svc.Flooding("acme") {
		t.Error("flood lost at restart")
	}
	// It ends when the activations in the window fall below the count:
	// after 55 s, a1's first activation has left it, the three others
	// are still in it.
	e.clock.Advance(55 * time.Second)
	if err := e.svc.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.take(); len(got) != 0 || !e.svc.Flooding("acme") {
		t.Errorf("sweep within the window: %v", got)
	}
	e.clock.Advance(5 * time.Second)
	if err := e.svc.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	evs = e.takeEvents()
	if len(evs) != 1 || evs[0].Kind != KindFloodEnded || evs[0].Alarm.Tenant != "acme" || e.svc.Flooding("acme") {
		t.Errorf("sweep after the window: %s, flooding %t", js(t, evs), e.svc.Flooding("acme"))
	}
	e.reopen()
	if e.svc.Flooding("acme") {
		t.Error("ended flood back after restart")
	}
	// Flood events are not an alarm's history.
	if hist, err := e.svc.History(e.ctx, a1.ID, 0); err != nil || len(hist) != 4 {
		t.Errorf("history of a1: %v %s", err, js(t, hist))
	}
}

// TestFloodExact counts precisely: Count annunciated activations within
// the window start a flood, Count-1 do not.
func TestFloodExact(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Flood = FloodPolicy{Count: 4, Window: time.Minute}
		o.Chatter.Count = -1
	})
	for i := range 3 {
		e.raise(req(fmt.Sprintf("acme:p-%d", i), "x", Low))
		e.clock.Advance(15 * time.Second)
	}
	if e.svc.Flooding("acme") {
		t.Fatal("flood at 3 of 4")
	}
	// The first activation is now 45 s old; one more after 15 s more
	// would fall outside the window with it: 3 in the window, no flood.
	e.clock.Advance(15 * time.Second)
	e.raise(req("acme:p-3", "x", Low))
	if e.svc.Flooding("acme") {
		t.Fatal("flood though the first activation left the window")
	}
	e.raise(req("acme:p-4", "x", Low))
	if !e.svc.Flooding("acme") {
		t.Fatal("no flood at 4 in the window")
	}
}

func TestList(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Flood.Count = -1 })
	mk := func(object, name string, sev Severity, src string) *Alarm {
		r := req(object, name, sev)
		r.Source = src
		e.clock.Advance(time.Second)
		return e.raise(r)
	}
	a := mk("acme:p-1", "a", Low, "loop:one")
	b := mk("acme:p-1", "b", Critical, "loop:one")
	c := mk("acme:p-2", "c", High, "loop:two")
	d := mk("acme:p-2", "d", High, "loop:two") // newer than c
	x := mk("beta:p-1", "x", Medium, "loop:one")
	if _, err := e.svc.Ack(e.ctx, "op", c.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Clear(e.ctx, "loop:one", "acme:p-1", "a", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Shelve(e.ctx, "op", d.ID, "r", e.clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	cases := []struct {
		name string
		f    Filter
		want []*Alarm
	}{
		{"all, by severity then newest", Filter{}, []*Alarm{b, d, c, x, a}},
		{"tenant", Filter{Tenant: "acme"}, []*Alarm{b, d, c, a}},
		{"object", Filter{Object: "acme:p-2"}, []*Alarm{d, c}},
		{"source", Filter{Source: "loop:one"}, []*Alarm{b, x, a}},
		{"states", Filter{States: []State{AckActive, UnackCleared}}, []*Alarm{c, a}},
		{"unack_active", Filter{States: []State{UnackActive}}, []*Alarm{b, d, x}},
		{"min severity", Filter{MinSeverity: High}, []*Alarm{b, d, c}},
		{"shelved", Filter{Shelved: &yes}, []*Alarm{d}},
		{"not shelved", Filter{Shelved: &no, Tenant: "acme"}, []*Alarm{b, c, a}},
		{"attention", Filter{Attention: true}, []*Alarm{b, c, x, a}},
		{"limit", Filter{Limit: 2}, []*Alarm{b, d}},
		{"nothing", Filter{Tenant: "gamma"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.svc.List(e.ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var g, w []string
			for _, a := range got {
				g = append(g, a.Name)
			}
			for _, a := range tc.want {
				w = append(w, a.Name)
			}
			if !slices.Equal(g, w) {
				t.Errorf("got %v, want %v", g, w)
			}
		})
	}
	// Acknowledge everything: cleared alarms leave the attention view.
	for _, al := range []*Alarm{a, b, x} {
		if _, err := e.svc.Ack(e.ctx, "op", al.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.svc.List(e.ctx, Filter{Attention: true})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, al := range got {
		names = append(names, al.Name)
		if !al.NeedsAttention() {
			t.Errorf("%s listed but does not need attention", al.Name)
		}
	}
	if !slices.Equal(names, []string{"b", "c", "x"}) {
		t.Errorf("attention after acks: %v", names)
	}
}

func TestRestart(t *testing.T) {
	e := newEnv(t, nil)
	r := req("acme:p-1", "x", High)
	r.Data = json.RawMessage(`{"v":1}`)
	a := e.raise(r)
	if _, err := e.svc.Ack(e.ctx, "op", a.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Shelve(e.ctx, "op", a.ID, "r", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	before := e.get(a.ID)
	evs, err := e.svc.EventsAfter(e.ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if after := e.get(a.ID); js(t, after) != js(t, before) {
		t.Errorf("after restart\n %s\nbefore\n %s", js(t, after), js(t, before))
	}
	evs2, err := e.svc.EventsAfter(e.ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if js(t, evs2) != js(t, evs) {
		t.Errorf("events after restart differ")
	}
	e.clear(r)
	last, err := e.svc.EventsAfter(e.ctx, evs[len(evs)-1].Seq, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 1 || last[0].Kind != KindCleared || last[0].Seq != evs[len(evs)-1].Seq+1 {
		t.Errorf("events after the restart: %s", js(t, last))
	}
	// A restart with the same migrations does not migrate again.
	e.reopen()
	if got := e.get(a.ID); got.State != Cleared || got.Version != before.Version+1 {
		t.Errorf("after second restart: %s", js(t, got))
	}
}

func TestEventsAfterAndHistoryBound(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Chatter.Count, o.Flood.Count = -1, -1 })
	r := req("acme:p-1", "x", High)
	other := e.raise(req("acme:p-2", "y", Low))
	for i := 0; i < MaxHistory/2+5; i++ {
		e.raise(r)
		e.clear(r)
	}
	id := ID(r.Source, r.Object, r.Name)
	hist, err := e.svc.History(e.ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != MaxHistory || hist[len(hist)-1].Kind != KindCleared || hist[len(hist)-1].Alarm.Count != MaxHistory/2+5 {
		t.Fatalf("history: %d events, last %s", len(hist), js(t, hist[len(hist)-1]))
	}
	for i := 1; i < len(hist); i++ {
		if hist[i].Seq <= hist[i-1].Seq {
			t.Fatalf("history out of order at %d", i)
		}
	}
	if h, err := e.svc.History(e.ctx, id, 3); err != nil || len(h) != 3 || h[2].Seq != hist[len(hist)-1].Seq {
		t.Errorf("History limit 3: %v %s", err, js(t, h))
	}
	// The other alarm's history is not trimmed by this one's.
	if h, err := e.svc.History(e.ctx, other.ID, 0); err != nil || len(h) != 1 {
		t.Errorf("other history: %v %d", err, len(h))
	}
	// EventsAfter pages through what is kept, in order.
	var all []Event
	var after uint64
	for {
		page, err := e.svc.EventsAfter(e.ctx, after, 50)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
	if len(all) != MaxHistory+1 || all[0].Alarm.ID != other.ID {
		t.Errorf("EventsAfter: %d events, first %s", len(all), js(t, all[0]))
	}
	if page, err := e.svc.EventsAfter(e.ctx, 1<<63, 10); err != nil || len(page) != 0 {
		t.Errorf("EventsAfter(huge): %v %d", err, len(page))
	}
}

// TestOnEventOrder raises from many goroutines at once (their writes share
// commits): OnEvent sees every event once, in Seq order, and after its commit.
func TestOnEventOrder(t *testing.T) {
	var (
		mu   sync.Mutex
		seqs []uint64
		svc  *Service
		bad  []string
	)
	e := newEnv(t, func(o *Options) {
		o.Flood.Count = -1
		o.OnEvent = func(ev Event) {
			// Called after the commit: a reader sees the alarm at least
			// this new.
			a, err := svc.Get(context.Background(), ev.Alarm.ID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || a.Version < ev.Alarm.Version {
				bad = append(bad, fmt.Sprintf("event %d before its commit: %v", ev.Seq, err))
			}
			seqs = append(seqs, ev.Seq)
		}
	})
	svc = e.svc
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				r := req(fmt.Sprintf("acme:p-%d", g), fmt.Sprintf("x%d", i), High)
				if _, _, err := svc.Raise(e.ctx, r); err != nil {
					t.Error(err)
				}
				if _, _, err := svc.Clear(e.ctx, r.Source, r.Object, r.Name, time.Time{}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Error(bad)
	}
	if len(seqs) != 80 {
		t.Errorf("%d events, want 80", len(seqs))
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("event %d: seq %d after %d", i, seqs[i], seqs[i-1])
		}
	}
	stored, err := svc.EventsAfter(e.ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range stored {
		if i < len(seqs) && ev.Seq != seqs[i] {
			t.Fatalf("delivered seq %d at %d, stored %d", seqs[i], i, ev.Seq)
		}
	}
}

// TestOnEventPanic: a panicking OnEvent loses the event it panicked on,
// not the ones after it, and does not stop delivery.
func TestOnEventPanic(t *testing.T) {
	var got []string
	e := newEnv(t, func(o *Options) {
		o.OnEvent = func(ev Event) {
			if ev.Kind == KindRaised && ev.Alarm.Count == 2 {
				panic("boom")
			}
			got = append(got, ev.Kind)
		}
		o.Chatter = ChatterPolicy{Count: 2, Window: time.Minute, Quiet: time.Minute}
		o.Flood.Count = -1
	})
	r := req("acme:p-1", "x", High)
	e.raise(r)
	e.clear(r)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("no panic")
			}
		}()
		e.raise(r) // raised (panics), suppressed
	}()
	e.clear(r)
	if want := []string{"raised", "cleared", "suppressed", "cleared"}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

func TestImport(t *testing.T) {
	// The edge raises; the hub imports what the edge's OnEvent forwards.
	edge := newEnv(t, nil)
	hub := newEnv(t, func(o *Options) { o.Flood.Count = -1 })
	r := req("acme:p-1", "x", High)
	r.Data = json.RawMessage(`{"v":1}`)
	imp := func(a *Alarm) bool {
		t.Helper()
		ok, err := hub.svc.Import(hub.ctx, "acme:edge-1", *a)
		if err != nil {
			t.Fatalf("Import(v%d): %v", a.Version, err)
		}
		return ok
	}
	v1 := edge.raise(r)
	if !imp(v1) {
		t.Fatal("first import not applied")
	}
	got := hub.get(v1.ID)
	if got.Origin != "acme:edge-1" || got.OriginVersion != 1 || got.Version != 1 || got.State != UnackActive ||
		string(got.Data) != `{"v":1}` || got.Count != 1 || !got.RaisedAt.Equal(v1.RaisedAt) {
		t.Errorf("imported %s", js(t, got))
	}
	if k := hub.take(); !slices.Equal(k, []string{"raised"}) {
		t.Errorf("hub events %v", k)
	}
	if imp(v1) {
		t.Error("the same version applied twice")
	}
	edge.clock.Advance(time.Second)
	v2 := edge.clear(r)
	edge.clock.Advance(time.Second)
	v3, err := edge.svc.Ack(edge.ctx, "edge-op", v1.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	// Out of order: v3 first, then v2 (older: ignored).
	if !imp(v3) || imp(v2) || imp(v1) {
		t.Error("ordering by version")
	}
	got = hub.get(v1.ID)
	if got.State != Cleared || got.OriginVersion != 3 || got.Version != 2 || got.AckedBy != "edge-op" {
		t.Errorf("after v3: %s", js(t, got))
	}
	if k := hub.take(); !slices.Equal(k, []string{"cleared", "acked"}) {
		t.Errorf("hub events %v", k)
	}
	// The hub's operators acknowledge a new activation the edge has not
	// seen acknowledged: an import of the same activation keeps the ack,
	// an import of a new activation drops it.
	edge.clock.Advance(time.Second)
	v4 := edge.raise(r)
	imp(v4)
	if _, err := hub.svc.Ack(hub.ctx, "hub-op", v1.ID, "from the hub"); err != nil {
		t.Fatal(err)
	}
	hub.take()
	edge.clock.Advance(time.Second)
	v5 := edge.clear(r)
	imp(v5)
	got = hub.get(v1.ID)
	if got.State != Cleared || got.AckedBy != "hub-op" || got.Count != 2 {
		t.Errorf("hub ack lost: %s", js(t, got))
	}
	if k := hub.take(); !slices.Equal(k, []string{"cleared"}) {
		t.Errorf("hub events %v", k)
	}
	// Shelving on the hub stays; the edge's shelving is not imported.
	if _, err := hub.svc.Shelve(hub.ctx, "hub-op", v1.ID, "hub", hub.clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	edge.clock.Advance(time.Second)
	v6 := edge.raise(r)
	imp(v6)
	got = hub.get(v1.ID)
	if got.Shelved == nil || got.Shelved.Reason != "hub" || got.State != UnackActive || got.AckedBy != "" || got.Count != 3 {
		t.Errorf("after new activation: %s", js(t, got))
	}
	v7, err := edge.svc.Unshelve(edge.ctx, "edge-op", v1.ID) // not shelved on the edge: no change
	if err != nil || v7.Version != v6.Version {
		t.Fatalf("edge unshelve: %v", err)
	}
	// The hub cannot raise or clear an imported alarm; an import cannot
	// overwrite an alarm raised on the hub.
	if _, _, err := hub.svc.Raise(hub.ctx, r); !errors.Is(err, ErrConflict) {
		t.Errorf("hub raise of imported alarm: %v", err)
	}
	if _, _, err := hub.svc.Clear(hub.ctx, r.Source, r.Object, r.Name, time.Time{}); !errors.Is(err, ErrConflict) {
		t.Errorf("hub clear of imported alarm: %v", err)
	}
	local := hub.raise(req("acme:p-9", "x", Low))
	forged := *v6
	forged.Object, forged.ID, forged.Version = local.Object, local.ID, 99
	if _, err := hub.svc.Import(hub.ctx, "acme:edge-1", forged); !errors.Is(err, ErrConflict) {
		t.Errorf("import over a local alarm: %v", err)
	}
	// A chattering suppression decided on the edge is the edge's to end:
	// the hub's Sweep leaves it.
	sup := *v6
	sup.Version, sup.Suppressed = v6.Version+1, SuppressedChattering
	hub.take()
	imp(&sup)
	if k := hub.take(); !slices.Equal(k, []string{"suppressed"}) {
		t.Errorf("hub events %v", k)
	}
	hub.clock.Advance(time.Hour)
	if err := hub.svc.Sweep(hub.ctx); err != nil {
		t.Fatal(err)
	}
	if k := hub.take(); !slices.Equal(k, []string{"unshelved"}) {
		t.Errorf("hub sweep events %v", k)
	}
	if got := hub.get(v1.ID); got.Suppressed != SuppressedChattering {
		t.Errorf("hub ended an edge's suppression: %s", js(t, got))
	}
	// The object moved to another edge: its first version is applied.
	edge2 := *v6
	edge2.Version = 1
	if ok, err := hub.svc.Import(hub.ctx, "acme:edge-2", edge2); err != nil || !ok {
		t.Errorf("import from the new edge: %t %v", ok, err)
	}
	if got := hub.get(v1.ID); got.Origin != "acme:edge-2" || got.OriginVersion != 1 {
		t.Errorf("after move: %s", js(t, got))
	}
	// Invalid imports.
	bad := []struct {
		name  string
		edit  func(*Alarm)
		edge  string
		field string
	}{
		{"wrong id", func(a *Alarm) { a.ID = strings.Repeat("0", 24) }, "acme:edge-1", "id"},
		{"wrong tenant", func(a *Alarm) { a.Tenant = "beta" }, "acme:edge-1", "tenant"},
		{"state contradicts flags", func(a *Alarm) { a.Active = false }, "acme:edge-1", "state"},
		{"unknown state", func(a *Alarm) { a.State = "open" }, "acme:edge-1", "state"},
		{"version 0", func(a *Alarm) { a.Version = 0 }, "acme:edge-1", "version"},
		{"count 0", func(a *Alarm) { a.Count = 0 }, "acme:edge-1", "count"},
		{"bad severity", func(a *Alarm) { a.Severity = "x" }, "acme:edge-1", "severity"},
		{"data array", func(a *Alarm) { a.Data = json.RawMessage(`[]`) }, "acme:edge-1", "data"},
		{"bad edge", func(a *Alarm) {}, "edge 1", "edge"},
	}
	for _, tc := range bad {
		a := *v6
		a.Version = 1000
		tc.edit(&a)
		_, err := hub.svc.Import(hub.ctx, tc.edge, a)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: err = %v, want a FieldError on %s", tc.name, err, tc.field)
		}
	}
}

// TestImportChanges checks the events an import implies, table-driven.
func TestImportChanges(t *testing.T) {
	base := &row{Alarm: Alarm{Source: "loop:feed", Severity: High, Message: "m", State: UnackActive, Active: true, Count: 1}}
	with := func(f func(*Alarm)) *row {
		r := &row{Alarm: base.Alarm}
		f(&r.Alarm)
		return r
	}
	cases := []struct {
		name string
		old  *row
		n    *row
		want []string
	}{
		{"new active", nil, base, []string{"raised"}},
		{"new cleared and acked", nil, with(func(a *Alarm) { a.Active, a.Acked, a.State = false, true, Cleared }), []string{"raised", "cleared", "acked"}},
		{"cleared", base, with(func(a *Alarm) { a.Active, a.State = false, UnackCleared }), []string{"cleared"}},
		{"acked", base, with(func(a *Alarm) { a.Acked, a.State = true, AckActive }), []string{"acked"}},
		{"updated", base, with(func(a *Alarm) { a.Severity = Critical }), []string{"updated"}},
		{"data updated", base, with(func(a *Alarm) { a.Data = json.RawMessage(`{}`) }), []string{"updated"}},
		{"reactivated", with(func(a *Alarm) { a.Active, a.State = false, UnackCleared }), with(func(a *Alarm) { a.Count = 2 }), []string{"raised"}},
		{"raised and cleared between imports", base, with(func(a *Alarm) { a.Count, a.Active, a.State = 2, false, UnackCleared }), []string{"raised", "cleared"}},
		{"suppressed", base, with(func(a *Alarm) { a.Count, a.Suppressed = 2, "chattering" }), []string{"raised", "suppressed"}},
		{"unsuppressed", with(func(a *Alarm) { a.Suppressed = "chattering" }), base, []string{"unsuppressed"}},
		{"nothing visible", base, base, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range importChanges(tc.old, tc.n, t0) {
				got = append(got, c.kind)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(o *Options) {
		o.Registerer = reg
		o.Flood = FloodPolicy{Count: 2, Window: time.Minute}
		o.Chatter = ChatterPolicy{Count: 2, Window: time.Minute, Quiet: time.Minute}
	})
	a := e.raise(req("acme:p-1", "a", High))
	e.raise(req("acme:p-2", "b", High)) // flood
	e.raise(req("acme:p-3", "c", Low))
	if _, err := e.svc.Shelve(e.ctx, "op", a.ID, "r", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	r := req("acme:p-4", "d", Critical)
	e.raise(r)
	e.clear(r)
	e.raise(r) // chattering
	want := `
# HELP wanwu_alarms_active Active alarms that are not shelved, by severity.
# TYPE wanwu_alarms_active gauge
wanwu_alarms_active{severity="critical"} 1
wanwu_alarms_active{severity="high"} 1
wanwu_alarms_active{severity="low"} 1
wanwu_alarms_active{severity="medium"} 0
# HELP wanwu_alarms_suppressed Alarms whose notifications are suppressed now (chattering).
# TYPE wanwu_alarms_suppressed gauge
wanwu_alarms_suppressed 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "wanwu_alarms_active", "wanwu_alarms_suppressed"); err != nil {
		t.Error(err)
	}
	counts := map[string]float64{"raised": 5, "cleared": 1, "shelved": 1, "suppressed": 1, "flood_started": 1}
	for kind, n := range counts {
		if got := testutil.ToFloat64(e.svc.m.events.WithLabelValues(kind)); got != n {
			t.Errorf("events{kind=%s} = %v, want %v", kind, got, n)
		}
	}
	if got := testutil.ToFloat64(e.svc.m.floods); got != 1 {
		t.Errorf("floods = %v", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	// Registering twice fails.
	if _, err := Open(e.ctx, Options{DB: e.db, Audit: e.audit, Registerer: reg}); err == nil {
		t.Error("second registration accepted")
	}
}

func TestOpenOptions(t *testing.T) {
	e := newEnv(t, nil)
	for _, o := range []Options{
		{},
		{DB: e.db},
		{DB: e.db, Audit: e.audit, Chatter: ChatterPolicy{Count: 1}},
		{DB: e.db, Audit: e.audit, Chatter: ChatterPolicy{Window: -time.Second}},
		{DB: e.db, Audit: e.audit, Flood: FloodPolicy{Count: MaxHistory + 1}},
	} {
		if _, err := Open(e.ctx, o); err == nil {
			t.Errorf("Open(%+v) accepted", o)
		}
	}
	s, err := Open(e.ctx, Options{DB: e.db, Audit: e.audit})
	if err != nil {
		t.Fatal(err)
	}
	if c, f := s.opts.Chatter, s.opts.Flood; c != (ChatterPolicy{5, 10 * time.Minute, 10 * time.Minute}) || f != (FloodPolicy{10, 10 * time.Minute}) {
		t.Errorf("defaults %+v %+v", c, f)
	}
}

func TestParseSeverity(t *testing.T) {
	for i, s := range Severities {
		got, err := ParseSeverity(string(s))
		if err != nil || got != s || got.Rank() != i+1 {
			t.Errorf("ParseSeverity(%s) = %s, %v, rank %d", s, got, err, got.Rank())
		}
	}
	for _, s := range []string{"", "High", "urgent"} {
		if _, err := ParseSeverity(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSeverity(%q) = %v", s, err)
		}
	}
}

package command

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

const pumpModel = `{"id":"acme:pump","version":"1.0.0","actions":{
	"setSpeed":{"input":{"rpm":{"type":"integer","minimum":0,"maximum":3000},
	                     "ramp":{"type":"string","enum":["soft","hard"]}}},
	"stop":{}}}`

// fakeClock is Options.Now and Options.After: Advance moves time and fires
// the timers it passed.
type fakeClock struct {
	mu      sync.Mutex
	t       time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.t
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.t.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.t) {
			w.ch <- c.t
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// env is a service on a real SQLite file with a real audit log, assembled as
// the hub assembles it, with a fake clock and a recorder of OnEvent.
type env struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	db    *store.DB
	audit *audit.Log
	clock *fakeClock
	svc   *Service

	mu       sync.Mutex
	events   []Event
	onAudits int
}

func newEnv(t *testing.T, dir string, clock *fakeClock, edit func(*Options)) *env {
	t.Helper()
	ctx := context.Background()
	if clock == nil {
		clock = &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	}
	e := &env{t: t, ctx: ctx, dir: dir, clock: clock}
	var err error
	if e.db, err = store.Open(ctx, filepath.Join(dir, "wanwu.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	if e.audit, err = audit.Open(ctx, e.db.W, key, "wanwu.hub/test"); err != nil {
		t.Fatal(err)
	}
	model, err := thingmodel.Parse([]byte(pumpModel))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		DB: e.db, Audit: e.audit, Now: clock.Now, After: clock.After,
		Model: func(_ context.Context, code string) (*thingmodel.Model, error) {
			switch {
			case strings.HasPrefix(code, "acme:pump-"):
				return model, nil
			case code == "acme:bare":
				return nil, nil
			}
			return nil, fmt.Errorf("device %s: %w", code, ErrNotFound)
		},
		OnAudit: func() { e.mu.Lock(); e.onAudits++; e.mu.Unlock() },
		OnEvent: func(ev Event) { e.mu.Lock(); e.events = append(e.events, ev); e.mu.Unlock() },
	}
	if edit != nil {
		edit(&opts)
	}
	if e.svc, err = Open(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.svc.Shutdown(context.Background()) })
	return e
}

func (e *env) issue(r IssueRequest) *Command {
	e.t.Helper()
	c, created, err := e.svc.Issue(e.ctx, "alice", r)
	if err != nil || !created {
		e.t.Fatalf("issue %+v: created %v, %v", r, created, err)
	}
	return c
}

func (e *env) get(id string) *Command {
	e.t.Helper()
	c, err := e.svc.Get(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// advance moves the clock and applies the deadlines that passed.
func (e *env) advance(d time.Duration) {
	e.t.Helper()
	e.clock.Advance(d)
	if err := e.svc.Sweep(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) kinds(id string) []string {
	e.t.Helper()
	evs, err := e.svc.Events(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Kind)
	}
	return out
}

func (e *env) auditKinds() []string {
	e.t.Helper()
	n, err := e.audit.Size(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	entries, err := e.audit.Entries(e.ctx, 0, n)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		out = append(out, en.Kind+" "+en.Subject+" "+en.Actor)
	}
	return out
}

// barrier returns once the delivery goroutine has handled every kick made
// before the call: it delivers a command to another device and waits for it
// (kicks are handled in order).
func (e *env) barrier() {
	e.t.Helper()
	k := newSink(nil)
	detach := e.svc.Attach("acme:pump-barrier", k)
	defer detach()
	c := e.issue(IssueRequest{Code: "acme:pump-barrier", Action: "stop"})
	got := k.next(e.t)
	if got.ID != c.ID {
		e.t.Fatalf("barrier got %s, want %s", got.ID, c.ID)
	}
	if _, err := e.svc.Cancel(e.ctx, "test", c.ID); err != nil {
		e.t.Fatal(err)
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// sink records what it is handed; confirm, if set, runs in Deliver.
type sink struct {
	ch      chan *Command
	confirm func(*Command)
}

func newSink(confirm func(*Command)) *sink {
	return &sink{ch: make(chan *Command, 100), confirm: confirm}
}

func (k *sink) Deliver(c *Command) error {
	k.ch <- c
	if k.confirm != nil {
		k.confirm(c)
	}
	return nil
}

func (k *sink) next(t *testing.T) *Command {
	t.Helper()
	select {
	case c := <-k.ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
		return nil
	}
}

func (k *sink) empty(t *testing.T) {
	t.Helper()
	select {
	case c := <-k.ch:
		t.Fatalf("unexpected delivery of %s (seq %d, attempt %d)", c.ID, c.Seq, c.Attempts)
	default:
	}
}

func confirming(e *env, code string) *sink {
	return newSink(func(c *Command) {
		if err := e.svc.Delivered(e.ctx, code, c.ID); err != nil {
			e.t.Errorf("delivered: %v", err)
		}
	})
}

func TestIssueValidation(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	tests := []struct {
		name    string
		req     IssueRequest
		is      []error
		mention string
	}{
		{"unknown action", IssueRequest{Code: "acme:pump-1", Action: "explode"}, []error{ErrInvalid, thingmodel.ErrUnknownAction}, "explode"},
		{"out of range", IssueRequest{Code: "acme:pump-1", Action: "setSpeed", Args: json.RawMessage(`{"rpm":5000,"ramp":"soft"}`)}, []error{ErrInvalid, thingmodel.ErrInvalidArgs}, `"rpm"`},
		{"missing arg", IssueRequest{Code: "acme:pump-1", Action: "setSpeed", Args: json.RawMessage(`{"rpm":5}`)}, []error{ErrInvalid, thingmodel.ErrInvalidArgs}, `"ramp"`},
		{"undeclared arg", IssueRequest{Code: "acme:pump-1", Action: "stop", Args: json.RawMessage(`{"now":true}`)}, []error{ErrInvalid, thingmodel.ErrInvalidArgs}, `"now"`},
		{"wrong type", IssueRequest{Code: "acme:pump-1", Action: "setSpeed", Args: json.RawMessage(`{"rpm":"fast","ramp":"soft"}`)}, []error{ErrInvalid, thingmodel.ErrInvalidArgs}, `"rpm"`},
		{"args not an object", IssueRequest{Code: "acme:pump-1", Action: "stop", Args: json.RawMessage(`[1]`)}, []error{ErrInvalid}, "object"},
		{"args not JSON", IssueRequest{Code: "acme:pump-1", Action: "stop", Args: json.RawMessage(`{"a":`)}, []error{ErrInvalid}, "JSON"},
		{"two values", IssueRequest{Code: "acme:pump-1", Action: "stop", Args: json.RawMessage(`{} {}`)}, []error{ErrInvalid}, "more than one"},
		{"args too large", IssueRequest{Code: "acme:pump-1", Action: "stop", Args: json.RawMessage(`{"a":"` + strings.Repeat("x", MaxArgsBytes) + `"}`)}, []error{ErrInvalid}, "bytes"},
		{"no model", IssueRequest{Code: "acme:bare", Action: "stop"}, []error{ErrInvalid}, "no thing model"},
		{"unknown device", IssueRequest{Code: "acme:ghost", Action: "stop"}, []error{ErrNotFound}, "acme:ghost"},
		{"bad code", IssueRequest{Code: "acme/pump", Action: "stop"}, []error{ErrInvalid}, "code"},
		{"bad id", IssueRequest{Code: "acme:pump-1", Action: "stop", ID: "a b"}, []error{ErrInvalid}, "id"},
		{"long id", IssueRequest{Code: "acme:pump-1", Action: "stop", ID: strings.Repeat("a", 65)}, []error{ErrInvalid}, "id"},
		{"negative ttl", IssueRequest{Code: "acme:pump-1", Action: "stop", TTL: -time.Second}, []error{ErrInvalid}, "ttl"},
		{"ttl too long", IssueRequest{Code: "acme:pump-1", Action: "stop", TTL: MaxTTL + time.Second}, []error{ErrInvalid}, "ttl"},
		{"result timeout too long", IssueRequest{Code: "acme:pump-1", Action: "stop", ResultTimeout: MaxResultTimeout + 1}, []error{ErrInvalid}, "result timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := e.svc.Issue(e.ctx, "alice", tt.req)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("error %q is not %v", err, target)
				}
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %s", err, tt.mention)
			}
		})
	}
	if got := e.auditKinds(); len(got) != 0 {
		t.Fatalf("rejected issues were audited: %v", got)
	}

	c := e.issue(IssueRequest{Code: "acme:pump-1", Action: "setSpeed", Args: json.RawMessage(` {"ramp": "soft", "rpm": 1200} `)})
	if c.Status != Queued || c.Seq != 1 || c.Tenant != "acme" || c.Actor != "alice" || string(c.Args) != `{"ramp":"soft","rpm":1200}` {
		t.Fatalf("issued %+v args %s", c, c.Args)
	}
	if len(c.ID) != 22 || ValidID(c.ID) != nil {
		t.Fatalf("generated id %q", c.ID)
	}
	if !c.ExpiresAt.Equal(c.CreatedAt.Add(DefaultTTL)) || c.ResultTimeout != DefaultResultTimeout {
		t.Fatalf("defaults: expires %v created %v result timeout %v", c.ExpiresAt, c.CreatedAt, c.ResultTimeout)
	}
	if got := e.auditKinds(); !slices.Equal(got, []string{"command.issued acme:pump-1 alice"}) {
		t.Fatalf("audit %v", got)
	}
	if e.onAudits != 1 {
		t.Fatalf("OnAudit called %d times", e.onAudits)
	}
	c2 := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop", Args: json.RawMessage(`null`)})
	if c2.Seq != 2 || string(c2.Args) != `{}` {
		t.Fatalf("second command seq %d args %s", c2.Seq, c2.Args)
	}
	if c3 := e.issue(IssueRequest{Code: "acme:pump-2", Action: "stop"}); c3.Seq != 1 {
		t.Fatalf("another device's first command has seq %d", c3.Seq)
	}
	// JSON round trip.
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"result_timeout_s":60`) || strings.Contains(string(b), "delivered_at") {
		t.Fatalf("JSON %s", b)
	}
	var back Command
	if err := json.Unmarshal(b, &back); err != nil || back.ResultTimeout != c.ResultTimeout || back.ID != c.ID || !back.CreatedAt.Equal(c.CreatedAt) {
		t.Fatalf("round trip %+v, %v", back, err)
	}
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	req := IssueRequest{ID: "op-42", Code: "acme:pump-1", Action: "setSpeed", Args: json.RawMessage(`{"rpm":10,"ramp":"hard"}`)}
	first := e.issue(req)
	e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"})
	tests := []struct {
		name string
		req  IssueRequest
		err  error
	}{
		{"same", req, nil},
		{"same args, other spelling", IssueRequest{ID: "op-42", Code: "acme:pump-1", Action: "setSpeed", Args: json.RawMessage(`{ "ramp":"hard", "rpm":10 }`), TTL: time.Hour}, nil},
		{"other args", IssueRequest{ID: "op-42", Code: "acme:pump-1", Action: "setSpeed", Args: json.RawMessage(`{"rpm":11,"ramp":"hard"}`)}, ErrIDConflict},
		{"other action", IssueRequest{ID: "op-42", Code: "acme:pump-1", Action: "stop"}, ErrIDConflict},
		{"other device", IssueRequest{ID: "op-42", Code: "acme:pump-2", Action: "setSpeed", Args: req.Args}, ErrIDConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, created, err := e.svc.Issue(e.ctx, "bob", tt.req)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if created || c.ID != first.ID || c.Seq != first.Seq || c.Actor != "alice" || !c.ExpiresAt.Equal(first.ExpiresAt) {
				t.Fatalf("replay gave created=%v %+v, want %+v", created, c, first)
			}
		})
	}
	if got := e.auditKinds(); len(got) != 2 {
		t.Fatalf("audit %v, want two issues", got)
	}
	if got := e.kinds(first.ID); !slices.Equal(got, []string{EventIssued}) {
		t.Fatalf("events %v", got)
	}
}

func TestOrderKept(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	var ids []string
	for i := range 5 {
		c := e.issue(IssueRequest{Code: "acme:pump-1", Action: "setSpeed", Args: fmt.Appendf(nil, `{"rpm":%d,"ramp":"soft"}`, i*100)})
		ids = append(ids, c.ID)
	}
	// The device connects after the commands were issued.
	k := confirming(e, "acme:pump-1")
	detach := e.svc.Attach("acme:pump-1", k)
	defer detach()
	for i, id := range ids {
		c := k.next(t)
		if c.ID != id || c.Seq != int64(i+1) || c.Attempts != 1 {
			t.Fatalf("delivery %d: %s seq %d attempt %d, want %s", i, c.ID, c.Seq, c.Attempts, id)
		}
	}
	for _, id := range ids {
		waitFor(t, "delivered", func() bool { c := e.get(id); return c.Status == Delivered && c.DeliveredAt != nil })
	}
	e.barrier()
	k.empty(t)
}

func TestOneUnconfirmedAtATime(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	k := newSink(nil)
	detach := e.svc.Attach("acme:pump-1", k)
	defer detach()
	a := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"})
	b := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"})
	if got := k.next(t); got.ID != a.ID {
		t.Fatalf("first delivery %s, want %s", got.ID, a.ID)
	}
	e.barrier()
	k.empty(t) // b waits for a's confirmation
	if p, err := e.svc.Pending(e.ctx, "acme:pump-1"); err != nil || p.ID != a.ID {
		t.Fatalf("pending %v, %v", p, err)
	}
	if err := e.svc.Delivered(e.ctx, "acme:pump-1", a.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Delivered(e.ctx, "acme:pump-1", a.ID); err != nil { // a duplicate PUBACK
		t.Fatal(err)
	}
	if err := e.svc.Delivered(e.ctx, "acme:pump-2", b.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("confirmation from another device: %v", err)
	}
	if got := k.next(t); got.ID != b.ID {
		t.Fatalf("second delivery %s, want %s", got.ID, b.ID)
	}
	if p, err := e.svc.Pending(e.ctx, "acme:pump-1"); err != nil || p.ID != b.ID {
		t.Fatalf("pending %v, %v", p, err)
	}
	if err := e.svc.Delivered(e.ctx, "acme:pump-1", b.ID); err != nil {
		t.Fatal(err)
	}
	if p, err := e.svc.Pending(e.ctx, "acme:pump-1"); err != nil || p != nil {
		t.Fatalf("pending %v, %v; want none", p, err)
	}
}

func TestRetryThenUndeliverable(t *testing.T) {
	const ack, backoff, maxBackoff = 10 * time.Second, time.Second, 4 * time.Second
	e := newEnv(t, t.TempDir(), nil, func(o *Options) {
		o.AckTimeout, o.RetryBackoff, o.MaxBackoff, o.MaxAttempts = ack, backoff, maxBackoff, 3
	})
	k := newSink(nil)
	detach := e.svc.Attach("acme:pump-1", k)
	defer detach()
	c := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"})
	if got := k.next(t); got.Attempts != 1 {
		t.Fatalf("attempt %d", got.Attempts)
	}
	e.advance(ack / 2) // not yet
	e.barrier()
	k.empty(t)
	e.advance(ack/2 + maxBackoff)
	if got := k.next(t); got.ID != c.ID || got.Attempts != 2 {
		t.Fatalf("redelivery %s attempt %d", got.ID, got.Attempts)
	}
	e.advance(ack + maxBackoff)
	if got := k.next(t); got.Attempts != 3 {
		t.Fatalf("redelivery attempt %d", got.Attempts)
	}
	e.advance(ack - time.Millisecond) // the last attempt waits AckTimeout, no backoff
	if got := e.get(c.ID); got.Status != Queued {
		t.Fatalf("status %s before the last wait ended", got.Status)
	}
	e.advance(time.Millisecond)
	got := e.get(c.ID)
	if got.Status != Failed || got.Reason != ReasonUndeliverable || got.Attempts != 3 || got.DoneAt == nil {
		t.Fatalf("after the last attempt: %+v", got)
	}
	want := []string{EventIssued, EventSent, EventRetry, EventRetry, EventFailed}
	if kinds := e.kinds(c.ID); !slices.Equal(kinds, want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	e.barrier()
	k.empty(t)
}

func TestBackoff(t *testing.T) {
	s := &Service{opts: Options{RetryBackoff: time.Second, MaxBackoff: 10 * time.Second}}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 60: 10 * time.Second} {
		for range 20 {
			if d := s.backoff(n); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

func TestReattachRedelivers(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	k1 := newSink(nil)
	detach1 := e.svc.Attach("acme:pump-1", k1)
	c := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"})
	k1.next(t)
	detach1()
	k2 := confirming(e, "acme:pump-1")
	defer e.svc.Attach("acme:pump-1", k2)()
	if got := k2.next(t); got.ID != c.ID || got.Attempts != 2 {
		t.Fatalf("after reconnecting: %s attempt %d", got.ID, got.Attempts)
	}
	waitFor(t, "delivered", func() bool { return e.get(c.ID).Status == Delivered })
}

func TestExpiryOffline(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	c := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop", TTL: time.Hour})
	long := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop", TTL: 2 * time.Hour})
	// No explicit Sweep: the timer goroutine must notice.
	e.clock.Advance(time.Hour - time.Millisecond)
	e.barrier()
	if got := e.get(c.ID); got.Status != Queued {
		t.Fatalf("expired early: %s", got.Status)
	}
	e.clock.Advance(time.Millisecond)
	waitFor(t, "expiry", func() bool { return e.get(c.ID).Status == Expired })
	got := e.get(c.ID)
	if got.Reason != ReasonExpired || got.DoneAt == nil || got.Attempts != 0 {
		t.Fatalf("expired command %+v", got)
	}
	// The device connects: only the live command goes out.
	k := confirming(e, "acme:pump-1")
	defer e.svc.Attach("acme:pump-1", k)()
	if d := k.next(t); d.ID != long.ID {
		t.Fatalf("delivered %s, want %s", d.ID, long.ID)
	}
	if kinds := e.kinds(c.ID); !slices.Equal(kinds, []string{EventIssued, EventExpired}) {
		t.Fatalf("events %v", kinds)
	}
}

func TestTimedOut(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	k := confirming(e, "acme:pump-1")
	defer e.svc.Attach("acme:pump-1", k)()
	c := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop", ResultTimeout: 30 * time.Second})
	k.next(t)
	waitFor(t, "delivered", func() bool { return e.get(c.ID).Status == Delivered })
	e.advance(29 * time.Second)
	if got := e.get(c.ID); got.Status != Delivered {
		t.Fatalf("timed out early: %s", got.Status)
	}
	e.advance(time.Second)
	got := e.get(c.ID)
	if got.Status != TimedOut || got.Reason != ReasonTimedOut || got.DoneAt == nil {
		t.Fatalf("%+v", got)
	}
	// A result after the timeout is recorded but changes nothing.
	late, err := e.svc.Result(e.ctx, "acme:pump-1", c.ID, Result{Status: "succeeded"})
	if !errors.Is(err, ErrFinished) || late == nil || late.Status != TimedOut {
		t.Fatalf("late result: %+v, %v", late, err)
	}
	evs, err := e.svc.Events(e.ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	if last.Kind != EventLateResult || last.Command.Status != TimedOut || string(last.Data) != `{"status":"succeeded"}` {
		t.Fatalf("last event %+v data %s", last, last.Data)
	}
	for range 2 * maxLateResults {
		e.svc.Result(e.ctx, "acme:pump-1", c.ID, Result{Status: "failed", Reason: "late"})
	}
	if n := len(e.kinds(c.ID)); n != len(evs)-1+maxLateResults {
		t.Fatalf("%d events: late results are not capped", n)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	a := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"})
	b := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"})
	got, err := e.svc.Cancel(e.ctx, "carol", a.ID)
	if err != nil || got.Status != Canceled || got.DoneAt == nil {
		t.Fatalf("cancel: %+v, %v", got, err)
	}
	if _, err := e.svc.Cancel(e.ctx, "carol", a.ID); !errors.Is(err, ErrFinished) {
		t.Fatalf("second cancel: %v", err)
	}
	if _, err := e.svc.Cancel(e.ctx, "carol", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
	if _, err := e.svc.Cancel(e.ctx, "", b.ID); err == nil {
		t.Fatal("cancel without an actor")
	}
	// The canceled head no longer holds up the queue.
	k := confirming(e, "acme:pump-1")
	defer e.svc.Attach("acme:pump-1", k)()
	if d := k.next(t); d.ID != b.ID {
		t.Fatalf("delivered %s, want %s", d.ID, b.ID)
	}
	waitFor(t, "delivered", func() bool { return e.get(b.ID).Status == Delivered })
	if got, err := e.svc.Cancel(e.ctx, "carol", b.ID); err != nil || got.Status != Canceled {
		t.Fatalf("cancel delivered: %+v, %v", got, err)
	}
	want := []string{"command.issued acme:pump-1 alice", "command.issued acme:pump-1 alice", "command.canceled acme:pump-1 carol", "command.canceled acme:pump-1 carol"}
	if got := e.auditKinds(); !slices.Equal(got, want) {
		t.Fatalf("audit %v", got)
	}
	if _, err := e.svc.Result(e.ctx, "acme:pump-1", b.ID, Result{Status: "succeeded"}); !errors.Is(err, ErrFinished) {
		t.Fatalf("result after cancel: %v", err)
	}
}

func TestResults(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	tests := []struct {
		name       string
		deliver    bool
		code       string
		res        Result
		err        error
		wantStatus Status
	}{
		{"success with output", true, "acme:pump-1", Result{Status: "succeeded", Output: json.RawMessage(`{"b":1, "a":true}`)}, nil, Succeeded},
		{"failure with reason", true, "acme:pump-1", Result{Status: "failed", Reason: "motor jammed"}, nil, Failed},
		{"result before confirmation", false, "acme:pump-1", Result{Status: "succeeded"}, nil, Succeeded},
		{"another device", true, "acme:pump-2", Result{Status: "succeeded"}, ErrNotFound, Delivered},
		{"bad status", true, "acme:pump-1", Result{Status: "done"}, ErrInvalid, Delivered},
		{"output not an object", true, "acme:pump-1", Result{Status: "succeeded", Output: json.RawMessage(`[1]`)}, ErrInvalid, Delivered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"})
			if tt.deliver {
				if err := e.svc.Delivered(e.ctx, "acme:pump-1", c.ID); err != nil {
					t.Fatal(err)
				}
			}
			got, err := e.svc.Result(e.ctx, tt.code, c.ID, tt.res)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			stored := e.get(c.ID)
			if stored.Status != tt.wantStatus {
				t.Fatalf("status %s, want %s", stored.Status, tt.wantStatus)
			}
			if err != nil {
				e.svc.Cancel(e.ctx, "test", c.ID) // clear the head for the next case
				return
			}
			if got.Status != tt.wantStatus || stored.Reason != tt.res.Reason || stored.DeliveredAt == nil || stored.DoneAt == nil {
				t.Fatalf("result %+v stored %+v", got, stored)
			}
			if tt.res.Output != nil && string(stored.Output) != `{"a":true,"b":1}` {
				t.Fatalf("output %s", stored.Output)
			}
			before := e.kinds(c.ID)
			again, err := e.svc.Result(e.ctx, tt.code, c.ID, tt.res)
			if err != nil || again.Status != tt.wantStatus {
				t.Fatalf("repeat: %+v, %v", again, err)
			}
			if after := e.kinds(c.ID); !slices.Equal(before, after) {
				t.Fatalf("repeat changed the history: %v → %v", before, after)
			}
		})
	}
	if _, err := e.svc.Result(e.ctx, "acme:pump-1", "nope", Result{Status: "failed"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown command: %v", err)
	}
}

func TestRestartResumes(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	e1 := newEnv(t, dir, clock, nil)
	k := newSink(nil)
	e1.svc.Attach("acme:pump-1", k)
	a := e1.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"})
	b := e1.issue(IssueRequest{Code: "acme:pump-1", Action: "setSpeed", Args: json.RawMessage(`{"rpm":1,"ramp":"soft"}`)})
	off := e1.issue(IssueRequest{Code: "acme:pump-2", Action: "stop", TTL: time.Hour})
	if got := k.next(t); got.ID != a.ID {
		t.Fatalf("delivered %s", got.ID)
	}
	if err := e1.svc.Shutdown(e1.ctx); err != nil {
		t.Fatal(err)
	}
	e1.db.Close()

	e2 := newEnv(t, dir, clock, nil)
	for id, attempts := range map[string]int{a.ID: 1, b.ID: 0, off.ID: 0} {
		if c := e2.get(id); c.Status != Queued || c.Attempts != attempts {
			t.Fatalf("%s after restart: %s, %d attempts", id, c.Status, c.Attempts)
		}
	}
	k2 := confirming(e2, "acme:pump-1")
	defer e2.svc.Attach("acme:pump-1", k2)()
	if got := k2.next(t); got.ID != a.ID || got.Attempts != 2 {
		t.Fatalf("after restart: %s attempt %d, want %s again", got.ID, got.Attempts, a.ID)
	}
	if got := k2.next(t); got.ID != b.ID {
		t.Fatalf("after restart: %s, want %s", got.ID, b.ID)
	}
	// The restarted timer still expires the offline device's command.
	clock.Advance(time.Hour)
	waitFor(t, "expiry after restart", func() bool { return e2.get(off.ID).Status == Expired })
	if c := e2.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"}); c.Seq != 3 {
		t.Fatalf("sequence after restart: %d", c.Seq)
	}
}

func TestEventsRecorded(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	k := confirming(e, "acme:pump-1")
	defer e.svc.Attach("acme:pump-1", k)()
	c := e.issue(IssueRequest{Code: "acme:pump-1", Action: "setSpeed", Args: json.RawMessage(`{"rpm":7,"ramp":"hard"}`)})
	k.next(t)
	waitFor(t, "delivered", func() bool { return e.get(c.ID).Status == Delivered })
	if _, err := e.svc.Result(e.ctx, "acme:pump-1", c.ID, Result{Status: "succeeded", Output: json.RawMessage(`{"rpm":7}`)}); err != nil {
		t.Fatal(err)
	}
	stored, err := e.svc.Events(e.ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var statuses []Status
	for i, ev := range stored {
		kinds = append(kinds, ev.Kind)
		statuses = append(statuses, ev.Command.Status)
		if i > 0 && ev.Seq <= stored[i-1].Seq {
			t.Fatalf("event seqs not increasing: %v", stored)
		}
		if ev.Command.ID != c.ID || string(ev.Command.Args) != `{"ramp":"hard","rpm":7}` {
			t.Fatalf("event command %+v", ev.Command)
		}
	}
	if want := []string{EventIssued, EventSent, EventDelivered, EventSucceeded}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	if want := []Status{Queued, Queued, Delivered, Succeeded}; !slices.Equal(statuses, want) {
		t.Fatalf("statuses %v, want %v", statuses, want)
	}
	if last := stored[3].Command; string(last.Output) != `{"rpm":7}` || last.DoneAt == nil || last.DeliveredAt == nil {
		t.Fatalf("final snapshot %+v", last)
	}
	// OnEvent saw the same events, in the same order, after their commits.
	e.mu.Lock()
	var seen []Event
	for _, ev := range e.events {
		if ev.Command.ID == c.ID {
			seen = append(seen, ev)
		}
	}
	e.mu.Unlock()
	if len(seen) != len(stored) {
		t.Fatalf("OnEvent saw %d events, stored %d", len(seen), len(stored))
	}
	for i := range seen {
		if seen[i].Seq != stored[i].Seq || seen[i].Kind != stored[i].Kind || seen[i].Command.Status != stored[i].Command.Status || !seen[i].Time.Equal(stored[i].Time) {
			t.Fatalf("event %d: OnEvent %+v, stored %+v", i, seen[i], stored[i])
		}
	}
	e.mu.Lock()
	for i := 1; i < len(e.events); i++ {
		if e.events[i].Seq <= e.events[i-1].Seq {
			t.Fatalf("OnEvent out of order at %d", i)
		}
	}
	e.mu.Unlock()
	if _, err := e.svc.Events(e.ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("events of unknown command: %v", err)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	var ids []string
	for range 3 {
		ids = append(ids, e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"}).ID)
		e.clock.Advance(time.Second)
	}
	other := e.issue(IssueRequest{Code: "acme:pump-2", Action: "stop"})
	if _, err := e.svc.Cancel(e.ctx, "alice", ids[1]); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		code   string
		status Status
		limit  int
		want   []string
	}{
		{"acme:pump-1", "", 0, []string{ids[2], ids[1], ids[0]}},
		{"acme:pump-1", Queued, 0, []string{ids[2], ids[0]}},
		{"acme:pump-1", Canceled, 0, []string{ids[1]}},
		{"acme:pump-1", "", 1, []string{ids[2]}},
		{"", "", 0, []string{other.ID, ids[2], ids[1], ids[0]}},
		{"acme:pump-3", "", 0, nil},
	}
	for _, tt := range tests {
		got, err := e.svc.List(e.ctx, tt.code, tt.status, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		var gotIDs []string
		for _, c := range got {
			gotIDs = append(gotIDs, c.ID)
		}
		if !slices.Equal(gotIDs, tt.want) {
			t.Errorf("List(%q, %q, %d) = %v, want %v", tt.code, tt.status, tt.limit, gotIDs, tt.want)
		}
	}
	if _, err := e.svc.List(e.ctx, "", "bogus", 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad status: %v", err)
	}
}

func TestDecodeResult(t *testing.T) {
	tests := []struct {
		in   string
		want Result
		err  bool
	}{
		{`{"status":"succeeded"}`, Result{Status: "succeeded"}, false},
		{`{"status":"failed","reason":"jammed","output":{"z":1,"a":[1,2]}}`, Result{Status: "failed", Reason: "jammed", Output: json.RawMessage(`{"a":[1,2],"z":1}`)}, false},
		{`{"status":"succeeded","output":null}`, Result{Status: "succeeded"}, false},
		{`{"status":"ok"}`, Result{}, true},
		{`{"status":"succeeded","extra":1}`, Result{}, true},
		{`{"status":"succeeded","output":"x"}`, Result{}, true},
		{`{"status":"succeeded"} {}`, Result{}, true},
		{`{"status":"failed","reason":"` + strings.Repeat("x", MaxReasonLen+1) + `"}`, Result{}, true},
		{`{"status":"failed","reason":"\xff"}`, Result{}, true},
		{`[]`, Result{}, true},
		{``, Result{}, true},
		{`{"status":"succeeded","output":{"a":"` + strings.Repeat("x", MaxResultBytes) + `"}}`, Result{}, true},
	}
	for _, tt := range tests {
		got, err := DecodeResult([]byte(tt.in))
		if tt.err {
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Errorf("DecodeResult(%.40q) = %+v, %v; want ErrInvalid", tt.in, got, err)
			}
			continue
		}
		if err != nil || got.Status != tt.want.Status || got.Reason != tt.want.Reason || string(got.Output) != string(tt.want.Output) {
			t.Errorf("DecodeResult(%q) = %+v (%s), %v; want %+v", tt.in, got, got.Output, err, tt.want)
		}
	}
}

// TestAttachedDeviceGetsCommandInTheIssuingCommit: for an attached device
// the first attempt is recorded in the transaction that issues the command,
// and the next queued command in the one that records a confirmation: both
// are with the sink when Issue and Delivered return, with no delivery pass
// (and no commit) of their own.
func TestAttachedDeviceGetsCommandInTheIssuingCommit(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	k := newSink(nil)
	defer e.svc.Attach("acme:pump-1", k)()
	e.barrier()
	a := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"})
	b := e.issue(IssueRequest{Code: "acme:pump-1", Action: "stop"})
	select {
	case got := <-k.ch:
		if got.ID != a.ID || got.Attempts != 1 {
			t.Fatalf("handed %s attempt %d, want %s attempt 1", got.ID, got.Attempts, a.ID)
		}
	default:
		t.Fatal("Issue returned before the attached device's sink had the command")
	}
	if got := e.kinds(a.ID); !slices.Equal(got, []string{EventIssued, EventSent}) {
		t.Fatalf("events %v", got)
	}
	if err := e.svc.Delivered(e.ctx, "acme:pump-1", a.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-k.ch:
		if got.ID != b.ID {
			t.Fatalf("handed %s, want %s", got.ID, b.ID)
		}
	default:
		t.Fatal("Delivered returned before the next command was handed over")
	}
	e.barrier()
	k.empty(t)
}

// TestWritesShareACommit: writes that wait while another commits are
// committed together, each in a savepoint of its own: one that fails after
// writing (here an audit entry) leaves nothing behind, and the others
// commit, with sequences and events in order.
func TestWritesShareACommit(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil, nil)
	errBoom := errors.New("boom")
	// Hold a commit open so that the writes below queue up behind it.
	held, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- e.svc.write(e.ctx, "test", func(*change) error { close(held); <-release; return nil })
	}()
	<-held
	const n = 40
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%4 == 3 {
				errs[i] = e.svc.write(e.ctx, "mallory", func(c *change) error {
					if err := c.audit("test.rolled_back", "acme", "acme:pump-1", map[string]int{"i": i}); err != nil {
						return err
					}
					return errBoom
				})
				return
			}
			_, _, errs[i] = e.svc.Issue(e.ctx, "alice", IssueRequest{ID: fmt.Sprintf("c-%02d", i), Code: "acme:pump-1", Action: "stop"})
		}()
	}
	waitFor(t, "the writes queued", func() bool { return e.db.WritesWaiting() == n })
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	issued := 0
	for i, err := range errs {
		switch {
		case i%4 == 3 && !errors.Is(err, errBoom):
			t.Fatalf("failing write %d returned %v", i, err)
		case i%4 != 3 && err != nil:
			t.Fatalf("issue %d: %v", i, err)
		case i%4 != 3:
			issued++
		}
	}
	kinds := e.auditKinds()
	if len(kinds) != issued {
		t.Fatalf("audit log has %d entries, want the %d issues: %v", len(kinds), issued, kinds)
	}
	for _, k := range kinds {
		if !strings.HasPrefix(k, "command.issued ") {
			t.Fatalf("audit entry %q of a rolled-back write", k)
		}
	}
	list, err := e.svc.List(e.ctx, "acme:pump-1", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, c := range list {
		seqs = append(seqs, c.Seq)
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("sequences %v, want 1..%d", seqs, issued)
		}
	}
	if len(seqs) != issued {
		t.Fatalf("%d commands, want %d", len(seqs), issued)
	}
	waitFor(t, "the events", func() bool { e.mu.Lock(); defer e.mu.Unlock(); return len(e.events) == issued })
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := 1; i < len(e.events); i++ {
		if e.events[i].Seq <= e.events[i-1].Seq {
			t.Fatalf("event %d has sequence %d after %d: not in commit order", i, e.events[i].Seq, e.events[i-1].Seq)
		}
	}
}

// TestHeldWhileAsleep: a device that Reach says is asleep gets no
// delivery attempt while attached: its commands stay queued with no
// attempts and their expected delivery time, a redelivery due while it
// sleeps waits too, nothing fails as undeliverable for it, and Wake
// sends what waited once it is reachable again.
func TestHeldWhileAsleep(t *testing.T) {
	var mu sync.Mutex
	asleep := true
	var next time.Time
	e := newEnv(t, t.TempDir(), nil, func(o *Options) {
		o.AckTimeout, o.RetryBackoff, o.MaxBackoff, o.MaxAttempts = 10*time.Second, time.Second, time.Second, 2
		o.Reach = func(_ context.Context, code string) (bool, time.Time, error) {
			mu.Lock()
			defer mu.Unlock()
			if code != "acme:pump-psm" {
				return false, time.Time{}, nil
			}
			return asleep, next, nil
		}
	})
	setAsleep := func(a bool, at time.Time) {
		mu.Lock()
		asleep, next = a, at
		mu.Unlock()
	}
	next = e.clock.Now().Add(time.Hour)
	k := newSink(nil)
	defer e.svc.Attach("acme:pump-psm", k)()
	c := e.issue(IssueRequest{Code: "acme:pump-psm", Action: "stop"})
	if c.Status != Queued || c.Attempts != 0 || c.ExpectedDeliveryAt == nil || !c.ExpectedDeliveryAt.Equal(next) {
		t.Fatalf("issued to a sleeping device: %+v", c)
	}
	e.barrier()
	k.empty(t)
	list, err := e.svc.List(e.ctx, "acme:pump-psm", "", 0)
	if err != nil || len(list) != 1 || list[0].ExpectedDeliveryAt == nil {
		t.Fatalf("list %+v %v", list, err)
	}
	// Time passes beyond every ack timeout: still queued, no attempts.
	e.advance(time.Minute)
	if got := e.get(c.ID); got.Status != Queued || got.Attempts != 0 {
		t.Fatalf("while asleep: %+v", got)
	}
	// It wakes: the command goes out, without an expected time.
	setAsleep(false, time.Time{})
	e.svc.Wake("acme:pump-psm")
	if got := k.next(t); got.ID != c.ID || got.Attempts != 1 {
		t.Fatalf("after waking: %s attempt %d", got.ID, got.Attempts)
	}
	if got := e.get(c.ID); got.ExpectedDeliveryAt != nil {
		t.Errorf("awake, yet expected at %v", got.ExpectedDeliveryAt)
	}
	// It falls asleep before confirming: the redelivery waits for it,
	// past its last attempt's deadline, and does not count.
	setAsleep(true, e.clock.Now().Add(time.Hour))
	e.advance(11 * time.Second)
	e.advance(time.Minute)
	e.barrier()
	k.empty(t)
	if got := e.get(c.ID); got.Status != Queued || got.Attempts != 1 {
		t.Fatalf("redelivery while asleep: %+v", got)
	}
	// A device that is awake is not kicked by Wake, nor held.
	e.svc.Wake("acme:pump-other")
	setAsleep(false, time.Time{})
	e.svc.Wake("acme:pump-psm")
	got := k.next(t)
	if got.ID != c.ID || got.Attempts != 2 {
		t.Fatalf("second wake: %s attempt %d", got.ID, got.Attempts)
	}
	if err := e.svc.Delivered(e.ctx, "acme:pump-psm", c.ID); err != nil {
		t.Fatal(err)
	}
	if got := e.get(c.ID); got.Status != Delivered {
		t.Errorf("after confirmation: %+v", got)
	}
	want := []string{EventIssued, EventSent, EventRetry, EventDelivered}
	if kinds := e.kinds(c.ID); !slices.Equal(kinds, want) {
		t.Errorf("events %v, want %v", kinds, want)
	}
}

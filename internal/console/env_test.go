package console

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/registry"
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

// env is a console over a real registry and presence service on SQLite,
// assembled as the hub assembles them, with a Prometheus registry holding
// the counters the fleet page reads, served by an httptest server.
type env struct {
	t        *testing.T
	ctx      context.Context
	reg      *registry.Registry
	presence *presence.Service
	prom     *prometheus.Registry
	ingest   *prometheus.CounterVec
	dead     *prometheus.CounterVec
	refused  *prometheus.CounterVec
	clock    *clock
	c        *Console
	srv      *httptest.Server
	audit    *audit.Log
}

// newEnv starts a console; edit may change its options, tls serves it over
// HTTPS.
func newEnv(t *testing.T, tlsServer bool, edit func(*Options)) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{t: t, ctx: ctx, clock: &clock{t: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}, prom: prometheus.NewRegistry()}
	db, err := store.Open(ctx, filepath.Join(dir, "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	authority, _, err := ca.LoadOrCreate(dir, "test-deployment")
	if err != nil {
		t.Fatal(err)
	}
	signer, _, err := keys.LoadOrCreateEd25519(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(ctx, db.W, signer, "wanwu.hub/test-deployment")
	if err != nil {
		t.Fatal(err)
	}
	e.audit = log
	if e.reg, err = registry.New(registry.Options{DB: db, CA: authority, Signer: signer, Audit: log, DeploymentID: "test-deployment", Now: e.clock.now}); err != nil {
		t.Fatal(err)
	}
	if e.presence, err = presence.Open(ctx, presence.Options{DB: db, Now: e.clock.now, Metrics: prometheus.NewRegistry()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.presence.Shutdown(context.Background()) })
	e.ingest = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricIngest, Help: "x"}, []string{"source", "result"})
	e.dead = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricDeadLetters, Help: "x"}, []string{"reason"})
	e.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricMQTTRejected, Help: "x"}, []string{"reason"})
	e.prom.MustRegister(e.ingest, e.dead, e.refused)
	opts := Options{
		Registry: e.reg, Audit: log, Presence: e.presence, Gatherer: e.prom, Metrics: e.prom,
		Logger: slog.New(slog.DiscardHandler), Role: "hub", Code: "test-deployment", Version: "test", Now: e.clock.now,
	}
	if edit != nil {
		edit(&opts)
	}
	if e.c, err = New(opts); err != nil {
		t.Fatal(err)
	}
	if tlsServer {
		e.srv = httptest.NewTLSServer(e.c)
	} else {
		e.srv = httptest.NewServer(e.c)
	}
	t.Cleanup(e.srv.Close)
	return e
}

// token creates an API token and returns its secret.
func (e *env) token(name string, role auth.Role, tenant string) string {
	e.t.Helper()
	_, secret, err := e.reg.CreateToken(e.ctx, "test", name, role, tenant)
	if err != nil {
		e.t.Fatal(err)
	}
	return secret
}

func (e *env) tenant(name string) {
	e.t.Helper()
	if _, err := e.reg.CreateTenant(e.ctx, "test", name, "", ""); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) register(req registry.RegisterRequest) *registry.Object {
	e.t.Helper()
	r, err := e.reg.Register(e.ctx, "test", req)
	if err != nil {
		e.t.Fatalf("register %s: %v", req.Code, err)
	}
	return r.Object
}

// browser is a browser of the env's console.
func (e *env) browser() *consoletest.Browser {
	return consoletest.New(e.t, e.srv.URL, e.srv.Client().Transport)
}

// text is a page's visible text.
func text(html string) string { return consoletest.Text(html) }

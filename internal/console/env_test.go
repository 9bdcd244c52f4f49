package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/ca"
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
		Registry: e.reg, Presence: e.presence, Gatherer: e.prom, Metrics: e.prom,
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

// browser is a client with a cookie jar that does not follow redirects,
// so that each answer can be checked.
type browser struct {
	t    *testing.T
	e    *env
	c    *http.Client
	csrf string // the session's CSRF token, read from the last page
}

func (e *env) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c := e.srv.Client()
	return &browser{t: e.t, e: e, c: &http.Client{
		Transport: c.Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// answer is a response with its body read.
type answer struct {
	status int
	header http.Header
	body   string
	resp   *http.Response
}

func (a answer) location() string { return a.header.Get("Location") }

func (a answer) cookie(name string) *http.Cookie {
	for _, c := range a.resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// do sends a request; headers come in pairs.
func (b *browser) do(method, path string, form url.Values, headers ...string) answer {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.srv.URL+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(raw), resp: resp}
	if m := csrfRE.FindStringSubmatch(a.body); m != nil {
		b.csrf = m[1]
	}
	return a
}

func (b *browser) get(path string, headers ...string) answer {
	b.t.Helper()
	return b.do(http.MethodGet, path, nil, headers...)
}

func (b *browser) post(path string, form url.Values, headers ...string) answer {
	b.t.Helper()
	return b.do(http.MethodPost, path, form, headers...)
}

// origin is the Origin header of a same-origin request from a browser.
func (b *browser) origin() []string {
	return []string{"Origin", b.e.srv.URL, "Sec-Fetch-Site", "same-origin"}
}

// signIn signs in with secret through the form, as a browser does; it
// returns the POST's answer.
func (b *browser) signIn(secret, next string) answer {
	b.t.Helper()
	page := b.get("/signin?next=" + url.QueryEscape(next))
	if page.status != http.StatusOK {
		b.t.Fatalf("GET /signin: %d %s", page.status, page.body)
	}
	return b.post("/signin", url.Values{"token": {secret}, "csrf": {b.csrf}, "next": {next}}, b.origin()...)
}

// mustSignIn signs in and fails the test unless it worked.
func (b *browser) mustSignIn(secret string) {
	b.t.Helper()
	a := b.signIn(secret, "/")
	if a.status != http.StatusSeeOther || a.location() != "/" {
		b.t.Fatalf("sign-in: %d to %q: %s", a.status, a.location(), a.body)
	}
	if page := b.get("/"); page.status != http.StatusOK {
		b.t.Fatalf("fleet after sign-in: %d %s", page.status, page.body)
	}
}

// mustGet fetches a page and fails unless its status is want.
func (b *browser) mustGet(want int, path string, headers ...string) answer {
	b.t.Helper()
	a := b.get(path, headers...)
	if a.status != want {
		b.t.Fatalf("GET %s: %d, want %d (to %q): %s", path, a.status, want, a.location(), a.body)
	}
	return a
}

// text is a page's visible text with the tags removed and the spaces
// collapsed, for checks that do not depend on markup.
func text(html string) string {
	s := regexp.MustCompile(`(?s)<[^>]*>`).ReplaceAllString(html, " ")
	return strings.Join(strings.Fields(s), " ")
}

package hubtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
)

// TestConsoleHub: the hub serves the console at / beside its API: sign in
// with the admin token from the data directory, the fleet counts the
// objects registered through the API, the search finds one by code,
// number and DID, a tenant-bound token sees its tenant only; the API,
// /healthz and /metrics answer as before.
func TestConsoleHub(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "beta"})
	var reg struct {
		Object struct{ Code, Number, DID string }
	}
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:pump-1", "network": "nb-iot"}).JSON(t, &reg)
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:pump-2", "network": "nb-iot"})
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "beta:meter-1"})
	h.MustAdmin(200, "POST", "/api/v1/objects/acme:pump-2/quarantine", map[string]any{"reason": "test"})

	cc := consoletest.New(t, h.URL, nil)
	resp := cc.Get("/")
	if resp.Status != http.StatusSeeOther || resp.Location() != "/signin" {
		t.Fatalf("GET / signed out: %d to %q", resp.Status, resp.Location())
	}
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Error("the console's redirect has no CSP")
	}
	page := cc.MustSignIn(h.AdminToken, "/").Text()
	for _, want := range []string{"wanwu hub", "3 objects", "1 quarantined", "acme 2 1 1 0 0", "beta 1 1 0 0 0", "nb-iot 2", "Device messages"} {
		if !strings.Contains(page, want) {
			t.Errorf("fleet page lacks %q: %s", want, page)
		}
	}
	for _, key := range []string{"acme:pump-1", reg.Object.Number, reg.Object.DID} {
		resp := cc.Get("/search?q=" + url.QueryEscape(key))
		if resp.Status != http.StatusSeeOther || resp.Location() != "/objects/acme:pump-1" {
			t.Errorf("search %s: %d to %q", key, resp.Status, resp.Location())
		}
	}
	resp = cc.Get("/objects/acme:pump-1")
	if resp.Status != http.StatusOK || !strings.Contains(resp.Body, reg.Object.DID) {
		t.Errorf("object page: %d", resp.Status)
	}

	// A token bound to beta, made with the API.
	var tok struct{ Secret string }
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "beta-viewer", "role": "viewer", "tenant": "beta"}).JSON(t, &tok)
	if tok.Secret == "" {
		t.Fatal("no token secret")
	}
	beta := consoletest.New(t, h.URL, nil)
	page = beta.MustSignIn(tok.Secret, "/").Text()
	if !strings.Contains(page, "1 objects") || strings.Contains(page, "acme 2") {
		t.Errorf("beta's fleet: %s", page)
	}
	if resp := beta.Get("/objects/acme:pump-1"); resp.Status != http.StatusNotFound {
		t.Errorf("beta opens acme's object: %d", resp.Status)
	}
	// Revoking the token through the API ends its console session.
	h.MustAdmin(200, "DELETE", "/api/v1/tokens/beta-viewer", nil)
	if resp := beta.Get("/"); resp.Status != http.StatusSeeOther || resp.Location() != "/signin?reason=revoked" {
		t.Errorf("after revocation: %d to %q", resp.Status, resp.Location())
	}

	// The API is the API still: its 404 is JSON, /healthz and /metrics
	// answer, and the console's paths are not API routes.
	r := h.Admin("GET", "/api/v1/nothing", nil)
	if r.Status != http.StatusNotFound || !json.Valid(r.Body) {
		t.Errorf("/api/v1/nothing: %d %s", r.Status, r.Body)
	}
	if r := h.Do("GET", "/healthz", "", nil); r.Status != 200 || !strings.Contains(string(r.Body), "ok") {
		t.Errorf("/healthz: %d %s", r.Status, r.Body)
	}
	if r := h.Do("GET", "/metrics", "", nil); r.Status != 200 || !strings.Contains(string(r.Body), "wanwu_console_signins_total") {
		t.Errorf("/metrics lacks the console's sign-ins: %d", r.Status)
	}
	if resp := cc.Get("/no-such-page"); resp.Status != http.StatusNotFound || !strings.Contains(resp.Body, "The console has no page at /no-such-page.") {
		t.Errorf("unknown path: %d", resp.Status)
	}
}

// TestConsoleEdge: an edge serves its own console, signed in with the
// edge's token; it names itself and counts the objects its replica holds.
func TestConsoleEdge(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:cell-1", "edge": "acme:edge-1"})
	e := StartEdge(t, dir, h.HTTPSURL())
	cc := consoletest.New(t, e.URL(), nil)
	page := cc.MustSignIn(e.Token, "/").Text()
	if !strings.Contains(page, "wanwu edge acme:edge-1") {
		t.Errorf("the edge's console does not name it: %s", page)
	}
	eventually(t, "the device behind the edge in its console", func() error {
		body := cc.Get("/objects/acme:cell-1").Body
		if !strings.Contains(body, "<code>acme:cell-1</code>") || !strings.Contains(body, `id="presence"`) {
			return fmt.Errorf("object page: %s", consoletest.Text(body))
		}
		return nil
	})
}

// TestConsoleConfig: the console's keys reach the hub's and the edge's
// consoles: behind a proxy that terminates TLS (console.secure_cookies)
// the cookies are Secure over plain HTTP, and a sign-in lasts
// console.session_lifetime.
func TestConsoleConfig(t *testing.T) {
	set := func(c *config.Hub) {
		c.Console.SecureCookies = true
		c.Console.SessionLifetime = config.Duration(2 * time.Hour)
	}
	h := Start(t, set)
	dir := t.TempDir()
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	e := StartEdge(t, dir, h.HTTPSURL(), set)
	for _, node := range []struct{ name, url, token string }{{"hub", h.URL, h.AdminToken}, {"edge", e.URL(), e.Token}} {
		b := consoletest.New(t, node.url, nil)
		page := b.MustGet(http.StatusOK, "/signin")
		form := page.Cookie("wanwu_signin")
		if form == nil || !form.Secure {
			t.Fatalf("%s: the sign-in form's cookie over plain HTTP: %+v", node.name, form)
		}
		// The browser behind the proxy sends the Secure cookie back (over
		// HTTPS to the proxy); the test's jar would not over HTTP.
		a := b.Do(http.MethodPost, "/signin", url.Values{"token": {node.token}, "next": {"/"}, "csrf": {b.CSRF}},
			append(b.Origin(), "Cookie", form.Name+"="+form.Value)...)
		s := a.Cookie("wanwu_session")
		if a.Status != http.StatusSeeOther || s == nil || !s.Secure || s.MaxAge != 7200 {
			t.Errorf("%s: sign-in %d, session cookie %+v, want Secure with max-age 7200", node.name, a.Status, s)
		}
	}
}

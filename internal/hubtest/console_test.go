package hubtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// consoleClient is a browser-like client of a node's console: a cookie
// jar, no redirects followed, the Origin of the node on every POST.
type consoleClient struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func newConsoleClient(t *testing.T, base string) *consoleClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &consoleClient{t: t, base: base, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var consoleCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (cc *consoleClient) do(method, path string, form url.Values) (*http.Response, string) {
	cc.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, cc.base+path, body)
	if err != nil {
		cc.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", cc.base)
	}
	resp, err := cc.c.Do(req)
	if err != nil {
		cc.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		cc.t.Fatal(err)
	}
	if m := consoleCSRF.FindSubmatch(b); m != nil {
		cc.csrf = string(m[1])
	}
	return resp, string(b)
}

// signIn signs in through the form and follows the redirect to next.
func (cc *consoleClient) signIn(token, next string) string {
	cc.t.Helper()
	cc.do("GET", "/signin?next="+url.QueryEscape(next), nil)
	resp, body := cc.do("POST", "/signin", url.Values{"token": {token}, "csrf": {cc.csrf}, "next": {next}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != next {
		cc.t.Fatalf("sign-in: %s to %q: %s", resp.Status, resp.Header.Get("Location"), body)
	}
	resp, body = cc.do("GET", next, nil)
	if resp.StatusCode != http.StatusOK {
		cc.t.Fatalf("GET %s after sign-in: %s", next, resp.Status)
	}
	return body
}

var consoleTags = regexp.MustCompile(`(?s)<[^>]*>`)

func consoleText(html string) string {
	return strings.Join(strings.Fields(consoleTags.ReplaceAllString(html, " ")), " ")
}

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

	cc := newConsoleClient(t, h.URL)
	resp, _ := cc.do("GET", "/", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin" {
		t.Fatalf("GET / signed out: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Error("the console's redirect has no CSP")
	}
	page := consoleText(cc.signIn(h.AdminToken, "/"))
	for _, want := range []string{"wanwu hub", "3 objects", "1 quarantined", "acme 2 1 1 0 0", "beta 1 1 0 0 0", "nb-iot 2", "Device messages"} {
		if !strings.Contains(page, want) {
			t.Errorf("fleet page lacks %q: %s", want, page)
		}
	}
	for _, key := range []string{"acme:pump-1", reg.Object.Number, reg.Object.DID} {
		resp, _ := cc.do("GET", "/search?q="+url.QueryEscape(key), nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/objects/acme:pump-1" {
			t.Errorf("search %s: %s to %q", key, resp.Status, resp.Header.Get("Location"))
		}
	}
	resp, body := cc.do("GET", "/objects/acme:pump-1", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, reg.Object.DID) {
		t.Errorf("object page: %s", resp.Status)
	}

	// A token bound to beta, made with the API.
	var tok struct{ Secret string }
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "beta-viewer", "role": "viewer", "tenant": "beta"}).JSON(t, &tok)
	if tok.Secret == "" {
		t.Fatal("no token secret")
	}
	beta := newConsoleClient(t, h.URL)
	page = consoleText(beta.signIn(tok.Secret, "/"))
	if !strings.Contains(page, "1 objects") || strings.Contains(page, "acme 2") {
		t.Errorf("beta's fleet: %s", page)
	}
	if resp, _ := beta.do("GET", "/objects/acme:pump-1", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("beta opens acme's object: %s", resp.Status)
	}
	// Revoking the token through the API ends its console session.
	h.MustAdmin(200, "DELETE", "/api/v1/tokens/beta-viewer", nil)
	if resp, _ := beta.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?reason=revoked" {
		t.Errorf("after revocation: %s to %q", resp.Status, resp.Header.Get("Location"))
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
	if resp, body := cc.do("GET", "/no-such-page", nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "The console has no page at /no-such-page.") {
		t.Errorf("unknown path: %s", resp.Status)
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
	cc := newConsoleClient(t, e.URL())
	page := consoleText(cc.signIn(e.Token, "/"))
	if !strings.Contains(page, "wanwu edge acme:edge-1") {
		t.Errorf("the edge's console does not name it: %s", page)
	}
	eventually(t, "the device behind the edge in its console", func() error {
		_, body := cc.do("GET", "/objects/acme:cell-1", nil)
		if !strings.Contains(body, "<code>acme:cell-1</code>") || !strings.Contains(body, `id="presence"`) {
			return fmt.Errorf("object page: %s", consoleText(body))
		}
		return nil
	})
}

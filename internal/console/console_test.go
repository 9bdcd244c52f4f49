package console

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/third_party/web"
)

// TestConsoleSignIn: a good token opens a session with a cookie that is
// HTTP-only, SameSite=Strict and expires with the session (not Secure over
// plain HTTP) and lands on the page asked for; a bad token, whatever is
// wrong with it, gets one answer and no session.
func TestConsoleSignIn(t *testing.T) {
	e := newEnv(t, false, nil)
	e.tenant("acme")
	e.register(registry.RegisterRequest{Code: "acme:pump-1"})
	good := e.token("alice", auth.Operator, "")
	revoked := e.token("bob", auth.Viewer, "")
	if _, err := e.reg.RevokeToken(e.ctx, "test", "bob", ""); err != nil {
		t.Fatal(err)
	}

	b := e.browser()
	// Signed out, a page sends the browser to sign in, naming the page.
	a := b.MustGet(http.StatusSeeOther, "/objects/acme:pump-1")
	if want := "/signin?next=%2Fobjects%2Facme%3Apump-1"; a.Location() != want {
		t.Fatalf("redirect to %q, want %q", a.Location(), want)
	}
	if a := b.MustGet(http.StatusSeeOther, "/"); a.Location() != "/signin" {
		t.Fatalf("/ redirects to %q", a.Location())
	}
	page := b.MustGet(http.StatusOK, "/signin?next=%2Fobjects%2Facme%3Apump-1")
	if !strings.Contains(page.Body, `name="next" value="/objects/acme:pump-1"`) || !strings.Contains(text(page.Body), "you will come back to the page") {
		t.Fatalf("sign-in page does not carry next: %s", page.Body)
	}

	// Bad tokens: unknown, revoked, not a token at all, empty. One message,
	// no session cookie, and nothing that names the token.
	var first string
	for _, bad := range []string{"wwt_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", revoked, "hello", ""} {
		a := b.SignIn(bad, "/")
		if a.Status != http.StatusUnauthorized {
			t.Fatalf("token %q: %d %s", bad, a.Status, a.Body)
		}
		if a.Cookie(sessionCookie) != nil {
			t.Fatalf("token %q: a session cookie", bad)
		}
		msg := regexp.MustCompile(`role="alert">([^<]*)<`).FindStringSubmatch(a.Body)
		if msg == nil {
			t.Fatalf("token %q: no message: %s", bad, a.Body)
		}
		if first == "" {
			first = msg[1]
		} else if msg[1] != first {
			t.Errorf("token %q answered %q, another bad token %q", bad, msg[1], first)
		}
		for _, leak := range []string{"revoked", "unknown", "bob", "not a wanwu"} {
			if strings.Contains(a.Body, leak) {
				t.Errorf("token %q: the answer says %q", bad, leak)
			}
		}
	}
	if n := testutil.ToFloat64(e.c.signins.WithLabelValues("refused")); n != 4 {
		t.Errorf("refused sign-ins counted %v, want 4", n)
	}

	a = b.SignIn(good, "/objects/acme:pump-1")
	if a.Status != http.StatusSeeOther || a.Location() != "/objects/acme:pump-1" {
		t.Fatalf("good token: %d to %q: %s", a.Status, a.Location(), a.Body)
	}
	ck := a.Cookie(sessionCookie)
	if ck == nil {
		t.Fatal("no session cookie")
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/" {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, not Secure over HTTP, Path /", ck)
	}
	if ck.MaxAge != int((8*time.Hour)/time.Second) || !ck.Expires.Equal(e.clock.now().Add(8*time.Hour).Truncate(time.Second)) {
		t.Errorf("cookie expires %v (max-age %d), want in 8 h", ck.Expires, ck.MaxAge)
	}
	if strings.Contains(ck.Value, good) || strings.Contains(ck.Value, strings.TrimPrefix(good, auth.Prefix)) {
		t.Error("the cookie holds the token")
	}
	if c := a.Cookie(signInCookie); c == nil || c.MaxAge >= 0 {
		t.Errorf("the sign-in form's cookie is not cleared: %+v", c)
	}
	obj := b.MustGet(http.StatusOK, "/objects/acme:pump-1")
	if !strings.Contains(text(obj.Body), "alice operator") {
		t.Errorf("the header does not name the principal: %s", text(obj.Body))
	}
	// Signed in, the sign-in page sends the user on.
	if a := b.MustGet(http.StatusSeeOther, "/signin?next=/objects/acme:pump-1"); a.Location() != "/objects/acme:pump-1" {
		t.Errorf("signed in, /signin sends to %q", a.Location())
	}
	if n := testutil.ToFloat64(e.c.signins.WithLabelValues("ok")); n != 1 {
		t.Errorf("sign-ins counted %v, want 1", n)
	}
}

// TestConsoleCookieSecure: over HTTPS the cookies are Secure, and over
// plain HTTP too with Options.SecureCookies (a proxy in front took TLS
// off); otherwise they are not, or a browser would not send them back.
func TestConsoleCookieSecure(t *testing.T) {
	for _, tc := range []struct {
		name        string
		tls, option bool
	}{
		{"over TLS", true, false},
		{"behind a proxy that took TLS off", false, true},
		{"plain HTTP", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.tls, func(o *Options) { o.SecureCookies = tc.option })
			b := e.browser()
			want := tc.tls || tc.option
			page := b.MustGet(http.StatusOK, "/signin")
			if c := page.Cookie(signInCookie); c == nil || c.Secure != want || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Errorf("sign-in form cookie: %+v, want Secure %v", c, want)
			}
			if !want {
				return // the session cookie is checked in TestConsoleSignIn
			}
			// A browser sends a Secure cookie back only over HTTPS: the
			// form's token goes in by hand, as it would behind the proxy.
			a := b.Do(http.MethodPost, "/signin", url.Values{"token": {e.token("alice", auth.Viewer, "")}, "next": {"/"}, "csrf": {b.CSRF}},
				append(b.Origin(), "Cookie", signInCookie+"="+page.Cookie(signInCookie).Value)...)
			if c := a.Cookie(sessionCookie); c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Fatalf("session cookie: %+v (%d %s)", c, a.Status, a.Body)
			}
		})
	}
}

// TestConsoleSignOut: signing out needs the CSRF token, ends the session
// on the server and clears the cookie.
func TestConsoleSignOut(t *testing.T) {
	e := newEnv(t, false, nil)
	b := e.browser()
	b.MustSignIn(e.token("alice", auth.Viewer, ""), "/")
	stolen := b.C.Jar.Cookies(mustURL(t, e.srv.URL))

	if a := b.Post("/signout", url.Values{}, b.Origin()...); a.Status != http.StatusForbidden {
		t.Fatalf("sign-out without the CSRF token: %d", a.Status)
	}
	b.MustGet(http.StatusOK, "/")
	a := b.Post("/signout", url.Values{"csrf": {b.CSRF}}, b.Origin()...)
	if a.Status != http.StatusSeeOther || a.Location() != "/signin?reason=signed-out" {
		t.Fatalf("sign-out: %d to %q: %s", a.Status, a.Location(), a.Body)
	}
	if c := a.Cookie(sessionCookie); c == nil || c.MaxAge >= 0 {
		t.Errorf("session cookie not cleared: %+v", c)
	}
	if !strings.Contains(b.MustGet(http.StatusOK, "/signin?reason=signed-out").Body, "You are signed out.") {
		t.Error("the sign-in page does not say so")
	}
	b.MustGet(http.StatusSeeOther, "/")
	// The old cookie, replayed, opens nothing: the session is gone.
	replay := e.browser()
	replay.C.Jar.SetCookies(mustURL(t, e.srv.URL), stolen)
	if a := replay.Get("/"); a.Status != http.StatusSeeOther {
		t.Errorf("the old session cookie still opens the fleet: %d", a.Status)
	}
	if n := e.c.sessions.len(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
	// The sign-in and the sign-out are in the audit log, with the token's
	// name and the address; the refused sign-out is not.
	size, err := e.audit.Size(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := e.audit.Entries(e.ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, en := range entries {
		if strings.HasPrefix(en.Kind, "console.") {
			kinds = append(kinds, en.Kind+" "+en.Actor)
			if !strings.Contains(string(en.Data), `"remote":"127.0.0.1"`) {
				t.Errorf("%s without the address: %s", en.Kind, en.Data)
			}
		}
	}
	if got := strings.Join(kinds, ", "); got != "console.signed_in alice, console.signed_out alice" {
		t.Errorf("audit entries: %s", got)
	}
}

// TestConsoleSessionExpiry: a session ends after its lifetime; the next
// page goes to sign-in with the page in next, and comes back to it.
func TestConsoleSessionExpiry(t *testing.T) {
	e := newEnv(t, false, func(o *Options) { o.SessionLifetime = time.Hour })
	e.tenant("acme")
	e.register(registry.RegisterRequest{Code: "acme:pump-1"})
	secret := e.token("alice", auth.Viewer, "")
	b := e.browser()
	a := b.SignIn(secret, "/")
	if c := a.Cookie(sessionCookie); c == nil || c.MaxAge != 3600 {
		t.Fatalf("cookie %+v, want max-age 3600", c)
	}
	e.clock.add(59 * time.Minute)
	b.MustGet(http.StatusOK, "/objects/acme:pump-1")
	e.clock.add(time.Minute)
	a = b.MustGet(http.StatusSeeOther, "/objects/acme:pump-1?x=1")
	if want := "/signin?next=" + url.QueryEscape("/objects/acme:pump-1?x=1"); a.Location() != want {
		t.Fatalf("expired: to %q, want %q", a.Location(), want)
	}
	if a := b.SignIn(secret, "/objects/acme:pump-1?x=1"); a.Location() != "/objects/acme:pump-1?x=1" {
		t.Fatalf("after signing in again: to %q", a.Location())
	}
	// Expired sessions nobody uses again are swept by Run's tick.
	other := e.browser()
	other.MustSignIn(secret, "/")
	if n := e.c.sessions.len(); n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}
	e.clock.add(2 * time.Hour)
	e.c.tick()
	if n := e.c.sessions.len(); n != 0 {
		t.Errorf("%d sessions after the sweep, want 0", n)
	}
}

// TestConsoleRevokedToken: revoking a token ends its sessions at the next
// request.
func TestConsoleRevokedToken(t *testing.T) {
	e := newEnv(t, false, nil)
	b := e.browser()
	b.MustSignIn(e.token("alice", auth.Viewer, ""), "/")
	if _, err := e.reg.RevokeToken(e.ctx, "test", "alice", ""); err != nil {
		t.Fatal(err)
	}
	a := b.MustGet(http.StatusSeeOther, "/")
	if a.Location() != "/signin?reason=revoked" {
		t.Fatalf("to %q", a.Location())
	}
	if !strings.Contains(b.MustGet(http.StatusOK, a.Location()).Body, "no longer valid") {
		t.Error("the sign-in page does not say why")
	}
	if n := e.c.sessions.len(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

// TestLocalPath: only paths of this console survive as next.
func TestLocalPath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/objects/acme:pump-1", "/objects/acme:pump-1"},
		{"/search?q=acme%3Apump-1", "/search?q=acme%3Apump-1"},
		{"/objects/a#frag", "/objects/a"},
		{"//evil.example/x", "/"},
		{"/\\evil.example", "/"},
		{"\\\\evil.example", "/"},
		{"https://evil.example/", "/"},
		{"http:/evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"evil.example", "/"},
		{"/ok\r\nSet-Cookie: x=1", "/"},
		{"/a\\b", "/"},
		{"/%2F x", "/%2F x"}, // re-encoded, it would read "//%20x": another host
		{"/%2F%2Fevil.example", "/%2F%2Fevil.example"},
		{"/signin?next=/x", "/"},
		{"/signout", "/"},
		{"/" + strings.Repeat("a", 3000), "/"},
	} {
		if got := localPath(c.in); got != c.want {
			t.Errorf("localPath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestConsoleOpenRedirect: a sign-in link that names another site lands
// on the fleet page instead.
func TestConsoleOpenRedirect(t *testing.T) {
	e := newEnv(t, false, nil)
	secret := e.token("alice", auth.Viewer, "")
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"} {
		b := e.browser()
		page := b.MustGet(http.StatusOK, "/signin?next="+url.QueryEscape(next))
		if strings.Contains(page.Body, "evil") || strings.Contains(page.Body, "javascript") {
			t.Errorf("next %q reaches the form: %s", next, page.Body)
		}
		// A forged form posts the bad next directly.
		a := b.Post("/signin", url.Values{"token": {secret}, "csrf": {b.CSRF}, "next": {next}}, b.Origin()...)
		if a.Status != http.StatusSeeOther || a.Location() != "/" {
			t.Errorf("next %q: %d to %q", next, a.Status, a.Location())
		}
	}
}

// TestConsoleCSRF: a change without the session's CSRF token, or from
// another origin, is refused with 403 and says why; with the token in the
// form or in htmx's header it passes.
func TestConsoleCSRF(t *testing.T) {
	e := newEnv(t, false, nil)
	secret := e.token("alice", auth.Viewer, "")
	b := e.browser()
	b.MustSignIn(secret, "/")
	good := b.CSRF
	// A wrong token: the good one with its first character changed (to
	// another character, whatever the first one was).
	wrong := "x" + good[1:]
	if good[0] == 'x' {
		wrong = "y" + good[1:]
	}
	refusals := []struct {
		name    string
		form    url.Values
		headers []string
		want    string
	}{
		{"no token", url.Values{}, b.Origin(), "security token (CSRF)"},
		{"wrong token", url.Values{"csrf": {wrong}}, b.Origin(), "security token (CSRF)"},
		{"token of another session", url.Values{"csrf": {randomID()}}, nil, "security token (CSRF)"},
		{"foreign Origin", url.Values{"csrf": {good}}, []string{"Origin", "https://evil.example"}, "another site"},
		{"cross-site fetch", url.Values{"csrf": {good}}, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, "another site"},
		{"foreign Referer, no Origin", url.Values{"csrf": {good}}, []string{"Referer", "https://evil.example/page"}, "another site"},
	}
	for _, r := range refusals {
		a := b.Post("/signout", r.form, r.headers...)
		if a.Status != http.StatusForbidden || !strings.Contains(a.Body, r.want) {
			t.Errorf("%s: %d, want 403 saying %q: %s", r.name, a.Status, r.want, text(a.Body))
		}
		if e.c.sessions.len() != 1 {
			t.Fatalf("%s: the session ended", r.name)
		}
	}
	// The sign-in form has its own token (double submit) and the same
	// origin check.
	s := e.browser()
	s.MustGet(http.StatusOK, "/signin")
	if a := s.Post("/signin", url.Values{"token": {secret}, "csrf": {s.CSRF}}, "Origin", "https://evil.example"); a.Status != http.StatusForbidden {
		t.Errorf("sign-in from another origin: %d", a.Status)
	}
	if a := s.Post("/signin", url.Values{"token": {secret}, "csrf": {"forged"}}, s.Origin()...); a.Status != http.StatusForbidden || a.Cookie(sessionCookie) != nil {
		t.Errorf("sign-in without the form's token: %d", a.Status)
	}
	fresh := e.browser() // no form cookie at all
	if a := fresh.Post("/signin", url.Values{"token": {secret}, "csrf": {s.CSRF}}, fresh.Origin()...); a.Status != http.StatusForbidden {
		t.Errorf("sign-in with another browser's form token: %d", a.Status)
	}
	// htmx sends the token in a header, from the layout's hx-headers.
	page := b.MustGet(http.StatusOK, "/")
	if !strings.Contains(page.Body, `<body hx-headers='{"X-CSRF-Token": "`+good+`"}'>`) {
		t.Fatalf("the layout does not give htmx the token: %s", page.Body)
	}
	a := b.Post("/signout", url.Values{}, "X-CSRF-Token", good, "HX-Request", "true", "Origin", e.srv.URL, "Referer", e.srv.URL+"/")
	if a.Status != http.StatusSeeOther {
		t.Errorf("sign-out with htmx's header: %d %s", a.Status, text(a.Body))
	}
}

// TestConsoleSecurityHeaders: every answer, page, fragment, file, redirect
// or error, signed in or not, carries the security headers; no page has
// an inline script, an inline style or an event-handler attribute.
func TestConsoleSecurityHeaders(t *testing.T) {
	e := newEnv(t, false, nil)
	e.tenant("acme")
	e.register(registry.RegisterRequest{Code: "acme:pump-1", Tags: map[string]string{"site": "north"}})
	e.c.tick()
	e.clock.add(10 * time.Second)
	e.c.tick()
	paths := []string{"/", "/signin", "/objects/acme:pump-1", "/objects/acme:nope", "/search?q=acme:pump-1", "/search?q=%25%25",
		"/fleet/summary", "/nope", "/static/console.css", "/static/console.js", "/static/vendor/htmx/htmx.min.js", "/static/nope.js"}
	check := func(who string, b *consoletest.Browser) {
		for _, p := range paths {
			a := b.Get(p)
			h := a.Header
			for k, want := range map[string]string{
				"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "same-origin",
				"X-Frame-Options":         "DENY",
			} {
				if got := h.Get(k); got != want {
					t.Errorf("%s GET %s (%d): %s = %q, want %q", who, p, a.Status, k, got, want)
				}
			}
			if !strings.HasPrefix(p, "/static/") && h.Get("Cache-Control") != "no-store" {
				t.Errorf("%s GET %s: Cache-Control %q", who, p, h.Get("Cache-Control"))
			}
			if strings.HasPrefix(h.Get("Content-Type"), "text/html") {
				noInline(t, who+" GET "+p, a.Body)
			}
		}
	}
	check("signed out", e.browser())
	b := e.browser()
	b.MustSignIn(e.token("alice", auth.Viewer, ""), "/")
	check("signed in", b)
	// POST answers too.
	if a := b.Post("/signout", url.Values{}); a.Header.Get("Content-Security-Policy") == "" || a.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("a refused POST has no security headers: %v", a.Header)
	}
}

// noInline fails on inline scripts, style attributes or elements, and
// event-handler attributes.
func noInline(t *testing.T, what, html string) {
	t.Helper()
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>`),
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?i)javascript:`),
	} {
		for _, m := range re.FindAllString(html, -1) {
			if strings.HasPrefix(strings.ToLower(m), "<script") && strings.Contains(m, ` src="/static/`) {
				continue // a script file of the console's own
			}
			t.Errorf("%s: inline %q", what, m)
		}
	}
}

// TestConsoleStatic: the vendored files are served byte for byte from
// third_party/web, and gzip-encoded where asked, each encoding with its
// ETag and a 304 on revalidation.
func TestConsoleStatic(t *testing.T) {
	e := newEnv(t, false, nil)
	b := e.browser()
	for path, file := range map[string]string{
		"/static/vendor/htmx/htmx.min.js":        "htmx/htmx.min.js",
		"/static/vendor/uplot/uPlot.iife.min.js": "uplot/uPlot.iife.min.js",
		"/static/vendor/uplot/uPlot.min.css":     "uplot/uPlot.min.css",
	} {
		want, err := fs.ReadFile(web.FS, file)
		if err != nil {
			t.Fatal(err)
		}
		a := b.MustGet(http.StatusOK, path, "Accept-Encoding", "identity")
		if !bytes.Equal([]byte(a.Body), want) {
			t.Errorf("%s differs from third_party/web/%s", path, file)
		}
		etag := a.Header.Get("ETag")
		if etag == "" || a.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: ETag %q, Cache-Control %q", path, etag, a.Header.Get("Cache-Control"))
		}
		if r := b.Get(path, "Accept-Encoding", "identity", "If-None-Match", etag); r.Status != http.StatusNotModified {
			t.Errorf("%s revalidated: %d", path, r.Status)
		}
		// Each encoding on its own: gzip where asked, identity otherwise.
		z := b.MustGet(http.StatusOK, path, "Accept-Encoding", "br, gzip;q=0.8")
		if z.Header.Get("Content-Encoding") != "gzip" || z.Header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("%s asked in gzip: Content-Encoding %q, Vary %q", path, z.Header.Get("Content-Encoding"), z.Header.Get("Vary"))
		} else if got := gunzip(t, z.Body); !bytes.Equal(got, want) || len(z.Body) >= len(want) {
			t.Errorf("%s in gzip: %d bytes decoding to %d, want fewer decoding to %d", path, len(z.Body), len(got), len(want))
		}
		if zt := z.Header.Get("ETag"); zt == etag || zt == "" {
			t.Errorf("%s: gzip's ETag %q, identity's %q", path, zt, etag)
		} else if r := b.Get(path, "Accept-Encoding", "gzip", "If-None-Match", zt); r.Status != http.StatusNotModified {
			t.Errorf("%s in gzip revalidated: %d", path, r.Status)
		}
		for _, ae := range []string{"identity", "gzip;q=0", "deflate"} {
			a := b.MustGet(http.StatusOK, path, "Accept-Encoding", ae)
			if a.Header.Get("Content-Encoding") != "" || !bytes.Equal([]byte(a.Body), want) || a.Header.Get("ETag") != etag {
				t.Errorf("%s with Accept-Encoding %q: Content-Encoding %q, ETag %q", path, ae, a.Header.Get("Content-Encoding"), a.Header.Get("ETag"))
			}
		}
	}
	if a := b.MustGet(http.StatusOK, "/static/console.js"); !strings.HasPrefix(a.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("console.js is %q", a.Header.Get("Content-Type"))
	}
	b.MustGet(http.StatusNotFound, "/static/vendor/htmx/LICENSE")
	b.MustGet(http.StatusNotFound, "/static/console.go")
	if a := b.Get("/static/../console.go"); a.Status != http.StatusTemporaryRedirect || a.Location() != "/console.go" {
		t.Errorf("a path with .. is answered %d to %q, want the cleaned path", a.Status, a.Location())
	}
	b.MustGet(http.StatusNotFound, "/console.go")
}

// TestConsoleSignInLimit: past its failure budget an address is answered
// 429, even with a good token, until the budget refills.
func TestConsoleSignInLimit(t *testing.T) {
	e := newEnv(t, false, func(o *Options) { o.SignInFailures, o.SignInFailuresBurst = 0.1, 2 })
	secret := e.token("alice", auth.Viewer, "")
	b := e.browser()
	for range 2 {
		if a := b.SignIn("wwt_wrong", "/"); a.Status != http.StatusUnauthorized {
			t.Fatalf("bad token: %d", a.Status)
		}
	}
	if a := b.SignIn(secret, "/"); a.Status != http.StatusTooManyRequests || a.Cookie(sessionCookie) != nil {
		t.Fatalf("over the budget: %d", a.Status)
	}
	e.clock.add(10 * time.Second)
	if a := b.SignIn(secret, "/"); a.Status != http.StatusSeeOther {
		t.Fatalf("after the budget refilled: %d %s", a.Status, text(a.Body))
	}
}

// TestConsoleMaxSessions: past MaxSessions the session closest to its end
// makes room.
func TestConsoleMaxSessions(t *testing.T) {
	e := newEnv(t, false, func(o *Options) { o.MaxSessions = 2 })
	secret := e.token("alice", auth.Viewer, "")
	var bs []*consoletest.Browser
	for range 3 {
		b := e.browser()
		b.MustSignIn(secret, "/")
		bs = append(bs, b)
		e.clock.add(time.Minute)
	}
	if a := bs[0].Get("/"); a.Status != http.StatusSeeOther {
		t.Errorf("the oldest session survived: %d", a.Status)
	}
	for _, b := range bs[1:] {
		b.MustGet(http.StatusOK, "/")
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestConsoleRun: Run samples the counters on its ticker and returns when
// its context ends.
func TestConsoleRun(t *testing.T) {
	e := newEnv(t, false, func(o *Options) { o.RateEvery = 5 * time.Millisecond })
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.c.Run(ctx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.c.rates.mu.Lock()
		n := len(e.c.rates.samples)
		e.c.rates.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d samples after 10 s", n)
		}
		e.clock.add(5 * time.Millisecond)
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func gunzip(t *testing.T, b string) []byte {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAcceptsGzip: Accept-Encoding's gzip, with its q-value (RFC 9110
// §12.5.3).
func TestAcceptsGzip(t *testing.T) {
	for _, tc := range []struct {
		header []string
		want   bool
	}{
		{nil, false},
		{[]string{"gzip"}, true},
		{[]string{"gzip, deflate, br, zstd"}, true},
		{[]string{"br", "GZip ; q=0.5"}, true},
		{[]string{"x-gzip"}, true},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.000"}, false},
		{[]string{"gzip;q=0.001"}, true},
		{[]string{"gzip;q=nope"}, false},
		{[]string{"identity"}, false},
		{[]string{"*"}, false},
		{[]string{"gzipped"}, false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/static/console.js", nil)
		for _, h := range tc.header {
			r.Header.Add("Accept-Encoding", h)
		}
		if got := acceptsGzip(r); got != tc.want {
			t.Errorf("Accept-Encoding %q: %v, want %v", tc.header, got, tc.want)
		}
	}
}

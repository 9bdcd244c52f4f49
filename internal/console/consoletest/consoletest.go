// Package consoletest is a browser-like HTTP client of a node's web console
// for tests: a cookie jar, redirects not followed (so that each answer can
// be checked), the session's CSRF token read from every page, and helpers
// that sign in through the form and send changes as a browser on the same
// origin does. The console's own tests and the in-process harness's tests
// (package hubtest) drive the console with it; the browser tests drive a
// real Chromium instead.
package consoletest

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// Browser is a console client with a cookie jar.
type Browser struct {
	T    testing.TB
	Base string // the console's URL, without a trailing slash
	C    *http.Client
	// CSRF is the session's CSRF token, read from the last page that had
	// one (the sign-in form's before signing in).
	CSRF string
}

// New returns a browser of the console at base; transport may be nil (the
// default transport), or an httptest server's (for TLS).
func New(t testing.TB, base string, transport http.RoundTripper) *Browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Browser{T: t, Base: strings.TrimSuffix(base, "/"), C: &http.Client{
		Transport: transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Answer is a response with its body read.
type Answer struct {
	Status int
	Header http.Header
	Body   string
	Resp   *http.Response
}

// Location is the answer's Location header.
func (a Answer) Location() string { return a.Header.Get("Location") }

// Cookie returns the cookie the answer set by that name, or nil.
func (a Answer) Cookie(name string) *http.Cookie {
	for _, c := range a.Resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Text is the answer's body as Text gives it.
func (a Answer) Text() string { return Text(a.Body) }

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// Do sends a request; form, when not nil, is the urlencoded body; headers
// come in pairs (name, value).
func (b *Browser) Do(method, path string, form url.Values, headers ...string) Answer {
	b.T.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.Base+path, body)
	if err != nil {
		b.T.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.C.Do(req)
	if err != nil {
		b.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.T.Fatal(err)
	}
	a := Answer{Status: resp.StatusCode, Header: resp.Header, Body: string(raw), Resp: resp}
	if m := csrfRE.FindStringSubmatch(a.Body); m != nil {
		b.CSRF = m[1]
	}
	return a
}

// Get fetches a path.
func (b *Browser) Get(path string, headers ...string) Answer {
	b.T.Helper()
	return b.Do(http.MethodGet, path, nil, headers...)
}

// Post posts a form as it is: no Origin, no CSRF token added.
func (b *Browser) Post(path string, form url.Values, headers ...string) Answer {
	b.T.Helper()
	return b.Do(http.MethodPost, path, form, headers...)
}

// Change posts a form as the console's own page does: from this origin,
// with the session's CSRF token.
func (b *Browser) Change(path string, form url.Values) Answer {
	b.T.Helper()
	f := url.Values{}
	for k, v := range form {
		f[k] = v
	}
	f.Set("csrf", b.CSRF)
	return b.Post(path, f, b.Origin()...)
}

// Origin is the Origin header of a same-origin request from a browser.
func (b *Browser) Origin() []string {
	return []string{"Origin", b.Base, "Sec-Fetch-Site", "same-origin"}
}

// HX are the headers htmx sends with a request from a page at current.
func (b *Browser) HX(current string) []string {
	return []string{"HX-Request", "true", "HX-Current-URL", b.Base + current}
}

// SignIn signs in with secret through the form, as a browser does, and
// returns the POST's answer.
func (b *Browser) SignIn(secret, next string) Answer {
	b.T.Helper()
	page := b.Get("/signin?next=" + url.QueryEscape(next))
	if page.Status != http.StatusOK {
		b.T.Fatalf("GET /signin: %d %s", page.Status, page.Body)
	}
	return b.Post("/signin", url.Values{"token": {secret}, "csrf": {b.CSRF}, "next": {next}}, b.Origin()...)
}

// MustSignIn signs in, fails the test unless it worked, and returns the
// page at next.
func (b *Browser) MustSignIn(secret, next string) Answer {
	b.T.Helper()
	a := b.SignIn(secret, next)
	if a.Status != http.StatusSeeOther || a.Location() != next {
		b.T.Fatalf("sign-in: %d to %q: %s", a.Status, a.Location(), a.Body)
	}
	page := b.Get(next)
	if page.Status != http.StatusOK {
		b.T.Fatalf("GET %s after sign-in: %d %s", next, page.Status, Text(page.Body))
	}
	return page
}

// MustGet fetches a page and fails unless its status is want.
func (b *Browser) MustGet(want int, path string, headers ...string) Answer {
	b.T.Helper()
	a := b.Get(path, headers...)
	if a.Status != want {
		b.T.Fatalf("GET %s: %d, want %d (to %q): %s", path, a.Status, want, a.Location(), Text(a.Body))
	}
	return a
}

var tags = regexp.MustCompile(`(?s)<[^>]*>`)

// Text is a page's visible text with the tags removed and the spaces
// collapsed, for checks that do not depend on markup.
func Text(html string) string {
	return strings.Join(strings.Fields(tags.ReplaceAllString(html, " ")), " ")
}

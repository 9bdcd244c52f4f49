package console

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// ContentSecurityPolicy is the policy of every console response: scripts,
// styles and requests only from the console's own origin, no inline script
// or style, no framing, no <base>, forms posting only here.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// securityHeaders sets the headers every console response carries.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

// unsafe reports whether a request method changes something.
func unsafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// errCrossOrigin is a change that came from another site.
var errCrossOrigin = errors.New("cross-origin request")

// sameOrigin checks that a change comes from the console's own origin. The
// standard library's CrossOriginProtection decides from Sec-Fetch-Site and
// Origin, which every current browser sends; when a browser sent neither,
// the Referer (which the console's Referrer-Policy keeps for same-origin
// requests) must name this host. A request with none of the three is not
// from a browser, so it cannot be a forged one, and the CSRF token still
// applies.
func sameOrigin(cop *http.CrossOriginProtection, r *http.Request) error {
	if err := cop.Check(r); err != nil {
		return err
	}
	if r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Origin") != "" {
		return nil
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return nil
	}
	u, err := url.Parse(ref)
	if err != nil || u.Host != r.Host {
		return errCrossOrigin
	}
	return nil
}

// csrfHeader is the header htmx sends the session's CSRF token in; the
// layout sets it on <body> with hx-headers, which every htmx request
// inherits.
const csrfHeader = "X-CSRF-Token"

// csrfField is the hidden form field that carries the CSRF token.
const csrfField = "csrf"

// validCSRF reports whether the request carries want, in the header or the
// (already parsed) form.
func validCSRF(r *http.Request, want string) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// localPath returns next when it is a path on this console, else "/": a
// sign-in link cannot send the user to another site (an open redirect).
// Accepted: an absolute path with an optional query, without a scheme, a
// host, "//" or a backslash at its start, and without control characters.
func localPath(next string) string {
	if next == "" || len(next) > 2048 || next[0] != '/' {
		return "/"
	}
	if len(next) > 1 && (next[1] == '/' || next[1] == '\\') {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	next, _, _ = strings.Cut(next, "#")
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "/"
	}
	// The sign-in and sign-out pages are no place to return to.
	if u.Path == "/signin" || u.Path == "/signout" {
		return "/"
	}
	// next itself, checked, rather than u re-encoded: re-encoding turns
	// "/%2F x" into "//%20x", which a browser reads as another host.
	return next
}

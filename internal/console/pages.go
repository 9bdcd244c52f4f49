package console

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

// Cookie names.
const (
	sessionCookie = "wanwu_session"
	// signInCookie carries the sign-in form's CSRF token before there is a
	// session (double submit: the cookie and the form field must match).
	signInCookie = "wanwu_signin"
)

// maxForm bounds a form body, unless the route says otherwise with
// withBodyLimit; maxFormMemory is what a multipart form keeps in memory.
const (
	maxForm       = 64 << 10
	maxFormMemory = 1 << 20
)

// bodyLimitKey is the context key of a route's own body limit.
type bodyLimitKey struct{}

// withBodyLimit lets a route's changes carry bodies of up to n bytes (an
// upload) instead of maxForm.
func withBodyLimit(n int64, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(w, r.WithContext(context.WithValue(r.Context(), bodyLimitKey{}, n)))
	}
}

// request is what a page handler gets besides the HTTP request.
type request struct {
	p       auth.Principal
	s       *session
	now     time.Time
	partial bool // an htmx request for a fragment
}

// pageFunc serves a page for a signed-in principal; an error becomes an
// error page.
type pageFunc func(w http.ResponseWriter, r *http.Request, q *request) error

// view is what every page's template receives.
type view struct {
	Title string
	Nav   string // the navigation entry that is this page
	Node  nodeView
	User  *userView // nil on pages for the signed-out
	CSRF  string
	// Charts loads uPlot, on the pages that draw charts only.
	Charts bool
	// Scripts are the page's own scripts under /static/, loaded after
	// console.js.
	Scripts []string
	// Menu is the navigation, set by render.
	Menu []menuItem
	Data any
}

// menuItem is an entry of the navigation; Key is what view.Nav names.
type menuItem struct{ Key, Label, Path string }

type nodeView struct{ Role, Code, Version string }

type userView struct {
	Name, Role, Tenant string
	// Operate: the role may change devices, twins, commands, loops and
	// alarms (operator or admin); Admin: it may also manage identities,
	// tokens and definitions. The API decides either way; the pages use
	// these to show controls only to those who may use them.
	Operate, Admin bool
}

// pageError is an error with the status and what the page tells the user.
type pageError struct {
	Status  int
	Title   string
	Message string
	// Next says what to do about it.
	Next string
	// Query is put back in the search box.
	Query string
	err   error
}

func (e *pageError) Error() string {
	if e.err != nil {
		return e.Message + ": " + e.err.Error()
	}
	return e.Message
}

func (e *pageError) Unwrap() error { return e.err }

// page wraps a handler: the session (or a redirect to sign in), the token
// authenticated again, the same-origin and CSRF checks on changes.
func (c *Console) page(h pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		now := c.o.Now()
		s, id := c.session(r, now)
		if s == nil {
			c.redirectToSignIn(w, r, "")
			return
		}
		p, err := c.o.Registry.Authenticate(r.Context(), s.secret)
		if err != nil {
			if errors.Is(err, auth.ErrUnauthenticated) {
				// Revoked since the sign-in: the session ends with it.
				c.sessions.remove(id)
				c.log.Info("console: session ended, its token is no longer valid", "token", s.principal.Name, "err", err)
				c.clearCookie(w, r, sessionCookie, "/")
				c.redirectToSignIn(w, r, "revoked")
				return
			}
			c.fail(w, r, &request{s: s, now: now}, err)
			return
		}
		q := &request{p: p, s: s, now: now, partial: r.Header.Get("HX-Request") == "true"}
		if unsafe(r.Method) {
			if err := c.checkChange(w, r, s); err != nil {
				c.fail(w, r, q, err)
				return
			}
		}
		if err := h(w, r, q); err != nil {
			c.fail(w, r, q, err)
		}
	}
}

// checkChange refuses a change from another origin or without the
// session's CSRF token.
func (c *Console) checkChange(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := sameOrigin(c.cop, r); err != nil {
		return &pageError{Status: http.StatusForbidden, Title: "Refused",
			Message: "This change came from another site, so it was refused.",
			Next:    "If you made it here, reload the console's page and try again.", err: err}
	}
	limit := int64(maxForm)
	if n, ok := r.Context().Value(bodyLimitKey{}).(int64); ok {
		limit = n
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	var err error
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		// An upload: its file parts past maxFormMemory wait on disk, which
		// the server removes after the answer.
		err = r.ParseMultipartForm(maxFormMemory)
	} else {
		err = r.ParseForm()
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &pageError{Status: http.StatusRequestEntityTooLarge, Title: "Too large",
				Message: fmt.Sprintf("The form is larger than the %d bytes this page takes.", limit), err: err}
		}
		return &pageError{Status: http.StatusBadRequest, Title: "Bad request", Message: "The form could not be read.", err: err}
	}
	if !validCSRF(r, s.csrf) {
		return &pageError{Status: http.StatusForbidden, Title: "Refused",
			Message: "This change was refused: it did not carry the console's security token (CSRF).",
			Next:    "Reload the page and try again."}
	}
	return nil
}

// session returns the request's live session and its id, or nil.
func (c *Console) session(r *http.Request, now time.Time) (*session, string) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, ""
	}
	return c.sessions.get(ck.Value, now), ck.Value
}

// render writes a page (or, for a partial request, the named fragment).
func (c *Console) render(w http.ResponseWriter, r *http.Request, q *request, status int, name string, v view) {
	t := c.pages[name]
	if t == nil {
		c.log.Error("console: no template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	v.Node = nodeView{Role: c.o.Role, Code: c.o.Code, Version: c.o.Version}
	if q != nil && q.s != nil {
		v.CSRF = q.s.csrf
		if q.p.Name != "" {
			v.User = &userView{Name: q.p.Name, Role: string(q.p.Role), Tenant: q.p.Tenant,
				Operate: q.p.Allows(auth.Operator, q.p.Tenant) == nil, Admin: q.p.Allows(auth.Admin, q.p.Tenant) == nil}
			v.Menu = c.menu
			if c.glance.Load() != nil {
				v.Menu = append(slices.Clip(v.Menu), menuItem{"demo", "Demo", "/demo"})
			}
		}
	}
	tmpl := "layout"
	if q != nil && q.partial && t.Lookup("partial") != nil {
		tmpl = "partial"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, tmpl, v); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders an error page: what the user may know, never an internal
// error's details (those are logged).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, q *request, err error) {
	var pe *pageError
	var ae *apiError
	switch {
	case errors.As(err, &pe):
	case errors.As(err, &ae):
		pe = apiPageError(ae)
	case errors.Is(err, registry.ErrNotFound):
		pe = &pageError{Status: http.StatusNotFound, Title: "Not found", Message: "Nothing here by that name.", err: err}
	case errors.Is(err, auth.ErrForbidden):
		pe = &pageError{Status: http.StatusForbidden, Title: "Not allowed", Message: "Your token's role or tenant does not allow this.", err: err}
	case errors.Is(err, registry.ErrInvalid):
		pe = &pageError{Status: http.StatusBadRequest, Title: "Not understood", Message: err.Error(), err: err}
	default:
		pe = &pageError{Status: http.StatusInternalServerError, Title: "Something went wrong",
			Message: "The console could not answer (internal error). It has been logged.", Next: "Try again in a moment.", err: err}
	}
	if pe.Status >= 500 {
		c.log.Error("console: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		c.log.Debug("console: request refused", "method", r.Method, "path", r.URL.Path, "status", pe.Status, "err", err)
	}
	if q != nil {
		q.partial = false // an error is a whole page
	}
	c.render(w, r, q, pe.Status, "error", view{Title: pe.Title, Data: pe})
}

// notFound answers a path the console does not serve.
func (c *Console) notFound(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	now := c.o.Now()
	q := &request{now: now}
	if s, _ := c.session(r, now); s != nil {
		q.s, q.p = s, s.principal
	}
	c.fail(w, r, q, &pageError{Status: http.StatusNotFound, Title: "Not found",
		Message: "The console has no page at " + r.URL.Path + ".", Next: "Start again from the fleet overview."})
}

// secure reports whether cookies set in answer to r are marked Secure: it
// came over TLS, or Options.SecureCookies says that a proxy in front took
// TLS off.
func (c *Console) secure(r *http.Request) bool { return r.TLS != nil || c.o.SecureCookies }

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request, name, path string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1,
		HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteStrictMode})
}

// signInView is the sign-in page's data.
type signInView struct {
	Next    string
	Message string // why the user is here, or what went wrong
	Error   bool
}

// signInPage shows the sign-in form, or sends a signed-in user on.
func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	next := localPath(r.URL.Query().Get("next"))
	now := c.o.Now()
	if s, _ := c.session(r, now); s != nil {
		if _, err := c.o.Registry.Authenticate(r.Context(), s.secret); err == nil {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
	}
	v := signInView{Next: next}
	switch r.URL.Query().Get("reason") {
	case "revoked":
		v.Message = "Your session ended: its token is no longer valid. Sign in with a valid token."
	case "signed-out":
		v.Message = "You are signed out."
	default:
		if next != "/" {
			v.Message = "Sign in to continue; you will come back to the page you were on."
		}
	}
	c.showSignIn(w, r, http.StatusOK, v)
}

// showSignIn renders the sign-in form with a fresh CSRF token, set in a
// cookie for the form's POST to match.
func (c *Console) showSignIn(w http.ResponseWriter, r *http.Request, status int, v signInView) {
	tok := randomID()
	http.SetCookie(w, &http.Cookie{Name: signInCookie, Value: tok, Path: "/signin", MaxAge: 3600,
		HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteStrictMode})
	c.render(w, r, &request{s: &session{csrf: tok}}, status, "signin", view{Title: "Sign in", Data: v})
}

// signIn exchanges a token for a session.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	now := c.o.Now()
	if err := sameOrigin(c.cop, r); err != nil {
		c.fail(w, r, nil, &pageError{Status: http.StatusForbidden, Title: "Refused",
			Message: "This sign-in came from another site, so it was refused.", Next: "Open the console's own sign-in page.", err: err})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, nil, &pageError{Status: http.StatusBadRequest, Title: "Bad request", Message: "The form could not be read.", err: err})
		return
	}
	next := localPath(r.PostFormValue("next"))
	ck, err := r.Cookie(signInCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue(csrfField))) != 1 {
		c.showSignIn(w, r, http.StatusForbidden, signInView{Next: next, Error: true,
			Message: "The sign-in form had expired or did not carry its security token (CSRF). Paste your token again."})
		return
	}
	addr := sourceAddr(r)
	if c.failures.Blocked(addr, now) {
		c.signins.WithLabelValues("limited").Inc()
		c.showSignIn(w, r, http.StatusTooManyRequests, signInView{Next: next, Error: true,
			Message: "Too many failed sign-ins from your address. Wait a minute, then try again."})
		return
	}
	secret := r.PostFormValue("token")
	p, err := c.o.Registry.Authenticate(r.Context(), secret)
	if err != nil {
		if !errors.Is(err, auth.ErrUnauthenticated) {
			c.fail(w, r, nil, err)
			return
		}
		c.failures.Allow(addr, now)
		c.signins.WithLabelValues("refused").Inc()
		c.log.Info("console: sign-in refused", "remote", addr, "err", err)
		// One answer for every refusal: whether a token exists, was
		// revoked or was never one is not the caller's to learn.
		c.showSignIn(w, r, http.StatusUnauthorized, signInView{Next: next, Error: true,
			Message: "That token was not accepted. Paste a whole API token (it starts with wwt_)."})
		return
	}
	s := &session{secret: secret, principal: p, csrf: randomID(), created: now, expires: now.Add(c.o.SessionLifetime)}
	id := c.sessions.add(s, now)
	if old, err := r.Cookie(sessionCookie); err == nil {
		c.sessions.remove(old.Value) // a new sign-in replaces the browser's old session
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", Expires: s.expires,
		MaxAge: int(c.o.SessionLifetime / time.Second), HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteStrictMode})
	c.clearCookie(w, r, signInCookie, "/signin")
	c.signins.WithLabelValues("ok").Inc()
	c.auditSession(r.Context(), KindSignedIn, p, addr, now)
	c.log.Info("console: signed in", "token", p.Name, "role", p.Role, "tenant", p.Tenant, "remote", addr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signOut ends the session.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	s, id := c.session(r, c.o.Now())
	if s == nil {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	if err := c.checkChange(w, r, s); err != nil {
		c.fail(w, r, &request{s: s, p: s.principal, now: c.o.Now()}, err)
		return
	}
	c.sessions.remove(id)
	c.clearCookie(w, r, sessionCookie, "/")
	c.auditSession(r.Context(), KindSignedOut, s.principal, sourceAddr(r), c.o.Now())
	c.log.Info("console: signed out", "token", s.principal.Name)
	http.Redirect(w, r, "/signin?reason=signed-out", http.StatusSeeOther)
}

// sourceAddr is the request's remote IP address.
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// search resolves a code, an IPv6 number or a DID to its object page.
func (c *Console) search(w http.ResponseWriter, r *http.Request, q *request) error {
	key := r.URL.Query().Get("q")
	if len(key) > 512 {
		key = key[:512]
	}
	if key == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	o, err := c.o.Registry.Resolve(r.Context(), key)
	if err == nil && !q.p.Sees(o.Tenant) {
		err = registry.ErrNotFound // another tenant's object does not exist for this token
	}
	switch {
	case err == nil:
		http.Redirect(w, r, "/objects/"+o.Code, http.StatusSeeOther)
		return nil
	case errors.Is(err, registry.ErrNotFound):
		return &pageError{Status: http.StatusNotFound, Title: "Not found", Query: key,
			Message: "No object you can see has the code, number or DID " + quote(key) + ".",
			Next:    "Check it and search again: a code is tenant:id (acme:pump-1), a number an IPv6 address, a DID starts with did:key:."}
	case errors.Is(err, registry.ErrInvalid):
		return &pageError{Status: http.StatusBadRequest, Title: "Not understood", Query: key,
			Message: "That is not a code, an IPv6 number or a DID: " + err.Error() + ".",
			Next:    "A code is tenant:id (acme:pump-1), a number an IPv6 address, a DID starts with did:key:.", err: err}
	}
	return err
}

func quote(s string) string { return "“" + s + "”" }

// objectView is an object's page.
type objectView struct {
	O        *registry.Object
	Tags     []tagView
	EdgeLink bool // the edge is an object the user may open
	Presence *presenceView
	// Device is the device page's operations (device.go); Fragment names
	// the part an htmx request reloads ("commands").
	Device   *deviceView
	Fragment string
	// Telemetry is the Telemetry section (live.go).
	Telemetry *telemetryView
}

type tagView struct{ Key, Value string }

type presenceView struct {
	Online     bool
	Since      time.Time
	LastSeen   time.Time
	Protocols  []string
	LastReason string
}

// object shows an object's page: its identity and, through the API, its
// operations (device.go).
func (c *Console) object(w http.ResponseWriter, r *http.Request, q *request) error {
	return c.showObject(w, r, q, http.StatusOK, nil)
}

// showObject renders the object's page with status; f, when not nil, is
// a refused form to show again with the user's values.
func (c *Console) showObject(w http.ResponseWriter, r *http.Request, q *request, status int, f *deviceForm) error {
	code := r.PathValue("code")
	o, err := c.o.Registry.Object(r.Context(), code)
	if err == nil && (!q.p.Sees(o.Tenant) || o.Status == registry.StatusDeleted) {
		err = registry.ErrNotFound
	}
	if errors.Is(err, registry.ErrNotFound) {
		return &pageError{Status: http.StatusNotFound, Title: "Object not found", Query: code,
			Message: "No object you can see has the code " + quote(code) + ".",
			Next:    "Search for it by its code, IPv6 number or DID below, or go back to the fleet overview. Codes are tenant:id and case-sensitive after the colon.", err: err}
	}
	if err != nil {
		return err
	}
	v := objectView{O: o}
	for _, k := range slices.Sorted(maps.Keys(o.Tags)) {
		v.Tags = append(v.Tags, tagView{k, o.Tags[k]})
	}
	if o.Edge != "" {
		if e, err := c.o.Registry.Object(r.Context(), o.Edge); err == nil && q.p.Sees(e.Tenant) {
			v.EdgeLink = true
		}
	}
	if c.o.Presence != nil && c.local(o.Edge) {
		st, err := c.o.Presence.Get(r.Context(), o.Code)
		if err != nil {
			return err
		}
		v.Presence = &presenceView{Online: st.Online, Since: st.Since, LastSeen: st.LastSeen, Protocols: st.Protocols, LastReason: st.LastReason}
	}
	if v.Device, err = c.deviceData(r, q, o, f); err != nil {
		return err
	}
	v.Telemetry = c.telemetry(r, q, o)
	q.partial = false
	c.render(w, r, q, status, "object", view{Title: o.Code, Nav: "fleet", Charts: v.Telemetry.Live(), Scripts: v.Telemetry.scripts(), Data: v})
	return nil
}

// local reports whether the node sees the presence of objects behind edge
// (at the hub: behind none; at an edge: behind itself).
func (c *Console) local(edge string) bool {
	if c.o.Role == "edge" {
		return edge == c.o.Code
	}
	return edge == ""
}

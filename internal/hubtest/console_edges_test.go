package hubtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
)

// TestConsoleEdges: the hub's edges page lists an edge that forwards (link
// up, devices behind it) and one registered that has not connected, and
// refreshes as an htmx fragment; an edge's page lists its backlog and the
// devices behind it; a token of another tenant sees neither; an edge's
// own console has no edges page.
func TestConsoleEdges(t *testing.T) {
	h := Start(t)
	b := consoletest.New(t, h.URL, nil)
	page := b.MustSignIn(h.AdminToken, "/edges")
	if !strings.Contains(page.Text(), "No edges yet") || !strings.Contains(page.Text(), "wanwu ctl object register acme:edge-1 --kind edge") ||
		!strings.Contains(page.Text(), "wanwu ctl tenant create acme") {
		t.Errorf("empty edges page: %s", page.Text())
	}
	if !strings.Contains(page.Body, `<a href="/edges" aria-current="page">Edges</a>`) {
		t.Error("the hub's menu has no current Edges entry")
	}

	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "beta"})
	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:edge-2", "kind": "edge"})
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:cell-1", "edge": "acme:edge-1"})
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:cell-2", "edge": "acme:edge-1"})
	e := StartEdge(t, dir, h.HTTPSURL())

	eventually(t, "the edge's link on the edges page", func() error {
		a := b.MustGet(http.StatusOK, "/edges")
		text := a.Text()
		for _, want := range []string{"acme:edge-1 up", "acme:edge-2 not connected yet"} {
			if !strings.Contains(text, want) {
				return fmt.Errorf("edges page lacks %q: %s", want, text)
			}
		}
		if !strings.Contains(a.Body, `<a href="/edges/acme:edge-1#devices">2</a>`) {
			return fmt.Errorf("edges page does not count 2 devices behind acme:edge-1: %s", a.Body)
		}
		return nil
	})
	frag := b.MustGet(http.StatusOK, "/edges", b.HX("/edges")...)
	if !strings.HasPrefix(strings.TrimSpace(frag.Body), `<section id="edges"`) || strings.Contains(frag.Body, "<html") ||
		!strings.Contains(frag.Body, `hx-trigger="every 10s"`) {
		t.Errorf("htmx refresh is not the list fragment: %s", frag.Body)
	}

	one := b.MustGet(http.StatusOK, "/edges/acme:edge-1")
	for _, want := range []string{`href="/objects/acme:cell-1"`, `href="/objects/acme:cell-2"`, `id="backlog"`, "at the hub through", "kept at the edge"} {
		if !strings.Contains(one.Body, want) {
			t.Errorf("edge page lacks %q: %s", want, one.Text())
		}
	}
	for _, want := range []string{"Edge acme:edge-1 link up", "(tenant acme)", "telemetry", "alarm"} {
		if !strings.Contains(one.Text(), want) {
			t.Errorf("edge page lacks %q: %s", want, one.Text())
		}
	}
	waiting := b.MustGet(http.StatusOK, "/edges/acme:edge-2")
	if !strings.Contains(waiting.Text(), "has not forwarded to this hub yet") || !strings.Contains(waiting.Text(), "No devices are registered behind this edge") {
		t.Errorf("registered edge's page: %s", waiting.Text())
	}
	if nf := b.Get("/edges/acme:cell-1"); nf.Status != http.StatusNotFound {
		t.Errorf("a device's code as an edge: %d", nf.Status)
	}

	// A token bound to beta sees no edge of acme.
	var tok struct{ Secret string }
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "beta-v", "role": "viewer", "tenant": "beta"}).JSON(t, &tok)
	beta := consoletest.New(t, h.URL, nil)
	if text := beta.MustSignIn(tok.Secret, "/edges").Text(); strings.Contains(text, "acme:edge") || !strings.Contains(text, "No edges yet") {
		t.Errorf("beta's edges page: %s", text)
	}
	for _, p := range []string{"/edges/acme:edge-1", "/edges/acme:edge-2"} {
		if a := beta.Get(p); a.Status != http.StatusNotFound || strings.Contains(a.Body, "cell-1") {
			t.Errorf("beta opens %s: %d", p, a.Status)
		}
	}

	// The edge's own console: no edges page, no import.
	ec := consoletest.New(t, e.URL(), nil)
	home := ec.MustSignIn(e.Token, "/")
	if strings.Contains(home.Body, `href="/edges"`) || strings.Contains(home.Body, `href="/objects/import"`) {
		t.Error("the edge's console links to the edges page or the import")
	}
	for _, p := range []string{"/edges", "/objects/import"} {
		if a := ec.Get(p); a.Status != http.StatusNotFound {
			t.Errorf("edge console %s: %d", p, a.Status)
		}
	}
}

// postFile posts a CSV file as the import form does without JavaScript
// (multipart, from this origin); csrf "" leaves the token out.
func postFile(t *testing.T, b *consoletest.Browser, csrf, csv string) consoletest.Answer {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if csrf != "" {
		if err := mw.WriteField("csrf", csrf); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := mw.CreateFormFile("file", "objects.csv")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(fw, csv)
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return send(t, b, "/objects/import", mw.FormDataContentType(), "", &body)
}

// postChunk posts a chunk as import.js does (text/csv with the CSRF
// header); csrf "" leaves the header out.
func postChunk(t *testing.T, b *consoletest.Browser, offset int, csrf, csv string) consoletest.Answer {
	t.Helper()
	return send(t, b, fmt.Sprintf("/objects/import?offset=%d", offset), "text/csv", csrf, strings.NewReader(csv))
}

func send(t *testing.T, b *consoletest.Browser, path, contentType, csrf string, body io.Reader) consoletest.Answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.Base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Origin", b.Base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	resp, err := b.C.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return consoletest.Answer{Status: resp.StatusCode, Header: resp.Header, Body: string(raw), Resp: resp}
}

// chunkAnswer is the chunk route's JSON.
type chunkAnswer struct {
	Created, Unchanged, Errors int
	Rows                       []struct {
		Line                         int
		Code, Result, Field, Message string
	}
	Keys []struct {
		Code       string
		PrivateKey string `json:"private_key"`
	}
	Error *struct{ Message string }
}

func decodeChunk(t *testing.T, a consoletest.Answer) chunkAnswer {
	t.Helper()
	if ct := a.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("chunk answer %d is %s: %s", a.Status, ct, a.Body)
	}
	var c chunkAnswer
	if err := json.Unmarshal([]byte(a.Body), &c); err != nil {
		t.Fatalf("chunk answer: %v: %s", err, a.Body)
	}
	return c
}

// TestConsoleImport: the import form without JavaScript registers the
// good rows of a CSV and shows every row's result with the API's messages
// and the keys the hub generated; the chunk route answers JSON with the
// lines counted in the whole file; a viewer is refused by the API (its
// message, 403) and sees no form; an operator of another tenant gets the
// API's refusal per row; a post without the CSRF token is refused.
func TestConsoleImport(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "beta"})
	b := consoletest.New(t, h.URL, nil)
	fleet := b.MustSignIn(h.AdminToken, "/")
	if !strings.Contains(fleet.Body, `href="/objects/import"`) {
		t.Error("the fleet page has no import link for the admin")
	}
	form := b.MustGet(http.StatusOK, "/objects/import")
	for _, want := range []string{`type="file"`, `enctype="multipart/form-data"`, `src="/static/import.js"`, `data-chunk-rows="200"`, `data-max-rows="100000"`} {
		if !strings.Contains(form.Body, want) {
			t.Errorf("import page lacks %s", want)
		}
	}
	if !strings.Contains(form.Text(), "at most 64.0 MiB and 100000 rows") || !strings.Contains(form.Text(), "at most 1000 rows") {
		t.Errorf("import page does not say the limits: %s", form.Text())
	}
	b.MustGet(http.StatusOK, "/static/import.js")

	const csv = "code,kind\nacme:imp-1,device\nacme:imp-2,bogus\nAcme:bad,device\nacme:imp-3,asset\n"
	a := postFile(t, b, b.CSRF, csv)
	if a.Status != http.StatusOK {
		t.Fatalf("import: %d: %s", a.Status, a.Text())
	}
	// The API's own results for the same file, imported again: the
	// errors' messages are the same.
	var again struct {
		Rows []struct {
			Line                  int
			Result, Field, Reason string
		}
	}
	h.MustAdmin(207, "POST", "/api/v1/objects/import", csv).JSON(t, &again)
	text := a.Text()
	if !strings.Contains(text, "2 created, 0 unchanged, 2 errors.") {
		t.Errorf("import summary: %s", text)
	}
	for _, r := range again.Rows {
		if r.Result != "error" {
			continue
		}
		want := r.Reason
		if r.Field != "" {
			want = r.Field + ": " + r.Reason
		}
		if !strings.Contains(text, fmt.Sprintf("%d", r.Line)) || !strings.Contains(text, "error "+html.EscapeString(want)) {
			t.Errorf("row %d: the page lacks the API's message %q: %s", r.Line, want, text)
		}
	}
	for _, want := range []string{`<a href="/objects/acme:imp-1"><code>acme:imp-1</code></a>`, `id="import-keys-text"`, "PRIVATE KEY"} {
		if !strings.Contains(a.Body, want) {
			t.Errorf("results page lacks %s", want)
		}
	}
	for _, code := range []string{"acme:imp-1", "acme:imp-3"} {
		h.MustAdmin(200, "GET", "/api/v1/objects/"+code, nil)
	}

	// Chunks: the file's header and rows 2-3, then its header and rows 4-5
	// (offset 2): the lines are the file's.
	c1 := decodeChunk(t, postChunk(t, b, 0, b.CSRF, "code\nacme:imp-4\nacme:\n"))
	c2 := decodeChunk(t, postChunk(t, b, 2, b.CSRF, "code\nacme:imp-5\nacme:imp-4\n"))
	if c1.Created != 1 || c1.Errors != 1 || len(c1.Rows) != 2 || c1.Rows[0].Line != 2 || c1.Rows[1].Line != 3 || c1.Rows[1].Message == "" {
		t.Errorf("first chunk: %+v", c1)
	}
	if c2.Created != 1 || c2.Unchanged != 1 || len(c2.Rows) != 2 || c2.Rows[0].Line != 4 || c2.Rows[1].Line != 5 || c2.Rows[0].Code != "acme:imp-5" {
		t.Errorf("second chunk: %+v", c2)
	}
	if len(c1.Keys) != 1 || c1.Keys[0].Code != "acme:imp-4" || !strings.Contains(c1.Keys[0].PrivateKey, "PRIVATE KEY") {
		t.Errorf("first chunk's generated key: %+v", c1.Keys)
	}
	if bad := postChunk(t, b, -1, b.CSRF, "code\nacme:x\n"); bad.Status != http.StatusBadRequest {
		t.Errorf("negative offset: %d", bad.Status)
	}
	hdr := decodeChunk(t, postChunk(t, b, 0, b.CSRF, "nope\nacme:x\n"))
	if hdr.Error == nil || !strings.Contains(hdr.Error.Message, "code") {
		t.Errorf("unusable header: %+v", hdr)
	}

	// No CSRF token: refused, nothing imported.
	if a := postFile(t, b, "", "code\nacme:nocsrf-1\n"); a.Status != http.StatusForbidden {
		t.Errorf("form without CSRF: %d", a.Status)
	}
	if a := postChunk(t, b, 0, "", "code\nacme:nocsrf-2\n"); a.Status != http.StatusForbidden {
		t.Errorf("chunk without CSRF: %d", a.Status)
	}
	for _, code := range []string{"acme:nocsrf-1", "acme:nocsrf-2"} {
		h.MustAdmin(404, "GET", "/api/v1/objects/"+code, nil)
	}

	// A viewer: no form, no link; the API refuses the file (403, its
	// message).
	var tok struct{ Secret string }
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "viewer", "role": "viewer"}).JSON(t, &tok)
	apiRefusal := h.Do("POST", "/api/v1/objects/import", tok.Secret, "code\nacme:v-1\n")
	var refusal struct{ Error struct{ Message string } }
	apiRefusal.JSON(t, &refusal)
	if apiRefusal.Status != http.StatusForbidden || refusal.Error.Message == "" {
		t.Fatalf("the API's refusal of a viewer: %d %s", apiRefusal.Status, apiRefusal.Body)
	}
	v := consoletest.New(t, h.URL, nil)
	if home := v.MustSignIn(tok.Secret, "/"); strings.Contains(home.Body, `href="/objects/import"`) {
		t.Error("the viewer's fleet page links to the import")
	}
	vp := v.MustGet(http.StatusOK, "/objects/import")
	if strings.Contains(vp.Body, `type="file"`) || !strings.Contains(vp.Text(), "may not register objects") {
		t.Errorf("the viewer's import page: %s", vp.Text())
	}
	if a := postFile(t, v, v.CSRF, "code\nacme:v-1\n"); a.Status != http.StatusForbidden || !strings.Contains(a.Body, html.EscapeString(refusal.Error.Message)) {
		t.Errorf("viewer's form: %d: %s", a.Status, a.Text())
	}
	if a := postChunk(t, v, 0, v.CSRF, "code\nacme:v-2\n"); a.Status != http.StatusForbidden || decodeChunk(t, a).Error.Message != refusal.Error.Message {
		t.Errorf("viewer's chunk: %d: %s", a.Status, a.Body)
	}

	// An operator of beta: the API refuses acme's rows one by one.
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "beta-op", "role": "operator", "tenant": "beta"}).JSON(t, &tok)
	op := consoletest.New(t, h.URL, nil)
	op.MustSignIn(tok.Secret, "/")
	oc := decodeChunk(t, postChunk(t, op, 0, op.CSRF, "code\nacme:op-1\nbeta:op-2\n"))
	if oc.Created != 1 || oc.Errors != 1 || oc.Rows[0].Result != "error" || oc.Rows[0].Message == "" || oc.Rows[1].Result != "created" {
		t.Errorf("beta operator's chunk: %+v", oc)
	}
	h.MustAdmin(404, "GET", "/api/v1/objects/acme:op-1", nil)
}

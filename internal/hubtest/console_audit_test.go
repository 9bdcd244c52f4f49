package hubtest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
)

// auditRows are the entry indexes of an audit list page, in page order.
var auditRows = regexp.MustCompile(`<tr id="e(\d+)">`)

func rowIndexes(body string) []uint64 {
	var out []uint64
	for _, m := range auditRows.FindAllStringSubmatch(body, -1) {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		out = append(out, n)
	}
	return out
}

// attr reads a data-* attribute of the verify section.
func attr(t *testing.T, body, name string) string {
	t.Helper()
	m := regexp.MustCompile(name + `="([^"]*)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in %s", name, body)
	}
	return html.UnescapeString(m[1])
}

// auditLink is a paging link of the page ("← Newer", "Older →").
func auditLink(t *testing.T, body, label string) string {
	t.Helper()
	m := regexp.MustCompile(`<a href="([^"]*)" rel="[a-z]+">` + regexp.QuoteMeta(label) + `</a>`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// TestConsoleAudit: /audit lists the log's entries newest first, filters
// them by kind, pages older and newer, and shows the signed head with its
// signature checked; /audit/{index} serves the leaf bytes, the inclusion
// proof and the head's root, which verify with transparency-dev/merkle (a
// tampered leaf does not); a tenant-bound token sees its tenant's entries
// only.
func TestConsoleAudit(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "beta"})
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "beta:meter-1"})
	h.MustAdmin(200, "POST", "/api/v1/objects/import", fleetCSV("aud", 40))
	h.MustAdmin(200, "POST", "/api/v1/objects/acme:aud-00003/quarantine", map[string]any{"reason": "console test"})
	// Signing in is an entry of its own (console.signed_in): before the
	// entries are counted.
	b := consoletest.New(t, h.URL, nil)
	b.MustSignIn(h.AdminToken, "/")

	// What the API says: the log's entries and the signed head.
	r := h.MustAdmin(200, "GET", "/api/v1/audit/entries", nil)
	type entry struct {
		Index                        uint64
		Kind, Subject, Tenant, Actor string
		Leaf                         []byte
	}
	var all []entry
	for _, line := range bytes.Split(bytes.TrimSpace(r.Body), []byte("\n")) {
		var e entry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	size := uint64(len(all))
	if size < 60 {
		t.Fatalf("only %d entries: too few to page", size)
	}

	page := b.MustGet(200, "/audit")
	text := page.Text()
	for _, want := range []string{"Audit log", "Signed tree head", fmt.Sprintf("%d entries", size), "signature checked by this node", "Verifier key", "object.quarantined", "acme:aud-00003"} {
		if !strings.Contains(text, want) {
			t.Errorf("/audit lacks %q: %s", want, text)
		}
	}
	if !strings.Contains(page.Body, `href="/audit"`) || !strings.Contains(page.Body, `aria-current="page">Audit`) {
		t.Error("/audit: no Audit menu entry marked current")
	}
	if !strings.Contains(page.Body, `src="/static/audit.js"`) {
		t.Error("/audit does not load audit.js")
	}
	var info struct {
		Key string `json:"audit_verifier_key"`
	}
	h.MustAdmin(200, "GET", "/api/v1/info", nil).JSON(t, &info)
	if info.Key == "" || !strings.Contains(html.UnescapeString(page.Body), info.Key) {
		t.Errorf("/audit does not show the verifier key %q", info.Key)
	}

	// Newest first, a page of 50; older and newer page back and forth.
	first := rowIndexes(page.Body)
	if len(first) != 50 || first[0] != size-1 || first[49] != size-50 {
		t.Fatalf("first page: %v (size %d)", first, size)
	}
	if auditLink(t, page.Body, "← Newer") != "" {
		t.Error("the newest page links to newer entries")
	}
	older := auditLink(t, page.Body, "Older →")
	if older != fmt.Sprintf("/audit?before=%d", size-50) {
		t.Fatalf("older link %q", older)
	}
	second := b.MustGet(200, older)
	got := rowIndexes(second.Body)
	if len(got) != int(size-50) || got[0] != size-51 || got[len(got)-1] != 0 {
		t.Errorf("second page: %v", got)
	}
	if auditLink(t, second.Body, "Older →") != "" {
		t.Error("the oldest page links to older entries")
	}
	newer := auditLink(t, second.Body, "← Newer")
	if back := rowIndexes(b.MustGet(200, newer).Body); fmt.Sprint(back) != fmt.Sprint(first) {
		t.Errorf("newer from the second page (%s): %v, want %v", newer, back, first)
	}

	// The kind filter: only the quarantine, one entry.
	filtered := b.MustGet(200, "/audit?kind=object.quarantined")
	rows := rowIndexes(filtered.Body)
	var quarantine entry
	for _, e := range all {
		if e.Kind == "object.quarantined" {
			quarantine = e
		}
	}
	if len(rows) != 1 || rows[0] != quarantine.Index {
		t.Errorf("kind=object.quarantined: rows %v, want [%d]", rows, quarantine.Index)
	}
	if strings.Contains(filtered.Text(), "object.registered") {
		t.Error("the kind filter shows other kinds")
	}
	// A prefix: every object.* entry, none of the tenants'.
	for _, i := range rowIndexes(b.MustGet(200, "/audit?kind=object.").Body) {
		if !strings.HasPrefix(all[i].Kind, "object.") {
			t.Errorf("kind=object. shows entry %d of kind %s", i, all[i].Kind)
		}
	}
	if rows := rowIndexes(b.MustGet(200, "/audit?subject=beta:meter-1").Body); len(rows) == 0 {
		t.Error("subject=beta:meter-1: no entries")
	} else {
		for _, i := range rows {
			if all[i].Subject != "beta:meter-1" {
				t.Errorf("subject filter shows entry %d about %s", i, all[i].Subject)
			}
		}
	}
	if none := b.MustGet(200, "/audit?kind=no.such.kind"); len(rowIndexes(none.Body)) != 0 || !strings.Contains(none.Text(), "No entry") {
		t.Errorf("a filter that matches nothing: %s", none.Text())
	}
	if bad := b.MustGet(200, "/audit?since=yesterday"); !strings.Contains(bad.Text(), "since: ") {
		t.Errorf("a since that is no time: %s", bad.Text())
	}
	if rows := rowIndexes(b.MustGet(200, "/audit?since=2999-01-01").Body); len(rows) != 0 {
		t.Errorf("since the future: %v", rows)
	}

	// The verify page: its leaf, proof and root verify with the Go
	// implementation of RFC 6962, and a tampered leaf does not.
	vp := b.MustGet(200, fmt.Sprintf("/audit/%d", quarantine.Index))
	if !strings.Contains(vp.Text(), "Audit entry "+strconv.FormatUint(quarantine.Index, 10)) || !strings.Contains(vp.Body, "data-audit-verify") {
		t.Fatalf("verify page: %s", vp.Text())
	}
	leaf, err := base64.StdEncoding.DecodeString(attr(t, vp.Body, "data-leaf"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(leaf, quarantine.Leaf) {
		t.Errorf("the page's leaf is not the API's: %s", leaf)
	}
	index, _ := strconv.ParseUint(attr(t, vp.Body, "data-index"), 10, 64)
	hsize, _ := strconv.ParseUint(attr(t, vp.Body, "data-size"), 10, 64)
	root, err := base64.StdEncoding.DecodeString(attr(t, vp.Body, "data-root"))
	if err != nil {
		t.Fatal(err)
	}
	var hashes [][]byte
	for _, s := range strings.Fields(attr(t, vp.Body, "data-proof")) {
		p, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, p)
	}
	if index != quarantine.Index || hsize < size || len(hashes) == 0 {
		t.Fatalf("verify data: index %d size %d proof %d", index, hsize, len(hashes))
	}
	var head struct {
		Size uint64
		Root []byte
	}
	h.MustAdmin(200, "GET", "/api/v1/audit/head", nil).JSON(t, &head)
	if head.Size == hsize && !bytes.Equal(head.Root, root) {
		t.Errorf("the page's root %x is not the signed head's %x", root, head.Root)
	}
	hasher := rfc6962.DefaultHasher
	if err := proof.VerifyInclusion(hasher, index, hsize, hasher.HashLeaf(leaf), hashes, root); err != nil {
		t.Errorf("the page's proof does not verify: %v", err)
	}
	tampered := bytes.Replace(leaf, []byte("console test"), []byte("console tesT"), 1)
	if bytes.Equal(tampered, leaf) {
		t.Fatal("the leaf lacks the reason")
	}
	if err := proof.VerifyInclusion(hasher, index, hsize, hasher.HashLeaf(tampered), hashes, root); err == nil {
		t.Error("a tampered leaf verifies")
	}
	if err := proof.VerifyInclusion(hasher, index+1, hsize, hasher.HashLeaf(leaf), hashes, root); err == nil {
		t.Error("the leaf verifies at another index")
	}
	// The list's Verify button loads the verification alone (htmx).
	frag := b.MustGet(200, fmt.Sprintf("/audit/%d", quarantine.Index), b.HX("/audit")...)
	if strings.Contains(frag.Body, "<html") || !strings.Contains(frag.Body, "data-audit-verify") {
		t.Errorf("the htmx verify fragment: %s", frag.Body)
	}
	for path, want := range map[string]int{"/audit/x": 400, fmt.Sprintf("/audit/%d", size+100): 404} {
		if a := b.Get(path); a.Status != want {
			t.Errorf("GET %s: %d, want %d", path, a.Status, want)
		}
	}

	// A viewer bound to beta sees beta's entries only, and not acme's
	// entry pages.
	var tok struct{ Secret string }
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "beta-viewer", "role": "viewer", "tenant": "beta"}).JSON(t, &tok)
	beta := consoletest.New(t, h.URL, nil)
	bp := beta.MustSignIn(tok.Secret, "/audit")
	brows := rowIndexes(bp.Body)
	if len(brows) == 0 {
		t.Fatalf("beta sees no entries: %s", bp.Text())
	}
	for _, i := range brows {
		if i < size && all[i].Tenant != "beta" {
			t.Errorf("beta sees entry %d of tenant %q", i, all[i].Tenant)
		}
	}
	if strings.Contains(bp.Text(), "acme:aud-") {
		t.Error("beta's audit page names acme's objects")
	}
	if a := beta.Get(fmt.Sprintf("/audit/%d", quarantine.Index)); a.Status != http.StatusNotFound {
		t.Errorf("beta opens acme's entry: %d", a.Status)
	}
	if a := beta.Get(fmt.Sprintf("/audit/%d", brows[0])); a.Status != http.StatusOK || !strings.Contains(a.Body, "data-proof") {
		t.Errorf("beta opens its own entry: %d", a.Status)
	}
}

// TestConsoleModels: /models lists the thing models with their versions,
// a version's page shows its properties, actions and events with units and
// ranges, the Thing Description downloads as the API's bytes; an admin
// deprecates a version (confirmed, with a reason, in the API's words when
// refused), a viewer sees no deprecate button and is refused, another
// tenant's token does not see the model, a change without the CSRF token is
// refused.
func TestConsoleModels(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "beta"})

	b := consoletest.New(t, h.URL, nil)
	empty := b.MustSignIn(h.AdminToken, "/models").Text()
	if !strings.Contains(empty, "No thing models yet") || !strings.Contains(empty, "wanwu ctl model register FILE.json") {
		t.Errorf("empty models page: %s", empty)
	}

	doc, err := os.ReadFile("../thingmodel/testdata/pump.json")
	if err != nil {
		t.Fatal(err)
	}
	h.MustAdmin(201, "POST", "/api/v1/models", doc)
	h.MustAdmin(201, "POST", "/api/v1/models", bytes.Replace(doc, []byte(`"1.2.0"`), []byte(`"1.3.0"`), 1))

	list := b.MustGet(200, "/models")
	for _, want := range []string{"acme:pump", "Pump", "1.2.0", "1.3.0", "latest 1.3.0"} {
		if !strings.Contains(list.Text(), want) {
			t.Errorf("/models lacks %q: %s", want, list.Text())
		}
	}
	if !strings.Contains(list.Body, `href="/models/acme:pump/1.2.0"`) {
		t.Error("/models does not link the version")
	}
	latest := b.MustGet(200, "/models/acme:pump").Text()
	if !strings.Contains(latest, "version 1.3.0") {
		t.Errorf("/models/acme:pump is not the latest version: %s", latest)
	}
	v12 := b.MustGet(200, "/models/acme:pump/1.2.0")
	for _, want := range []string{"version 1.2.0", "temperature number Cel -40 … 125 no (read-only) internal", "mode string: auto, manual",
		"setSpeed", "rpm : integer in 1/min , 0 … 3000", "overheat", "temp : number in Cel", "Download WoT Thing Description", "Deprecate 1.2.0"} {
		if !strings.Contains(v12.Text(), want) {
			t.Errorf("/models/acme:pump/1.2.0 lacks %q: %s", want, v12.Text())
		}
	}

	// The Thing Description: a download of the API's bytes.
	td := b.MustGet(200, "/models/acme:pump/1.2.0/td")
	api := h.MustAdmin(200, "GET", "/api/v1/models/acme:pump/versions/1.2.0/td", nil)
	if td.Body != string(api.Body) || !json.Valid([]byte(td.Body)) {
		t.Errorf("the TD is not the API's: %s", td.Body)
	}
	if ct := td.Header.Get("Content-Type"); ct != "application/td+json" {
		t.Errorf("TD content type %q", ct)
	}
	if cd := td.Header.Get("Content-Disposition"); cd != `attachment; filename="acme:pump-1.2.0.td.json"` {
		t.Errorf("TD disposition %q", cd)
	}
	if a := b.Get("/models/acme:pump/9.9.9/td"); a.Status != http.StatusNotFound {
		t.Errorf("TD of no version: %d", a.Status)
	}

	// Deprecate: without the confirmation, without a reason (the API's
	// message), without the CSRF token, then as it should be.
	if a := b.Change("/models/acme:pump/1.2.0/deprecate", url.Values{"reason": {"old"}}); a.Status != http.StatusBadRequest || !strings.Contains(a.Text(), "Tick the box") {
		t.Errorf("unconfirmed deprecation: %d %s", a.Status, a.Text())
	}
	if a := b.Change("/models/acme:pump/1.2.0/deprecate", url.Values{"confirm": {"yes"}}); a.Status != http.StatusBadRequest || !strings.Contains(a.Text(), "say why the version is deprecated") {
		t.Errorf("deprecation without a reason: %d %s", a.Status, a.Text())
	}
	if a := b.Post("/models/acme:pump/1.2.0/deprecate", url.Values{"reason": {"old"}, "confirm": {"yes"}}, b.Origin()...); a.Status != http.StatusForbidden {
		t.Errorf("deprecation without CSRF: %d", a.Status)
	}
	a := b.Change("/models/acme:pump/1.2.0/deprecate", url.Values{"reason": {"replaced by 1.3.0"}, "confirm": {"yes"}})
	if a.Status != http.StatusSeeOther || a.Location() != "/models/acme:pump/1.2.0" {
		t.Fatalf("deprecation: %d to %q: %s", a.Status, a.Location(), a.Text())
	}
	if page := b.MustGet(200, "/models/acme:pump/1.2.0").Text(); !strings.Contains(page, "deprecated") || !strings.Contains(page, "replaced by 1.3.0") || strings.Contains(page, "Deprecate 1.2.0") {
		t.Errorf("after deprecation: %s", page)
	}
	if a := b.Change("/models/acme:pump/1.2.0/deprecate", url.Values{"reason": {"again"}, "confirm": {"yes"}}); a.Status != http.StatusConflict || !strings.Contains(a.Text(), "already deprecated") {
		t.Errorf("deprecating twice: %d %s", a.Status, a.Text())
	}

	// A viewer of acme sees the model, no deprecate button, and is refused.
	var tok struct{ Secret string }
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "acme-viewer", "role": "viewer", "tenant": "acme"}).JSON(t, &tok)
	viewer := consoletest.New(t, h.URL, nil)
	vp := viewer.MustSignIn(tok.Secret, "/models/acme:pump/1.3.0")
	if strings.Contains(vp.Body, "/deprecate") || !strings.Contains(vp.Text(), "setSpeed") {
		t.Errorf("the viewer's model page: %s", vp.Text())
	}
	if a := viewer.Change("/models/acme:pump/1.3.0/deprecate", url.Values{"reason": {"no"}, "confirm": {"yes"}}); a.Status != http.StatusForbidden {
		t.Errorf("a viewer deprecates: %d %s", a.Status, a.Text())
	}
	// A token bound to beta does not see acme's model.
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "beta-op", "role": "operator", "tenant": "beta"}).JSON(t, &tok)
	beta := consoletest.New(t, h.URL, nil)
	if page := beta.MustSignIn(tok.Secret, "/models").Text(); strings.Contains(page, "acme:pump") {
		t.Errorf("beta's models list shows acme's: %s", page)
	}
	for _, path := range []string{"/models/acme:pump", "/models/acme:pump/1.3.0", "/models/acme:pump/1.3.0/td"} {
		if a := beta.Get(path); a.Status != http.StatusNotFound {
			t.Errorf("beta GET %s: %d", path, a.Status)
		}
	}
	if a := beta.Change("/models/acme:pump/1.3.0/deprecate", url.Values{"reason": {"no"}, "confirm": {"yes"}}); a.Status != http.StatusNotFound {
		t.Errorf("beta deprecates acme's model: %d", a.Status)
	}
	var ms struct {
		Models []struct {
			Version    string
			Deprecated bool
		}
	}
	h.MustAdmin(200, "GET", "/api/v1/models", nil).JSON(t, &ms)
	if len(ms.Models) != 2 || !ms.Models[0].Deprecated || ms.Models[1].Deprecated {
		t.Errorf("the API's models after the deprecation: %+v", ms.Models)
	}
}

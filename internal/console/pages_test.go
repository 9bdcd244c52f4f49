package console

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

// fleet registers two tenants' objects in every status, kind, network and
// behind an edge, and returns them by code.
func (e *env) fleet() map[string]*registry.Object {
	e.t.Helper()
	e.tenant("acme")
	e.tenant("beta")
	e.tenant("empty")
	out := map[string]*registry.Object{}
	for _, req := range []registry.RegisterRequest{
		{Code: "acme:pump-1", Network: "nb-iot", Path: []string{"plant", "hall-1"}, Tags: map[string]string{"site": "north", "line": "2"}},
		{Code: "acme:pump-2", Network: "nb-iot"},
		{Code: "acme:pump-3", Network: "lte-cat1"},
		{Code: "acme:gw-1", Kind: registry.KindGateway, Network: "ethernet"},
		{Code: "acme:edge-1", Kind: registry.KindEdge, Network: "ethernet"},
		{Code: "acme:cell-1", Edge: "acme:edge-1"},
		{Code: "acme:cell-2", Edge: "acme:edge-1"},
		{Code: "acme:hall-1", Kind: registry.KindAsset},
		{Code: "beta:meter-1", Network: "wlan"},
		{Code: "beta:meter-2", Network: "wlan"},
	} {
		out[req.Code] = e.register(req)
	}
	if _, err := e.reg.Quarantine(e.ctx, "test", "acme:pump-2", "leaking"); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.reg.Revoke(e.ctx, "test", "acme:pump-3", "stolen"); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// cells returns a table row's cells by the row's header text.
func row(t *testing.T, html, header string) []string {
	t.Helper()
	re := regexp.MustCompile(`(?s)<tr><th scope="row">(.*?)</th>(.*?)</tr>`)
	for _, m := range re.FindAllStringSubmatch(html, -1) {
		if text(m[1]) == header {
			var out []string
			for _, c := range regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`).FindAllStringSubmatch(m[2], -1) {
				out = append(out, text(c[1]))
			}
			return out
		}
	}
	return nil
}

func card(html, label string) string {
	m := regexp.MustCompile(`<span class="n">([^<]*)</span> ` + regexp.QuoteMeta(label) + `<`).FindStringSubmatch(html)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestConsoleFleetCounts: the overview counts what was registered, by
// tenant and status, kind, network and edge; online and offline from
// presence (the hub's own devices: not assets, not those behind an edge);
// messages per second from the node's counters.
func TestConsoleFleetCounts(t *testing.T) {
	e := newEnv(t, false, nil)
	e.fleet()
	e.presence.Connected("acme:pump-1", "acme", "mqtt", "10.0.0.1:1")
	e.presence.Seen("acme:pump-1", "acme", "coap") // once, over two protocols
	e.presence.Connected("beta:meter-1", "beta", "mqtt", "10.0.0.2:1")

	b := e.browser()
	b.MustSignIn(e.token("admin", auth.Admin, ""), "/")
	e.c.tick()
	page := b.MustGet(http.StatusOK, "/")
	if got := card(page.Body, "objects"); got != "10" {
		t.Errorf("objects %q, want 10", got)
	}
	// acme: pump-1, gw-1 active and not behind an edge (pump-1 online);
	// beta: meter-1, meter-2 (meter-1 online).
	for label, want := range map[string]string{"online": "2", "offline": "2", "quarantined": "1", "revoked": "1"} {
		if got := card(page.Body, label); got != want {
			t.Errorf("card %s = %q, want %s", label, got, want)
		}
	}
	for header, want := range map[string]string{
		// objects, active, quarantined, revoked, decommissioned, online, offline
		"acme":  "8 6 1 1 0 1 1",
		"beta":  "2 2 0 0 0 1 1",
		"empty": "0 0 0 0 0 0 0",
		// by kind, network, edge
		"device":      "7",
		"gateway":     "1",
		"edge":        "1",
		"asset":       "1",
		"nb-iot":      "2",
		"ethernet":    "2",
		"wlan":        "2",
		"lte-cat1":    "1",
		"not set":     "3",
		"acme:edge-1": "2",
	} {
		if got := strings.Join(row(t, page.Body, header), " "); got != want {
			t.Errorf("row %s: %q, want %q", header, got, want)
		}
	}
	if !strings.Contains(page.Body, `<a href="/objects/acme:edge-1">acme:edge-1</a>`) {
		t.Error("the edge row does not link to the edge")
	}
	if !strings.Contains(page.Body, `<script src="/static/vendor/uplot/uPlot.iife.min.js" defer></script>`) {
		t.Error("the fleet page does not load uPlot")
	}
	if !strings.Contains(page.Body, "Measuring: the rates appear after 10 s.") {
		t.Errorf("one sample should say measuring: %s", text(page.Body))
	}

	// 50 messages and 5 rejections in 10 s: 5.0 and 0.5 per second.
	e.ingest.WithLabelValues("mqtt", "durable").Add(40)
	e.ingest.WithLabelValues("coap", "durable").Add(10)
	e.ingest.WithLabelValues("mqtt", "failed").Add(7) // not accepted
	e.dead.WithLabelValues("schema").Add(5)
	e.refused.WithLabelValues("acl").Add(2)
	e.clock.add(10 * time.Second)
	e.c.tick()
	page = b.MustGet(http.StatusOK, "/")
	for label, want := range map[string]string{"accepted / s": "5.0", "rejected / s (dead letters)": "0.5", "refused / s (protocol)": "0.2"} {
		if got := card(page.Body, label); got != want {
			t.Errorf("card %s = %q, want %s", label, got, want)
		}
	}
	m := regexp.MustCompile(`data-series="([^"]*)"`).FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatalf("no chart data: %s", page.Body)
	}
	series := strings.ReplaceAll(m[1], "&#34;", `"`)
	if want := `{"t":[1796112010],"accepted":[5],"dead":[0.5],"refused":[0.2]}`; series != want {
		t.Errorf("chart data %s, want %s", series, want)
	}
	if !strings.Contains(text(page.Body), "Since the node started: 50 accepted, 5 rejected") {
		t.Errorf("totals: %s", text(page.Body))
	}
}

// TestConsoleFleetEmpty: with nothing registered, the page says what to do.
func TestConsoleFleetEmpty(t *testing.T) {
	e := newEnv(t, false, func(o *Options) { o.Gatherer = nil })
	b := e.browser()
	b.MustSignIn(e.token("admin", auth.Admin, ""), "/")
	page := text(b.MustGet(http.StatusOK, "/").Body)
	if !strings.Contains(page, "There is no tenant yet. Create one with wanwu ctl tenant create acme") {
		t.Errorf("empty deployment: %s", page)
	}
	if strings.Contains(page, "Device messages") {
		t.Error("message rates shown without a Gatherer")
	}
	e.tenant("acme")
	page = text(b.MustGet(http.StatusOK, "/").Body)
	if !strings.Contains(page, "wanwu ctl object register acme:pump-1") {
		t.Errorf("empty tenant: %s", page)
	}
}

// TestConsoleFleetSummary: the fragment htmx reloads is the counts alone;
// without a session htmx is told to go to sign-in, back to the page it
// was on.
func TestConsoleFleetSummary(t *testing.T) {
	e := newEnv(t, false, nil)
	e.fleet()
	b := e.browser()
	a := b.Get("/fleet/summary", "HX-Request", "true", "HX-Current-URL", e.srv.URL+"/?tab=x")
	if a.Status != http.StatusUnauthorized || a.Header.Get("HX-Redirect") != "/signin?next=%2F%3Ftab%3Dx" {
		t.Fatalf("signed out: %d HX-Redirect %q", a.Status, a.Header.Get("HX-Redirect"))
	}
	// A foreign HX-Current-URL is not followed.
	a = b.Get("/fleet/summary", "HX-Request", "true", "HX-Current-URL", "https://evil.example/x")
	if a.Header.Get("HX-Redirect") != "/signin" {
		t.Errorf("foreign current URL: HX-Redirect %q", a.Header.Get("HX-Redirect"))
	}
	b.MustSignIn(e.token("admin", auth.Admin, ""), "/")
	a = b.MustGet(http.StatusOK, "/fleet/summary", "HX-Request", "true")
	if strings.Contains(a.Body, "<html") || strings.Contains(a.Body, "<header") {
		t.Errorf("the fragment is a whole page: %s", a.Body)
	}
	if !strings.HasPrefix(strings.TrimSpace(a.Body), `<section id="summary"`) || card(a.Body, "objects") != "10" {
		t.Errorf("fragment: %s", a.Body)
	}
}

// TestConsoleVisibility: a tenant-bound token sees its tenant only; another
// tenant's object is "not found", exactly as one that does not exist, by
// page and by search; a viewer sees everything its tenant holds.
func TestConsoleVisibility(t *testing.T) {
	e := newEnv(t, false, nil)
	objs := e.fleet()
	b := e.browser()
	b.MustSignIn(e.token("beta-viewer", auth.Viewer, "beta"), "/")
	page := b.MustGet(http.StatusOK, "/")
	if got := card(page.Body, "objects"); got != "2" {
		t.Errorf("beta sees %q objects, want 2", got)
	}
	if row(t, page.Body, "acme") != nil || strings.Contains(page.Body, "acme:edge-1") || row(t, page.Body, "ethernet") != nil {
		t.Errorf("beta's token sees acme: %s", text(page.Body))
	}
	if got := strings.Join(row(t, page.Body, "beta"), " "); got != "2 2 0 0 0 0 2" {
		t.Errorf("beta row %q", got)
	}
	if !strings.Contains(page.Body, "tenant beta") {
		t.Error("the header does not show the tenant binding")
	}
	if !strings.Contains(text(page.Body), "Message rates are counted for the whole node, so they are shown to tokens not bound to a tenant.") {
		t.Error("a tenant-bound token is not told why there are no rates")
	}
	b.MustGet(http.StatusOK, "/objects/beta:meter-1")

	missing := b.MustGet(http.StatusNotFound, "/objects/acme:nothing")
	want := strings.ReplaceAll(text(missing.Body), "acme:nothing", "CODE")
	other := b.MustGet(http.StatusNotFound, "/objects/acme:pump-1")
	if got := strings.ReplaceAll(text(other.Body), "acme:pump-1", "CODE"); got != want {
		t.Errorf("another tenant's object:\n%s\nnot found:\n%s", got, want)
	}
	p1 := objs["acme:pump-1"]
	for _, key := range []string{"acme:pump-1", p1.Number, p1.DID} {
		a := b.Get("/search?q=" + url.QueryEscape(key))
		if a.Status != http.StatusNotFound || strings.Contains(a.Body, "/objects/acme:pump-1") {
			t.Errorf("search %s as beta: %d %s", key, a.Status, a.Location())
		}
	}
	// The edge's link on a visible object that names an invisible edge is
	// plain text (the data model keeps edges in their tenant, but the page
	// must not link what the user cannot open).
	admin := e.browser()
	admin.MustSignIn(e.token("acme-viewer", auth.Viewer, "acme"), "/")
	cell := admin.MustGet(http.StatusOK, "/objects/acme:cell-1")
	if !strings.Contains(cell.Body, `<a href="/objects/acme:edge-1">`) {
		t.Error("acme's viewer gets no link to acme's edge")
	}
	if a := admin.Get("/objects/beta:meter-1"); a.Status != http.StatusNotFound {
		t.Errorf("acme's viewer opens beta's object: %d", a.Status)
	}
}

// TestConsoleSearch: a code, an IPv6 number and a DID each lead to the
// object's page; what is not one of them, or names nothing, says so.
func TestConsoleSearch(t *testing.T) {
	e := newEnv(t, false, nil)
	objs := e.fleet()
	b := e.browser()
	b.MustSignIn(e.token("viewer", auth.Viewer, ""), "/")
	o := objs["acme:pump-1"]
	if o.Number == "" || o.DID == "" {
		t.Fatalf("registered without number or DID: %+v", o)
	}
	for _, key := range []string{"acme:pump-1", " acme:pump-1 ", o.Number, o.DID, o.DID + "#key-1"} {
		a := b.Get("/search?q=" + url.QueryEscape(key))
		if a.Status != http.StatusSeeOther || a.Location() != "/objects/acme:pump-1" {
			t.Errorf("search %q: %d to %q: %s", key, a.Status, a.Location(), text(a.Body))
		}
	}
	for _, c := range []struct {
		q      string
		status int
		says   string
	}{
		{"acme:nothing", http.StatusNotFound, "No object you can see has the code, number or DID “acme:nothing”."},
		{"fd00::1", http.StatusNotFound, "No object you can see"},
		{"did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", http.StatusNotFound, "No object you can see"},
		{"not a code", http.StatusBadRequest, "That is not a code, an IPv6 number or a DID"},
		{"1:2:zz", http.StatusBadRequest, "That is not a code, an IPv6 number or a DID"},
		{"<script>alert(1)</script>", http.StatusBadRequest, "That is not a code"},
	} {
		a := b.Get("/search?q=" + url.QueryEscape(c.q))
		if a.Status != c.status || !strings.Contains(text(a.Body), c.says) {
			t.Errorf("search %q: %d, want %d saying %q: %s", c.q, a.Status, c.status, c.says, text(a.Body))
		}
		if strings.Contains(a.Body, "<script>alert") {
			t.Errorf("search %q: the query is not escaped", c.q)
		}
		// The search box keeps what was asked.
		if !strings.Contains(a.Body, `value="`+strings.ReplaceAll(strings.ReplaceAll(c.q, "<", "&lt;"), ">", "&gt;")+`"`) {
			t.Errorf("search %q: not put back in the box", c.q)
		}
	}
	if a := b.Get("/search?q="); a.Status != http.StatusSeeOther || a.Location() != "/" {
		t.Errorf("empty search: %d to %q", a.Status, a.Location())
	}
}

// TestConsoleObjectPage: the identity of an object, its keys and its
// presence; times in UTC in the markup for the script to localise.
func TestConsoleObjectPage(t *testing.T) {
	e := newEnv(t, false, nil)
	objs := e.fleet()
	e.presence.Connected("acme:pump-1", "acme", "mqtt", "10.0.0.1:1")
	b := e.browser()
	b.MustSignIn(e.token("viewer", auth.Viewer, ""), "/")
	o := objs["acme:pump-1"]
	page := b.MustGet(http.StatusOK, "/objects/acme:pump-1")
	facts := map[string]string{}
	for _, m := range regexp.MustCompile(`(?s)<dt>(.*?)</dt><dd>(.*?)</dd>`).FindAllStringSubmatch(page.Body, -1) {
		facts[m[1]] = text(m[2])
	}
	for k, want := range map[string]string{
		"Code": "acme:pump-1", "Tenant": "acme", "Kind": "device", "Model": "none", "Number": o.Number, "DID": o.DID,
		"Path": "plant / hall-1", "Tags": "line=2 site=north", "Edge": "none: connects to the hub", "Network": "nb-iot",
		"Registered": "2026-12-01 08:00:00 UTC", "State": "online over mqtt", "Since": "2026-12-01 08:00:00 UTC",
	} {
		if facts[k] != want {
			t.Errorf("%s: %q, want %q", k, facts[k], want)
		}
	}
	if !strings.Contains(page.Body, `<time datetime="2026-12-01T08:00:00Z" title="2026-12-01 08:00:00 UTC" data-local>`) {
		t.Error("times are not marked for the viewer's zone")
	}
	if !strings.Contains(page.Body, `<span class="badge status-active">active</span>`) {
		t.Error("no status badge")
	}
	if strings.Contains(page.Body, "uPlot") {
		t.Error("a page without charts loads uPlot")
	}
	if !strings.Contains(page.Body, `<h2 id="keys">`) || !strings.Contains(page.Body, o.DID) {
		t.Error("no keys table")
	}
	q := b.MustGet(http.StatusOK, "/objects/acme:pump-2")
	if !strings.Contains(text(q.Body), "quarantined Reason: leaking") {
		t.Errorf("quarantined object: %s", text(q.Body))
	}
	// Behind an edge: the hub does not see its presence.
	cell := b.MustGet(http.StatusOK, "/objects/acme:cell-1")
	if strings.Contains(cell.Body, `id="presence"`) {
		t.Error("the hub shows presence for a device behind an edge")
	}
	nf := b.MustGet(http.StatusNotFound, "/objects/nope")
	if !strings.Contains(text(nf.Body), "Search for it by its code, IPv6 number or DID below") || !strings.Contains(nf.Body, `value="nope"`) {
		t.Errorf("not-found page: %s", text(nf.Body))
	}
}

// TestConsoleEdgeRole: at an edge, presence counts the devices behind it.
func TestConsoleEdgeRole(t *testing.T) {
	e := newEnv(t, false, func(o *Options) { o.Role, o.Code = "edge", "acme:edge-1" })
	e.fleet()
	e.presence.Connected("acme:cell-1", "acme", "mqtt", "10.0.0.1:1")
	b := e.browser()
	b.MustSignIn(e.token("viewer", auth.Viewer, ""), "/")
	page := b.MustGet(http.StatusOK, "/")
	if card(page.Body, "online") != "1" || card(page.Body, "offline") != "1" {
		t.Errorf("edge presence: online %q offline %q", card(page.Body, "online"), card(page.Body, "offline"))
	}
	if !strings.Contains(text(page.Body), "wanwu edge acme:edge-1") || !strings.Contains(text(page.Body), "behind this edge (acme:edge-1)") {
		t.Errorf("the edge does not say what it is: %s", text(page.Body))
	}
	if !strings.Contains(b.MustGet(http.StatusOK, "/objects/acme:cell-1").Body, `id="presence"`) {
		t.Error("the edge shows no presence for its device")
	}
}

// TestConsoleNavigation: the layout links only to pages that exist, has a
// skip link to the main content, and the principal with sign-out.
func TestConsoleNavigation(t *testing.T) {
	e := newEnv(t, false, nil)
	e.fleet()
	b := e.browser()
	b.MustSignIn(e.token("viewer", auth.Viewer, ""), "/")
	page := b.MustGet(http.StatusOK, "/objects/acme:pump-1")
	if !strings.Contains(page.Body, `<a class="skip" href="#main">`) || !strings.Contains(page.Body, `<main id="main"`) {
		t.Error("no skip link to main")
	}
	for _, m := range regexp.MustCompile(`href="(/[^"]*)"`).FindAllStringSubmatch(page.Body, -1) {
		a := b.Get(m[1])
		// This console has no API behind it: the pages that read the node
		// through it answer 503 here (package hubtest opens them on a
		// real hub).
		if a.Status != http.StatusOK && (a.Status != http.StatusServiceUnavailable || !strings.Contains(a.Body, "The node&#39;s API is not serving yet.")) {
			t.Errorf("link %s: %d", m[1], a.Status)
		}
	}
	for _, m := range regexp.MustCompile(`src="(/[^"]*)"`).FindAllStringSubmatch(page.Body, -1) {
		b.MustGet(http.StatusOK, m[1])
	}
	if !strings.Contains(page.Body, `action="/signout"`) {
		t.Error("no sign-out")
	}
}

package hubtest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
)

// TestConsoleDatasets: an operator captures a window of a hub device's
// data with the label queue's form, finds it in the queue, opens its page
// (its summaries and the chart's data), labels it false positive there
// (a refused label is shown beside the form with the note kept) and sees
// it leave the queue; builds a dataset version with the form, sees its
// quality scores, downloads its export, and sees a training refused beside
// its form. A viewer sees the pages without a form, and a forged change of
// theirs is refused.
func TestConsoleDatasets(t *testing.T) {
	h := Start(t, func(c *config.Hub) { c.ML.CaptureAfter = 0; c.MQTT.Limits.PublishPerDeviceBurst = 1000 })
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(`{"id":"acme:pump","version":"1.0.0","properties":{
	 "flow":{"type":"number","unit":"m3/s"},"power":{"type":"number","unit":"W"},"temp":{"type":"number","unit":"Cel"}}}`))
	tok := newTokenObject(t, h, map[string]any{"code": "acme:pump-2", "model": map[string]string{"id": "acme:pump", "version": "1.0.0"}}).token
	for i := range 4 {
		if r := h.Do("POST", "/api/v1/ingest/acme:pump-2/telemetry", tok, map[string]float64{"flow": 40 + float64(i), "power": 6}); r.Status >= 300 {
			t.Fatalf("telemetry: %d %s", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond) // the capture's resolution over 5 minutes is 30 ms
	}

	b := consoletest.New(t, h.URL, nil)
	queue := b.MustSignIn(h.AdminToken, "/labels?tenant=acme").Text()
	for _, want := range []string{"No unlabelled window in tenant acme", "around each alarm", "ctl ml capture", "Capture now"} {
		if !strings.Contains(queue, want) {
			t.Errorf("the empty queue lacks %q: %s", want, queue)
		}
	}
	if a := b.Change("/labels/capture?tenant=acme", url.Values{"object": {"acme:nope"}, "minutes": {"5"}}); a.Status != 404 || !strings.Contains(a.Text(), "Capture now") || !strings.Contains(a.Body, `value="acme:nope"`) {
		t.Errorf("capturing an unknown object: %d %s", a.Status, a.Text())
	}
	var win string
	eventually(t, "a window captured with the form", func() error {
		a := b.Change("/labels/capture?tenant=acme", url.Values{"object": {"acme:pump-2"}, "minutes": {"5"}})
		m := regexp.MustCompile(`^/windows/acme/(w-[0-9a-f]{16})\?done=captured$`).FindStringSubmatch(a.Location())
		if a.Status != 303 || m == nil {
			return fmt.Errorf("%d %s %s", a.Status, a.Location(), a.Text())
		}
		win = m[1]
		return nil
	})
	// A second window, shorter: the newest of the queue.
	time.Sleep(5 * time.Millisecond) // captured a later millisecond
	a := b.Change("/labels/capture?tenant=acme", url.Values{"object": {"acme:pump-2"}, "minutes": {"4"}})
	m2 := regexp.MustCompile(`^/windows/acme/(w-[0-9a-f]{16})\?done=captured$`).FindStringSubmatch(a.Location())
	if a.Status != 303 || m2 == nil || m2[1] == win {
		t.Fatalf("a second capture: %d %s %s", a.Status, a.Location(), a.Text())
	}
	win2 := m2[1]
	if q := b.MustGet(200, "/labels?tenant=acme").Text(); !strings.Contains(q, "2 unlabelled windows") || strings.Index(q, win2) > strings.Index(q, win) || !strings.Contains(q, "request") {
		t.Errorf("the queue, newest first: %s", q)
	}
	if q := b.MustGet(200, "/labels?tenant=acme&reason=alarm").Text(); strings.Contains(q, win) || !strings.Contains(q, "No unlabelled window matches") {
		t.Errorf("the queue filtered by alarms: %s", q)
	}

	page := b.MustGet(200, "/windows/acme/"+win+"?done=captured")
	text := page.Text()
	for _, want := range []string{"The window is captured", "acme:pump-2", "flow", "power", "4 points, charted below", "No label yet", "Label it", "False positive"} {
		if !strings.Contains(text, want) {
			t.Errorf("the window's page lacks %q: %s", want, text)
		}
	}
	if !strings.Contains(page.Body, `src="/static/window.js"`) || !strings.Contains(page.Body, `src="/static/vendor/uplot/uPlot.iife.min.js"`) {
		t.Error("the window's page loads no chart script")
	}
	m := regexp.MustCompile(`data-chart="window" data-property="flow" data-series="([^"]+)"`).FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatalf("no chart of flow: %s", page.Body)
	}
	var chart struct {
		T, V     []float64
		From, To float64
	}
	if err := json.Unmarshal([]byte(strings.ReplaceAll(m[1], "&#34;", `"`)), &chart); err != nil || len(chart.V) != 4 || chart.V[0] != 40 || chart.V[3] != 43 || chart.To-chart.From < 299 {
		t.Errorf("the chart's data: %+v, %v (%s)", chart, err, m[1])
	}
	b.MustGet(200, "/static/window.js")

	// A refused label is shown beside the form, with the note kept.
	if a := b.Change("/windows/acme/"+win+"/label", url.Values{"kind": {"class"}, "note": {"a flush"}}); a.Status != 400 || !strings.Contains(a.Text(), "class") || !strings.Contains(a.Body, `value="a flush"`) {
		t.Errorf("a class without a name: %d %s", a.Status, a.Text())
	}
	// Labelling goes on to the next unlabelled window, then back to the
	// queue once it is empty.
	a = b.Change("/windows/acme/"+win2+"/label", url.Values{"kind": {"false_positive"}, "note": {"a flush, not a leak"}})
	if a.Status != 303 || a.Location() != "/windows/acme/"+win+"?done=labelled" {
		t.Fatalf("labelling: %d %s %s", a.Status, a.Location(), a.Text())
	}
	if p := b.MustGet(200, a.Location()).Text(); !strings.Contains(p, "This is the next unlabelled window") || !strings.Contains(p, win) {
		t.Errorf("the next window: %s", p)
	}
	if q := b.MustGet(200, "/labels?tenant=acme").Text(); strings.Contains(q, win2) || !strings.Contains(q, "1 unlabelled window") {
		t.Errorf("the queue after labelling: %s", q)
	}
	if p := b.MustGet(200, "/windows/acme/"+win2).Text(); !strings.Contains(p, "false_positive a flush, not a leak") {
		t.Errorf("the window's labels: %s", p)
	}
	a = b.Change("/windows/acme/"+win+"/label", url.Values{"kind": {"normal"}})
	if a.Status != 303 || a.Location() != "/labels?tenant=acme&done=queue-empty" {
		t.Fatalf("labelling the last: %d %s %s", a.Status, a.Location(), a.Text())
	}
	if q := b.MustGet(200, a.Location()).Text(); strings.Contains(q, win) || !strings.Contains(q, "No unlabelled window is left") {
		t.Errorf("the empty queue: %s", q)
	}

	// A dataset version, its scores and export; a training refused.
	if a := b.Change("/datasets/acme/build", url.Values{"name": {"bad name"}}); a.Status != 400 || !strings.Contains(a.Text(), "Build a version") || !strings.Contains(a.Body, `value="bad name"`) {
		t.Errorf("building with a bad name: %d %s", a.Status, a.Text())
	}
	a = b.Change("/datasets/acme/build", url.Values{"name": {"pumps"}, "reason": {"request"}})
	if a.Status != 303 || a.Location() != "/datasets?tenant=acme&done=built#ds-pumps-1" {
		t.Fatalf("building: %d %s %s", a.Status, a.Location(), a.Text())
	}
	ds := b.MustGet(200, "/datasets?tenant=acme&done=built").Text()
	for _, want := range []string{"dataset version is built", "pumps v1", "reason request", "Completeness", "Timeliness", "Label coverage", "Label agreement",
		"Class balance", "Duplicate rate", "100.0% 2 of 2 windows", "100.0% 2 distinct labels", "no window has two labellers", "objects (1) acme:pump-2", "pumps-1.zip", "Train a model from v1"} {
		if !strings.Contains(ds, want) {
			t.Errorf("the datasets page lacks %q: %s", want, ds)
		}
	}
	if !regexp.MustCompile(`SHA-256 [0-9a-f]{64}`).MatchString(ds) {
		t.Errorf("no content digest: %s", ds)
	}
	zip := b.MustGet(200, "/datasets/acme/pumps/1/export")
	if !strings.HasPrefix(zip.Body, "PK") || zip.Header.Get("Content-Type") != "application/zip" || !strings.HasPrefix(zip.Header.Get("Content-Disposition"), "attachment") ||
		len(zip.Header.Get("X-Dataset-Content-SHA256")) != 64 {
		t.Errorf("the export: %q %v", zip.Body[:min(len(zip.Body), 8)], zip.Header)
	}
	if a := b.Get("/datasets/acme/pumps/9/export"); a.Status != 404 {
		t.Errorf("the export of a missing version: %d", a.Status)
	}
	tr := b.Change("/datasets/acme/pumps/1/train", url.Values{"model": {"pump-pca"}, "inputs": {"flow=flow\npower"}})
	if tr.Status != 400 || !strings.Contains(tr.Text(), "rows of normal data") || !strings.Contains(tr.Body, "pump-pca") {
		t.Errorf("training on 4 rows: %d %s", tr.Status, tr.Text())
	}
	// A training that succeeds: a window of a few hundred instants (temp
	// follows flow, so that the principal components leave a residual).
	start := time.Now().Add(-3 * time.Second).UnixMilli()
	for i := range 300 {
		if r := h.Do("POST", "/api/v1/ingest/acme:pump-2/telemetry", tok, map[string]float64{"ts": float64(start+10*int64(i)) / 1000,
			"flow": 40 + float64(i%7), "power": 5 + float64(i%5)/2, "temp": 30 + float64(i%7)/2 + float64(i%3)/100}); r.Status >= 300 {
			t.Fatalf("telemetry: %d %s", r.Status, r.Body)
		}
	}
	if a := b.Change("/labels/capture?tenant=acme", url.Values{"object": {"acme:pump-2"}, "minutes": {"1"}}); a.Status != 303 {
		t.Fatalf("capturing for training: %d %s", a.Status, a.Text())
	}
	if a := b.Change("/datasets/acme/build", url.Values{"name": {"pumps"}}); a.Status != 303 || !strings.HasSuffix(a.Location(), "#ds-pumps-2") {
		t.Fatalf("building v2: %d %s %s", a.Status, a.Location(), a.Text())
	}
	tr = b.Change("/datasets/acme/pumps/2/train", url.Values{"model": {"pump-pca"}, "inputs": {"flow=flow\npower\ntemp"}})
	if tr.Status != 200 || !strings.Contains(tr.Text(), "Trained and registered pump-pca v1") || !strings.Contains(tr.Body, `href="/ml/acme/pump-pca/1"`) ||
		!strings.Contains(tr.Text(), "no labelled faults to measure it") {
		t.Fatalf("training: %d %s", tr.Status, tr.Text())
	}
	if !regexp.MustCompile(`Rows (\d{3}) rows of normal data`).MatchString(tr.Text()) {
		t.Errorf("the report's rows: %s", tr.Text())
	}

	// A viewer sees the pages and no form; a forged change is refused.
	viewer := consoletest.New(t, h.URL, nil)
	vq := viewer.MustSignIn(mcToken(t, h, "ds-viewer", "viewer", "acme"), "/labels")
	for path, p := range map[string]consoletest.Answer{
		"/labels":              vq,
		"/datasets":            viewer.MustGet(200, "/datasets"),
		"/windows/acme/" + win: viewer.MustGet(200, "/windows/acme/"+win),
	} {
		if strings.Count(p.Body, `method="post"`) != 1 { // sign-out
			t.Errorf("a viewer's %s has a form: %s", path, p.Text())
		}
	}
	if !strings.Contains(vq.Text(), "tenant acme") || !strings.Contains(viewer.MustGet(200, "/datasets").Text(), "pumps v1") {
		t.Errorf("a viewer's pages: %s", vq.Text())
	}
	if a := viewer.Change("/windows/acme/"+win+"/label", url.Values{"kind": {"normal"}}); a.Status != 403 {
		t.Errorf("a viewer's label: %d %s", a.Status, a.Text())
	}
}

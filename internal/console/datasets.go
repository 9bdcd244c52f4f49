package console

// The learning loop's data at the hub (packages dataset and learn): the
// dataset versions of a tenant with their quality scores, lineage, content
// digest and export, the forms that build a version and train a model from
// one; the label queue (the unlabelled windows, newest first) with
// "capture now"; and one window's page: its facts, the loop's features,
// each property's summary, a chart per property with a series
// (static/window.js), its labels and the label buttons. Everything is read
// and changed through the node's API (/api/v1/ml/windows,
// /api/v1/ml/datasets, /api/v1/ml/train).

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/learn"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
)

// Bounds of the label queue: the most unlabelled windows read (in pages of
// dataset.MaxLimit) to order them newest first, and the most shown.
const (
	queueRead = 5 * dataset.MaxLimit
	queueShow = 100
)

// maxWindowChartPoints bounds the points a window's chart is given per
// property: past it, each bucket of the series gives its smallest and
// largest value, so that a spike stays visible.
const maxWindowChartPoints = 4000

func (c *Console) datasetRoutes() {
	if c.o.Role != "hub" {
		return // the datasets, labels and training are the hub's
	}
	c.mux.HandleFunc("GET /datasets", c.page(c.datasetsPage))
	c.mux.HandleFunc("POST /datasets/{tenant}/build", c.page(c.datasetBuild))
	c.mux.HandleFunc("GET /datasets/{tenant}/{name}/{version}/export", c.page(c.datasetExport))
	c.mux.HandleFunc("POST /datasets/{tenant}/{name}/{version}/train", c.page(c.datasetTrain))
	c.mux.HandleFunc("GET /labels", c.page(c.labelQueue))
	c.mux.HandleFunc("POST /labels/capture", c.page(c.captureNow))
	c.mux.HandleFunc("GET /windows/{tenant}/{id}", c.page(c.windowPage))
	c.mux.HandleFunc("POST /windows/{tenant}/{id}/label", c.page(c.windowLabel))
}

// pageTenant is the tenant a page is about: the path's, the query's or the
// token's (the API judges whether the token may see it). For a
// deployment-wide token it also returns the tenants to choose from; when
// none is named and there is exactly one, that one.
func (c *Console) pageTenant(r *http.Request, q *request) (string, []string, error) {
	tenant := r.PathValue("tenant")
	if tenant == "" {
		tenant = strings.TrimSpace(r.URL.Query().Get("tenant"))
	}
	if q.p.Tenant != "" {
		if tenant == "" {
			tenant = q.p.Tenant
		}
		return tenant, nil, nil
	}
	var out struct {
		Tenants []struct {
			Name string `json:"name"`
		} `json:"tenants"`
	}
	if err := c.call(r, q, "GET", "/api/v1/tenants", nil, nil, &out); err != nil {
		return "", nil, err
	}
	var names []string
	for _, t := range out.Tenants {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	if tenant == "" && len(names) == 1 {
		tenant = names[0]
	}
	return tenant, names, nil
}

// ---- dataset versions ----

// scoreHelps say what each quality score is (package dataset's doc).
var scoreHelps = []countText{
	{"Completeness", "points present / points expected: each series' expected points are the window's span over its median interval; a gap lowers it, a steady slow rate does not."},
	{"Timeliness", "windows captured within a minute of their end / windows."},
	{"Label coverage", "windows with at least one label / windows."},
	{"Label agreement", "windows labelled by two or more people whose labels all agree / windows labelled by two or more (1 when there are none)."},
	{"Class balance", "how evenly the windows' majority labels spread: their entropy over ln k for k distinct labels; 1 when equally frequent, 0 with fewer than two."},
	{"Duplicate rate", "windows whose series an earlier window already has / windows; lower is better."},
}

// scoreCell is one quality score as the table shows it: the value and the
// counts it rests on.
type scoreCell struct {
	Value, Basis string
	Low          bool // a score a reader should look at
}

// dsVersionRow is one dataset version.
type dsVersionRow struct {
	M         *dataset.Manifest
	Anchor    string
	Scores    []scoreCell // in the order of scoreHelps
	Selection string
	Content   string
	Lineage   []countText
	Train     trainForm
	Trained   *trainedView
}

// datasetGroup is a dataset's versions, newest first.
type datasetGroup struct {
	Name     string
	Versions []*dsVersionRow
}

type datasetsView struct {
	Tenant  string
	Tenants []string // a deployment-wide token's choice
	Groups  []datasetGroup
	Scores  []countText
	Build   buildForm
	Done    string
}

// buildForm is the "build a version" form's values, put back after a
// refusal.
type buildForm struct {
	Name, Object, Reason, Loop string
	Error                      string
}

// trainForm is a version's "train a model" form.
type trainForm struct {
	Model, Inputs string
	Error         string
}

// trainedView is what a training answered: the version registered and the
// report.
type trainedView struct {
	Tenant, Model, Version string
	R                      learn.Report
	NormalFlagged, Recall  string
	Threshold              string
}

func (c *Console) datasetsPage(w http.ResponseWriter, r *http.Request, q *request) error {
	return c.datasetsWith(w, r, q, http.StatusOK, func(v *datasetsView) { v.Done = doneMessage(r) })
}

// datasetsWith renders the datasets page; edit sets a form's values (and
// its refusal or result) before it is rendered.
func (c *Console) datasetsWith(w http.ResponseWriter, r *http.Request, q *request, status int, edit func(*datasetsView)) error {
	tenant, tenants, err := c.pageTenant(r, q)
	if err != nil {
		return err
	}
	v := &datasetsView{Tenant: tenant, Tenants: tenants, Scores: scoreHelps}
	if tenant != "" {
		var out struct {
			Datasets []*dataset.Manifest `json:"datasets"`
		}
		if err := c.call(r, q, "GET", "/api/v1/ml/datasets", url.Values{"tenant": {tenant}}, nil, &out); err != nil {
			return err
		}
		v.Groups = groupVersions(out.Datasets)
	}
	if edit != nil {
		edit(v)
	}
	title := "Datasets"
	if tenant != "" {
		title += " · " + tenant
	}
	c.render(w, r, q, status, "datasets", view{Title: title, Nav: "datasets", Data: v})
	return nil
}

func groupVersions(ms []*dataset.Manifest) []datasetGroup {
	slices.SortFunc(ms, func(a, b *dataset.Manifest) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(b.Version, a.Version))
	})
	var out []datasetGroup
	for _, m := range ms {
		if len(out) == 0 || out[len(out)-1].Name != m.Name {
			out = append(out, datasetGroup{Name: m.Name})
		}
		g := &out[len(out)-1]
		g.Versions = append(g.Versions, versionRowOf(m))
	}
	return out
}

func versionRowOf(m *dataset.Manifest) *dsVersionRow {
	qy := m.Quality
	ratio := func(a, b int64) string { return fmt.Sprintf("%d of %d", a, b) }
	n := int64(m.Windows)
	agree := ratio(int64(qy.Agreeing), int64(qy.MultiLabelled))
	if qy.MultiLabelled == 0 {
		agree = "no window has two labellers"
	}
	v := &dsVersionRow{M: m, Anchor: fmt.Sprintf("ds-%s-%d", m.Name, m.Version),
		Scores: []scoreCell{
			{percent(qy.Completeness), ratio(qy.PointsPresent, qy.PointsExpected) + " points", qy.Completeness < 0.9},
			{percent(qy.Timeliness), ratio(int64(qy.Timely), n) + " windows", qy.Timeliness < 0.9},
			{percent(qy.LabelCoverage), ratio(int64(qy.Labelled), n) + " windows", qy.LabelCoverage < 0.5},
			{percent(qy.LabelAgreement), agree, qy.LabelAgreement < 0.8},
			{percent(qy.ClassBalance), plural(qy.Classes, "distinct label"), false},
			{percent(qy.DuplicateRate), ratio(int64(qy.Duplicates), n) + " windows", qy.DuplicateRate > 0.1},
		},
		Selection: selectionText(m.Query),
		Content:   plural(m.Windows, "window") + ", " + plural(m.Labels, "label") + ", " + plural(int(m.Points), "point"),
	}
	l := m.Lineage
	add := func(name string, vals []string) {
		if len(vals) == 0 {
			return
		}
		text := strings.Join(vals, ", ")
		if len(vals) > 8 {
			text = strings.Join(vals[:8], ", ") + fmt.Sprintf(" and %d more", len(vals)-8)
		}
		v.Lineage = append(v.Lineage, countText{Name: fmt.Sprintf("%s (%d)", name, len(vals)), Text: text})
	}
	add("objects", l.Devices)
	add("thing models", l.Models)
	add("firmware", l.Firmware)
	add("loops", l.Loops)
	add("edges", l.Edges)
	return v
}

// plural is n and a noun, in the plural unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// percent writes a score in [0, 1] as a percentage.
func percent(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" }

// selectionText says which windows a version was built from.
func selectionText(qy dataset.Query) string {
	var parts []string
	for _, p := range []struct{ name, v string }{{"object", qy.Object}, {"reason", qy.Reason}, {"loop", qy.Loop}, {"model", qy.Model}} {
		if p.v != "" {
			parts = append(parts, p.name+" "+p.v)
		}
	}
	if !qy.Since.IsZero() {
		parts = append(parts, "since "+qy.Since.UTC().Format(time.RFC3339))
	}
	if !qy.Until.IsZero() {
		parts = append(parts, "until "+qy.Until.UTC().Format(time.RFC3339))
	}
	if qy.Unlabelled {
		parts = append(parts, "unlabelled only")
	}
	if len(parts) == 0 {
		return "every window of the tenant"
	}
	return strings.Join(parts, ", ")
}

func (c *Console) datasetBuild(w http.ResponseWriter, r *http.Request, q *request) error {
	tenant := r.PathValue("tenant")
	f := buildForm{Name: strings.TrimSpace(r.PostFormValue("name")), Object: strings.TrimSpace(r.PostFormValue("object")),
		Reason: strings.TrimSpace(r.PostFormValue("reason")), Loop: strings.TrimSpace(r.PostFormValue("loop"))}
	body := map[string]any{"name": f.Name, "query": dataset.Query{Object: f.Object, Reason: f.Reason, Loop: f.Loop}}
	var out struct {
		Dataset *dataset.Manifest `json:"dataset"`
	}
	err := c.call(r, q, "POST", "/api/v1/ml/datasets", url.Values{"tenant": {tenant}}, body, &out)
	if ae, ok := refusal(err); ok {
		f.Error = refusalText(ae)
		return c.datasetsWith(w, r, q, ae.Status, func(v *datasetsView) { v.Build = f })
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/datasets?tenant=%s&done=built#ds-%s-%d", url.QueryEscape(tenant), out.Dataset.Name, out.Dataset.Version), http.StatusSeeOther)
	return nil
}

// datasetPath is the API's path of a dataset version, with the tenant.
func datasetPath(tenant, name, version string, rest ...string) (string, url.Values) {
	p := "/api/v1/ml/datasets/" + url.PathEscape(name) + "/versions/" + url.PathEscape(version)
	for _, s := range rest {
		p += "/" + url.PathEscape(s)
	}
	return p, url.Values{"tenant": {tenant}}
}

// datasetExport serves a version's export (a zip of Parquet files and the
// manifest) as a download, streamed from the API as it writes it: an export
// may be larger than the console keeps of an answer.
func (c *Console) datasetExport(w http.ResponseWriter, r *http.Request, q *request) error {
	tenant, name, version := r.PathValue("tenant"), r.PathValue("name"), r.PathValue("version")
	hp := c.api.h.Load()
	if hp == nil {
		return &pageError{Status: http.StatusServiceUnavailable, Title: "Not ready",
			Message: "The node's API is not serving yet.", Next: "Try again in a moment."}
	}
	p, query := datasetPath(tenant, name, version, "export")
	req, err := http.NewRequestWithContext(r.Context(), "GET", p+"?"+query.Encode(), http.NoBody)
	if err != nil {
		return err
	}
	req.RemoteAddr, req.Host = r.RemoteAddr, r.Host
	req.Header.Set("Authorization", "Bearer "+q.s.secret)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "wanwu-console")
	sw := &streamWriter{w: w, header: http.Header{}, pass: []string{"Content-Type", "Content-Disposition", "X-Dataset-Content-SHA256"}}
	(*hp).ServeHTTP(sw, req)
	if sw.status == 0 {
		sw.WriteHeader(http.StatusOK)
	}
	if sw.refused != nil {
		return decodeAPIError(&apiAnswer{Status: sw.status, Header: sw.header, Body: []byte(sw.refused.String())})
	}
	return nil
}

// streamWriter passes a successful answer of the API through to the
// browser as it is written, with the headers named in pass; a refusal
// (status 400 or more) is kept, to be shown as the console's error page.
type streamWriter struct {
	w       http.ResponseWriter
	header  http.Header
	pass    []string
	status  int
	refused *strings.Builder
}

func (s *streamWriter) Header() http.Header { return s.header }

func (s *streamWriter) WriteHeader(status int) {
	if s.status != 0 {
		return
	}
	s.status = status
	if status >= 400 {
		s.refused = &strings.Builder{}
		return
	}
	for _, k := range s.pass {
		if v := s.header.Get(k); v != "" {
			s.w.Header().Set(k, v)
		}
	}
	s.w.WriteHeader(status)
}

func (s *streamWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.refused != nil {
		if s.refused.Len()+len(b) > 1<<20 {
			return 0, fmt.Errorf("console: the API's refusal is over 1 MiB")
		}
		return s.refused.Write(b)
	}
	return s.w.Write(b)
}

func (c *Console) datasetTrain(w http.ResponseWriter, r *http.Request, q *request) error {
	tenant, name, version := r.PathValue("tenant"), r.PathValue("name"), r.PathValue("version")
	f := trainForm{Model: strings.TrimSpace(r.PostFormValue("model")), Inputs: r.PostFormValue("inputs")}
	inputs, err := parseInputs(f.Inputs)
	var out struct {
		Model  *mlreg.Record `json:"model"`
		Report learn.Report  `json:"report"`
	}
	if err == nil {
		err = c.call(r, q, "POST", "/api/v1/ml/train", url.Values{"tenant": {tenant}},
			learn.Spec{Dataset: name, DatasetVersion: version, Model: f.Model, Inputs: inputs}, &out)
	}
	var tv *trainedView
	status := http.StatusOK
	if ae, ok := refusal(err); ok {
		f.Error, status = refusalText(ae), ae.Status
	} else if err != nil {
		return err
	} else {
		rep := out.Report
		tv = &trainedView{Tenant: out.Model.Tenant, Model: out.Model.ID, Version: out.Model.Version, R: rep,
			NormalFlagged: percent(rep.NormalFlagged), Recall: "no labelled faults to measure it", Threshold: num(rep.Threshold)}
		if rep.Recall >= 0 {
			tv.Recall = percent(rep.Recall)
		}
	}
	// The page is rendered, not redirected to: the report is the
	// training's answer (the version's page keeps its metrics).
	return c.datasetsWith(w, r, q, status, func(v *datasetsView) {
		for _, g := range v.Groups {
			for _, vr := range g.Versions {
				if g.Name == name && strconv.Itoa(vr.M.Version) == version {
					vr.Train, vr.Trained = f, tv
				}
			}
		}
	})
}

// parseInputs reads the training form's inputs: a line NAME=PROPERTY per
// model input (a line PROPERTY names the input after the property).
func parseInputs(text string) ([]learn.Input, error) {
	var out []learn.Input
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, prop, ok := strings.Cut(line, "=")
		if !ok {
			prop = name
		}
		name, prop = strings.TrimSpace(name), strings.TrimSpace(prop)
		if name == "" || prop == "" {
			return nil, &apiError{Status: http.StatusBadRequest, Message: fmt.Sprintf("inputs: line %d: want NAME=PROPERTY, got %q", i+1, short(line, 80))}
		}
		out = append(out, learn.Input{Name: name, Property: prop})
	}
	if len(out) == 0 {
		return nil, &apiError{Status: http.StatusBadRequest, Message: "inputs: give a line NAME=PROPERTY for each model input"}
	}
	return out, nil
}

// ---- the label queue ----

// queueRow is one unlabelled window in the queue.
type queueRow struct {
	W                *dataset.Window
	Span             string
	RefText, RefLink string
}

type queueView struct {
	Tenant         string
	Tenants        []string
	Reason, Object string // the filters
	Filters        string // the filters as a query, kept in links
	Rows           []queueRow
	Total          int
	More           bool // more than queueRead windows wait
	Capture        captureForm
	Done           string
}

// captureForm is the "capture now" form's values.
type captureForm struct {
	Object, Minutes string
	Error           string
}

// queueFilters are the queue's filters, from a request's query (a form's
// own "object" field is the object to capture).
func queueFilters(r *http.Request) (reason, object string) {
	qv := r.URL.Query()
	return strings.TrimSpace(qv.Get("reason")), strings.TrimSpace(qv.Get("object"))
}

// filtersQuery is the filters as a query string ("" without any).
func filtersQuery(reason, object string) string {
	v := url.Values{}
	if reason != "" {
		v.Set("reason", reason)
	}
	if object != "" {
		v.Set("object", object)
	}
	return v.Encode()
}

// queue reads the tenant's unlabelled windows that match the filters,
// newest first: at most queueRead (more reports that others wait).
func (c *Console) queue(r *http.Request, q *request, tenant, reason, object string) (ws []*dataset.Window, more bool, err error) {
	after := ""
	for len(ws) < queueRead {
		query := url.Values{"tenant": {tenant}, "unlabelled": {"true"}, "limit": {strconv.Itoa(dataset.MaxLimit)}}
		if reason != "" {
			query.Set("reason", reason)
		}
		if object != "" {
			query.Set("object", object)
		}
		if after != "" {
			query.Set("after", after)
		}
		var out struct {
			Windows []*dataset.Window `json:"windows"`
		}
		if err := c.call(r, q, "GET", "/api/v1/ml/windows", query, nil, &out); err != nil {
			return nil, false, err
		}
		ws = append(ws, out.Windows...)
		if len(out.Windows) < dataset.MaxLimit {
			break
		}
		after = out.Windows[len(out.Windows)-1].ID
		more = len(ws) >= queueRead
	}
	slices.SortFunc(ws, newestFirst)
	return ws, more, nil
}

// newestFirst orders windows by capture time, then end, newest first.
func newestFirst(a, b *dataset.Window) int {
	return cmp.Or(b.CapturedAt.Compare(a.CapturedAt), b.To.Compare(a.To), strings.Compare(a.ID, b.ID))
}

// spanText is a window's length.
func spanText(w *dataset.Window) string {
	return w.To.Sub(w.From).Round(time.Second).String()
}

// refOf says what a window was captured around (its reason aside), with
// a link to it where the console has a page for it.
func refOf(w *dataset.Window) (text, link string) {
	switch {
	case w.Ref == "":
		return "", ""
	case w.Reason == dataset.ReasonAlarm:
		return w.Ref, "/alarms/" + url.PathEscape(w.Ref)
	case w.Reason == dataset.ReasonDecision:
		if plan, version, ok := strings.Cut(w.Ref, ":v"); ok && w.Loop == "" {
			return "rollout " + plan + ": its candidate v" + version + " flagged what the version in effect did not",
				"/ml/rollouts/" + url.PathEscape(plan) + "?tenant=" + url.QueryEscape(w.Tenant)
		}
		if _, err := strconv.ParseInt(w.Ref, 10, 64); err == nil && w.Edge == "" {
			return "evidence " + w.Ref, "/evidence/" + url.PathEscape(w.Ref)
		}
		return "evidence " + w.Ref + " at the edge", ""
	default:
		return w.Ref, ""
	}
}

func (c *Console) labelQueue(w http.ResponseWriter, r *http.Request, q *request) error {
	return c.queueWith(w, r, q, http.StatusOK, captureForm{Minutes: "5"})
}

func (c *Console) queueWith(w http.ResponseWriter, r *http.Request, q *request, status int, f captureForm) error {
	tenant, tenants, err := c.pageTenant(r, q)
	if err != nil {
		return err
	}
	reason, object := queueFilters(r)
	v := &queueView{Tenant: tenant, Tenants: tenants, Reason: reason, Object: object, Filters: filtersQuery(reason, object),
		Capture: f, Done: doneMessage(r)}
	if tenant != "" {
		ws, more, err := c.queue(r, q, tenant, reason, object)
		if err != nil {
			return err
		}
		v.Total, v.More = len(ws), more
		for _, win := range ws[:min(len(ws), queueShow)] {
			row := queueRow{W: win, Span: spanText(win)}
			row.RefText, row.RefLink = refOf(win)
			v.Rows = append(v.Rows, row)
		}
	}
	title := "Label queue"
	if tenant != "" {
		title += " · " + tenant
	}
	c.render(w, r, q, status, "labels", view{Title: title, Nav: "datasets", Data: v})
	return nil
}

func (c *Console) captureNow(w http.ResponseWriter, r *http.Request, q *request) error {
	f := captureForm{Object: strings.TrimSpace(r.PostFormValue("object")), Minutes: strings.TrimSpace(r.PostFormValue("minutes"))}
	var err error
	minutes := 0.0
	if f.Minutes != "" {
		if minutes, err = strconv.ParseFloat(f.Minutes, 64); err != nil {
			err = &apiError{Status: http.StatusBadRequest, Message: "minutes: a number of minutes, such as 5"}
		}
	}
	var out struct {
		Window *dataset.Window `json:"window"`
	}
	if err == nil {
		err = c.call(r, q, "POST", "/api/v1/ml/windows/capture", nil, map[string]any{"object": f.Object, "minutes": minutes}, &out)
	}
	ae, ok := refusal(err)
	if !ok && errors.As(err, &ae) && ae.Status != http.StatusNotFound {
		ae = nil // an unknown object is said beside the form; other errors are the error page's
	}
	if ae != nil {
		f.Error = refusalText(ae)
		return c.queueWith(w, r, q, ae.Status, f)
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, windowURL(out.Window.Tenant, out.Window.ID, "done=captured"), http.StatusSeeOther)
	return nil
}

// windowURL is a window's page, with a query.
func windowURL(tenant, id, query string) string {
	u := "/windows/" + url.PathEscape(tenant) + "/" + url.PathEscape(id)
	if query != "" {
		u += "?" + query
	}
	return u
}

// ---- one window ----

// propRow is one property of a window.
type propRow struct {
	Name       string
	S          dataset.Stats
	HasSummary bool
	Points     int
	Kept       bool // its series stayed at the edge (or was never sent)
	Chart      *windowChart
}

// windowChart is a property's chart data as window.js reads it: times in
// Unix seconds, the window's span, the points the series has and shows.
type windowChart struct {
	Property string    `json:"property"`
	From     float64   `json:"from"`
	To       float64   `json:"to"`
	T        []float64 `json:"t"`
	V        []float64 `json:"v"`
	N        int       `json:"n"`
}

// labelForm is the label form's values, put back after a refusal.
type labelForm struct {
	Class, Note string
	Error       string
}

type windowPageView struct {
	W                *dataset.Window
	Span             string
	RefText, RefLink string
	ModelID, ModelV  string
	Features         []countText
	Props            []propRow
	Labels           []*dataset.Label
	Form             labelForm
	Filters          string // the queue's filters, kept through labelling
	Done             string
}

func (c *Console) windowData(r *http.Request, q *request) (*windowPageView, error) {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	var out struct {
		Window *dataset.Window  `json:"window"`
		Labels []*dataset.Label `json:"labels"`
	}
	if err := c.call(r, q, "GET", "/api/v1/ml/windows/"+url.PathEscape(id), url.Values{"tenant": {tenant}}, nil, &out); err != nil {
		return nil, err
	}
	win := out.Window
	v := &windowPageView{W: win, Span: spanText(win), Labels: out.Labels}
	v.RefText, v.RefLink = refOf(win)
	v.ModelID, v.ModelV, _ = strings.Cut(win.Model, "@")
	for _, k := range slices.Sorted(mapKeys(win.Features)) {
		v.Features = append(v.Features, countText{Name: k, Text: num(win.Features[k])})
	}
	names := map[string]bool{}
	for k := range win.Summary {
		names[k] = true
	}
	for k := range win.Series {
		names[k] = true
	}
	for _, k := range slices.Sorted(mapKeys(names)) {
		s, has := win.Summary[k]
		pts := win.Series[k]
		row := propRow{Name: k, S: s, HasSummary: has, Points: len(pts), Kept: len(pts) == 0}
		if len(pts) > 0 {
			row.Chart = chartOf(k, win.From, win.To, pts)
		}
		v.Props = append(v.Props, row)
	}
	return v, nil
}

// chartOf is a series' chart data, at most maxWindowChartPoints points:
// past it, the smallest and largest value of each bucket, in time order.
func chartOf(prop string, from, to time.Time, pts []dataset.Point) *windowChart {
	sec := func(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }
	ch := &windowChart{Property: prop, From: sec(from), To: sec(to), N: len(pts)}
	if len(pts) <= maxWindowChartPoints {
		for _, p := range pts {
			ch.T, ch.V = append(ch.T, sec(p.T)), append(ch.V, p.V)
		}
		return ch
	}
	size := (len(pts) + maxWindowChartPoints/2 - 1) / (maxWindowChartPoints / 2)
	for i := 0; i < len(pts); i += size {
		b := pts[i:min(i+size, len(pts))]
		lo, hi := 0, 0
		for j := range b {
			if b[j].V < b[lo].V {
				lo = j
			}
			if b[j].V > b[hi].V {
				hi = j
			}
		}
		for _, j := range []int{min(lo, hi), max(lo, hi)} {
			ch.T, ch.V = append(ch.T, sec(b[j].T)), append(ch.V, b[j].V)
			if lo == hi {
				break
			}
		}
	}
	return ch
}

func (c *Console) windowPage(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.windowData(r, q)
	if err != nil {
		return err
	}
	v.Done = doneMessage(r)
	v.Filters = filtersQuery(queueFilters(r))
	c.renderWindow(w, r, q, http.StatusOK, v)
	return nil
}

func (c *Console) renderWindow(w http.ResponseWriter, r *http.Request, q *request, status int, v *windowPageView) {
	charts := false
	for _, p := range v.Props {
		charts = charts || p.Chart != nil
	}
	var scripts []string
	if charts {
		scripts = []string{"window.js"}
	}
	c.render(w, r, q, status, "window", view{Title: "Window " + v.W.ID, Nav: "datasets", Charts: charts, Scripts: scripts, Data: v})
}

// windowLabel labels a window and goes on to the next unlabelled window of
// the queue (with the same filters), or back to the queue when none is
// left.
func (c *Console) windowLabel(w http.ResponseWriter, r *http.Request, q *request) error {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	kind := r.PostFormValue("kind")
	f := labelForm{Class: strings.TrimSpace(r.PostFormValue("class")), Note: strings.TrimSpace(r.PostFormValue("note"))}
	body := map[string]string{"kind": kind, "note": f.Note}
	if kind == dataset.KindClass {
		body["class"] = f.Class
	}
	reason, object := queueFilters(r)
	filters := filtersQuery(reason, object)
	err := c.call(r, q, "POST", "/api/v1/ml/windows/"+url.PathEscape(id)+"/labels", url.Values{"tenant": {tenant}}, body, nil)
	if ae, ok := refusal(err); ok {
		v, err := c.windowData(r, q)
		if err != nil {
			return err
		}
		f.Error = refusalText(ae)
		v.Form, v.Filters = f, filters
		c.renderWindow(w, r, q, ae.Status, v)
		return nil
	}
	if err != nil {
		return err
	}
	// The next: the first of the queue after this window (it has left the
	// queue), else the newest.
	ws, _, err := c.queue(r, q, tenant, reason, object)
	if err != nil {
		return err
	}
	var next *dataset.Window
	if len(ws) > 0 {
		next = ws[0]
		var cur struct {
			Window *dataset.Window `json:"window"`
		}
		if c.call(r, q, "GET", "/api/v1/ml/windows/"+url.PathEscape(id), url.Values{"tenant": {tenant}}, nil, &cur) == nil {
			if i := slices.IndexFunc(ws, func(x *dataset.Window) bool { return newestFirst(cur.Window, x) < 0 }); i >= 0 {
				next = ws[i]
			}
		}
	}
	done := "done=labelled"
	if filters != "" {
		done += "&" + filters
	}
	if next == nil {
		u := "/labels?tenant=" + url.QueryEscape(tenant) + "&done=queue-empty"
		if filters != "" {
			u += "&" + filters
		}
		http.Redirect(w, r, u, http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, windowURL(tenant, next.ID, done), http.StatusSeeOther)
	return nil
}

package dataset_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/dataset"
)

func TestLabels(t *testing.T) {
	e := open(t)
	w := e.add(t, window())

	first := e.label(t, "alice", w.ID, dataset.KindFalsePositive, "")
	if first.By != "alice" || !first.At.Equal(e.now) || first.Window != w.ID {
		t.Fatalf("label %+v", first)
	}
	// Labelling again with the same content changes nothing.
	if again := e.label(t, "alice", w.ID, dataset.KindFalsePositive, ""); again.ID != first.ID {
		t.Fatalf("the same label again got id %d, first %d", again.ID, first.ID)
	}
	// Another kind replaces alice's own label.
	e.now = e.now.Add(time.Minute)
	replaced := e.label(t, "alice", w.ID, dataset.KindClass, "bearing_wear")
	if replaced.ID == first.ID {
		t.Fatalf("the replacement kept id %d", first.ID)
	}
	ls, err := e.ds.Labels(e.ctx, "acme", w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].ID != replaced.ID || ls[0].Kind != dataset.KindClass || ls[0].Class != "bearing_wear" {
		t.Fatalf("labels after replacing: %+v", ls)
	}

	// Two people who disagree: agreement below 1.
	e.label(t, "bob", w.ID, dataset.KindTruePositive, "")
	ls, err = e.ds.Labels(e.ctx, "acme", w.ID)
	if err != nil || len(ls) != 2 {
		t.Fatalf("labels: %+v %v", ls, err)
	}
	m, err := e.ds.Build(e.ctx, "ops", "acme", "pumps", dataset.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if q := m.Quality; q.LabelAgreement != 0 || q.MultiLabelled != 1 || q.Agreeing != 0 || m.Labels != 2 {
		t.Fatalf("quality with a disagreement: %+v (labels %d)", q, m.Labels)
	}

	// The audit log: alice's first label and its replacement, bob's, the build.
	var kinds, subjects []string
	for _, en := range e.entries(t) {
		kinds = append(kinds, en.Kind)
		subjects = append(subjects, en.Subject)
		if en.Tenant != "acme" {
			t.Errorf("entry %d: tenant %q", en.Index, en.Tenant)
		}
	}
	wantKinds := []string{dataset.KindLabeled, dataset.KindLabeled, dataset.KindLabeled, dataset.KindBuilt}
	wantSubjects := []string{w.ID, w.ID, w.ID, "pumps@1"}
	if strings.Join(kinds, " ") != strings.Join(wantKinds, " ") || strings.Join(subjects, " ") != strings.Join(wantSubjects, " ") {
		t.Fatalf("audit entries %v on %v, want %v on %v", kinds, subjects, wantKinds, wantSubjects)
	}
	es := e.entries(t)
	var details map[string]any
	if err := json.Unmarshal(es[1].Data, &details); err != nil {
		t.Fatal(err)
	}
	if details["replaces"] != float64(first.ID) || details["class"] != "bearing_wear" || es[1].Actor != "alice" {
		t.Fatalf("the replacement's entry: %s by %s", es[1].Data, es[1].Actor)
	}
	if n := e.audits.Load(); n != 4 {
		t.Fatalf("OnAudit called %d times, want 4", n)
	}

	// Refusals.
	tests := []struct {
		name   string
		actor  string
		tenant string
		l      dataset.Label
		want   error
	}{
		{"unknown window", "alice", "acme", dataset.Label{Window: "w-0000000000000000", Kind: dataset.KindNormal}, dataset.ErrNotFound},
		{"another tenant's window", "alice", "other", dataset.Label{Window: w.ID, Kind: dataset.KindNormal}, dataset.ErrNotFound},
		{"unknown kind", "alice", "acme", dataset.Label{Window: w.ID, Kind: "maybe"}, dataset.ErrInvalid},
		{"class without a name", "alice", "acme", dataset.Label{Window: w.ID, Kind: dataset.KindClass}, dataset.ErrInvalid},
		{"class on another kind", "alice", "acme", dataset.Label{Window: w.ID, Kind: dataset.KindNormal, Class: "x"}, dataset.ErrInvalid},
		{"long note", "alice", "acme", dataset.Label{Window: w.ID, Kind: dataset.KindNormal, Note: strings.Repeat("n", dataset.MaxNoteBytes+1)}, dataset.ErrInvalid},
		{"no actor", "", "acme", dataset.Label{Window: w.ID, Kind: dataset.KindNormal}, dataset.ErrInvalid},
	}
	for _, tt := range tests {
		if _, err := e.ds.AddLabel(e.ctx, tt.actor, tt.tenant, tt.l); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := e.ds.Labels(e.ctx, "other", w.ID); !errors.Is(err, dataset.ErrNotFound) {
		t.Errorf("another tenant's labels: %v", err)
	}
	if n := len(e.entries(t)); n != 4 {
		t.Errorf("the refusals were audited: %d entries", n)
	}
}

// qualitySet stores four windows with known quality:
//
//	a: 10 of 10 points, captured 10 s after its end; alice and bob: true positive
//	b: a's series again (a request for the same span): a duplicate, 30 s late, unlabelled
//	c: 5 of 10 points (the second half missing), 5 min late; alice false positive, bob true positive
//	d: 10 of 10 points over another span, on time; alice: normal
//
// and returns their ids.
func qualitySet(t *testing.T, e *env, order []int) map[string]string {
	t.Helper()
	a := window()
	b := window()
	b.Reason, b.Ref, b.CapturedAt = dataset.ReasonRequest, "req-7", b.To.Add(30*time.Second)
	c := window()
	c.Ref = "alarm-2"
	c.Series["temperature"] = series(0, time.Second, 5, func(i int) float64 { return float64(10 * i) })
	c.CapturedAt = c.To.Add(5 * time.Minute)
	d := window()
	d.Object, d.Loop, d.Edge, d.Firmware = "acme:pump-2", "cooling", "acme:edge-1", "2.2.0"
	d.Reason, d.Ref = dataset.ReasonDecision, "ev-1"
	d.From, d.To = t0.Add(20*time.Second), t0.Add(30*time.Second)
	d.Series["temperature"] = series(20*time.Second, time.Second, 10, func(i int) float64 { return float64(-i) })
	d.Features = map[string]float64{"temp_mean": -4.5, "temp_rate": -1}
	d.CapturedAt = d.To

	ws := []*dataset.Window{a, b, c, d}
	ids := map[string]string{}
	for _, i := range order {
		ids["abcd"[i:i+1]] = e.add(t, ws[i]).ID
	}
	labels := []struct{ actor, w, kind string }{
		{"alice", "a", dataset.KindTruePositive}, {"bob", "a", dataset.KindTruePositive},
		{"alice", "c", dataset.KindFalsePositive}, {"bob", "c", dataset.KindTruePositive},
		{"alice", "d", dataset.KindNormal},
	}
	for j := range labels {
		l := labels[j]
		if order[0] != 0 { // the other store labels in the reverse order
			l = labels[len(labels)-1-j]
		}
		e.label(t, l.actor, ids[l.w], l.kind, "")
	}
	return ids
}

func TestQuality(t *testing.T) {
	e := open(t)
	qualitySet(t, e, []int{0, 1, 2, 3})
	m, err := e.ds.Build(e.ctx, "ops", "acme", "pumps", dataset.Query{})
	if err != nil {
		t.Fatal(err)
	}
	want := dataset.Quality{
		Completeness:   35.0 / 40, // 10 + 10 + 5 + 10 of 4 × 10
		Timeliness:     0.75,      // c is late
		LabelCoverage:  0.75,      // b is unlabelled
		LabelAgreement: 0.5,       // a agrees, c does not
		ClassBalance:   1,         // majorities: a true positive, d normal (c ties)
		DuplicateRate:  0.25,      // b repeats a
		PointsPresent:  35, PointsExpected: 40, Timely: 3, Labelled: 3, MultiLabelled: 2, Agreeing: 1, Classes: 2, Duplicates: 1,
	}
	if m.Quality != want {
		t.Fatalf("quality\n%+v\nwant\n%+v", m.Quality, want)
	}
	if m.Windows != 4 || m.Labels != 5 || m.Points != 35 || m.Version != 1 || m.CreatedBy != "ops" || m.Schema != dataset.Schema {
		t.Fatalf("manifest %+v", m)
	}
	lin := m.Lineage
	if strings.Join(lin.Devices, ",") != "acme:pump-1,acme:pump-2" || strings.Join(lin.Models, ",") != "pump@1.0.0" ||
		strings.Join(lin.Firmware, ",") != "2.1.0,2.2.0" || strings.Join(lin.Loops, ",") != "cooling" ||
		strings.Join(lin.Edges, ",") != "acme:edge-1" || !lin.From.Equal(t0) || !lin.To.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("lineage %+v", lin)
	}

	// Unbalanced majorities: three true positives and one normal.
	e.label(t, "carol", mustOnly(t, e, dataset.Query{Tenant: "acme", Unlabelled: true}), dataset.KindTruePositive, "")
	e.label(t, "carol", mustID(t, e, dataset.ReasonAlarm, "alarm-2"), dataset.KindTruePositive, "")
	m, err = e.ds.Build(e.ctx, "ops", "acme", "pumps", dataset.Query{})
	if err != nil {
		t.Fatal(err)
	}
	// p = 3/4, 1/4 over ln 2.
	h := -(0.75*math.Log(0.75) + 0.25*math.Log(0.25)) / math.Log(2)
	if q := m.Quality; math.Abs(q.ClassBalance-h) > 1e-12 || q.Classes != 2 || q.LabelCoverage != 1 || q.LabelAgreement != 0.5 {
		t.Fatalf("quality after more labels: %+v, want class balance %v", q, h)
	}
}

func mustOnly(t *testing.T, e *env, q dataset.Query) string {
	t.Helper()
	ws, err := e.ds.Windows(e.ctx, q)
	if err != nil || len(ws) != 1 {
		t.Fatalf("Windows(%+v): %d, %v", q, len(ws), err)
	}
	return ws[0].ID
}

func mustID(t *testing.T, e *env, reason, ref string) string {
	t.Helper()
	ws, err := e.ds.Windows(e.ctx, dataset.Query{Tenant: "acme", Reason: reason})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.Ref == ref {
			return w.ID
		}
	}
	t.Fatalf("no window %s %s", reason, ref)
	return ""
}

func TestContentDigest(t *testing.T) {
	build := func(order []int, edit func(e *env)) *dataset.Manifest {
		t.Helper()
		e := open(t)
		qualitySet(t, e, order)
		if edit != nil {
			edit(e)
		}
		m, err := e.ds.Build(e.ctx, "ops", "acme", "pumps", dataset.Query{})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m1 := build([]int{0, 1, 2, 3}, nil)
	m2 := build([]int{3, 2, 1, 0}, nil)
	if m1.ContentSHA256 != m2.ContentSHA256 {
		t.Fatalf("the same content stored in another order: %s and %s", m1.ContentSHA256, m2.ContentSHA256)
	}
	if len(m1.ContentSHA256) != 64 {
		t.Fatalf("digest %q", m1.ContentSHA256)
	}
	// One value changed.
	m3 := build([]int{0, 1, 2, 3}, func(e *env) {
		w := window()
		w.Series["temperature"][4].V = 4.000001
		e.add(t, w)
	})
	m4 := build([]int{0, 1, 2, 3}, func(e *env) {
		w := window()
		w.Series["temperature"][4].V = 4.000002
		e.add(t, w)
	})
	if m3.ContentSHA256 == m1.ContentSHA256 || m3.ContentSHA256 == m4.ContentSHA256 {
		t.Fatalf("a changed value kept the digest %s", m3.ContentSHA256)
	}
	// One label changed.
	m5 := build([]int{0, 1, 2, 3}, func(e *env) {
		e.label(t, "alice", mustID(t, e, dataset.ReasonDecision, "ev-1"), dataset.KindClass, "cavitation")
	})
	if m5.ContentSHA256 == m1.ContentSHA256 {
		t.Fatalf("a changed label kept the digest")
	}
}

func TestBuildSnapshots(t *testing.T) {
	e := open(t)
	ids := qualitySet(t, e, []int{0, 1, 2, 3})
	v1, err := e.ds.Build(e.ctx, "ops", "acme", "pumps", dataset.Query{})
	if err != nil {
		t.Fatal(err)
	}
	before := export(t, e, "pumps", "1")

	// Later labels, a replaced one among them, and a new window.
	e.now = e.now.Add(time.Hour)
	e.label(t, "carol", ids["b"], dataset.KindTruePositive, "")
	e.label(t, "alice", ids["a"], dataset.KindFalsePositive, "")
	w := window()
	w.Ref = "alarm-9"
	e.add(t, w)

	again, err := e.ds.Manifest(e.ctx, "acme", "pumps", "1")
	if err != nil {
		t.Fatal(err)
	}
	if again.ContentSHA256 != v1.ContentSHA256 || again.Labels != 5 || again.Quality != v1.Quality {
		t.Fatalf("version 1 changed: %+v", again)
	}
	after := export(t, e, "pumps", "1")
	if !equalRows(before.windows, after.windows) || !equalRows(before.samples, after.samples) {
		t.Fatalf("version 1's export changed")
	}

	v2, err := e.ds.Build(e.ctx, "ops", "acme", "pumps", dataset.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if v2.Version != 2 || v2.Windows != 5 || v2.Labels != 6 || v2.ContentSHA256 == v1.ContentSHA256 {
		t.Fatalf("version 2: %+v", v2)
	}
	newest, err := e.ds.Manifest(e.ctx, "acme", "pumps", "")
	if err != nil || newest.Version != 2 {
		t.Fatalf("newest: %+v %v", newest, err)
	}
	// Another dataset of the alarms only starts at version 1.
	alarms, err := e.ds.Build(e.ctx, "ops", "acme", "alarms", dataset.Query{Reason: dataset.ReasonAlarm})
	if err != nil || alarms.Version != 1 || alarms.Windows != 3 {
		t.Fatalf("alarms: %+v %v", alarms, err)
	}
	list, err := e.ds.Datasets(e.ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list {
		names = append(names, m.Name+"@"+itoa(m.Version))
	}
	if strings.Join(names, " ") != "alarms@1 pumps@1 pumps@2" {
		t.Fatalf("datasets %v", names)
	}

	for name, v := range map[string]string{"pumps": "3", "none": "", "pumps ": "1"} {
		if _, err := e.ds.Manifest(e.ctx, "acme", name, v); !errors.Is(err, dataset.ErrNotFound) {
			t.Errorf("Manifest(%q, %q): %v", name, v, err)
		}
	}
	for _, v := range []string{"0", "01", "x", "-1"} {
		if _, err := e.ds.Manifest(e.ctx, "acme", "pumps", v); !errors.Is(err, dataset.ErrNotFound) {
			t.Errorf("Manifest version %q: %v", v, err)
		}
	}
	tests := []struct {
		name, actor, tenant, ds string
		q                       dataset.Query
	}{
		{"no window matches", "ops", "acme", "pumps", dataset.Query{Object: "acme:nothing"}},
		{"bad name", "ops", "acme", "Pumps", dataset.Query{}},
		{"other tenant in the query", "ops", "acme", "pumps", dataset.Query{Tenant: "other"}},
		{"no actor", "", "acme", "pumps", dataset.Query{}},
		{"bad tenant", "ops", "ACME", "pumps", dataset.Query{}},
	}
	for _, tt := range tests {
		if _, err := e.ds.Build(e.ctx, tt.actor, tt.tenant, tt.ds, tt.q); !errors.Is(err, dataset.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tt.name, err)
		}
	}
	if m, err := e.ds.Manifest(e.ctx, "acme", "pumps", ""); err != nil || m.Version != 2 {
		t.Fatalf("a refused build made a version: %+v %v", m, err)
	}
}

func itoa(n int) string { return string(rune('0' + n)) }

package dataset_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

func TestSummarize(t *testing.T) {
	s := dataset.Summarize(series(0, time.Second, 4, func(i int) float64 { return []float64{2, 4, 4, 6}[i] }))
	if want := (dataset.Stats{N: 4, Mean: 4, Min: 2, Max: 6, Std: math.Sqrt(2)}); s != want {
		t.Fatalf("Summarize = %+v, want %+v", s, want)
	}
	// The mean of equal values stays within [min, max] whatever the rounding.
	s = dataset.Summarize(series(0, time.Second, 3, func(int) float64 { return 0.1 }))
	if s.Mean != 0.1 || s.Min != 0.1 || s.Max != 0.1 {
		t.Fatalf("Summarize of equal values = %+v", s)
	}
}

func TestRedact(t *testing.T) {
	class := map[string]string{
		"temperature": thingmodel.ClassInternal,
		"pressure":    thingmodel.ClassCore,
		"vibration":   thingmodel.ClassImportant,
		"state":       thingmodel.ClassPublic,
	}
	shared := func(p string) bool {
		return class[p] == thingmodel.ClassPublic || class[p] == thingmodel.ClassInternal
	}
	w := window()
	w.ID = "w-0123456789abcdef"
	w.Classification = thingmodel.ClassCore
	w.Features = map[string]float64{"temp_mean": 4.5}
	w.Series["pressure"] = series(0, time.Second, 10, func(i int) float64 { return 100 + float64(i%2) })
	w.Series["vibration"] = series(0, 500*time.Millisecond, 20, ramp)
	w.Series["state"] = series(0, 5*time.Second, 2, ramp)
	orig, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}

	r := dataset.Redact(w, shared)
	if got := slices.Sorted(maps.Keys(r.Series)); !slices.Equal(got, []string{"state", "temperature"}) {
		t.Fatalf("redacted series %v, want state and temperature", got)
	}
	for prop, pts := range w.Series {
		if got, want := r.Summary[prop], dataset.Summarize(pts); got != want {
			t.Errorf("summary of %s = %+v, want %+v", prop, got, want)
		}
	}
	if !r.Raw || r.ID != "" || r.Classification != thingmodel.ClassCore || r.Features["temp_mean"] != 4.5 {
		t.Errorf("redacted window: raw %v, id %q, classification %q, features %v", r.Raw, r.ID, r.Classification, r.Features)
	}
	if after, _ := json.Marshal(w); string(after) != string(orig) {
		t.Errorf("Redact changed its argument")
	}

	none := dataset.Redact(w, func(string) bool { return false })
	if none.Raw || none.Series != nil || len(none.Summary) != 4 {
		t.Errorf("redacting every series: raw %v, series %v, %d summaries", none.Raw, none.Series, len(none.Summary))
	}

	// The hub stores what the edge sent up: the summaries of the series it
	// did not get stay, and the redacted content has an id of its own.
	e := open(t)
	full := e.add(t, w)
	got := e.add(t, r)
	if got.ID == full.ID {
		t.Errorf("the redacted window has the full one's id %s", got.ID)
	}
	back, err := e.ds.Window(e.ctx, "acme", got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := back.Series["pressure"]; ok {
		t.Errorf("the hub has the core series")
	}
	if back.Summary["pressure"] != full.Summary["pressure"] || back.Summary["vibration"] != full.Summary["vibration"] {
		t.Errorf("the hub's summaries %+v, the edge's %+v", back.Summary, full.Summary)
	}
	onlySummaries := e.add(t, none)
	if onlySummaries.Raw {
		t.Errorf("a window without series is raw")
	}
}

func TestAddWindowRefuses(t *testing.T) {
	e := open(t)
	many := func(n int) map[string][]dataset.Point {
		m := map[string][]dataset.Point{}
		for i := range n {
			m[fmt.Sprintf("p%d", i)] = series(0, time.Second, 1, ramp)
		}
		return m
	}
	tests := []struct {
		name  string
		field string
		edit  func(w *dataset.Window)
	}{
		{"no tenant", "tenant", func(w *dataset.Window) { w.Tenant = "" }},
		{"bad tenant", "tenant", func(w *dataset.Window) { w.Tenant = "Acme" }},
		{"object of another tenant", "object", func(w *dataset.Window) { w.Object = "other:pump-1" }},
		{"no object", "object", func(w *dataset.Window) { w.Object = "" }},
		{"unknown reason", "reason", func(w *dataset.Window) { w.Reason = "whim" }},
		{"to before from", "to", func(w *dataset.Window) { w.To = w.From.Add(-time.Millisecond) }},
		{"no from", "from", func(w *dataset.Window) { w.From = time.Time{} }},
		{"too long", "to", func(w *dataset.Window) { w.To = w.From.Add(dataset.MaxSpan + time.Millisecond) }},
		{"before 1970", "from", func(w *dataset.Window) { w.From = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) }},
		{"captured after 9999", "captured_at", func(w *dataset.Window) { w.CapturedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"too many properties", "series", func(w *dataset.Window) { w.Series = many(dataset.MaxProperties + 1) }},
		{"too many points", "series", func(w *dataset.Window) {
			w.To = t0.Add(time.Hour)
			w.Series = map[string][]dataset.Point{
				"a": series(0, time.Millisecond, dataset.MaxPoints/2, ramp),
				"b": series(0, time.Millisecond, dataset.MaxPoints/2+1, ramp),
			}
		}},
		{"NaN", "series", func(w *dataset.Window) { w.Series["temperature"][3].V = math.NaN() }},
		{"infinity", "series", func(w *dataset.Window) { w.Series["temperature"][3].V = math.Inf(-1) }},
		{"point after to", "series", func(w *dataset.Window) { w.Series["temperature"][9].T = w.To.Add(time.Millisecond) }},
		{"two points at one time", "series", func(w *dataset.Window) { w.Series["temperature"][9].T = w.Series["temperature"][8].T }},
		{"empty series", "series", func(w *dataset.Window) { w.Series["x"] = nil }},
		{"bad property name", "series", func(w *dataset.Window) { w.Series["a,b"] = series(0, time.Second, 1, ramp) }},
		{"bad feature name", "features", func(w *dataset.Window) { w.Features = map[string]float64{"": 1} }},
		{"feature NaN", "features", func(w *dataset.Window) { w.Features = map[string]float64{"f": math.NaN()} }},
		{"bad classification", "classification", func(w *dataset.Window) { w.Classification = "secret" }},
		{"bad summary", "summary", func(w *dataset.Window) {
			w.Summary = map[string]dataset.Stats{"p": {N: 2, Mean: 5, Min: 0, Max: 1}}
		}},
		{"ref with a space", "ref", func(w *dataset.Window) { w.Ref = "a b" }},
		{"long model", "model", func(w *dataset.Window) { w.Model = strings.Repeat("m", 129) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := window()
			tt.edit(w)
			_, err := e.ds.AddWindow(e.ctx, w)
			var fe *dataset.FieldError
			if !errors.Is(err, dataset.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("AddWindow: %v, want ErrInvalid on %s", err, tt.field)
			}
		})
	}
	ws, err := e.ds.Windows(e.ctx, dataset.Query{Tenant: "acme"})
	if err != nil || len(ws) != 0 {
		t.Fatalf("stored %d windows (%v)", len(ws), err)
	}
}

func TestAddWindowIdempotent(t *testing.T) {
	e := open(t)
	w := window()
	w.Features = map[string]float64{"temp_mean": 4.5}
	first := e.add(t, w)
	if !strings.HasPrefix(first.ID, "w-") || len(first.ID) != 18 || !first.Raw || first.Classification != thingmodel.ClassInternal {
		t.Fatalf("stored %+v", first)
	}
	if want := dataset.Summarize(w.Series["temperature"]); first.Summary["temperature"] != want {
		t.Fatalf("summary %+v, want %+v", first.Summary["temperature"], want)
	}

	// The same content, its points in another order, sent again later:
	// the same window, with its first capture time.
	again := window()
	again.Features = map[string]float64{"temp_mean": 4.5}
	slices.Reverse(again.Series["temperature"])
	again.CapturedAt = t0.Add(time.Hour)
	second := e.add(t, again)
	if second.ID != first.ID || !second.CapturedAt.Equal(first.CapturedAt) {
		t.Fatalf("sent again: %s captured %s, first %s captured %s", second.ID, second.CapturedAt, first.ID, first.CapturedAt)
	}

	// Other content, another id.
	other := window()
	other.Series["temperature"][0].V = 0.5
	if third := e.add(t, other); third.ID == first.ID {
		t.Fatalf("other content has the same id %s", third.ID)
	}

	ws, err := e.ds.Windows(e.ctx, dataset.Query{Tenant: "acme"})
	if err != nil || len(ws) != 2 {
		t.Fatalf("Windows: %d (%v), want 2", len(ws), err)
	}
	for _, w := range ws {
		if w.Series != nil || !w.Raw || w.Summary == nil {
			t.Errorf("listed without series: %+v", w)
		}
	}
	back, err := e.ds.Window(e.ctx, "acme", first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, first) {
		t.Fatalf("read back\n%+v\nstored\n%+v", back, first)
	}
	if _, err := e.ds.Window(e.ctx, "other", first.ID); !errors.Is(err, dataset.ErrNotFound) {
		t.Fatalf("another tenant's window: %v", err)
	}
	// A capture time left out is the store's clock.
	w3 := window()
	w3.Ref, w3.CapturedAt = "r3", time.Time{}
	if got := e.add(t, w3); !got.CapturedAt.Equal(e.now) {
		t.Fatalf("captured at %s, want now %s", got.CapturedAt, e.now)
	}
}

func TestWindowsQuery(t *testing.T) {
	e := open(t)
	a := e.add(t, window())
	w := window()
	w.Object, w.Reason, w.Loop = "acme:pump-2", dataset.ReasonDecision, "cooling"
	b := e.add(t, w)
	w = window()
	w.Reason, w.From, w.To, w.Series = dataset.ReasonRequest, t0.Add(time.Hour), t0.Add(2*time.Hour), nil
	c := e.add(t, w)
	e.label(t, "alice", a.ID, dataset.KindNormal, "")

	ids := func(q dataset.Query) []string {
		t.Helper()
		q.Tenant = "acme"
		ws, err := e.ds.Windows(e.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, w := range ws {
			out = append(out, w.ID)
		}
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	tests := []struct {
		name string
		q    dataset.Query
		want []string
	}{
		{"all", dataset.Query{}, sorted(a.ID, b.ID, c.ID)},
		{"object", dataset.Query{Object: "acme:pump-2"}, []string{b.ID}},
		{"reason", dataset.Query{Reason: dataset.ReasonRequest}, []string{c.ID}},
		{"loop", dataset.Query{Loop: "cooling"}, []string{b.ID}},
		{"unlabelled", dataset.Query{Unlabelled: true}, sorted(b.ID, c.ID)},
		{"since", dataset.Query{Since: t0.Add(90 * time.Minute)}, []string{c.ID}},
		{"until", dataset.Query{Until: t0.Add(time.Minute)}, sorted(a.ID, b.ID)},
		{"limit", dataset.Query{Limit: 1}, sorted(a.ID, b.ID, c.ID)[:1]},
		{"after", dataset.Query{After: sorted(a.ID, b.ID, c.ID)[0]}, sorted(a.ID, b.ID, c.ID)[1:]},
	}
	for _, tt := range tests {
		if got := ids(tt.q); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	ws, err := e.ds.Windows(e.ctx, dataset.Query{Tenant: "acme", Object: a.Object, Reason: dataset.ReasonAlarm, WithSeries: true})
	if err != nil || len(ws) != 1 || len(ws[0].Series["temperature"]) != 10 {
		t.Fatalf("with series: %v %v", ws, err)
	}
	for _, q := range []dataset.Query{{}, {Tenant: "acme", Limit: dataset.MaxLimit + 1}, {Tenant: "acme", Reason: "x"},
		{Tenant: "acme", WithSeries: true, Limit: dataset.MaxSeriesLimit + 1}} {
		if _, err := e.ds.Windows(e.ctx, q); !errors.Is(err, dataset.ErrInvalid) {
			t.Errorf("Windows(%+v): %v, want ErrInvalid", q, err)
		}
	}
}

func TestParseWindow(t *testing.T) {
	valid := `{"tenant":"acme","object":"acme:pump-1","reason":"alarm","from":"2026-03-04T05:00:00Z","to":"2026-03-04T05:00:10Z",
		"series":{"temperature":[{"t":1772600405000,"v":2.5},{"t":1772600401000,"v":1}]},"features":{"f":1},"captured_at":"2026-03-04T05:00:20Z"}`
	w, err := dataset.ParseWindow([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	pts := w.Series["temperature"]
	if len(pts) != 2 || !pts[0].T.Equal(t0.Add(time.Second)) || pts[1].V != 2.5 || w.Summary["temperature"].N != 2 || !w.Raw {
		t.Fatalf("parsed %+v", w)
	}
	// The tenant may be left for the caller to set.
	if _, err := dataset.ParseWindow([]byte(strings.Replace(valid, `"tenant":"acme",`, "", 1))); err != nil {
		t.Fatalf("without tenant: %v", err)
	}
	// What it writes, it reads.
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := dataset.ParseWindow(b)
	if err != nil || !reflect.DeepEqual(w, w2) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, w, w2)
	}
	for name, in := range map[string]string{
		"unknown member":        strings.Replace(valid, `"reason"`, `"colour":"red","reason"`, 1),
		"unknown point member":  strings.Replace(valid, `"v":2.5`, `"v":2.5,"q":1`, 1),
		"point without a value": strings.Replace(valid, `,"v":2.5`, ``, 1),
		"trailing data":         valid + `{}`,
		"truncated":             valid[:len(valid)-10],
		"not an object":         `[]`,
		"too large":             `{"ref":"` + strings.Repeat("x", dataset.MaxWindowBytes) + `"}`,
		"other tenant's object": strings.Replace(valid, `"acme:pump-1"`, `"other:pump-1"`, 1),
		"string value":          strings.Replace(valid, `"v":2.5`, `"v":"2.5"`, 1),
	} {
		if _, err := dataset.ParseWindow([]byte(in)); !errors.Is(err, dataset.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// Edges resending a window while it is being stored: one window.
func TestAddWindowConcurrent(t *testing.T) {
	e := open(t)
	ids := make([]string, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			w, err := e.ds.AddWindow(e.ctx, window())
			if err == nil {
				ids[i] = w.ID
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("add %d: %s, %v; add 0: %s", i, ids[i], errs[i], ids[0])
		}
	}
	if ws, err := e.ds.Windows(e.ctx, dataset.Query{Tenant: "acme"}); err != nil || len(ws) != 1 {
		t.Fatalf("%d windows stored (%v)", len(ws), err)
	}
}

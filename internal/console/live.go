package console

// live.go serves the Telemetry section of an object's page: the latest
// value of each property of its thing model, a chart per numeric property
// over a chosen time range (GET /objects/{code}/telemetry?range= is the
// section alone, for htmx), and the live values as server-sent events
// (GET /objects/{code}/live). Everything is read through the node's API
// as the signed-in user.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/registry"
)

// Defaults of the live stream options.
const (
	DefaultLiveEvery      = time.Second
	DefaultMaxLiveStreams = 256
	// maxLivePerSession bounds the live streams of one session (a few tabs).
	maxLivePerSession = 8
	// livePing is how often an idle stream sends a comment, so that
	// proxies keep it open.
	livePing = 15 * time.Second
	// maxChartPoints bounds the points of a chart: the step is chosen so.
	maxChartPoints = 300
)

// timeRange is a choice of the telemetry section's range picker.
type timeRange struct {
	Key, Label string
	D          time.Duration
}

var timeRanges = []timeRange{
	{"15m", "15 min", 15 * time.Minute},
	{"1h", "1 h", time.Hour},
	{"6h", "6 h", 6 * time.Hour},
	{"24h", "24 h", 24 * time.Hour},
	{"7d", "7 d", 7 * 24 * time.Hour},
}

const defaultRange = "1h"

// niceSteps are the steps a chart may have, shortest first.
var niceSteps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// chartStep is the shortest nice step that gives a range at most
// maxChartPoints points.
func chartStep(d time.Duration) time.Duration {
	for _, s := range niceSteps {
		if d/s <= maxChartPoints {
			return s
		}
	}
	return niceSteps[len(niceSteps)-1]
}

// pickRange returns the range named by key, or the default one.
func pickRange(key string) timeRange {
	for _, tr := range timeRanges {
		if tr.Key == key {
			return tr
		}
	}
	for _, tr := range timeRanges {
		if tr.Key == defaultRange {
			return tr
		}
	}
	return timeRanges[0]
}

// telemetryView is the object page's Telemetry section.
type telemetryView struct {
	Code string
	// Topic is where the device publishes its values over MQTT.
	Topic string
	// Model is "id@version", "" for an object without a thing model.
	Model  string
	Range  timeRange
	Ranges []rangeLink
	Step   time.Duration
	Rows   []telemetryRow
	Charts []chartView
	// NoData: no value in the last 7 days (the API's lookback).
	NoData bool
	// Problem is why the values could not be read (the API's message);
	// the rest of the object's page is shown all the same.
	Problem string
}

type rangeLink struct {
	Key, Label string
	Current    bool
}

// telemetryRow is a property with its latest value.
type telemetryRow struct {
	Property, Description, Type, Unit string
	Value                             string
	Time                              time.Time
	Has                               bool
	Numeric                           bool
}

// chartView is a numeric property's chart; Series is its data attribute.
type chartView struct {
	Property, Unit string
	Series         chartSeries
}

// chartSeries is a chart's data as live.js reads it: times in Unix
// seconds, values (null where the API had none), the range in seconds.
type chartSeries struct {
	Property string     `json:"property"`
	Unit     string     `json:"unit,omitempty"`
	Range    int64      `json:"range"`
	T        []float64  `json:"t"`
	V        []*float64 `json:"v"`
}

// apiValue is a value as the telemetry API answers it.
type apiValue struct {
	Time  time.Time `json:"time"`
	Value any       `json:"value"`
}

// modelDoc is the part of a thing model the section shows.
type modelDoc struct {
	Properties map[string]struct {
		Type        string `json:"type"`
		Unit        string `json:"unit"`
		Description string `json:"description"`
	} `json:"properties"`
}

// latestValues reads an object's latest values through the API.
func (c *Console) latestValues(r *http.Request, q *request, code string) (map[string]apiValue, error) {
	var out struct {
		Values map[string]apiValue `json:"values"`
	}
	if err := c.call(r, q, http.MethodGet, "/api/v1/telemetry/"+url.PathEscape(code)+"/latest", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Values, nil
}

// telemetry is the Telemetry section of o's page over the range the
// request's ?range= names. An API refusal becomes the section's Problem,
// so that the rest of the page is shown.
func (c *Console) telemetry(r *http.Request, q *request, o *registry.Object) *telemetryView {
	tr := pickRange(r.URL.Query().Get("range"))
	tenant, id, _ := strings.Cut(o.Code, ":")
	v := &telemetryView{Code: o.Code, Topic: "wanwu/v1/" + tenant + "/" + id + "/telemetry", Range: tr, Step: chartStep(tr.D)}
	for _, x := range timeRanges {
		v.Ranges = append(v.Ranges, rangeLink{x.Key, x.Label, x.Key == tr.Key})
	}
	if err := c.fillTelemetry(r, q, o, v); err != nil {
		var ae *apiError
		var pe *pageError
		switch {
		case errors.As(err, &ae):
			v.Problem = ae.Error()
		case errors.As(err, &pe):
			v.Problem = pe.Message
		default:
			c.log.Warn("console: telemetry not read", "object", o.Code, "err", err)
			v.Problem = "internal error (it has been logged)"
		}
		v.Rows, v.Charts = nil, nil
	}
	return v
}

func (c *Console) fillTelemetry(r *http.Request, q *request, o *registry.Object, v *telemetryView) error {
	var m modelDoc
	if o.Model != nil {
		v.Model = o.Model.ID + "@" + o.Model.Version
		if err := c.call(r, q, http.MethodGet, "/api/v1/models/"+url.PathEscape(o.Model.ID)+"/versions/"+url.PathEscape(o.Model.Version), nil, nil, &m); err != nil {
			return err
		}
	}
	latest, err := c.latestValues(r, q, o.Code)
	if err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(m.Properties))
	if o.Model == nil {
		names = slices.Sorted(maps.Keys(latest))
	}
	for _, name := range names {
		row := telemetryRow{Property: name}
		if p, ok := m.Properties[name]; ok {
			row.Type, row.Unit, row.Description = p.Type, p.Unit, p.Description
			row.Numeric = p.Type == "number" || p.Type == "integer"
		}
		if lv, ok := latest[name]; ok {
			row.Has, row.Time, row.Value = true, lv.Time, formatValue(lv.Value)
			if o.Model == nil {
				_, row.Numeric = lv.Value.(float64)
			}
		}
		v.Rows = append(v.Rows, row)
	}
	if len(latest) == 0 {
		v.NoData = true
		return nil // no data: the empty state, and no empty charts
	}
	end := q.now.UTC()
	start := end.Add(-v.Range.D)
	for _, row := range v.Rows {
		if !row.Numeric {
			continue
		}
		s, err := c.chartData(r, q, o.Code, row.Property, start, end, v.Step)
		if err != nil {
			return err
		}
		s.Unit, s.Range = row.Unit, int64(v.Range.D/time.Second)
		v.Charts = append(v.Charts, chartView{Property: row.Property, Unit: row.Unit, Series: s})
	}
	return nil
}

// chartData reads a property's averages over [start, end) by step.
func (c *Console) chartData(r *http.Request, q *request, code, prop string, start, end time.Time, step time.Duration) (chartSeries, error) {
	query := url.Values{
		"start": {start.Format(time.RFC3339)}, "end": {end.Format(time.RFC3339)},
		"step": {step.String()}, "agg": {"avg"},
	}
	var out struct {
		Series []struct {
			Points []apiValue `json:"points"`
		} `json:"series"`
	}
	s := chartSeries{Property: prop, T: []float64{}, V: []*float64{}}
	if err := c.call(r, q, http.MethodGet, "/api/v1/telemetry/"+url.PathEscape(code)+"/"+url.PathEscape(prop), query, nil, &out); err != nil {
		return s, err
	}
	for _, se := range out.Series {
		for _, p := range se.Points {
			f, ok := p.Value.(float64)
			if !ok {
				continue
			}
			s.T = append(s.T, float64(p.Time.UnixMilli())/1000)
			s.V = append(s.V, &f)
		}
	}
	return s, nil
}

// Live says whether the section streams live values, and so may draw
// charts (uPlot and live.js are loaded): unless its values could not be
// read.
func (v *telemetryView) Live() bool { return v != nil && v.Problem == "" }

// scripts are the page scripts the section needs.
func (v *telemetryView) scripts() []string {
	if !v.Live() {
		return nil
	}
	return []string{"live.js"}
}

// StepText is the step as the section says it: "15 s", "5 min", "1 h".
func (v *telemetryView) StepText() string {
	switch d := v.Step; {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + " s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " min"
	default:
		return strconv.Itoa(int(d/time.Hour)) + " h"
	}
}

// formatValue writes a value as the table shows it.
func formatValue(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case string:
		return x
	case nil:
		return ""
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}

// objectTelemetry serves the Telemetry section alone for htmx (the range
// picker swaps it); a browser without htmx is sent to the whole page.
func (c *Console) objectTelemetry(w http.ResponseWriter, r *http.Request, q *request) error {
	code := r.PathValue("code")
	page := "/objects/" + url.PathEscape(code)
	if rg := r.URL.Query().Get("range"); rg != "" {
		page += "?range=" + url.QueryEscape(pickRange(rg).Key)
	}
	if !q.partial {
		http.Redirect(w, r, page+"#telemetry", http.StatusSeeOther)
		return nil
	}
	var o registry.Object
	if err := c.call(r, q, http.MethodGet, "/api/v1/objects/"+url.PathEscape(code), nil, nil, &o); err != nil {
		return err
	}
	if o.Status == registry.StatusDeleted {
		return &pageError{Status: http.StatusNotFound, Title: "Object not found", Query: code, Message: "No object you can see has the code " + quote(code) + "."}
	}
	tv := c.telemetry(r, q, &o)
	t := c.pages["object"]
	v := view{Data: objectView{O: &o, Telemetry: tv}}
	if q.s != nil {
		v.CSRF = q.s.csrf
	}
	var buf strings.Builder
	if err := t.ExecuteTemplate(&buf, "telemetry", v); err != nil {
		return fmt.Errorf("console: render the telemetry section: %w", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(buf.String()))
	return nil
}

// liveStreams counts the open live streams, per session and in all.
type liveStreams struct {
	mu        sync.Mutex
	max       int
	n         int
	bySession map[*session]int
	gauge     prometheus.Gauge
}

func newLiveStreams(max int) *liveStreams {
	return &liveStreams{max: max, bySession: map[*session]int{},
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wanwu_console_live_streams",
			Help: "Live value streams (server-sent events) the console has open.",
		})}
}

// acquire takes a stream for s; it returns what is over, "" when taken.
func (l *liveStreams) acquire(s *session) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.bySession[s] >= maxLivePerSession:
		return fmt.Sprintf("Too many live streams: at most %d per session. Close some of this console's tabs.", maxLivePerSession)
	case l.n >= l.max:
		return "Too many live streams on this node. Try again later."
	}
	l.bySession[s]++
	l.n++
	l.gauge.Set(float64(l.n))
	return ""
}

func (l *liveStreams) release(s *session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bySession[s]--; l.bySession[s] <= 0 {
		delete(l.bySession, s)
	}
	l.n--
	l.gauge.Set(float64(l.n))
}

// liveValue is one changed value of a live stream's event.
type liveValue struct {
	Property string    `json:"property"`
	Time     time.Time `json:"time"`
	Value    any       `json:"value"`
}

// live streams an object's changed values as server-sent events: every
// Options.LiveEvery it reads the latest values through the API as the
// signed-in user and sends those whose time changed (event "values"). It
// ends with event "signedout" when the session ends or its token is no
// longer accepted, and ends when the client goes or the console shuts
// down (Run returns, or Close).
func (c *Console) live(w http.ResponseWriter, r *http.Request, q *request) error {
	code := r.PathValue("code")
	if over := c.streams.acquire(q.s); over != "" {
		http.Error(w, over, http.StatusTooManyRequests)
		return nil
	}
	defer c.streams.release(q.s)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	r = r.WithContext(ctx)

	// The first read decides whether the object is there for this user
	// (another tenant's is not found), before the stream starts.
	values, err := c.latestValues(r, q, code)
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	// The server's read timeout would end a long stream: a GET has no body
	// to wait for.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	sent := map[string]time.Time{}
	send := func(values map[string]apiValue) error {
		var changed []liveValue
		for _, name := range slices.Sorted(maps.Keys(values)) {
			v := values[name]
			if t, ok := sent[name]; ok && t.Equal(v.Time) {
				continue
			}
			sent[name] = v.Time
			changed = append(changed, liveValue{name, v.Time, v.Value})
		}
		if len(changed) == 0 {
			return nil
		}
		b, err := json.Marshal(changed)
		if err != nil {
			return fmt.Errorf("console: live values: %w", err)
		}
		if _, err := fmt.Fprintf(w, "event: values\ndata: %s\n\n", b); err != nil {
			return err
		}
		return rc.Flush()
	}
	signedOut := func() {
		_, _ = fmt.Fprint(w, "event: signedout\ndata: {}\n\n")
		_ = rc.Flush()
	}
	// A retry hint for the browser's reconnection, then the values now.
	if _, err := fmt.Fprint(w, "retry: 3000\n\n"); err != nil {
		return nil
	}
	if err := send(values); err != nil {
		return nil // the client went
	}
	tick := time.NewTicker(c.o.LiveEvery)
	defer tick.Stop()
	ping := time.NewTicker(livePing)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return nil
			}
			if rc.Flush() != nil {
				return nil
			}
		case <-tick.C:
			if s, _ := c.session(r, c.o.Now()); s != q.s {
				signedOut()
				return nil
			}
			values, err := c.latestValues(r, q, code)
			var ae *apiError
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
				signedOut()
				return nil
			case errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusForbidden):
				return nil // gone, or no longer this user's to see
			case err != nil:
				c.log.Debug("console: live values not read", "object", code, "err", err)
				continue
			}
			if send(values) != nil {
				return nil
			}
		}
	}
}

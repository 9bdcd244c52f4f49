package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
)

// Telemetry query routes; registered only when the stores are wired in.
func (s *server) telemetryRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/telemetry/{code}/latest", s.authed(auth.Viewer, s.latest))
	mux.HandleFunc("GET /api/v1/telemetry/{code}/{property}", s.authed(auth.Viewer, s.propertyRange))
	mux.HandleFunc("GET /api/v1/telemetry", s.authed(auth.Viewer, s.fleetRange))
	mux.HandleFunc("GET /api/v1/events", s.authed(auth.Viewer, s.listEvents))
	mux.HandleFunc("GET /api/v1/deadletters", s.authed(auth.Viewer, s.deadLetters))
	mux.Handle("/prometheus/", s.TSDB.PromAPI("/prometheus", s.promEnforce))
}

// Value is one property value as the API returns it.
type Value struct {
	Time  time.Time `json:"time"`
	Value any       `json:"value"`
}

func (s *server) latest(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.visible(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	lookback := 7 * 24 * time.Hour
	if v := r.URL.Query().Get("lookback"); v != "" {
		if lookback, err = parseDuration("lookback", v); err != nil {
			return err
		}
	}
	series, err := s.TSDB.Latest(r.Context(), deviceMatchers(o), lookback)
	if err != nil {
		return queryErr(err)
	}
	m, err := s.Registry.ModelOf(r.Context(), o)
	if err != nil {
		return err
	}
	values := map[string]Value{}
	positions := map[string]map[string]float64{} // property → lat/lon/alt
	posTime := map[string]time.Time{}
	for _, se := range series {
		if len(se.Points) == 0 {
			continue
		}
		pt := se.Points[len(se.Points)-1]
		name, t := se.Labels["__name__"], time.UnixMilli(pt.T).UTC()
		if prop, axis, ok := positionAxis(m, name); ok {
			if positions[prop] == nil {
				positions[prop] = map[string]float64{}
			}
			positions[prop][axis] = pt.V
			if t.After(posTime[prop]) {
				posTime[prop] = t
			}
			continue
		}
		values[name] = Value{Time: t, Value: typed(m, name, pt.V)}
	}
	for prop, pos := range positions {
		values[prop] = Value{Time: posTime[prop], Value: pos}
	}
	texts, err := s.Events.Latest(r.Context(), o.Code)
	if err != nil {
		return err
	}
	for _, v := range texts {
		values[v.Property] = Value{Time: time.UnixMilli(v.Time).UTC(), Value: v.Text}
	}
	writeJSON(w, http.StatusOK, map[string]any{"device": o.Code, "values": values})
	return nil
}

// window reads start, end, step and agg with their defaults (the last hour,
// one-minute steps, averages).
func window(r *http.Request) (start, end time.Time, step time.Duration, agg string, err error) {
	q := r.URL.Query()
	end = time.Now()
	if v := q.Get("end"); v != "" {
		if end, err = parseTime("end", v); err != nil {
			return
		}
	}
	start = end.Add(-time.Hour)
	if v := q.Get("start"); v != "" {
		if start, err = parseTime("start", v); err != nil {
			return
		}
	}
	if !start.Before(end) {
		err = badRequest("start", "start must be before end")
		return
	}
	step = time.Minute
	if v := q.Get("step"); v != "" {
		if step, err = parseDuration("step", v); err != nil {
			return
		}
		if step <= 0 {
			err = badRequest("step", "must be positive")
			return
		}
	}
	if end.Sub(start)/step > tsdb.MaxPointsPerSeries {
		err = badRequest("step", "too many points (%d); at most %d per series: widen the step", end.Sub(start)/step, tsdb.MaxPointsPerSeries)
		return
	}
	agg = q.Get("agg")
	if agg == "" {
		agg = tsdb.AggAvg
	}
	switch agg {
	case tsdb.AggAvg, tsdb.AggMin, tsdb.AggMax, tsdb.AggSum, tsdb.AggCount, tsdb.AggLast:
	default:
		err = badRequest("agg", "%q is not one of avg, min, max, sum, count, last", agg)
	}
	return
}

// parseTime accepts RFC 3339 or Unix seconds (with fractions), as Prometheus
// does, and times relative to now: "now", "-10m", "now-1h30m".
func parseTime(field, v string) (time.Time, error) {
	if rel, ok := strings.CutPrefix(v, "now"); ok || strings.HasPrefix(v, "-") {
		if rel == "" && ok {
			return time.Now().UTC(), nil
		}
		if !ok {
			rel = v
		}
		d, err := time.ParseDuration(rel)
		if err != nil || d > 0 {
			return time.Time{}, badRequest(field, "%q: a relative time is now, or -DURATION like -10m", v)
		}
		return time.Now().Add(d).UTC(), nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badRequest(field, "%q is neither RFC 3339 nor Unix seconds", v)
	}
	return t, nil
}

func deviceMatchers(o *registry.Object) []tsdb.Matcher {
	return []tsdb.Matcher{{Name: "tenant", Op: "=", Value: o.Tenant}, {Name: "device", Op: "=", Value: o.Code}}
}

// SeriesOut is one series in a range answer.
type SeriesOut struct {
	Device   string  `json:"device"`
	Property string  `json:"property"`
	Points   []Value `json:"points"`
}

func (s *server) propertyRange(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.visible(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	prop := r.PathValue("property")
	if !validPropertyName(prop) {
		return badRequest("property", "%q is not a property name", prop)
	}
	m, err := s.Registry.ModelOf(r.Context(), o)
	if err != nil {
		return err
	}
	var schema *thingmodel.Property
	if m != nil {
		if schema = m.Properties[prop]; schema == nil {
			return &Error{Status: http.StatusNotFound, Code: "not_found", Field: "property",
				Message: fmt.Sprintf("%s has no property %q", m.Key(), prop)}
		}
	}
	start, end, step, agg, err := window(r)
	if err != nil {
		return err
	}
	if schema != nil && schema.Type == thingmodel.TypePosition {
		return s.positionRange(w, r.Context(), o, prop, start, end, step, agg)
	}
	series, err := s.TSDB.Range(r.Context(), append(deviceMatchers(o), tsdb.Matcher{Name: "__name__", Op: "=", Value: prop}), start, end, step, agg)
	if err != nil {
		return queryErr(err)
	}
	out := seriesOut(series)
	if schema != nil && schema.Type == thingmodel.TypeBoolean && (agg == tsdb.AggLast || agg == tsdb.AggMin || agg == tsdb.AggMax) {
		// A boolean stays a boolean where the aggregate is one of its
		// values; an average or a count is a number of its own.
		for i := range out {
			for j := range out[i].Points {
				out[i].Points[j].Value = out[i].Points[j].Value.(float64) != 0
			}
		}
	}
	if len(out) == 0 {
		// Not numeric: strings and data come from the event store, unaggregated.
		texts, err := s.Events.Range(r.Context(), o.Code, prop, start, end, 0)
		if err != nil {
			return err
		}
		if len(texts) > 0 {
			so := SeriesOut{Device: o.Code, Property: prop}
			for _, v := range texts {
				so.Points = append(so.Points, Value{Time: time.UnixMilli(v.Time).UTC(), Value: v.Text})
			}
			out = append(out, so)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"series": nonNil(out), "step": step.String(), "agg": agg})
	return nil
}

// positionRange answers a position property's range as positions
// ({"lat","lon","alt"}), as ingest takes them, from its coordinate series.
func (s *server) positionRange(w http.ResponseWriter, ctx context.Context, o *registry.Object, prop string, start, end time.Time, step time.Duration, agg string) error {
	byTime := map[time.Time]map[string]float64{}
	for _, axis := range []string{"lat", "lon", "alt"} {
		series, err := s.TSDB.Range(ctx, append(deviceMatchers(o), tsdb.Matcher{Name: "__name__", Op: "=", Value: prop + "_" + axis}), start, end, step, agg)
		if err != nil {
			return queryErr(err)
		}
		for _, se := range series {
			for _, pt := range se.Points {
				t := time.UnixMilli(pt.T).UTC()
				if byTime[t] == nil {
					byTime[t] = map[string]float64{}
				}
				byTime[t][axis] = pt.V
			}
		}
	}
	so := SeriesOut{Device: o.Code, Property: prop, Points: make([]Value, 0, len(byTime))}
	for t, pos := range byTime {
		if _, ok := pos["lat"]; ok {
			so.Points = append(so.Points, Value{Time: t, Value: pos})
		}
	}
	sort.Slice(so.Points, func(i, j int) bool { return so.Points[i].Time.Before(so.Points[j].Time) })
	out := []SeriesOut{}
	if len(so.Points) > 0 {
		out = append(out, so)
	}
	writeJSON(w, http.StatusOK, map[string]any{"series": out, "step": step.String(), "agg": agg})
	return nil
}

// positionAxis says whether series name is a coordinate of one of the
// model's position properties, and which.
func positionAxis(m *thingmodel.Model, name string) (prop, axis string, ok bool) {
	if m == nil {
		return "", "", false
	}
	i := strings.LastIndexByte(name, '_')
	if i < 0 {
		return "", "", false
	}
	prop, axis = name[:i], name[i+1:]
	if p := m.Properties[prop]; p == nil || p.Type != thingmodel.TypePosition || (axis != "lat" && axis != "lon" && axis != "alt") {
		return "", "", false
	}
	return prop, axis, true
}

// typed gives a stored number its property's type: booleans as booleans.
func typed(m *thingmodel.Model, name string, v float64) any {
	if m != nil {
		if p := m.Properties[name]; p != nil && p.Type == thingmodel.TypeBoolean {
			return v != 0
		}
	}
	return v
}

func seriesOut(series []tsdb.Series) []SeriesOut {
	out := make([]SeriesOut, 0, len(series))
	for _, se := range series {
		so := SeriesOut{Device: se.Labels["device"], Property: se.Labels["__name__"], Points: make([]Value, 0, len(se.Points))}
		for _, pt := range se.Points {
			so.Points = append(so.Points, Value{Time: time.UnixMilli(pt.T).UTC(), Value: pt.V})
		}
		out = append(out, so)
	}
	return out
}

// fleetRange queries one property across the devices a registry filter
// selects (tenant, hierarchy, tags, kind), so that tags and places live in
// the registry and never multiply time series when they change.
func (s *server) fleetRange(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q := r.URL.Query()
	prop := q.Get("property")
	if !validPropertyName(prop) {
		return badRequest("property", "a property name is required")
	}
	f, err := objectFilter(r, p)
	if err != nil {
		return err
	}
	f.Limit = 1000
	start, end, step, agg, err := window(r)
	if err != nil {
		return err
	}
	objs, _, err := s.Registry.List(r.Context(), f)
	if err != nil {
		return err
	}
	if len(objs) == 0 {
		writeJSON(w, http.StatusOK, map[string]any{"series": []SeriesOut{}, "step": step.String(), "agg": agg})
		return nil
	}
	codes := make([]string, len(objs))
	for i, o := range objs {
		codes[i] = regexp.QuoteMeta(o.Code)
	}
	matchers := []tsdb.Matcher{{Name: "__name__", Op: "=", Value: prop}, {Name: "device", Op: "=~", Value: strings.Join(codes, "|")}}
	if f.Tenant != "" {
		matchers = append(matchers, tsdb.Matcher{Name: "tenant", Op: "=", Value: f.Tenant})
	}
	series, err := s.TSDB.Range(r.Context(), matchers, start, end, step, agg)
	if err != nil {
		return queryErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"series": seriesOut(series), "step": step.String(), "agg": agg, "devices": len(objs)})
	return nil
}

func validPropertyName(s string) bool {
	if s == "" || len(s) > 80 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func queryErr(err error) error {
	if errors.Is(err, tsdb.ErrInvalid) {
		return badRequest("query", "%v", err)
	}
	return err
}

func (s *server) listEvents(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q := r.URL.Query()
	f := eventstore.EventFilter{Name: q.Get("name")}
	var err error
	if f.Tenant, err = scopeTenant(p, q.Get("tenant")); err != nil {
		return err
	}
	if d := q.Get("device"); d != "" {
		o, err := s.visible(r.Context(), p, d)
		if err != nil {
			return err
		}
		f.Devices = []string{o.Code}
	}
	if v := q.Get("start"); v != "" {
		if f.Start, err = parseTime("start", v); err != nil {
			return err
		}
	}
	if v := q.Get("end"); v != "" {
		if f.End, err = parseTime("end", v); err != nil {
			return err
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := queryUint(r, "limit", 100)
		if err != nil {
			return err
		}
		f.Limit = int(min(n, 10000))
	}
	evs, err := s.Events.Events(r.Context(), f)
	if err != nil {
		return err
	}
	type eventOut struct {
		Device   string    `json:"device"`
		Name     string    `json:"name"`
		Time     time.Time `json:"time"`
		Data     rawJSON   `json:"data,omitempty"`
		Received time.Time `json:"received"`
	}
	out := make([]eventOut, 0, len(evs))
	for _, e := range evs {
		out = append(out, eventOut{Device: e.Device, Name: e.Name, Time: time.UnixMilli(e.Time).UTC(), Data: rawJSON(e.Data), Received: time.UnixMilli(e.Received).UTC()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
	return nil
}

// rawJSON embeds stored JSON as is ("null" when empty).
type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

func (s *server) deadLetters(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q := r.URL.Query()
	tenant, device := q.Get("tenant"), q.Get("device")
	if device != "" {
		o, err := s.visible(r.Context(), p, device)
		if err != nil {
			return err
		}
		tenant = o.Tenant
	}
	if p.Tenant != "" {
		var err error
		if tenant, err = scopeTenant(p, tenant); err != nil {
			return err
		}
	} else if tenant != "" {
		if err := code.ValidNamespace(tenant); err != nil {
			return badRequest("tenant", "%v", err)
		}
	}
	limit, err := queryUint(r, "limit", 100)
	if err != nil {
		return err
	}
	dls, err := s.Pipeline.DeadLetters(r.Context(), tenant, device, int(min(max(limit, 1), 1000)))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": nonNil(dls)})
	return nil
}

// promEnforce authenticates Prometheus API requests (Bearer token, or Basic
// auth with the token as password, as Grafana can send either) and confines
// tenant-bound tokens to their tenant's series.
func (s *server) promEnforce(r *http.Request) ([]tsdb.Matcher, error) {
	secret, ok := bearer(r)
	if !ok {
		if _, pw, basic := r.BasicAuth(); basic {
			secret, ok = pw, true
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w: missing token", auth.ErrUnauthenticated)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	p, err := s.Registry.Authenticate(ctx, secret)
	if err != nil {
		return nil, err
	}
	if err := p.Allows(auth.Viewer, p.Tenant); err != nil {
		return nil, err
	}
	if p.Tenant == "" {
		return nil, nil
	}
	return []tsdb.Matcher{{Name: "tenant", Op: "=", Value: p.Tenant}}, nil
}

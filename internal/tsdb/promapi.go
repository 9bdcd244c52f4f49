package tsdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/wanwu-iot/wanwu/internal/auth"
)

// Prometheus API error types (web/api/v1), with the statuses Prometheus uses.
const (
	errBadData      = "bad_data"
	errExec         = "execution"
	errTimeout      = "timeout"
	errCanceled     = "canceled"
	errInternal     = "internal"
	errUnavailable  = "unavailable"
	errUnauthorized = "unauthorized"
	errForbidden    = "forbidden"
	errMethod       = "method_not_allowed"
)

var errStatus = map[string]int{
	errBadData:      http.StatusBadRequest,
	errExec:         http.StatusUnprocessableEntity,
	errTimeout:      http.StatusServiceUnavailable,
	errCanceled:     499, // what Prometheus answers for a canceled query
	errInternal:     http.StatusInternalServerError,
	errUnavailable:  http.StatusServiceUnavailable,
	errUnauthorized: http.StatusUnauthorized,
	errForbidden:    http.StatusForbidden,
	errMethod:       http.StatusMethodNotAllowed,
}

// apiError is what a handler returns; msg is safe to show the client.
type apiError struct {
	typ string
	msg string
	err error // for the log, when it holds more than msg
}

func (e *apiError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *apiError) Unwrap() error { return e.err }

func badData(format string, args ...any) *apiError {
	return &apiError{typ: errBadData, msg: fmt.Sprintf(format, args...)}
}

// maxFormBody bounds a POSTed form; Grafana's longest generated queries are
// a few kB, dashboards with huge regexps some hundred.
const maxFormBody = 4 << 20

// The time range /series and /labels use when the client gives none, as in
// Prometheus: the extremes that still round-trip through RFC 3339.
var (
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()
)

type promAPI struct {
	s       *Store
	enforce func(r *http.Request) ([]Matcher, error)
}

// PromAPI serves the subset of the Prometheus HTTP API that Grafana's
// Prometheus data source uses, under prefix (e.g. "/prometheus"): query,
// query_range, series, labels, label values, metadata, buildinfo,
// query_exemplars, rules and alerts (the last three empty). Responses and
// errors have Prometheus' JSON shapes; GET and form-encoded POST are accepted.
//
// enforce, when non-nil, runs first on every request. Its matchers are forced
// onto every selector (see the package doc); its error becomes 401 when it
// wraps auth.ErrUnauthenticated or ErrUnauthenticated, 403 when it wraps
// auth.ErrForbidden or ErrForbidden, 500 otherwise.
func (s *Store) PromAPI(prefix string, enforce func(r *http.Request) ([]Matcher, error)) http.Handler {
	prefix = strings.TrimRight(prefix, "/")
	a := &promAPI{s: s, enforce: enforce}
	mux := http.NewServeMux()
	route := func(path string, h func(w http.ResponseWriter, r *http.Request, enf []*labels.Matcher) error) {
		mux.Handle(prefix+"/api/v1"+path, a.handle(h))
	}
	route("/query", a.query)
	route("/query_range", a.queryRange)
	route("/series", a.series)
	route("/labels", a.labelNames)
	route("/label/{name}/values", a.labelValues)
	route("/metadata", a.empty(map[string]any{}))
	route("/query_exemplars", a.empty([]any{}))
	route("/rules", a.empty(map[string]any{"groups": []any{}}))
	route("/alerts", a.empty(map[string]any{"alerts": []any{}}))
	route("/status/buildinfo", a.buildInfo)
	return mux
}

// Errors an enforce function may wrap for 401 and 403, besides the auth
// package's.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrForbidden       = errors.New("forbidden")
)

func (a *promAPI) handle(h func(w http.ResponseWriter, r *http.Request, enf []*labels.Matcher) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := a.serve(w, r, h)
		if err == nil {
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = &apiError{typ: errInternal, msg: "internal error", err: err}
		}
		status := errStatus[ae.typ]
		if status >= 500 && ae.typ != errTimeout && ae.typ != errUnavailable {
			a.s.log.Error("prometheus api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		} else {
			a.s.log.Debug("prometheus api request rejected", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		}
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="wanwu"`)
		}
		writeJSON(w, status, map[string]any{"status": "error", "errorType": ae.typ, "error": ae.msg})
	})
}

func (a *promAPI) serve(w http.ResponseWriter, r *http.Request, h func(w http.ResponseWriter, r *http.Request, enf []*labels.Matcher) error) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		return &apiError{typ: errMethod, msg: "method " + r.Method + " not allowed; use GET or POST"}
	}
	var enf []*labels.Matcher
	if a.enforce != nil {
		ms, err := a.enforce(r)
		switch {
		case errors.Is(err, auth.ErrUnauthenticated), errors.Is(err, ErrUnauthenticated):
			return &apiError{typ: errUnauthorized, msg: err.Error()}
		case errors.Is(err, auth.ErrForbidden), errors.Is(err, ErrForbidden):
			return &apiError{typ: errForbidden, msg: err.Error()}
		case err != nil:
			return fmt.Errorf("enforce: %w", err)
		}
		if enf, err = toMatchers(ms); err != nil {
			return fmt.Errorf("enforce: %w", err) // the hub's bug, not the client's
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		return badData("invalid form: %v", err)
	}
	return h(w, r, enf)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

func success(w http.ResponseWriter, data any, warnings, infos []string) error {
	body := map[string]any{"status": "success", "data": data}
	if len(warnings) > 0 {
		body["warnings"] = warnings
	}
	if len(infos) > 0 {
		body["infos"] = infos
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (a *promAPI) empty(data any) func(http.ResponseWriter, *http.Request, []*labels.Matcher) error {
	return func(w http.ResponseWriter, _ *http.Request, _ []*labels.Matcher) error {
		return success(w, data, nil, nil)
	}
}

// buildInfo answers Grafana's probe. Grafana reads the version to decide
// which API features to use, so it is the Prometheus version whose engine
// this is (module v0.316.0 is Prometheus 3.16.0).
func (a *promAPI) buildInfo(w http.ResponseWriter, _ *http.Request, _ []*labels.Matcher) error {
	return success(w, map[string]string{
		"version":   prometheusVersion(),
		"revision":  "",
		"branch":    "",
		"buildUser": "wanwu",
		"buildDate": "",
		"goVersion": runtime.Version(),
	}, nil, nil)
}

func prometheusVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path != "github.com/prometheus/prometheus" {
				continue
			}
			// The Go module is v0.MMmPP.x for Prometheus vMM.mm.PP... in
			// practice v0.316.0 for 3.16.0.
			parts := strings.Split(strings.TrimPrefix(m.Version, "v"), ".")
			if len(parts) == 3 {
				if n, err := strconv.Atoi(parts[1]); err == nil && n >= 100 {
					return fmt.Sprintf("%d.%d.%s", n/100, n%100, parts[2])
				}
			}
		}
	}
	return "3.16.0"
}

// enforceExpr parses qs and appends enf to every vector selector, including
// those inside matrix selectors, subqueries and function arguments.
func (a *promAPI) enforceExpr(qs string, enf []*labels.Matcher) (string, error) {
	if len(enf) == 0 {
		return qs, nil
	}
	expr, err := a.s.parser.ParseExpr(qs)
	if err != nil {
		return "", badData("invalid parameter \"query\": %v", err)
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			vs.LabelMatchers = append(slices.Clip(vs.LabelMatchers), enf...)
		}
		return nil
	})
	return expr.String(), nil
}

// queryable is the store, or the store seen through enf: the engine only
// reaches data through Select, so this holds even if the AST rewrite missed
// a selector.
func (a *promAPI) queryable(enf []*labels.Matcher) storage.Queryable {
	if len(enf) == 0 {
		return a.s.db
	}
	return storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		q, err := a.s.db.Querier(mint, maxt)
		if err != nil {
			return nil, err
		}
		return &enforcedQuerier{Querier: q, enf: enf}, nil
	})
}

type enforcedQuerier struct {
	storage.Querier
	enf []*labels.Matcher
}

func (q *enforcedQuerier) Select(ctx context.Context, sort bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return q.Querier.Select(ctx, sort, hints, append(slices.Clip(ms), q.enf...)...)
}

func (q *enforcedQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.Querier.LabelValues(ctx, name, hints, append(slices.Clip(ms), q.enf...)...)
}

func (q *enforcedQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.Querier.LabelNames(ctx, hints, append(slices.Clip(ms), q.enf...)...)
}

func (a *promAPI) query(w http.ResponseWriter, r *http.Request, enf []*labels.Matcher) error {
	ts := time.Now()
	if v := r.FormValue("time"); v != "" {
		var err error
		if ts, err = parseTime(v); err != nil {
			return badData("invalid parameter \"time\": %v", err)
		}
	}
	return a.runQuery(w, r, enf, func(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string) (promql.Query, error) {
		return a.s.engine.NewInstantQuery(ctx, q, opts, qs, ts)
	})
}

func (a *promAPI) queryRange(w http.ResponseWriter, r *http.Request, enf []*labels.Matcher) error {
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		return badData("invalid parameter \"start\": %v", err)
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		return badData("invalid parameter \"end\": %v", err)
	}
	if end.Before(start) {
		return badData("invalid parameter \"end\": end timestamp must not be before start time")
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		return badData("invalid parameter \"step\": %v", err)
	}
	if step <= 0 {
		return badData("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer")
	}
	if end.Sub(start)/step > MaxPointsPerSeries {
		return badData("exceeded maximum resolution of %d points per timeseries. Try decreasing the query resolution (?step=XX)", MaxPointsPerSeries)
	}
	return a.runQuery(w, r, enf, func(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string) (promql.Query, error) {
		return a.s.engine.NewRangeQuery(ctx, q, opts, qs, start, end, step)
	})
}

type newQueryFunc func(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string) (promql.Query, error)

func (a *promAPI) runQuery(w http.ResponseWriter, r *http.Request, enf []*labels.Matcher, newQuery newQueryFunc) error {
	ctx := r.Context()
	if v := r.FormValue("timeout"); v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return badData("invalid parameter \"timeout\": %v", err)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var lookback time.Duration
	if v := r.FormValue("lookback_delta"); v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return badData("invalid parameter \"lookback_delta\": %v", err)
		}
		lookback = d
	}
	qs, err := a.enforceExpr(r.FormValue("query"), enf)
	if err != nil {
		return err
	}
	release, err := a.s.acquire()
	if err != nil {
		return &apiError{typ: errUnavailable, msg: "telemetry store is shut down"}
	}
	defer release()

	q, err := newQuery(ctx, a.queryable(enf), promql.NewPrometheusQueryOpts(false, lookback, nil), qs)
	if err != nil {
		return badData("invalid parameter \"query\": %v", err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return queryError(res.Err)
	}
	warnings, infos := res.Warnings.AsStrings(qs, 10, 10)
	data, err := encodeResult(res.Value)
	if err != nil {
		return err
	}
	return success(w, data, warnings, infos)
}

// queryError maps engine errors to Prometheus' error types.
func queryError(err error) error {
	var (
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
		stor     promql.ErrStorage
	)
	switch {
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return &apiError{typ: errTimeout, msg: err.Error()}
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		return &apiError{typ: errCanceled, msg: err.Error()}
	case errors.As(err, &stor):
		return &apiError{typ: errInternal, msg: "internal error", err: err}
	}
	return &apiError{typ: errExec, msg: err.Error()}
}

// matcherSets parses match[] and forces enf onto each set; with no match[]
// and enf given, enf alone is the one set.
func (a *promAPI) matcherSets(r *http.Request, enf []*labels.Matcher) ([][]*labels.Matcher, error) {
	var sets [][]*labels.Matcher
	for _, m := range r.Form["match[]"] {
		ms, err := a.s.parser.ParseMetricSelector(m)
		if err != nil {
			return nil, badData("invalid parameter \"match[]\": %v", err)
		}
		sets = append(sets, append(ms, enf...))
	}
	if len(sets) == 0 && len(enf) > 0 {
		sets = [][]*labels.Matcher{enf}
	}
	return sets, nil
}

func parseRange(r *http.Request) (mint, maxt int64, err error) {
	start, end := minTime, maxTime
	if v := r.FormValue("start"); v != "" {
		if start, err = parseTime(v); err != nil {
			return 0, 0, badData("invalid parameter \"start\": %v", err)
		}
	}
	if v := r.FormValue("end"); v != "" {
		if end, err = parseTime(v); err != nil {
			return 0, 0, badData("invalid parameter \"end\": %v", err)
		}
	}
	if end.Before(start) {
		return 0, 0, badData("invalid parameter \"end\": end timestamp must not be before start time")
	}
	return start.UnixMilli(), end.UnixMilli(), nil
}

func parseLimit(r *http.Request) (int, error) {
	v := r.FormValue("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, badData("invalid parameter \"limit\": want a non-negative integer")
	}
	return n, nil
}

func (a *promAPI) series(w http.ResponseWriter, r *http.Request, enf []*labels.Matcher) error {
	if len(r.Form["match[]"]) == 0 {
		return badData("no match[] parameter provided")
	}
	m, err := a.openMeta(r, enf, "series")
	if err != nil {
		return err
	}
	defer m.close()
	sets, q, limit := m.sets, m.q, m.limit

	hints := &storage.SelectHints{Start: m.mint, End: m.maxt, Func: "series", Limit: m.limit}
	var found []labels.Labels
	seen := map[string]bool{}
	for _, ms := range sets {
		set := q.Select(r.Context(), false, hints, ms...)
		for set.Next() {
			lset := set.At().Labels()
			if k := lset.String(); !seen[k] {
				seen[k] = true
				found = append(found, lset)
			}
		}
		if err := set.Err(); err != nil {
			return fmt.Errorf("series: %w", err)
		}
	}
	slices.SortFunc(found, labels.Compare)
	var warnings []string
	if limit > 0 && len(found) > limit {
		found = found[:limit]
		warnings = append(warnings, "results truncated due to limit")
	}
	data := make([]map[string]string, len(found))
	for i, l := range found {
		data[i] = l.Map()
	}
	return success(w, data, warnings, nil)
}

func (a *promAPI) labelNames(w http.ResponseWriter, r *http.Request, enf []*labels.Matcher) error {
	return a.labelQuery(w, r, enf, func(ctx context.Context, q storage.Querier, hints *storage.LabelHints, ms []*labels.Matcher) ([]string, error) {
		names, _, err := q.LabelNames(ctx, hints, ms...)
		return names, err
	})
}

func (a *promAPI) labelValues(w http.ResponseWriter, r *http.Request, enf []*labels.Matcher) error {
	name := r.PathValue("name")
	// Prometheus 3 clients escape UTF-8 names in the path this way.
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if !model.LabelName(name).IsValid() {
		return badData("invalid label name: %q", name)
	}
	return a.labelQuery(w, r, enf, func(ctx context.Context, q storage.Querier, hints *storage.LabelHints, ms []*labels.Matcher) ([]string, error) {
		vals, _, err := q.LabelValues(ctx, name, hints, ms...)
		return vals, err
	})
}

// labelQuery runs get once per matcher set (or once unrestricted) and merges.
func (a *promAPI) labelQuery(w http.ResponseWriter, r *http.Request, enf []*labels.Matcher,
	get func(ctx context.Context, q storage.Querier, hints *storage.LabelHints, ms []*labels.Matcher) ([]string, error),
) error {
	m, err := a.openMeta(r, enf, "labels")
	if err != nil {
		return err
	}
	defer m.close()
	sets, q, limit := m.sets, m.q, m.limit

	hints := &storage.LabelHints{Limit: limit}
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	var out []string
	for _, ms := range sets {
		vals, err := get(r.Context(), q, hints, ms)
		if err != nil {
			return fmt.Errorf("labels: %w", err)
		}
		out = append(out, vals...)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	var warnings []string
	if limit > 0 && len(out) > limit {
		out = out[:limit]
		warnings = append(warnings, "results truncated due to limit")
	}
	if out == nil {
		out = []string{}
	}
	return success(w, out, warnings, nil)
}

// parseTime accepts what Prometheus accepts: Unix seconds with an optional
// fraction (Grafana's form) or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("missing")
	}
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(t)
		frac = math.Round(frac*1000) / 1000
		return time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch s {
	case minTime.Format(time.RFC3339Nano):
		return minTime, nil
	case maxTime.Format(time.RFC3339Nano):
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration accepts seconds with an optional fraction or a Prometheus
// duration ("15s", "1m30s").
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("missing")
	}
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if ts > float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

// metaQuery is what the series and label endpoints share: the enforced
// matcher sets, the time range and limit, and an open querier.
type metaQuery struct {
	sets       [][]*labels.Matcher
	mint, maxt int64
	limit      int
	q          storage.Querier
	close      func()
}

func (a *promAPI) openMeta(r *http.Request, enf []*labels.Matcher, what string) (*metaQuery, error) {
	m := &metaQuery{}
	var err error
	if m.sets, err = a.matcherSets(r, enf); err != nil {
		return nil, err
	}
	if m.mint, m.maxt, err = parseRange(r); err != nil {
		return nil, err
	}
	if m.limit, err = parseLimit(r); err != nil {
		return nil, err
	}
	release, err := a.s.acquire()
	if err != nil {
		return nil, &apiError{typ: errUnavailable, msg: "telemetry store is shut down"}
	}
	if m.q, err = a.s.db.Querier(m.mint, m.maxt); err != nil {
		release()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	m.close = func() {
		m.q.Close()
		release()
	}
	return m, nil
}

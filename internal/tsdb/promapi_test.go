package tsdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
)

// promFixture holds temp for tenant a (two devices, values 1 and 2) and
// tenant b (three devices, value 100), every 15s over the last 10 minutes,
// and hum for both tenants.
func promFixture(t *testing.T) (*Store, time.Time) {
	t.Helper()
	s := openStore(t, Options{})
	now := time.Now().Truncate(time.Second)
	var batch []Sample
	for ts := now.Add(-10 * time.Minute); !ts.After(now); ts = ts.Add(15 * time.Second) {
		for i, v := range []float64{1, 2} {
			batch = append(batch, Sample{lbl("__name__", "temp", "tenant", "a", "dev", fmt.Sprint("a", i)), ts.UnixMilli(), v})
		}
		for i := range 3 {
			batch = append(batch, Sample{lbl("__name__", "temp", "tenant", "b", "dev", fmt.Sprint("b", i)), ts.UnixMilli(), 100})
		}
		batch = append(batch,
			Sample{lbl("__name__", "hum", "tenant", "a", "dev", "a0"), ts.UnixMilli(), 40},
			Sample{lbl("__name__", "hum", "tenant", "b", "dev", "b0"), ts.UnixMilli(), 60})
	}
	mustAppend(t, s, batch)
	return s, now
}

type promResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

type queryResult struct {
	ResultType string `json:"resultType"`
	Result     []struct {
		Metric map[string]string `json:"metric"`
		Value  []any             `json:"value"`
		Values [][]any           `json:"values"`
	} `json:"result"`
}

// do sends one request; a non-nil form is sent as a POST body.
func do(t *testing.T, srv *httptest.Server, method, path string, form url.Values) (int, promResponse) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	var pr promResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		t.Fatalf("%s %s: decode: %v", method, path, err)
	}
	return resp.StatusCode, pr
}

func secs(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64) }

// TestGrafanaRequests replays the requests Grafana 10/11's Prometheus data
// source sends (POST with form bodies for queries, GET for metadata) and
// checks the response shapes it parses.
func TestGrafanaRequests(t *testing.T) {
	s, now := promFixture(t)
	srv := httptest.NewServer(s.PromAPI("/prometheus", nil))
	defer srv.Close()
	start, end := now.Add(-5*time.Minute).Add(123*time.Millisecond), now

	tests := []struct {
		name, method, path string
		form               url.Values
		check              func(t *testing.T, data json.RawMessage)
	}{
		{"buildinfo", "GET", "/prometheus/api/v1/status/buildinfo", nil, func(t *testing.T, data json.RawMessage) {
			var bi map[string]string
			mustUnmarshal(t, data, &bi)
			if !strings.HasPrefix(bi["version"], "3.") {
				t.Errorf("version = %q, want 3.x", bi["version"])
			}
		}},
		{"query_range", "POST", "/prometheus/api/v1/query_range", url.Values{
			"query": {`sum by (tenant) (rate(temp[1m])) + sum by (tenant) (temp)`},
			"start": {secs(start)}, "end": {secs(end)}, "step": {"15"},
		}, func(t *testing.T, data json.RawMessage) {
			var qr queryResult
			mustUnmarshal(t, data, &qr)
			if qr.ResultType != "matrix" || len(qr.Result) != 2 {
				t.Fatalf("got %s with %d series, want matrix with 2", qr.ResultType, len(qr.Result))
			}
			for _, r := range qr.Result {
				if len(r.Values) != 20 { // 5 minutes at 15s from start; end falls 123ms short of a 21st
					t.Errorf("%v: %d points, want 20", r.Metric, len(r.Values))
				}
				checkPair(t, r.Values[0])
			}
			if v := qr.Result[0].Values[0][1]; qr.Result[0].Metric["tenant"] != "a" || v != "3" {
				t.Errorf("first series %v value %v, want tenant a value \"3\"", qr.Result[0].Metric, v)
			}
		}},
		{"query", "POST", "/prometheus/api/v1/query", url.Values{"query": {`temp{tenant="a"}`}, "time": {secs(now)}},
			func(t *testing.T, data json.RawMessage) {
				var qr queryResult
				mustUnmarshal(t, data, &qr)
				if qr.ResultType != "vector" || len(qr.Result) != 2 {
					t.Fatalf("got %s with %d samples, want vector with 2", qr.ResultType, len(qr.Result))
				}
				checkPair(t, qr.Result[0].Value)
				if qr.Result[0].Metric["__name__"] != "temp" || qr.Result[0].Value[1] != "1" {
					t.Errorf("sample %+v", qr.Result[0])
				}
			}},
		{"query scalar", "POST", "/prometheus/api/v1/query", url.Values{"query": {`1+1`}, "time": {"1700000000.5"}},
			func(t *testing.T, data json.RawMessage) {
				if got := string(data); got != `{"resultType":"scalar","result":[1700000000.500,"2"]}` {
					t.Errorf("data = %s", got)
				}
			}},
		{"query GET", "GET", "/prometheus/api/v1/query?query=" + url.QueryEscape("count(hum)"), nil,
			func(t *testing.T, data json.RawMessage) {
				var qr queryResult
				mustUnmarshal(t, data, &qr)
				if len(qr.Result) != 1 || qr.Result[0].Value[1] != "2" {
					t.Errorf("count(hum) = %+v", qr.Result)
				}
			}},
		{"labels", "GET", "/prometheus/api/v1/labels?start=" + secs(start) + "&end=" + secs(end), nil, func(t *testing.T, data json.RawMessage) {
			wantStrings(t, data, "__name__", "dev", "tenant")
		}},
		{"labels with match", "GET", "/prometheus/api/v1/labels?match[]=hum", nil, func(t *testing.T, data json.RawMessage) {
			wantStrings(t, data, "__name__", "dev", "tenant")
		}},
		{"metric names", "GET", "/prometheus/api/v1/label/__name__/values", nil, func(t *testing.T, data json.RawMessage) {
			wantStrings(t, data, "hum", "temp")
		}},
		{"label values with match", "GET", "/prometheus/api/v1/label/dev/values?match[]=" + url.QueryEscape(`temp{tenant="b"}`) +
			"&start=" + secs(start) + "&end=" + secs(end), nil, func(t *testing.T, data json.RawMessage) {
			wantStrings(t, data, "b0", "b1", "b2")
		}},
		{"series", "GET", "/prometheus/api/v1/series?match[]=" + url.QueryEscape(`temp{dev=~"a.*"}`) + "&start=" + secs(start) + "&end=" + secs(end), nil,
			func(t *testing.T, data json.RawMessage) {
				var series []map[string]string
				mustUnmarshal(t, data, &series)
				if len(series) != 2 || series[0]["dev"] != "a0" || series[1]["__name__"] != "temp" {
					t.Errorf("series = %v", series)
				}
			}},
		{"series POST", "POST", "/prometheus/api/v1/series", url.Values{"match[]": {"hum", `temp{dev="b1"}`}}, func(t *testing.T, data json.RawMessage) {
			var series []map[string]string
			mustUnmarshal(t, data, &series)
			if len(series) != 3 {
				t.Errorf("series = %v", series)
			}
		}},
		{"metadata", "GET", "/prometheus/api/v1/metadata", nil, func(t *testing.T, data json.RawMessage) {
			if string(data) != "{}" {
				t.Errorf("data = %s", data)
			}
		}},
		{"exemplars", "POST", "/prometheus/api/v1/query_exemplars", url.Values{"query": {"temp"}, "start": {secs(start)}, "end": {secs(end)}},
			func(t *testing.T, data json.RawMessage) {
				if string(data) != "[]" {
					t.Errorf("data = %s", data)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, pr := do(t, srv, tt.method, tt.path, tt.form)
			if code != http.StatusOK || pr.Status != "success" {
				t.Fatalf("status %d %+v", code, pr)
			}
			tt.check(t, pr.Data)
		})
	}
}

func TestPromAPIErrors(t *testing.T) {
	s, now := promFixture(t)
	srv := httptest.NewServer(s.PromAPI("/prometheus/", nil))
	defer srv.Close()
	tests := []struct {
		name, method, path string
		form               url.Values
		code               int
		errType            string
	}{
		{"syntax error", "POST", "/prometheus/api/v1/query", url.Values{"query": {"sum(temp"}}, 400, "bad_data"},
		{"empty query", "POST", "/prometheus/api/v1/query", url.Values{}, 400, "bad_data"},
		{"bad time", "POST", "/prometheus/api/v1/query", url.Values{"query": {"temp"}, "time": {"yesterday"}}, 400, "bad_data"},
		{"no step", "POST", "/prometheus/api/v1/query_range", url.Values{"query": {"temp"}, "start": {"1"}, "end": {"2"}}, 400, "bad_data"},
		{"too many points", "POST", "/prometheus/api/v1/query_range", url.Values{"query": {"temp"}, "start": {"0"}, "end": {secs(now)}, "step": {"1"}}, 400, "bad_data"},
		{"series without match", "GET", "/prometheus/api/v1/series", nil, 400, "bad_data"},
		{"bad match", "GET", "/prometheus/api/v1/labels?match[]=" + url.QueryEscape("{"), nil, 400, "bad_data"},
		{"execution error", "POST", "/prometheus/api/v1/query", url.Values{"query": {`label_replace(temp, "dev", "x", "", "")`}, "time": {secs(now)}}, 422, "execution"},
		{"method", "DELETE", "/prometheus/api/v1/query", nil, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, pr := do(t, srv, tt.method, tt.path, tt.form)
			if code != tt.code || pr.Status != "error" || pr.ErrorType != tt.errType || pr.Error == "" {
				t.Fatalf("got %d %+v, want %d %s", code, pr, tt.code, tt.errType)
			}
		})
	}
}

func TestEnforcement(t *testing.T) {
	s, now := promFixture(t)
	var enforceErr error
	srv := httptest.NewServer(s.PromAPI("/prometheus", func(r *http.Request) ([]Matcher, error) {
		return []Matcher{{Name: "tenant", Op: "=", Value: "a"}}, enforceErr
	}))
	defer srv.Close()
	ts := secs(now)

	// Tenant a's temp series hold 1 and 2, tenant b's three hold 100; any
	// leak of b shows in the numbers.
	instant := []struct{ query, want string }{
		{`count(temp)`, "2"},
		{`count(temp{})`, "2"},
		{`sum(temp)`, "3"},
		{`count({__name__=~".+"})`, "3"},
		{`count(temp{tenant="b"}) or vector(0)`, "0"},
		{`count(temp{tenant!="a"}) or vector(0)`, "0"},
		{`sum(max_over_time(temp[5m]))`, "3"},
		{`sum(rate(temp[5m])) + sum(temp * 2)`, "6"},
		{`sum(max_over_time(sum by (dev) (temp)[5m:1m]))`, "3"},            // subquery
		{`sum(avg_over_time((temp + on(dev) group_left hum)[5m:]))`, "41"}, // binary expr inside subquery: a0 1+40; a1 has no hum
		{`count(label_replace(temp, "tenant", "b", "", ""))`, "2"},
		{`sum(temp @ end())`, "3"},
		{`sum(temp offset 1m)`, "3"},
		{`absent(temp{tenant="b"})`, "1"},
		{`count(count by (tenant) (hum))`, "1"},
	}
	for _, tt := range instant {
		t.Run(tt.query, func(t *testing.T) {
			code, pr := do(t, srv, "POST", "/prometheus/api/v1/query", url.Values{"query": {tt.query}, "time": {ts}})
			if code != 200 {
				t.Fatalf("status %d %+v", code, pr)
			}
			var qr queryResult
			mustUnmarshal(t, pr.Data, &qr)
			if len(qr.Result) != 1 || qr.Result[0].Value[1] != tt.want {
				t.Fatalf("result %+v, want one sample of %s", qr.Result, tt.want)
			}
		})
	}

	t.Run("range query sees only tenant a", func(t *testing.T) {
		code, pr := do(t, srv, "POST", "/prometheus/api/v1/query_range", url.Values{
			"query": {`{__name__=~"temp|hum"}`}, "start": {secs(now.Add(-time.Minute))}, "end": {ts}, "step": {"30"}})
		if code != 200 {
			t.Fatalf("status %d %+v", code, pr)
		}
		var qr queryResult
		mustUnmarshal(t, pr.Data, &qr)
		if len(qr.Result) != 3 {
			t.Errorf("%d series, want 3", len(qr.Result))
		}
		for _, r := range qr.Result {
			if r.Metric["tenant"] != "a" {
				t.Errorf("leaked %v", r.Metric)
			}
		}
	})

	t.Run("metadata endpoints", func(t *testing.T) {
		for path, want := range map[string][]string{
			"/prometheus/api/v1/label/tenant/values":                                         {"a"},
			"/prometheus/api/v1/label/dev/values":                                            {"a0", "a1"},
			"/prometheus/api/v1/label/dev/values?match[]=" + url.QueryEscape(`{tenant="b"}`): {},
			"/prometheus/api/v1/label/dev/values?match[]=hum":                                {"a0"},
			"/prometheus/api/v1/labels":                                                      {"__name__", "dev", "tenant"},
		} {
			code, pr := do(t, srv, "GET", path, nil)
			if code != 200 {
				t.Fatalf("%s: status %d %+v", path, code, pr)
			}
			var got []string
			mustUnmarshal(t, pr.Data, &got)
			if !slices.Equal(got, want) {
				t.Errorf("%s = %v, want %v", path, got, want)
			}
		}
		code, pr := do(t, srv, "GET", "/prometheus/api/v1/series?match[]=temp&match[]="+url.QueryEscape(`{dev=~"b.*"}`), nil)
		var series []map[string]string
		mustUnmarshal(t, pr.Data, &series)
		if code != 200 || len(series) != 2 || series[0]["tenant"] != "a" || series[1]["tenant"] != "a" {
			t.Errorf("series: %d %v", code, series)
		}
	})

	t.Run("rewritten expression", func(t *testing.T) {
		a := &promAPI{s: s}
		enf, _ := toMatchers([]Matcher{{Name: "tenant", Value: "a"}})
		got, err := a.enforceExpr(`rate(x[5m]) / on(dev) group_left max_over_time(y{k="v"}[1h:1m] offset 5m)`, enf)
		if err != nil {
			t.Fatal(err)
		}
		want := `rate(x{tenant="a"}[5m]) / on (dev) group_left () max_over_time(y{k="v",tenant="a"}[1h:1m] offset 5m)`
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})

	for _, tt := range []struct {
		err     error
		code    int
		errType string
	}{
		{fmt.Errorf("token: %w", auth.ErrUnauthenticated), 401, "unauthorized"},
		{fmt.Errorf("tenant: %w", auth.ErrForbidden), 403, "forbidden"},
		{ErrForbidden, 403, "forbidden"},
		{errors.New("database down"), 500, "internal"},
	} {
		t.Run(tt.errType, func(t *testing.T) {
			enforceErr = tt.err
			defer func() { enforceErr = nil }()
			code, pr := do(t, srv, "POST", "/prometheus/api/v1/query", url.Values{"query": {"temp"}})
			if code != tt.code || pr.Status != "error" || pr.ErrorType != tt.errType {
				t.Fatalf("got %d %+v, want %d %s", code, pr, tt.code, tt.errType)
			}
			if tt.code == 500 && strings.Contains(pr.Error, "database") {
				t.Errorf("internal detail leaked: %q", pr.Error)
			}
		})
	}
}

func checkPair(t *testing.T, pair []any) {
	t.Helper()
	if len(pair) != 2 {
		t.Fatalf("pair %v: want [ts, \"value\"]", pair)
	}
	if _, ok := pair[0].(float64); !ok {
		t.Errorf("timestamp %v (%T) is not a number", pair[0], pair[0])
	}
	if _, ok := pair[1].(string); !ok {
		t.Errorf("value %v (%T) is not a string", pair[1], pair[1])
	}
}

func wantStrings(t *testing.T, data json.RawMessage, want ...string) {
	t.Helper()
	var got []string
	mustUnmarshal(t, data, &got)
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func mustUnmarshal(t *testing.T, data json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("unmarshal %s: %v", data, err)
	}
}

func TestTimestampFormat(t *testing.T) {
	for ms, want := range map[int64]string{0: "0", 1500: "1.500", 1700000000001: "1700000000.001", 1700000000120: "1700000000.120", -1500: "-1.500"} {
		if got := string(appendTimestamp(nil, ms)); got != want {
			t.Errorf("appendTimestamp(%d) = %s, want %s", ms, got, want)
		}
	}
}

func TestPromAPIClosed(t *testing.T) {
	s := openStore(t, Options{})
	srv := httptest.NewServer(s.PromAPI("/prometheus", nil))
	defer srv.Close()
	s.Close()
	code, pr := do(t, srv, "POST", "/prometheus/api/v1/query", url.Values{"query": {"up"}})
	if code != http.StatusServiceUnavailable || pr.ErrorType != "unavailable" {
		t.Fatalf("got %d %+v", code, pr)
	}
}

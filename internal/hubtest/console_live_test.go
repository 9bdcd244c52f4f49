package hubtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
)

// liveModel has two numeric properties with units and a string one.
const liveModel = `{"id":"acme:meter","version":"1.0.0","properties":{
 "temperature":{"type":"number","unit":"Cel","description":"water temperature"},
 "rpm":{"type":"integer","unit":"1/min"},
 "mode":{"type":"string"}}}`

// sseEvent is one server-sent event.
type sseEvent struct{ Name, Data string }

// liveStream is an open GET /objects/{code}/live, read by a goroutine.
type liveStream struct {
	Resp   *http.Response
	Events chan sseEvent // closed at the stream's end
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// openLive opens a live stream with the browser's session cookie; the
// stream is closed when the test ends, or by close.
func openLive(t *testing.T, b *consoletest.Browser, path string) *liveStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.Base+path, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := b.C.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	s := &liveStream{Resp: resp, Events: make(chan sseEvent, 64), cancel: cancel}
	t.Cleanup(s.close)
	if resp.StatusCode != http.StatusOK {
		close(s.Events)
		return s
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.Events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Name != "" {
					select {
					case s.Events <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.Name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.Data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return s
}

func (s *liveStream) close() {
	s.cancel()
	s.Resp.Body.Close()
	s.wg.Wait()
}

// next waits for the next event named name (others are skipped); ok is
// false when the stream ended or nothing came within d.
func (s *liveStream) next(name string, d time.Duration) (sseEvent, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, open := <-s.Events:
			if !open {
				return sseEvent{}, false
			}
			if ev.Name == name {
				return ev, true
			}
		case <-timer.C:
			return sseEvent{}, false
		}
	}
}

// ended says whether the stream ends within d (events before the end are
// skipped).
func (s *liveStream) ended(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case _, open := <-s.Events:
			if !open {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

type liveValue struct {
	Property string
	Time     time.Time
	Value    any
}

var seriesRE = regexp.MustCompile(`data-chart="telemetry" data-property="([a-z]+)" data-series="([^"]*)"`)

// charts reads the telemetry charts' data from a page.
func charts(t *testing.T, body string) map[string]struct {
	Unit  string
	Range int64
	T     []float64
	V     []*float64
} {
	t.Helper()
	out := map[string]struct {
		Unit  string
		Range int64
		T     []float64
		V     []*float64
	}{}
	for _, m := range seriesRE.FindAllStringSubmatch(body, -1) {
		var s struct {
			Unit  string
			Range int64
			T     []float64
			V     []*float64
		}
		if err := json.Unmarshal([]byte(html.UnescapeString(m[2])), &s); err != nil {
			t.Fatalf("chart %s: %v: %s", m[1], err, m[2])
		}
		out[m[1]] = s
	}
	return out
}

// TestConsoleLive: the object page's Telemetry section shows the latest
// values with the model's units and a chart per numeric property over the
// range chosen (the step follows it), the range picker's fragment route
// answers htmx with the section alone, the live stream sends a value sent
// after it opened and ends with "signedout" when the token is revoked or
// the session ends; streams are bounded per session; another tenant's
// token finds nothing; an object without a model or data says how values
// arrive.
func TestConsoleLive(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "beta"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(liveModel))
	d := register(t, h, "acme:m-1", "--model", "acme:meter@1.0.0")
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:bare"})
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:m-2", "model": map[string]string{"id": "acme:meter", "version": "1.0.0"}})
	send := func(body string) {
		t.Helper()
		if a := postIngest(t, http.DefaultClient, h.URL+"/api/v1/ingest/acme:m-1/telemetry", d.token(t), "application/json", body); a.StatusCode != http.StatusNoContent {
			t.Fatalf("ingest %s: %d %s", body, a.StatusCode, a.body)
		}
	}
	now := time.Now().Unix()
	send(fmt.Sprintf(`{"temperature": 20, "rpm": 1100, "ts": %d}`, now-20*60))
	send(fmt.Sprintf(`{"temperature": 21, "rpm": 1150, "ts": %d}`, now-10*60))
	send(fmt.Sprintf(`{"temperature": 21.5, "rpm": 1200, "mode": "auto", "ts": %d}`, now-5))
	eventually(t, "the values stored", func() error {
		if v := latest(t, h, "acme:m-1"); v["temperature"].Value != 21.5 || v["mode"].Value != "auto" {
			return fmt.Errorf("latest = %+v", v)
		}
		return nil
	})

	b := consoletest.New(t, h.URL, nil)
	page := b.MustSignIn(h.AdminToken, "/objects/acme:m-1")
	text := page.Text()
	for _, want := range []string{"Telemetry", "temperature water temperature 21.5 Cel", "rpm 1200 1/min", "mode auto", "Averages per 15 s over the last 1 h"} {
		if !strings.Contains(text, want) {
			t.Errorf("the page lacks %q: %s", want, text)
		}
	}
	for _, want := range []string{`/static/vendor/uplot/uPlot.iife.min.js`, `/static/live.js`, `data-live="/objects/acme:m-1/live"`, `aria-current="true">1 h</a>`} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	cs := charts(t, page.Body)
	if len(cs) != 2 || cs["temperature"].Unit != "Cel" || cs["rpm"].Unit != "1/min" || cs["temperature"].Range != 3600 {
		t.Fatalf("charts: %+v", cs)
	}
	if temp := cs["temperature"]; len(temp.T) < 3 || len(temp.T) > 300 || len(temp.T) != len(temp.V) || *temp.V[len(temp.V)-1] != 21.5 {
		t.Errorf("temperature chart: %d times, %d values", len(temp.T), len(temp.V))
	}

	// A wider range, a longer step.
	wide := b.MustGet(http.StatusOK, "/objects/acme:m-1?range=24h")
	if !strings.Contains(wide.Text(), "Averages per 5 min over the last 24 h") || !strings.Contains(wide.Body, `aria-current="true">24 h</a>`) {
		t.Errorf("24 h: %s", wide.Text())
	}
	if c := charts(t, wide.Body)["temperature"]; c.Range != 86400 || len(c.T) < 2 || len(c.T) > 300 {
		t.Errorf("24 h chart: %+v", c)
	}

	// The range picker's route: the section alone for htmx; the page for a
	// browser without it.
	frag := b.MustGet(http.StatusOK, "/objects/acme:m-1/telemetry?range=6h", b.HX("/objects/acme:m-1")...)
	if !strings.HasPrefix(strings.TrimSpace(frag.Body), `<section id="telemetry"`) || strings.Contains(frag.Body, "<html") || !strings.Contains(frag.Text(), "Averages per 2 min over the last 6 h") {
		t.Errorf("fragment: %s", frag.Body)
	}
	if a := b.Get("/objects/acme:m-1/telemetry?range=6h"); a.Status != http.StatusSeeOther || a.Location() != "/objects/acme:m-1?range=6h#telemetry" {
		t.Errorf("fragment without htmx: %d to %q", a.Status, a.Location())
	}

	// Empty states: no model and no data; a model and no data.
	bare := b.MustGet(http.StatusOK, "/objects/acme:bare").Text()
	for _, want := range []string{"No values yet, and the object has no thing model", "wanwu/v1/acme/bare/telemetry", "wanwu ctl telemetry latest acme:bare"} {
		if !strings.Contains(bare, want) {
			t.Errorf("acme:bare lacks %q: %s", want, bare)
		}
	}
	if m2 := b.MustGet(http.StatusOK, "/objects/acme:m-2"); !strings.Contains(m2.Text(), "No values yet in the last 7 days") || !strings.Contains(m2.Text(), "temperature water temperature no value yet Cel") || strings.Contains(m2.Body, `data-chart="telemetry"`) {
		t.Errorf("acme:m-2: %s", m2.Text())
	}

	// The live stream: the values now, then a value sent after it opened.
	s := openLive(t, b, "/objects/acme:m-1/live")
	if s.Resp.StatusCode != http.StatusOK {
		t.Fatalf("live: %d", s.Resp.StatusCode)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := s.Resp.Header.Get(k); got != want {
			t.Errorf("live %s: %q, want %q", k, got, want)
		}
	}
	ev, ok := s.next("values", 5*time.Second)
	if !ok || !strings.Contains(ev.Data, `"property":"temperature"`) || !strings.Contains(ev.Data, `"value":21.5`) {
		t.Fatalf("the first event: %+v", ev)
	}
	send(`{"temperature": 22.5}`)
	ev, ok = s.next("values", 5*time.Second)
	var vals []liveValue
	if ok {
		if err := json.Unmarshal([]byte(ev.Data), &vals); err != nil {
			t.Fatal(err)
		}
	}
	if len(vals) != 1 || vals[0].Property != "temperature" || vals[0].Value != 22.5 || time.Since(vals[0].Time) > time.Minute {
		t.Fatalf("the new value: %+v (%s)", vals, ev.Data)
	}

	// At most 8 streams per session: 7 more open, the ninth is refused.
	for i := 0; i < 7; i++ {
		if s := openLive(t, b, "/objects/acme:m-1/live"); s.Resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d", i+2, s.Resp.StatusCode)
		}
	}
	if r := h.Do("GET", "/metrics", "", nil); !strings.Contains(string(r.Body), "wanwu_console_live_streams 8") {
		t.Error("the gauge does not count 8 streams")
	}
	if over := openLive(t, b, "/objects/acme:m-1/live"); over.Resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the ninth stream: %d", over.Resp.StatusCode)
	}

	// Signing out ends the session's streams.
	if a := b.Change("/signout", nil); a.Status != http.StatusSeeOther {
		t.Fatalf("sign out: %d", a.Status)
	}
	if _, ok := s.next("signedout", 5*time.Second); !ok {
		t.Error("no signedout event after signing out")
	}
	if !s.ended(5 * time.Second) {
		t.Error("the stream goes on after signedout")
	}

	// A revoked token's stream ends with signedout.
	var tok struct{ Secret string }
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "acme-viewer", "role": "viewer", "tenant": "acme"}).JSON(t, &tok)
	viewer := consoletest.New(t, h.URL, nil)
	if vp := viewer.MustSignIn(tok.Secret, "/objects/acme:m-1"); !strings.Contains(vp.Text(), "rpm 1200 1/min") {
		t.Errorf("the viewer's page: %s", vp.Text())
	}
	vs := openLive(t, viewer, "/objects/acme:m-1/live")
	if _, ok := vs.next("values", 5*time.Second); !ok {
		t.Fatal("the viewer's stream sends no values")
	}
	h.MustAdmin(200, "DELETE", "/api/v1/tokens/acme-viewer", nil)
	if _, ok := vs.next("signedout", 5*time.Second); !ok {
		t.Error("no signedout event after the token's revocation")
	}

	// Another tenant's token: not found, page, section and stream alike.
	h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": "beta-viewer", "role": "viewer", "tenant": "beta"}).JSON(t, &tok)
	beta := consoletest.New(t, h.URL, nil)
	beta.MustSignIn(tok.Secret, "/")
	for _, path := range []string{"/objects/acme:m-1", "/objects/acme:m-1/telemetry?range=1h", "/objects/acme:m-1/live"} {
		if a := beta.Get(path, beta.HX("/")...); a.Status != http.StatusNotFound {
			t.Errorf("beta: %s: %d", path, a.Status)
		}
	}
	if bs := openLive(t, beta, "/objects/acme:m-1/live"); bs.Resp.StatusCode != http.StatusNotFound {
		t.Errorf("beta's stream: %d", bs.Resp.StatusCode)
	}
}

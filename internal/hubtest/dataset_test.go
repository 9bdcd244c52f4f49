package hubtest

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/dataset"
)

const pumpCoreModel = `{"id":"acme:pump","version":"1.0.0","properties":{
 "flow":{"type":"number"},
 "power":{"type":"number","classification":"core"}}}`

const highFlowLoop = `
id: high-flow
tenant: acme
mode: active
placement: edge
on: {model: acme:pump}
perceive:
  flow: {property: flow, fn: last}
decide:
  when: flow > 100
act:
  alarm: {name: high-flow, severity: medium, message: "'flow ' + string(flow)"}
`

// TestDatasetsAtTheEdge: an alarm at the edge captures a window of the
// pump's data around it; the edge keeps it whole, the hub gets it without
// the series of the property classified core (its summary only). An
// operator labels it at the hub (audited), captures a window of a hub
// device on request, builds a dataset version with its quality scores and
// lineage, and exports it as Parquet that reads back.
func TestDatasetsAtTheEdge(t *testing.T) {
	now := func(c *config.Hub) {
		c.ML.CaptureAfter = config.Duration(time.Second)
		c.ML.CaptureBefore = config.Duration(time.Minute)
	}
	h := Start(t, now)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(pumpCoreModel))
	h.MustAdmin(201, "POST", "/api/v1/loops", highFlowLoop)
	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	tok := newTokenObject(t, h, map[string]any{"code": "acme:pump-1", "edge": "acme:edge-1",
		"model": map[string]string{"id": "acme:pump", "version": "1.0.0"}}).token
	e := StartEdge(t, dir, "https://"+h.HTTPSAddr(), now)
	ctx := context.Background()
	eventually(t, "the pump and the loop at the edge", func() error {
		if _, err := e.Registry().Object(ctx, "acme:pump-1"); err != nil {
			return err
		}
		var out struct{ Loops []json.RawMessage }
		edgeGet(t, e, "/api/v1/loops", &out)
		if len(out.Loops) != 1 {
			return fmt.Errorf("%d loops", len(out.Loops))
		}
		return nil
	})
	send := func(flow, power float64) {
		body, _ := json.Marshal(map[string]float64{"flow": flow, "power": power})
		req, _ := http.NewRequest("POST", e.URL()+"/api/v1/ingest/acme:pump-1/telemetry", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("telemetry: %s", resp.Status)
		}
	}
	for i := range 5 {
		send(50+float64(i), 7+float64(i)/10)
		time.Sleep(20 * time.Millisecond)
	}
	send(150, 9.5)

	type windowList struct{ Windows []dataset.Window }
	var at windowList
	eventually(t, "the windows at the hub", func() error {
		at = windowList{}
		h.MustAdmin(200, "GET", "/api/v1/ml/windows?tenant=acme", nil).JSON(t, &at)
		reasons := map[string]bool{}
		for _, w := range at.Windows {
			reasons[w.Reason] = true
		}
		if !reasons[dataset.ReasonAlarm] || !reasons[dataset.ReasonDecision] {
			return fmt.Errorf("windows at the hub: %+v", at.Windows)
		}
		return nil
	})
	var alarmWin string
	for _, w := range at.Windows {
		if w.Edge != "acme:edge-1" || w.Object != "acme:pump-1" || w.Classification != "core" || w.Loop == "" {
			t.Errorf("a window at the hub: %+v", w)
		}
		if w.Reason == dataset.ReasonAlarm {
			alarmWin = w.ID
		}
	}
	var one struct {
		Window dataset.Window
		Labels []dataset.Label
	}
	h.MustAdmin(200, "GET", "/api/v1/ml/windows/"+alarmWin+"?tenant=acme", nil).JSON(t, &one)
	if len(one.Window.Series["flow"]) != 6 || one.Window.Series["power"] != nil || one.Window.Summary["power"].N != 6 || one.Window.Summary["power"].Max != 9.5 {
		t.Fatalf("the hub's copy keeps the core series out and its summary in: %+v", one.Window)
	}
	// The edge's own copy is whole.
	ws, err := e.Datasets().Windows(ctx, dataset.Query{Tenant: "acme", Reason: dataset.ReasonAlarm, WithSeries: true})
	if err != nil || len(ws) != 1 || len(ws[0].Series["power"]) != 6 {
		t.Fatalf("the edge's copy: %+v, %v", ws, err)
	}

	// Labels, a capture on request, a dataset version and its export.
	h.MustAdmin(201, "POST", "/api/v1/ml/windows/"+alarmWin+"/labels?tenant=acme", map[string]string{"kind": "false_positive", "note": "a flush, not a leak"})
	h.MustAdmin(400, "POST", "/api/v1/ml/windows/"+alarmWin+"/labels?tenant=acme", map[string]string{"kind": "maybe"})
	h.MustAdmin(404, "POST", "/api/v1/ml/windows/w-0000000000000000/labels?tenant=acme", map[string]string{"kind": "normal"})
	hubTok := newTokenObject(t, h, map[string]any{"code": "acme:pump-2", "model": map[string]string{"id": "acme:pump", "version": "1.0.0"}}).token
	for i := range 4 {
		if r := h.Do("POST", "/api/v1/ingest/acme:pump-2/telemetry", hubTok, map[string]float64{"flow": 40 + float64(i), "power": 6}); r.Status >= 300 {
			t.Fatalf("telemetry at the hub: %d %s", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond) // the capture's resolution over 5 minutes is 30 ms
	}
	var captured struct{ Window dataset.Window }
	eventually(t, "a window captured on request", func() error {
		r := h.Admin("POST", "/api/v1/ml/windows/capture", map[string]any{"object": "acme:pump-2", "minutes": 5, "note": "steady running"})
		if r.Status != 201 {
			return fmt.Errorf("%d %s", r.Status, r.Body)
		}
		r.JSON(t, &captured)
		return nil
	})
	if captured.Window.Reason != dataset.ReasonRequest || len(captured.Window.Series["power"]) != 4 || captured.Window.Edge != "" {
		t.Fatalf("the requested window: %+v", captured.Window)
	}
	var built struct{ Dataset dataset.Manifest }
	h.MustAdmin(201, "POST", "/api/v1/ml/datasets?tenant=acme", map[string]any{"name": "pumps", "query": map[string]any{}}).JSON(t, &built)
	m := built.Dataset
	if m.Version != 1 || m.Windows != len(at.Windows)+1 || m.Labels != 2 || m.Quality.LabelCoverage <= 0 ||
		strings.Join(m.Lineage.Edges, ",") != "acme:edge-1" || len(m.Lineage.Devices) != 2 || len(m.ContentSHA256) != 64 {
		t.Fatalf("the version: %+v", m)
	}
	zr := h.MustAdmin(200, "GET", "/api/v1/ml/datasets/pumps/versions/1/export?tenant=acme", nil)
	z, err := zip.NewReader(bytes.NewReader(zr.Body), int64(len(zr.Body)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range z.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	man, err := dataset.ParseManifest(files["manifest.json"])
	if err != nil || man.ContentSHA256 != m.ContentSHA256 || len(man.Files) != 3 {
		t.Fatalf("the exported manifest: %+v, %v", man, err)
	}
	samples, err := parquet.Read[dataset.SampleRow](bytes.NewReader(files["samples.parquet"]), int64(len(files["samples.parquet"])))
	if err != nil {
		t.Fatal(err)
	}
	power := 0
	for _, s := range samples {
		if s.Property == "power" {
			power++
			if s.Object != "acme:pump-2" {
				t.Errorf("a core sample of the edge's pump left the edge: %+v", s)
			}
		}
	}
	if power != 4 || len(samples) < 4+6 {
		t.Errorf("samples: %d, power %d", len(samples), power)
	}
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(string(h.MustAdmin(200, "GET", "/api/v1/audit/entries", nil).Body)), "\n") {
		var en struct{ Kind string }
		_ = json.Unmarshal([]byte(line), &en)
		if strings.HasPrefix(en.Kind, "dataset.") {
			kinds = append(kinds, en.Kind)
		}
	}
	if strings.Join(kinds, " ") != "dataset.labeled dataset.labeled dataset.built" {
		t.Errorf("dataset audit entries: %v", kinds)
	}
}

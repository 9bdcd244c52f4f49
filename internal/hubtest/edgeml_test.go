package hubtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestEdgeMLScoresOffline: a model registered at the hub reaches the edge
// whose loop uses it (placement: edge), verified with the hub's key; with
// the link cut and the edge restarted, the device behind it reports the
// reference's anomalous row, and the edge's loop acts on the model's
// score on its own, its evidence carrying the model's version and
// scores; once the link is back the hub holds that evidence too.
func TestEdgeMLScoresOffline(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(sensor8Model))
	meta, model, rows := pca8(t)
	h.MustAdmin(201, "POST", "/api/v1/ml/models?tenant=acme", map[string]any{"meta": rawJSON(meta), "onnx": model})
	h.MustAdmin(201, "POST", "/api/v1/loops", strings.Replace(anomalyLoop, "placement: hub", "placement: edge", 1))

	var target atomic.Value
	target.Store(h.HTTPSAddr())
	proxy := NewLinkProxy(t, func() string { return target.Load().(string) })
	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	tok := newTokenObject(t, h, map[string]any{"code": "acme:odd-1", "edge": "acme:edge-1",
		"model": map[string]string{"id": "acme:sensor8", "version": "1.0.0"}}).token
	e := StartEdge(t, dir, "https://"+proxy.Addr())

	ctx := context.Background()
	eventually(t, "the model, the loop and the device at the edge", func() error {
		recs, err := e.MLModels().List(ctx, "acme")
		if err != nil {
			return err
		}
		if len(recs) != 1 || recs[0].ID != "pca8-reference" || recs[0].Version != "1" {
			return fmt.Errorf("models at the edge: %+v", recs)
		}
		var out struct {
			Loops []struct {
				Loop struct{ Key string } `json:"loop"`
			} `json:"loops"`
		}
		edgeGet(t, e, "/api/v1/loops", &out)
		if len(out.Loops) != 1 || out.Loops[0].Loop.Key != "acme:anomaly" {
			return fmt.Errorf("loops at the edge: %+v", out.Loops)
		}
		_, err = e.Registry().Object(ctx, "acme:odd-1")
		return err
	})
	got, err := e.MLModels().Get(ctx, "acme", "pca8-reference", "1")
	if err != nil || !bytes.Equal(got.ONNX, model) {
		t.Fatalf("the edge's copy: %v", err)
	}

	// The hub goes away, the edge restarts: the model is in its database.
	proxy.Cut()
	e.Restart()
	vals := map[string]float64{}
	for i, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		vals[name] = rows[2][i]
	}
	body, err := json.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", e.URL()+"/api/v1/ingest/acme:odd-1/telemetry", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("telemetry at the edge: %s", resp.Status)
	}

	type record struct {
		ID     int64
		Object string
		Kind   string
		State  string
		Origin string
		Model  *struct {
			ID, Version string
			Scores      map[string]float64
			Error       string
		}
	}
	decided := func(rs []record) *record {
		for i, r := range rs {
			if r.Object == "acme:odd-1" && r.Kind == "action" {
				return &rs[i]
			}
		}
		return nil
	}
	checkModel := func(where string, r *record) {
		t.Helper()
		if r.Model == nil || r.Model.ID != "pca8-reference" || r.Model.Version != "1" || r.Model.Scores["anomaly"] != 1 || r.Model.Scores["score"] <= 1.2399 {
			t.Errorf("the decision's model use %s: %+v", where, r.Model)
		}
	}
	var atEdge *record
	eventually(t, "the edge's loop acted offline on the model's score", func() error {
		var out struct{ Evidence []record }
		edgeGet(t, e, "/api/v1/evidence?loop=acme:anomaly", &out)
		if atEdge = decided(out.Evidence); atEdge == nil {
			return fmt.Errorf("evidence at the edge: %+v", out.Evidence)
		}
		return nil
	})
	checkModel("at the edge", atEdge)
	var hubNow struct{ Evidence []record }
	h.MustAdmin(200, "GET", "/api/v1/evidence?loop=acme:anomaly", nil).JSON(t, &hubNow)
	if len(hubNow.Evidence) != 0 {
		t.Fatalf("the hub has evidence during the outage: %+v", hubNow.Evidence)
	}

	proxy.Restore()
	var atHub *record
	eventually(t, "the edge's evidence at the hub", func() error {
		var out struct{ Evidence []record }
		h.MustAdmin(200, "GET", "/api/v1/evidence?loop=acme:anomaly", nil).JSON(t, &out)
		if atHub = decided(out.Evidence); atHub == nil || atHub.Origin != "acme:edge-1" {
			return fmt.Errorf("evidence at the hub: %+v", out.Evidence)
		}
		return nil
	})
	checkModel("at the hub", atHub)
}

package hubtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

// TestMLRolloutAtTheEdge: a new version of the model an edge's loop uses
// is staged there: shadow (scored beside version 1, which counts), canary,
// active, each promotion by the edge's gates; the edge's records reach the
// hub, which ends the rollout. A bad version (it flags every row) is then
// rolled back by its disagreement gate on its own, the rollout ends as
// rolled back at the hub, and version 2 stays in effect at the edge.
func TestMLRolloutAtTheEdge(t *testing.T) {
	fast := func(c *config.Hub) { c.ML.RolloutEvery = config.Duration(200 * time.Millisecond) }
	h := Start(t, fast)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(sensor8Model))
	meta, model, rows := pca8(t)
	version := func(v int, above float64) []byte {
		m, err := ml.ParseMeta(meta)
		if err != nil {
			t.Fatal(err)
		}
		m.Version = v
		th := m.Thresholds["anomaly"]
		th.Above = above
		m.Thresholds["anomaly"] = th
		b, _ := json.Marshal(m)
		return b
	}
	h.MustAdmin(201, "POST", "/api/v1/ml/models?tenant=acme", map[string]any{"meta": rawJSON(meta), "onnx": model})
	h.MustAdmin(201, "POST", "/api/v1/ml/models?tenant=acme", map[string]any{"meta": rawJSON(version(2, 1.3)), "onnx": model})
	h.MustAdmin(201, "POST", "/api/v1/ml/models?tenant=acme", map[string]any{"meta": rawJSON(version(3, 1e-9)), "onnx": model})
	h.MustAdmin(201, "POST", "/api/v1/loops", strings.Replace(anomalyLoop, "placement: hub", "placement: edge", 1))

	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	var toks []string
	for i := range 4 {
		toks = append(toks, newTokenObject(t, h, map[string]any{"code": fmt.Sprintf("acme:normal-%d", i), "edge": "acme:edge-1",
			"model": map[string]string{"id": "acme:sensor8", "version": "1.0.0"}}).token)
	}
	e := StartEdge(t, dir, "https://"+h.HTTPSAddr(), fast)
	ctx := context.Background()
	eventually(t, "the devices at the edge", func() error {
		for i := range toks {
			if _, err := e.Registry().Object(ctx, fmt.Sprintf("acme:normal-%d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	// The devices keep reporting normal rows: each report is a decision
	// the model scores.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			i := n % len(toks)
			row := rows[[]int{0, 3, 6, 9}[i]]
			vals := map[string]float64{}
			for j, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
				vals[name] = row[j] * (1 + 1e-6*float64(n%7))
			}
			body, _ := json.Marshal(vals)
			req, _ := http.NewRequest("POST", e.URL()+fmt.Sprintf("/api/v1/ingest/acme:normal-%d/telemetry", i), bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+toks[i])
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}()
	defer func() { close(stop); <-done }()

	stages := `"stages": {"shadow": {"min_samples": 20, "min_duration": "1s"}, "canary": {"min_samples": 20, "min_duration": "1s"}, "judge_after": 10}`
	var created struct{ Rollout rollout.Plan }
	h.MustAdmin(201, "POST", "/api/v1/ml/rollouts?tenant=acme", json.RawMessage(`{"artifact": "pca8-reference", "version": "2",
		"targets": {"edges": ["acme:edge-1"]}, "canary": {"fraction": 0.5}, `+stages+`}`)).JSON(t, &created)
	if created.Rollout.Baseline != "1" || created.Rollout.State != rollout.Running {
		t.Fatalf("the rollout: %+v", created.Rollout)
	}
	h.MustAdmin(409, "POST", "/api/v1/ml/rollouts?tenant=acme", json.RawMessage(`{"artifact": "pca8-reference", "version": "3", "targets": {"hub": true}}`))

	type view struct {
		Rollout rollout.Plan
		Nodes   []rollout.NodeState
		Records []rollout.Record
	}
	var v view
	eventually(t, "version 2 active at the edge and the rollout done at the hub", func() error {
		v = view{}
		h.MustAdmin(200, "GET", "/api/v1/ml/rollouts/"+created.Rollout.ID, nil).JSON(t, &v)
		if v.Rollout.State != rollout.Done {
			return fmt.Errorf("rollout %s, records %+v", v.Rollout.State, v.Records)
		}
		return nil
	})
	var path []string
	for _, r := range v.Records {
		if r.Node != "acme:edge-1" {
			t.Errorf("a record of node %s", r.Node)
		}
		path = append(path, r.To)
	}
	if strings.Join(path, " ") != "shadow canary active" {
		t.Fatalf("stages at the edge %v", path)
	}
	if r := v.Records[1]; r.Figures.Samples < 20 || r.Figures.Values[rollout.FigureErrorRate] != 0 || r.Figures.Values[rollout.FigureDisagreement] != 0 || len(r.Results) == 0 {
		t.Errorf("the promotion to canary: %+v", r)
	}
	// The edge scored version 2 (in shadow, canary and active), and its
	// figures reach the hub.
	if n := inferences(t, e, "2"); n < 40 {
		t.Errorf("version 2 scored %v times at the edge", n)
	}
	eventually(t, "the edge's figures of version 2 at the hub", func() error {
		var out struct {
			Figures  map[string]*mlreg.VersionStats
			Rollouts []rollout.Plan
		}
		h.MustAdmin(200, "GET", "/api/v1/ml/models/pca8-reference/versions/2", nil).JSON(t, &out)
		f := out.Figures["acme:edge-1"]
		if f == nil || f.OK == 0 || f.LatencyMS["p99"] <= 0 || len(f.PSI) != 8 || len(out.Rollouts) != 1 {
			return fmt.Errorf("figures %+v, rollouts %d", out.Figures, len(out.Rollouts))
		}
		return nil
	})

	// Version 3 flags every normal row: its disagreement gate rolls it
	// back in shadow, and the rollout ends as rolled back.
	var bad struct{ Rollout rollout.Plan }
	h.MustAdmin(201, "POST", "/api/v1/ml/rollouts?tenant=acme", json.RawMessage(`{"artifact": "pca8-reference", "version": "3",
		"targets": {"edges": ["acme:edge-1"]}, `+stages+`}`)).JSON(t, &bad)
	if bad.Rollout.Baseline != "2" {
		t.Fatalf("the baseline of version 3's rollout: %+v", bad.Rollout)
	}
	eventually(t, "version 3 rolled back by its gate", func() error {
		v = view{}
		h.MustAdmin(200, "GET", "/api/v1/ml/rollouts/"+bad.Rollout.ID, nil).JSON(t, &v)
		if v.Rollout.State != rollout.Aborted {
			return fmt.Errorf("rollout %s, records %+v", v.Rollout.State, v.Records)
		}
		return nil
	})
	last := v.Records[len(v.Records)-1]
	if last.To != rollout.RolledBack || !strings.Contains(last.Reason, "disagreement") || last.By != "" {
		t.Fatalf("the rollback: %+v", last)
	}
	if v.Rollout.Force == nil || !strings.Contains(v.Rollout.Force.Reason, "acme:edge-1") {
		t.Errorf("the rollout's end: %+v", v.Rollout.Force)
	}
	// Version 3 scores no more; version 2 does, and the anomalous row's
	// alarm is decided with it.
	v3 := inferences(t, e, "3")
	v2 := inferences(t, e, "2")
	eventually(t, "version 2 in effect at the edge again", func() error {
		if n := inferences(t, e, "2"); n < v2+20 {
			return fmt.Errorf("version 2 scored %v times, %v before", n, v2)
		}
		return nil
	})
	if n := inferences(t, e, "3"); n != v3 {
		t.Errorf("version 3 scored %v times after its rollback, %v before", n, v3)
	}
	odd := newTokenObject(t, h, map[string]any{"code": "acme:odd-1", "edge": "acme:edge-1",
		"model": map[string]string{"id": "acme:sensor8", "version": "1.0.0"}}).token
	eventually(t, "the odd device at the edge", func() error { _, err := e.Registry().Object(ctx, "acme:odd-1"); return err })
	vals := map[string]float64{}
	for j, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		vals[name] = rows[2][j]
	}
	body, _ := json.Marshal(vals)
	req, _ := http.NewRequest("POST", e.URL()+"/api/v1/ingest/acme:odd-1/telemetry", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+odd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	eventually(t, "the odd row's alarm decided with version 2", func() error {
		var out struct {
			Evidence []struct {
				Object, Kind string
				Model        *struct{ Version, Rollout string }
			}
		}
		edgeGet(t, e, "/api/v1/evidence?loop=acme:anomaly", &out)
		for _, r := range out.Evidence {
			if r.Object == "acme:odd-1" && r.Kind == "action" {
				if r.Model == nil || r.Model.Version != "2" || r.Model.Rollout != "" {
					t.Fatalf("the decision's model: %+v", r.Model)
				}
				return nil
			}
		}
		return fmt.Errorf("evidence %+v", out.Evidence)
	})
	// The console: both rollouts with each node's stage, a rollout's
	// gates, the version's figures from the edge; deploy and roll back.
	cb := consoletest.New(t, h.URL, nil)
	list := cb.MustSignIn(h.AdminToken, "/ml").Text()
	for _, want := range []string{"ro-1 acme: pca8-reference v2 replacing v1 done acme:edge-1 active", "ro-2 acme: pca8-reference v3 replacing v2 rolled_back acme:edge-1 rolled_back"} {
		if !strings.Contains(list, want) {
			t.Errorf("/ml lacks %q: %s", want, list)
		}
	}
	page := cb.MustGet(200, "/ml/rollouts/ro-2?tenant=acme").Text()
	for _, want := range []string{"Rollout ro-2 rolled_back", "shadow → rolled_back", "disagreement", "fail", "error_rate 0 0.01 pass", "acme:edge-1 rolled_back"} {
		if !strings.Contains(page, want) {
			t.Errorf("the rollout's page lacks %q: %s", want, page)
		}
	}
	if strings.Contains(page, "Promote") {
		t.Error("an ended rollout offers a promotion")
	}
	vpage := cb.MustGet(200, "/ml/acme/pca8-reference/2").Text()
	for _, want := range []string{"Figures", "acme:edge-1", "a_mean", "ro-1 : v2 replacing v1", "Deploy v2"} {
		if !strings.Contains(vpage, want) {
			t.Errorf("the version's page lacks %q: %s", want, vpage)
		}
	}
	refused := cb.Change("/ml/acme/pca8-reference/3/deploy", url.Values{"canary": {"10"}, "shadow_for": {"1h"}, "canary_for": {"1h"}, "min_samples": {"100"}, "edges": {"acme:edge-9"}})
	if refused.Status != 400 || !strings.Contains(refused.Text(), "is not an edge of tenant acme") {
		t.Errorf("deploying to an unknown edge: %d %s", refused.Status, refused.Text())
	}
	refused = cb.Change("/ml/acme/pca8-reference/3/deploy", url.Values{"canary": {"10"}, "shadow_for": {"1h"}, "canary_for": {"1h"}, "min_samples": {"100"}})
	if refused.Status != 400 || !strings.Contains(refused.Text(), "targets: name the hub") || !strings.Contains(refused.Text(), "Deploy v3") {
		t.Errorf("deploying without targets: %d %s", refused.Status, refused.Text())
	}
	dep := cb.Change("/ml/acme/pca8-reference/3/deploy", url.Values{"all_edges": {"1"}, "canary": {"10"}, "shadow_for": {"1h"}, "canary_for": {"1h"}, "min_samples": {"100"}})
	if dep.Status != 303 || !strings.HasPrefix(dep.Location(), "/ml/rollouts/ro-3") {
		t.Fatalf("deploying: %d %s %s", dep.Status, dep.Location(), dep.Text())
	}
	if p := cb.MustGet(200, dep.Location()).Text(); !strings.Contains(p, "deployed in shadow") || !strings.Contains(p, "Roll back") {
		t.Errorf("after deploying: %s", p)
	}
	if rb := cb.Change("/ml/rollouts/ro-3/rollback?tenant=acme", url.Values{"reason": {"wrong week"}}); rb.Status != 303 {
		t.Fatalf("rolling back: %d %s", rb.Status, rb.Text())
	}
	if p := cb.MustGet(200, "/ml/rollouts/ro-3?tenant=acme").Text(); !strings.Contains(p, "Rollout ro-3 rolled_back") || !strings.Contains(p, "wrong week") {
		t.Errorf("after the rollback: %s", p)
	}
	viewer := consoletest.New(t, h.URL, nil)
	if p := viewer.MustSignIn(mcToken(t, h, "ro-viewer", "viewer", "acme"), "/ml/acme/pca8-reference/3").Text(); strings.Contains(p, "Deploy v3") {
		t.Error("a viewer is offered the deploy form")
	}

	// The audit logs hold every step: the hub's the plans, the operator's
	// and the edge's stages.
	count := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(h.MustAdmin(200, "GET", "/api/v1/audit/entries", nil).Body)), "\n") {
		var en struct{ Kind string }
		if err := json.Unmarshal([]byte(line), &en); err != nil {
			t.Fatal(err)
		}
		count[en.Kind]++
	}
	if count[rollout.KindCreated] != 3 || count[rollout.KindStage] < 4 || count[rollout.KindState] != 2 || count[rollout.KindForced] != 1 {
		t.Errorf("audit at the hub: %v", count)
	}
}

// inferences reads wanwu_ml_inferences_total{result="ok"} of a version of
// pca8-reference at the edge.
func inferences(t *testing.T, e *Edge, version string) float64 {
	t.Helper()
	resp, err := http.Get(e.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "wanwu_ml_inferences_total{") && strings.Contains(line, `model="pca8-reference"`) &&
			strings.Contains(line, `result="ok"`) && strings.Contains(line, `version="`+version+`"`) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
				return v
			}
		}
	}
	return 0
}

// TestMLRolloutFalseAlarmGate: in shadow at the hub, a candidate that
// flags normal rows the version in effect does not gets a window captured
// for each object it flags; operators label them false positives, and the
// false-alarm gate rolls the rollout back.
func TestMLRolloutFalseAlarmGate(t *testing.T) {
	h := Start(t, func(c *config.Hub) {
		c.ML.RolloutEvery = config.Duration(200 * time.Millisecond)
		c.ML.CaptureAfter = config.Duration(time.Second) // the TSDB has the data by then
	})
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(sensor8Model))
	meta, model, rows := pca8(t)
	m, _ := ml.ParseMeta(meta)
	m.Version = 2
	th := m.Thresholds["anomaly"]
	th.Above = 1e-9
	m.Thresholds["anomaly"] = th
	meta2, _ := json.Marshal(m)
	h.MustAdmin(201, "POST", "/api/v1/ml/models?tenant=acme", map[string]any{"meta": rawJSON(meta), "onnx": model})
	h.MustAdmin(201, "POST", "/api/v1/ml/models?tenant=acme", map[string]any{"meta": rawJSON(meta2), "onnx": model})
	h.MustAdmin(201, "POST", "/api/v1/loops", anomalyLoop)
	var created struct{ Rollout rollout.Plan }
	h.MustAdmin(201, "POST", "/api/v1/ml/rollouts?tenant=acme", json.RawMessage(`{"artifact": "pca8-reference", "version": "2",
		"targets": {"hub": true}, "stages": {"shadow": {"min_samples": 100000, "min_duration": "1h"}, "judge_after": 1},
		"gates": {"false_alarm_rate": {"max": 0.2}}}`)).JSON(t, &created)
	for i := range 6 {
		code := fmt.Sprintf("acme:normal-%d", i)
		tok := newTokenObject(t, h, map[string]any{"code": code, "model": map[string]string{"id": "acme:sensor8", "version": "1.0.0"}}).token
		vals := map[string]float64{}
		for j, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
			vals[name] = rows[0][j]
		}
		if r := h.Do("POST", "/api/v1/ingest/"+code+"/telemetry", tok, vals); r.Status >= 300 {
			t.Fatalf("telemetry: %d %s", r.Status, r.Body)
		}
	}
	var ws struct{ Windows []dataset.Window }
	eventually(t, "a window for each object the candidate flagged", func() error {
		ws.Windows = nil
		h.MustAdmin(200, "GET", "/api/v1/ml/windows?tenant=acme&reason=decision", nil).JSON(t, &ws)
		if len(ws.Windows) < 6 {
			return fmt.Errorf("%d windows", len(ws.Windows))
		}
		return nil
	})
	for _, w := range ws.Windows {
		if w.Ref != created.Rollout.ID+":v2" || len(w.Features) != 8 {
			t.Fatalf("a candidate's window: %+v", w)
		}
	}
	for i, w := range ws.Windows[:5] {
		h.MustAdmin(201, "POST", "/api/v1/ml/windows/"+w.ID+"/labels?tenant=acme", map[string]string{"kind": "false_positive", "note": fmt.Sprint("normal running ", i)})
	}
	var v struct {
		Rollout rollout.Plan
	}
	eventually(t, "the false-alarm gate rolled the rollout back", func() error {
		h.MustAdmin(200, "GET", "/api/v1/ml/rollouts/"+created.Rollout.ID, nil).JSON(t, &v)
		if v.Rollout.State != rollout.Aborted {
			return fmt.Errorf("state %s", v.Rollout.State)
		}
		return nil
	})
	if v.Rollout.Force == nil || !strings.Contains(v.Rollout.Force.Reason, "false_alarm_rate 1 above 0.2 (5 of 5 labelled decisions") {
		t.Fatalf("the rollback: %+v", v.Rollout.Force)
	}
}

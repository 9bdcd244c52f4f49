package mlreg_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

// While a rollout stages a candidate, the scorer gives each decision the
// version its stage says, the other beside, and measures the candidate's
// figures against the baseline.
func TestScoreObjectStaged(t *testing.T) {
	e := open(t)
	meta, model := testModel(t)
	if _, _, err := e.reg.Register(e.ctx, "alice", "acme", meta, model); err != nil {
		t.Fatal(err)
	}
	// Version 2: the same graph with a threshold so low that it flags
	// every row: it disagrees with version 1 on the normal ones.
	meta2 := editMeta(t, meta, func(m *ml.Meta) {
		m.Version = 2
		th := m.Thresholds["anomaly"]
		th.Above = 1e-9
		m.Thresholds["anomaly"] = th
	})
	if _, _, err := e.reg.Register(e.ctx, "alice", "acme", meta2, model); err != nil {
		t.Fatal(err)
	}
	m, _ := ml.ParseMeta(meta)
	// Without a rollout, the first version is in effect: version 2 was
	// only registered.
	plain := mlreg.NewScorer(e.reg, nil)
	defer plain.Close()
	rows0, _ := reference(t)
	f0 := map[string]float64{}
	for j, name := range m.FeatureNames() {
		f0[name] = rows0[0][j]
	}
	if sc, err := plain.ScoreObject(e.ctx, "acme", "pca8-reference", "", "acme:x", "", f0); err != nil || sc.Version != "1" {
		t.Fatalf("without a rollout: %+v, %v; want version 1", sc, err)
	}
	s := mlreg.NewScorer(e.reg, nil)
	defer s.Close()
	plan := &rollout.Plan{ID: "ro-1", Tenant: "acme", Kind: rollout.KindModel, Artifact: "pca8-reference", Version: "2", Baseline: "1",
		Canary: rollout.CanarySpec{Objects: []string{"acme:canary"}}}
	a := rollout.Assignment{Version: "1", Plan: plan, Stage: rollout.Shadow}
	s.SetStages(func(tenant, kind, artifact string) (rollout.Assignment, bool) {
		return a, tenant == "acme" && kind == rollout.KindModel && artifact == "pca8-reference"
	})
	rows, _ := reference(t)
	feats := func(row []float64) map[string]float64 {
		f := map[string]float64{}
		for j, name := range m.FeatureNames() {
			f[name] = row[j]
		}
		return f
	}
	flagged := 0
	for _, row := range rows {
		sc, err := s.ScoreObject(e.ctx, "acme", "pca8-reference", "", "acme:other", "acme:plant", feats(row))
		if err != nil {
			t.Fatal(err)
		}
		if sc.Version != "1" || sc.Rollout != "ro-1" || sc.Stage != rollout.Shadow || sc.Beside == nil || sc.Beside.Version != "2" || sc.Beside.Role != "candidate" {
			t.Fatalf("in shadow: %+v", sc)
		}
		if sc.Beside.Scores["anomaly"] != 1 || sc.Beside.Scores["score"] != sc.Scores["score"] {
			t.Fatalf("the candidate's scores beside: %+v, counted %+v", sc.Beside.Scores, sc.Scores)
		}
		if sc.Scores["anomaly"] == 1 {
			flagged++
		}
	}
	f := s.Figures("ro-1")
	wantDis := float64(len(rows)-flagged) / float64(len(rows))
	if f.Samples != len(rows) || f.Values[rollout.FigureErrorRate] != 0 || f.Values[rollout.FigureDisagreement] != wantDis ||
		f.Values[rollout.FigureLatencyP99] <= 0 {
		t.Fatalf("figures %+v; want %d samples, no errors, disagreement %v", f, len(rows), wantDis)
	}
	if _, ok := f.Values[rollout.FigureScoreShift]; ok {
		t.Fatalf("a score shift measured on %d pairs: %+v", len(rows), f)
	}
	// With enough pairs: version 2's scores are version 1's, each
	// relative to its own threshold (1e-9 against 1.24): a large shift.
	for range 9 {
		for _, row := range rows {
			if _, err := s.ScoreObject(e.ctx, "acme", "pca8-reference", "", "acme:other", "acme:plant", feats(row)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if f := s.Figures("ro-1"); f.Values[rollout.FigureScoreShift] < 1 {
		t.Fatalf("the score shift of version 2 against version 1: %+v", f)
	}
	// Canary: the listed object gets the candidate's scores.
	a.Stage = rollout.Canary
	sc, err := s.ScoreObject(e.ctx, "acme", "pca8-reference", "", "acme:canary", "acme:plant", feats(rows[0]))
	if err != nil || sc.Version != "2" || sc.Beside == nil || sc.Beside.Role != "baseline" || sc.Beside.Version != "1" {
		t.Fatalf("a canary object: %+v, %v", sc, err)
	}
	s.Reset("ro-1")
	if f := s.Figures("ro-1"); f.Samples != 0 {
		t.Fatalf("after Reset: %+v", f)
	}
	// A rollout for other sites leaves this one to the version in effect.
	plan.Targets.Sites = []string{"acme:city"}
	if sc, err := s.ScoreObject(e.ctx, "acme", "pca8-reference", "", "acme:canary", "acme:plant", feats(rows[0])); err != nil || sc.Version != "1" || sc.Rollout != "" {
		t.Fatalf("another site's rollout: %+v, %v", sc, err)
	}
	plan.Targets.Sites = nil
	// A version named by the loop bypasses the rollout.
	if sc, err := s.ScoreObject(e.ctx, "acme", "pca8-reference", "1", "acme:canary", "acme:plant", feats(rows[0])); err != nil || sc.Version != "1" || sc.Rollout != "" {
		t.Fatalf("a pinned version: %+v, %v", sc, err)
	}
	// No baseline: nothing counts while the candidate is in shadow.
	a = rollout.Assignment{None: true, Plan: plan, Stage: rollout.Shadow}
	if sc, err := s.ScoreObject(e.ctx, "acme", "pca8-reference", "", "acme:x", "acme:plant", feats(rows[0])); err == nil || !strings.Contains(err.Error(), "in shadow") || sc.Beside == nil {
		t.Fatalf("shadow without a baseline: %+v, %v", sc, err)
	}
	// After a rollback of a first version: no version in effect.
	a = rollout.Assignment{None: true}
	if _, err := s.ScoreObject(e.ctx, "acme", "pca8-reference", "", "acme:x", "acme:plant", feats(rows[0])); err == nil || !strings.Contains(err.Error(), "no version is in effect") {
		t.Fatalf("no version in effect: %v", err)
	}
}

// slowLoad is gonnx with a slow Load (a model loaded on a busy node)
// that refuses version 3.
type slowLoad struct {
	ml.Runtime
	wait time.Duration
}

func (r slowLoad) Load(model []byte, meta ml.Meta) (ml.Session, error) {
	time.Sleep(r.wait)
	if meta.Version == 3 {
		return nil, fmt.Errorf("%w: version 3 does not load here", ml.ErrRefused)
	}
	return r.Runtime.Load(model, meta)
}

// The latency gate's figure is the candidate's inference, as the model's
// latency metric is: not the finding and loading of the version that the
// first decision after a deploy waits for. A candidate that cannot be
// loaded counts errors and no latency.
func TestStagedLatencyIsInference(t *testing.T) {
	e := open(t)
	meta, model := testModel(t)
	if _, _, err := e.reg.Register(e.ctx, "alice", "acme", meta, model); err != nil {
		t.Fatal(err)
	}
	for v := 2; v <= 3; v++ {
		if _, _, err := e.reg.Register(e.ctx, "alice", "acme", editMeta(t, meta, func(m *ml.Meta) { m.Version = v }), model); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := ml.ParseMeta(meta)
	rows, _ := reference(t)
	feats := map[string]float64{}
	for j, name := range m.FeatureNames() {
		feats[name] = rows[0][j]
	}
	const load = 300 * time.Millisecond
	s := mlreg.NewScorer(e.reg, slowLoad{ml.NewGonnx(), load})
	defer s.Close()
	for _, tc := range []struct {
		plan, version string
		errors        float64
	}{{"ro-1", "2", 0}, {"ro-2", "3", 1}} {
		plan := &rollout.Plan{ID: tc.plan, Tenant: "acme", Kind: rollout.KindModel, Artifact: "pca8-reference", Version: tc.version, Baseline: "1"}
		s.SetStages(func(string, string, string) (rollout.Assignment, bool) {
			return rollout.Assignment{Version: "1", Plan: plan, Stage: rollout.Shadow}, true
		})
		for range 5 {
			if _, err := s.ScoreObject(e.ctx, "acme", "pca8-reference", "", "acme:x", "", feats); err != nil {
				t.Fatal(err)
			}
		}
		f := s.Figures(tc.plan)
		lat, measured := f.Values[rollout.FigureLatencyP99]
		switch {
		case f.Samples != 5 || f.Values[rollout.FigureErrorRate] != tc.errors:
			t.Errorf("v%s: %+v, want 5 samples, error rate %v", tc.version, f, tc.errors)
		case tc.errors == 0 && (!measured || lat <= 0 || lat >= float64(load/time.Millisecond)/2):
			t.Errorf("v%s: latency p99 %v ms measured %v, want the inference's (the load takes %v)", tc.version, lat, measured, load)
		case tc.errors == 1 && measured:
			t.Errorf("v%s, not loaded: a latency of %v ms", tc.version, lat)
		}
	}
}

package mlreg_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// reference reads the rows the ml package's reference test runs and what
// onnxruntime gave for them.
func reference(t *testing.T) ([][]float64, []float64) {
	t.Helper()
	var in struct {
		Rows [][]float64 `json:"rows"`
	}
	var ref struct {
		Outputs [][]float64 `json:"outputs"`
	}
	for path, v := range map[string]any{"../ml/testdata/pca8.inputs.json": &in, "../ml/testdata/pca8.reference.json": &ref} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if len(in.Rows) == 0 || len(in.Rows) != len(ref.Outputs) {
		t.Fatalf("reference files: %d rows, %d outputs", len(in.Rows), len(ref.Outputs))
	}
	scores := make([]float64, len(ref.Outputs))
	for i, o := range ref.Outputs {
		scores[i] = o[0]
	}
	return in.Rows, scores
}

func TestScorer(t *testing.T) {
	e := open(t)
	meta, model := testModel(t)
	if _, _, err := e.reg.Register(e.ctx, "alice", "acme", meta, model); err != nil {
		t.Fatal(err)
	}
	m, err := ml.ParseMeta(meta)
	if err != nil {
		t.Fatal(err)
	}
	s := mlreg.NewScorerSize(e.reg, nil, 1)
	defer s.Close()
	prom := prometheus.NewRegistry()
	if err := s.Register(prom); err != nil {
		t.Fatal(err)
	}
	rows, want := reference(t)
	for i, row := range rows {
		f := map[string]float64{"unused": 1}
		for j, name := range m.FeatureNames() {
			f[name] = row[j]
		}
		scores, v, err := s.Score(e.ctx, "acme", "pca8-reference", "", f)
		if err != nil || v != "1" {
			t.Fatalf("row %d: version %q, %v", i, v, err)
		}
		if d := math.Abs(scores["score"]-want[i]) / math.Max(1, math.Abs(want[i])); d > 1e-4 {
			t.Errorf("row %d: score %v, onnxruntime %v", i, scores["score"], want[i])
		}
		flag := 0.0
		if scores["score"] > m.Thresholds["anomaly"].Above {
			flag = 1
		}
		if scores["anomaly"] != flag {
			t.Errorf("row %d: anomaly %v for score %v", i, scores["anomaly"], scores["score"])
		}
	}
	if s.Loaded() != 1 {
		t.Fatalf("%d sessions loaded, want 1", s.Loaded())
	}
	// The metrics count every inference, its time and its score; 25 more
	// inputs at the training means set the drift gauges.
	for range 25 {
		f := map[string]float64{}
		for _, in := range m.Inputs {
			f[in.Name] = in.Mean
		}
		if _, _, err := s.Score(e.ctx, "acme", "pca8-reference", "", f); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]float64{
		`wanwu_ml_inferences_total{model="pca8-reference",result="ok",tenant="acme",version="1"}`: 49,
		`wanwu_ml_inference_seconds_count{model="pca8-reference",tenant="acme",version="1"}`:      49,
		`wanwu_ml_score_count{model="pca8-reference",output="score",tenant="acme",version="1"}`:   49,
	} {
		if got := metricValue(t, prom, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if psi := metricValue(t, prom, `wanwu_ml_input_psi{feature="a_mean",model="pca8-reference",tenant="acme",version="1"}`); !(psi > 0) {
		t.Errorf("the drift gauge of a_mean: %v", psi)
	}

	// A missing feature is named.
	_, _, err = s.Score(e.ctx, "acme", "pca8-reference", "1", map[string]float64{"a_mean": 1})
	if !errors.Is(err, ml.ErrInput) || !strings.Contains(err.Error(), `"b_mean"`) {
		t.Fatalf("missing feature: %v, want ErrInput naming b_mean", err)
	}
	if _, _, err := s.Score(e.ctx, "other", "pca8-reference", "", nil); !errors.Is(err, mlreg.ErrNotFound) {
		t.Fatalf("another tenant's model: %v, want ErrNotFound", err)
	}

	// Versions 2 and 3 evict each other from a cache of one, also while
	// callers score both at once (their deadline is long: concurrent
	// callers of a session wait their turn, under -race too).
	for _, v := range []int{2, 3} {
		mv := editMeta(t, meta, func(m *ml.Meta) { m.Version, m.Budget.Deadline = v, ml.Duration(5*time.Second) })
		if _, _, err := e.reg.Register(e.ctx, "alice", "acme", mv, model); err != nil {
			t.Fatal(err)
		}
	}
	means := map[string]float64{}
	for _, f := range m.Inputs {
		means[f.Name] = f.Mean
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.Score(e.ctx, "acme", "pca8-reference", []string{"2", "3"}[i%2], means)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent score: %v", err)
		}
	}
	if s.Loaded() != 1 {
		t.Fatalf("%d sessions loaded, want at most 1", s.Loaded())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Score(e.ctx, "acme", "pca8-reference", "", means); !errors.Is(err, mlreg.ErrScorerClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// metricValue reads one series (name{labels}, labels sorted) from a
// registry's text exposition.
func metricValue(t *testing.T, g prometheus.Gatherer, series string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		if name, val, ok := strings.Cut(line, " "); ok && name == series {
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in:\n%s", series, buf.String())
	return 0
}

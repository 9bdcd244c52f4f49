package mlreg_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

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

package ml

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestTrainPCAMatchesGo(t *testing.T) {
	s := newSynth(1, 8, 3)
	train := s.vectors(5000)
	model, meta, err := TrainPCA(train, featureNames(8), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	opts, err := pcaDefaults(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	p, err := fitPCA(train, featureNames(8), opts)
	if err != nil {
		t.Fatal(err)
	}
	sess := load(t, model, meta)
	for i := range 200 {
		var x []float64
		switch i % 3 {
		case 0:
			x = s.normal()
		case 1:
			x = s.anomaly(2)
		default:
			x = make([]float64, 8)
			for j := range x {
				x[j] = 20*s.rng.Float64() - 10
			}
		}
		r, err := sess.Infer(context.Background(), x)
		if err != nil {
			t.Fatal(err)
		}
		got, want := r.Outputs[PCAOutput][0], p.score(x)
		if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
			t.Fatalf("vector %d: graph %v, Go %v", i, got, want)
		}
		if flag := r.Flags[PCAThreshold]; flag != (want > meta.Thresholds[PCAThreshold].Above) {
			t.Fatalf("vector %d: flag %v for score %v, threshold %v", i, flag, want, meta.Thresholds[PCAThreshold].Above)
		}
	}
	if k := meta.Training.Metrics["components"]; k != 3 {
		t.Errorf("components = %v, want 3 (latent dimension)", k)
	}
}

// On synthetic data the model tells anomalies (shifted off the principal
// subspace) from normal vectors at its own threshold.
func TestTrainPCASeparates(t *testing.T) {
	tests := []struct {
		name          string
		n, d          int
		shift         float64
		opts          func(*PCAOptions)
		minPrecision  float64
		minRecall     float64
		wantComponent int
	}{
		{"8 features, 3 latent", 8, 3, 2.0, nil, 0.95, 0.95, 3},
		{"16 features, 4 latent, variance share 0.99", 16, 4, 2.0, func(o *PCAOptions) { o.VarianceShare = 0.99 }, 0.95, 0.95, 4},
		{"8 features, components fixed at 3, margin 1", 8, 3, 2.0, func(o *PCAOptions) { o.Components, o.Margin = 3, 1 }, 0.9, 0.95, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSynth(3, tt.n, tt.d)
			opts := testOptions()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			model, meta, err := TrainPCA(s.vectors(5000), featureNames(tt.n), opts)
			if err != nil {
				t.Fatal(err)
			}
			if k := int(meta.Training.Metrics["components"]); k != tt.wantComponent {
				t.Errorf("kept %d components, want %d", k, tt.wantComponent)
			}
			sess := load(t, model, meta)
			var tp, fp, fn int
			for i := range 2200 {
				anomalous := i%11 == 0 // 200 anomalies, 2000 normal
				x := s.normal()
				if anomalous {
					x = s.anomaly(tt.shift)
				}
				r, err := sess.Infer(context.Background(), x)
				if err != nil {
					t.Fatal(err)
				}
				switch flagged := r.Flags[PCAThreshold]; {
				case flagged && anomalous:
					tp++
				case flagged:
					fp++
				case anomalous:
					fn++
				}
			}
			precision := float64(tp) / float64(tp+fp)
			recall := float64(tp) / float64(tp+fn)
			t.Logf("threshold %.4g: precision %.3f recall %.3f (tp %d fp %d fn %d); train flagged %.4f",
				meta.Thresholds[PCAThreshold].Above, precision, recall, tp, fp, fn, meta.Training.Metrics["train_flagged"])
			if precision < tt.minPrecision || recall < tt.minRecall {
				t.Errorf("precision %.3f recall %.3f, want at least %v and %v", precision, recall, tt.minPrecision, tt.minRecall)
			}
		})
	}
}

func TestTrainPCAErrors(t *testing.T) {
	s := newSynth(5, 4, 2)
	good := s.vectors(100)
	names := featureNames(4)
	constant := s.vectors(100)
	for _, v := range constant {
		v[2] = 7
	}
	tests := []struct {
		name    string
		vectors [][]float64
		names   []string
		opts    func(*PCAOptions)
		wantIn  string
	}{
		{"one feature", [][]float64{{1}, {2}}, []string{"a"}, nil, "1 features; PCA needs 2 or more"},
		{"one vector", good[:1], names, nil, "1 vectors; 2 or more are needed"},
		{"ragged", append([][]float64{{1, 2, 3}}, good...), names, nil, "vector 0 has 3 values for 4 names"},
		{"NaN", append([][]float64{{1, 2, nan(), 4}}, good...), names, nil, `vector 0, feature "c_mean" is NaN`},
		{"constant feature", constant, names, nil, `feature "c_mean" is constant in the training vectors`},
		{"all components", good, names, func(o *PCAOptions) { o.Components = 4 }, "keeping 4 components of 4 features leaves no residual"},
		{"variance share 1", good, names, func(o *PCAOptions) { o.VarianceShare = 1 }, "variance share 1 is not in (0, 1)"},
		{"quantile", good, names, func(o *PCAOptions) { o.Quantile = 1.5 }, "quantile 1.5 is not in (0, 1]"},
		{"margin", good, names, func(o *PCAOptions) { o.Margin = 0.5 }, "margin 0.5 is below 1"},
		{"bad name", good, []string{"a", "b", "c", "d-e"}, nil, `inputs[3].name: must match`},
		{"no id", good, names, func(o *PCAOptions) { o.ID = "" }, "id: must match"},
		{"budget", good, names, func(o *PCAOptions) { o.Budget.MaxModelBytes = 100 }, "over budget.max_model_bytes 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			_, _, err := TrainPCA(tt.vectors, tt.names, opts)
			if !errors.Is(err, ErrTraining) {
				t.Fatalf("error %v does not wrap ErrTraining", err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("error %q does not say %q", err, tt.wantIn)
			}
		})
	}
}

// The Meta TrainPCA writes is what ParseMeta accepts, and says what the
// model is.
func TestTrainPCAMeta(t *testing.T) {
	_, meta, _ := trained(t)
	b, err := json.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseMeta(b); err != nil {
		t.Fatal(err)
	}
	m := meta.Training.Metrics
	if meta.Training.Vectors != 5000 || meta.Training.Method != "pca" || !meta.Training.CreatedAt.Equal(fixedTime) {
		t.Errorf("training %+v", meta.Training)
	}
	if !(m["explained_variance"] > 0.95 && m["explained_variance"] < 1) || !(m["train_flagged"] < 0.01) {
		t.Errorf("metrics %v", m)
	}
	if th := meta.Thresholds[PCAThreshold]; th.Output != PCAOutput || math.Abs(th.Above-DefaultMargin*m["score_quantile"]) > 1e-12 {
		t.Errorf("threshold %+v, metrics %v", th, m)
	}
}

func BenchmarkInfer(b *testing.B) {
	model, meta, s := trained(b)
	sess := load(b, model, meta)
	x := s.normal()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sess.Infer(ctx, x); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTrainPCA(b *testing.B) {
	s := newSynth(9, 8, 3)
	vectors := s.vectors(100_000)
	names := featureNames(8)
	opts := testOptions()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := TrainPCA(vectors, names, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e5, "ns/vector")
}

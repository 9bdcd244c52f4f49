package ml

import (
	"context"
	"math"
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

package ml

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// synth draws vectors of n features from a correlated Gaussian: a latent
// of dimension d mixed by a fixed random matrix, plus small independent
// noise and an offset per feature. off is a unit direction (in feature
// space) orthogonal to the mixing's column space: off the principal
// subspace, along which anomalies are shifted.
type synth struct {
	n, d   int
	mix    [][]float64 // n×d
	offset []float64
	noise  float64
	off    []float64
	rng    *rand.Rand
}

func newSynth(seed uint64, n, d int) *synth {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := &synth{n: n, d: d, noise: 0.1, rng: rng}
	for range n {
		row := make([]float64, d)
		for j := range row {
			row[j] = rng.NormFloat64()
		}
		s.mix = append(s.mix, row)
		s.offset = append(s.offset, 10*rng.Float64()-5)
	}
	// Gram-Schmidt a random vector against the mixing's columns.
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	var basis [][]float64
	for j := range d {
		c := make([]float64, n)
		for i := range c {
			c[i] = s.mix[i][j]
		}
		for _, b := range basis {
			p := dot(c, b)
			for i := range c {
				c[i] -= p * b[i]
			}
		}
		basis = append(basis, unit(c))
	}
	for _, b := range basis {
		p := dot(v, b)
		for i := range v {
			v[i] -= p * b[i]
		}
	}
	s.off = unit(v)
	return s
}

func (s *synth) normal() []float64 {
	u := make([]float64, s.d)
	for j := range u {
		u[j] = s.rng.NormFloat64()
	}
	x := make([]float64, s.n)
	for i := range x {
		x[i] = s.offset[i] + dot(s.mix[i], u) + s.noise*s.rng.NormFloat64()
	}
	return x
}

func (s *synth) anomaly(shift float64) []float64 {
	x := s.normal()
	for i := range x {
		x[i] += shift * s.off[i]
	}
	return x
}

func (s *synth) vectors(m int) [][]float64 {
	out := make([][]float64, m)
	for i := range out {
		out[i] = s.normal()
	}
	return out
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func unit(v []float64) []float64 {
	l := math.Sqrt(dot(v, v))
	for i := range v {
		v[i] /= l
	}
	return v
}

func featureNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = string(rune('a'+i)) + "_mean"
	}
	return names
}

var fixedTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testOptions() PCAOptions {
	return PCAOptions{ID: "spindle-anomaly", Dataset: "synthetic", DatasetVersion: "seed-1", CreatedAt: fixedTime}
}

// trained trains the model of the tests: 8 features, latent dimension 3,
// 5000 vectors, seed 1.
func trained(t testing.TB) ([]byte, Meta, *synth) {
	t.Helper()
	s := newSynth(1, 8, 3)
	model, meta, err := TrainPCA(s.vectors(5000), featureNames(8), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	return model, meta, s
}

func load(t testing.TB, model []byte, meta Meta) Session {
	t.Helper()
	s, err := NewGonnx().Load(model, meta)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func nan() float64 { return math.NaN() }

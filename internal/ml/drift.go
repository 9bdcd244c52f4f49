package ml

import (
	"math"
	"slices"
)

// Drift measures how far the inputs a model sees have moved from its
// training data, per feature, as the population stability index (PSI)
// over the last Window observations. The training distribution of a
// feature is taken as normal with the Meta's mean and std (what the
// document records), binned at z = -2, -1, -0.5, 0, 0.5, 1, 2; a PSI under
// 0.1 is usually read as no shift, 0.1-0.25 as a moderate one, above 0.25
// as a shift worth looking at. Not safe for concurrent use.
type Drift struct {
	meta     []Feature
	window   int
	bins     [][]int // per feature: the last window observations' bins, a ring
	counts   [][]int // per feature: observations per bin in the ring
	next, n  int
	expected []float64
}

// DriftWindow is the default number of observations Drift compares.
const DriftWindow = 500

// driftEdges are the bins' edges in standard deviations from the mean.
var driftEdges = []float64{-2, -1, -0.5, 0, 0.5, 1, 2}

// NewDrift returns a drift meter for m's inputs over the last window
// observations (DriftWindow when window < 1).
func NewDrift(m Meta, window int) *Drift {
	if window < 1 {
		window = DriftWindow
	}
	d := &Drift{meta: append([]Feature(nil), m.Inputs...), window: window}
	d.expected = make([]float64, len(driftEdges)+1)
	prev := 0.0
	for i, z := range driftEdges {
		c := 0.5 * math.Erfc(-z/math.Sqrt2)
		d.expected[i] = c - prev
		prev = c
	}
	d.expected[len(driftEdges)] = 1 - prev
	for range d.meta {
		d.bins = append(d.bins, make([]int, window))
		d.counts = append(d.counts, make([]int, len(driftEdges)+1))
	}
	return d
}

// Observe adds one input vector (in the Meta's order; a shorter one is
// ignored).
func (d *Drift) Observe(x []float64) {
	if len(x) < len(d.meta) {
		return
	}
	for i, f := range d.meta {
		b := d.bin(f, x[i])
		if d.n == d.window {
			d.counts[i][d.bins[i][d.next]]--
		}
		d.bins[i][d.next] = b
		d.counts[i][b]++
	}
	d.next = (d.next + 1) % d.window
	if d.n < d.window {
		d.n++
	}
}

func (d *Drift) bin(f Feature, v float64) int {
	z := 0.0
	if f.Std > 0 {
		z = (v - f.Mean) / f.Std
	} else if v > f.Mean {
		z = math.Inf(1)
	} else if v < f.Mean {
		z = math.Inf(-1)
	}
	for i, e := range driftEdges {
		if z < e {
			return i
		}
	}
	return len(driftEdges)
}

// Observed is how many observations the figures rest on (at most the
// window).
func (d *Drift) Observed() int { return d.n }

// PSI returns each feature's population stability index against the
// training distribution (NaN before any observation). Empty bins count as
// half an observation, so that the index stays finite.
func (d *Drift) PSI() []float64 {
	out := make([]float64, len(d.meta))
	for i := range d.meta {
		if d.n == 0 {
			out[i] = math.NaN()
			continue
		}
		psi := 0.0
		for b, e := range d.expected {
			o := float64(d.counts[i][b])
			if o == 0 {
				o = 0.5
			}
			o /= float64(d.n)
			psi += (o - e) * math.Log(o/e)
		}
		out[i] = psi
	}
	return out
}

// SamplePSI is the population stability index of actual against
// expected, both samples of one quantity: the bins are expected's deciles
// (NaN with fewer than 10 values in either). Empty bins count as half an
// observation.
func SamplePSI(expected, actual []float64) float64 {
	if len(expected) < 10 || len(actual) < 10 {
		return math.NaN()
	}
	sorted := slices.Clone(expected)
	slices.Sort(sorted)
	edges := make([]float64, 0, 9)
	for i := 1; i < 10; i++ {
		edges = append(edges, sorted[i*len(sorted)/10])
	}
	count := func(xs []float64) []float64 {
		c := make([]float64, len(edges)+1)
		for _, x := range xs {
			i, _ := slices.BinarySearch(edges, x)
			c[i]++
		}
		for i := range c {
			c[i] = max(c[i], 0.5) / float64(len(xs))
		}
		return c
	}
	e, a := count(expected), count(actual)
	psi := 0.0
	for i := range e {
		psi += (a[i] - e[i]) * math.Log(a[i]/e[i])
	}
	return psi
}

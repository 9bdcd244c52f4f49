package ml

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDrift: inputs drawn from the training distribution keep every
// feature's PSI low; a feature shifted by two standard deviations shows a
// large one while the others stay low; the window forgets.
func TestDrift(t *testing.T) {
	m := Meta{Inputs: []Feature{{Name: "a", Mean: 10, Std: 2}, {Name: "b", Mean: -3, Std: 0.5}}}
	rng := rand.New(rand.NewPCG(1, 2))
	d := NewDrift(m, 1000)
	if psi := d.PSI(); !math.IsNaN(psi[0]) {
		t.Fatalf("PSI before any observation: %v", psi)
	}
	draw := func(shiftA float64) []float64 {
		return []float64{10 + 2*(rng.NormFloat64()+shiftA), -3 + 0.5*rng.NormFloat64()}
	}
	for range 1000 {
		d.Observe(draw(0))
	}
	for i, p := range d.PSI() {
		if p > 0.05 {
			t.Errorf("feature %d from the training distribution: PSI %.3f", i, p)
		}
	}
	for range 1000 { // the window now holds only shifted a
		d.Observe(draw(2))
	}
	psi := d.PSI()
	if psi[0] < 1 || psi[1] > 0.05 {
		t.Errorf("a shifted by 2σ: PSI %v, want a > 1 and b low", psi)
	}
	if d.Observed() != 1000 {
		t.Errorf("observed %d, want the window's 1000", d.Observed())
	}
}

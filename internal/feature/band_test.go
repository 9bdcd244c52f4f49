package feature

import (
	"errors"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"strings"
	"testing"
)

// sine returns n samples of a·sin(2πft + φ) at rate.
func sine(n int, rate, f, a, phase float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = a * math.Sin(2*math.Pi*f*float64(i)/rate+phase)
	}
	return x
}

func add(xs ...[]float64) []float64 {
	out := make([]float64, len(xs[0]))
	for _, x := range xs {
		for i, v := range x {
			out[i] += v
		}
	}
	return out
}

func TestBandEnergy(t *testing.T) {
	const rate = 1024.0
	noise := make([]float64, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = r.NormFloat64()
	}
	tests := []struct {
		name    string
		x       []float64
		rate    float64
		lo, hi  float64
		want    float64
		tol     float64 // absolute
		whyWant string
	}{
		{"bin-centred sine inside", sine(1024, rate, 100, 2, 0.3), rate, 90, 110, math.Sqrt2, 1e-9,
			"A/√2 = 2/√2: the Hann main lobe (99, 100, 101 Hz) is all inside"},
		{"off-bin sine inside", sine(1024, rate, 123.4, 2, 1), rate, 100, 150, math.Sqrt2, 0.01 * math.Sqrt2,
			"A/√2, all but the far sidelobes"},
		{"sine outside", sine(1024, rate, 300.3, 2, 1), rate, 100, 150, 0, 1e-3,
			"a tone 150 Hz away leaves only sidelobes, far below 0.1 % of A"},
		{"sine at an edge", sine(1024, rate, 150, 2, 0), rate, 100, 150, math.Sqrt(0.5 * 2 * 2 * (1 + 0.25) / 1.5), 1e-9,
			"bins 149 and 150 of the lobe 149-150-151, weights ¼ and 1 of 1.5: A²/2·(1.25/1.5)"},
		{"two tones, first band", add(sine(1024, rate, 50, 1, 0), sine(1024, rate, 200, 3, 2)), rate, 40, 60, math.Sqrt(0.5), 1e-9,
			"1/√2"},
		{"two tones, second band", add(sine(1024, rate, 50, 1, 0), sine(1024, rate, 200, 3, 2)), rate, 190, 210, 3 / math.Sqrt2, 1e-9,
			"3/√2"},
		{"two tones, one band", add(sine(1024, rate, 50, 1, 0), sine(1024, rate, 200, 3, 2)), rate, 0, rate / 2, math.Sqrt(0.5 + 4.5), 1e-9,
			"√(1²/2 + 3²/2)"},
		{"offset counted at 0 Hz", add(sine(1024, rate, 100, 1, 0), constant(1024, -5)), rate, 0, 10, 5, 1e-9,
			"the mean's RMS is |−5|; the tone is far away"},
		{"offset not counted above 0 Hz", add(sine(1024, rate, 100, 1, 0), constant(1024, -5)), rate, 1, 150, math.Sqrt(0.5), 1e-9,
			"the mean is taken out before the window, so it does not leak"},
		{"white noise, whole band", noise, rate, 0, rate / 2, 1, 0.05,
			"Parseval: the RMS of unit normal noise is about 1"},
		{"white noise, a quarter", noise, rate, 0, rate / 8, 0.5, 0.05,
			"a quarter of the power of flat noise: RMS √¼"},
		{"prime length, padded", sine(1009, 1009, 100, 2, 0.5), 1009, 80, 120, math.Sqrt2, 0.01 * math.Sqrt2,
			"padding 1009 to 1024 points keeps the energy"},
		{"band above Nyquist", sine(1024, rate, 100, 2, 0), rate, 600, 900, 0, 1e-12,
			"nothing above rate/2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BandEnergy(tt.x, tt.rate, tt.lo, tt.hi)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-tt.want) > tt.tol {
				t.Errorf("BandEnergy = %.12g; want %.12g ± %g (%s)", got, tt.want, tt.tol, tt.whyWant)
			}
		})
	}
}

func constant(n int, c float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = c
	}
	return x
}

// TestBandEnergyDFT compares BandEnergies with a direct DFT of the same
// windowed, padded signal, for lengths that are and are not padded.
func TestBandEnergyDFT(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, n := range []int{16, 100, 243, 250, 257} {
		x := make([]float64, n)
		for i := range x {
			x[i] = r.NormFloat64() + 3
		}
		const rate = 500.0
		bands := []Band{{0, 250}, {0, 20}, {20, 80.5}, {100, 100}, {249, 1000}}
		got, err := BandEnergies(x, rate, bands)
		if err != nil {
			t.Fatal(err)
		}
		m := smooth(n)
		mean := 0.0
		for _, v := range x {
			mean += v / float64(n)
		}
		y := make([]complex128, m)
		wpow := 0.0
		for i, v := range x {
			w := math.Pow(math.Sin(math.Pi*float64(i)/float64(n)), 2) // = ½(1 − cos 2πi/n)
			y[i] = complex((v-mean)*w, 0)
			wpow += w * w
		}
		for j, b := range bands {
			p := 0.0
			for k := range m { // both sides of the spectrum
				f := float64(k) * rate / float64(m)
				if k > m/2 {
					f = float64(m-k) * rate / float64(m)
				}
				if f < b.Lo || f > b.Hi {
					continue
				}
				var c complex128
				for i, v := range y {
					c += v * cmplx.Exp(complex(0, -2*math.Pi*float64(k*i)/float64(m)))
				}
				p += real(c)*real(c) + imag(c)*imag(c)
			}
			p /= float64(m) * wpow
			if b.Lo == 0 {
				p += mean * mean
			}
			if want := math.Sqrt(p); math.Abs(got[j]-want) > 1e-9*math.Max(1, want) {
				t.Errorf("n=%d band %v: %v; direct DFT %v", n, b, got[j], want)
			}
		}
	}
}

func TestBandEnergyErrors(t *testing.T) {
	ok := sine(64, 100, 10, 1, 0)
	tests := []struct {
		name   string
		x      []float64
		rate   float64
		lo, hi float64
		want   string
	}{
		{"no samples", nil, 100, 0, 10, "0 samples"},
		{"one sample", []float64{1}, 100, 0, 10, "1 samples"},
		{"zero rate", ok, 0, 0, 10, "sample rate 0"},
		{"NaN rate", ok, math.NaN(), 0, 10, "sample rate NaN"},
		{"infinite rate", ok, math.Inf(1), 0, 10, "sample rate +Inf"},
		{"lo > hi", ok, 100, 20, 10, "band [20, 10]"},
		{"negative lo", ok, 100, -1, 10, "band [-1, 10]"},
		{"NaN edge", ok, 100, 0, math.NaN(), "band [0, NaN]"},
		{"infinite edge", ok, 100, 0, math.Inf(1), "band [0, +Inf]"},
		{"NaN sample", append([]float64{math.NaN()}, ok...), 100, 0, 10, "sample 0 is NaN"},
	}
	for _, tt := range tests {
		_, err := BandEnergy(tt.x, tt.rate, tt.lo, tt.hi)
		if err == nil || !errors.Is(err, ErrBand) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want ErrBand with %q", tt.name, err, tt.want)
		}
	}
}

func TestSmooth(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 7: 8, 11: 12, 1000: 1000, 1009: 1024, 2048: 2048, 65521: 65536} {
		if got := smooth(n); got != want {
			t.Errorf("smooth(%d) = %d; want %d", n, got, want)
		}
	}
}

func BenchmarkBandEnergy(b *testing.B) {
	x := add(sine(2048, 2560, 100, 1, 0), sine(2048, 2560, 900, 0.3, 1))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BandEnergies(x, 2560, []Band{{0, 250}, {250, 750}, {750, 1250}}); err != nil {
			b.Fatal(err)
		}
	}
}

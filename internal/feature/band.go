package feature

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/dsp/fourier"
)

// Band is a frequency band [Lo, Hi] in Hz.
type Band struct {
	Lo, Hi float64
}

// ErrBand is wrapped by the errors of BandEnergy and BandEnergies.
var ErrBand = errors.New("band energy")

// BandEnergy is the RMS (same unit as samples) of the part of the signal
// between lo and hi Hz, from a Hann-windowed real FFT with the window's
// energy loss corrected (Parseval), so a sine of amplitude A inside the
// band gives about A/√2. rate is the sample rate in Hz. See BandEnergies.
func BandEnergy(samples []float64, rate, lo, hi float64) (float64, error) {
	e, err := BandEnergies(samples, rate, []Band{{lo, hi}})
	if err != nil {
		return 0, err
	}
	return e[0], nil
}

// BandEnergies is BandEnergy for several bands from one FFT.
//
// The mean is taken out of the samples before the Hann window is applied,
// so that it does not leak into the lowest bins, and counted back as the
// 0 Hz component of a band that includes 0 Hz. The windowed samples are
// padded with zeros to the next length whose prime factors are 2, 3 and 5
// (padding keeps the energy and makes any length fast). A band takes the
// FFT bins whose centre frequency lies in [Lo, Hi], frequencies above the
// Nyquist frequency rate/2 contributing nothing; the mean square of a bin
// is its one-sided power divided by the window's energy, Σ|X_k|²·2 / (M·Σw²)
// for M points (the 0 Hz and Nyquist bins once). A tone's energy spreads
// over three bins of the Hann window (its main lobe), so a band should
// reach at least two bins (2·rate/M) beyond the tones it is meant to
// catch; a tone within a bin of an edge is partly counted.
//
// It refuses fewer than 2 samples, a sample that is not finite, a rate that
// is not finite and > 0, and a band whose edges are not finite with
// 0 ≤ Lo ≤ Hi.
func BandEnergies(samples []float64, rate float64, bands []Band) ([]float64, error) {
	n := len(samples)
	if n < 2 {
		return nil, fmt.Errorf("%w: %d samples; need at least 2", ErrBand, n)
	}
	if !(rate > 0) || math.IsInf(rate, 1) {
		return nil, fmt.Errorf("%w: sample rate %v is not a finite number > 0", ErrBand, rate)
	}
	for _, b := range bands {
		if math.IsNaN(b.Lo) || math.IsNaN(b.Hi) || math.IsInf(b.Lo, 0) || math.IsInf(b.Hi, 0) || b.Lo < 0 || b.Lo > b.Hi {
			return nil, fmt.Errorf("%w: band [%v, %v] Hz: want finite edges with 0 ≤ lo ≤ hi", ErrBand, b.Lo, b.Hi)
		}
	}
	m := 0.0
	for i, v := range samples {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: sample %d is %v", ErrBand, i, v)
		}
		m += v
	}
	m /= float64(n)

	size := smooth(n)
	y := make([]float64, size)
	wpow := 0.0 // Σw²
	for i, v := range samples {
		w := 0.5 * (1 - math.Cos(2*math.Pi*float64(i)/float64(n))) // periodic Hann
		y[i] = (v - m) * w
		wpow += w * w
	}
	coef := fourier.NewFFT(size).Coefficients(nil, y)
	norm := float64(size) * wpow
	df := rate / float64(size)

	out := make([]float64, len(bands))
	for j, b := range bands {
		p := 0.0
		kLo := int(math.Ceil(b.Lo / df))
		kHi := len(coef) - 1
		if f := math.Floor(b.Hi / df); f < float64(kHi) {
			kHi = int(f)
		}
		for k := kLo; k <= kHi; k++ {
			re, im := real(coef[k]), imag(coef[k])
			pk := re*re + im*im
			if k != 0 && 2*k != size { // one-sided: the negative frequency too
				pk *= 2
			}
			p += pk
		}
		p /= norm
		if b.Lo == 0 {
			p += m * m
		}
		out[j] = math.Sqrt(p)
	}
	return out, nil
}

// smooth returns the least n' ≥ n whose only prime factors are 2, 3 and 5.
func smooth(n int) int {
	for ; ; n++ {
		k := n
		for _, p := range []int{2, 3, 5} {
			for k%p == 0 {
				k /= p
			}
		}
		if k == 1 {
			return n
		}
	}
}

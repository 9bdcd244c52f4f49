package feature

import "math"

// compute returns fn over the samples at positions [lo, hi) of r.
func compute(fn Fn, r *ring, lo, hi int) (float64, bool) {
	n := hi - lo
	if n <= 0 {
		return 0, false
	}
	fn64 := float64(n)
	switch fn {
	case Count:
		return fn64, true
	case Sum:
		s := 0.0
		for i := lo; i < hi; i++ {
			s += r.at(i).v
		}
		return s, true
	case Mean:
		return mean(r, lo, hi), true
	case Min:
		m := math.Inf(1)
		for i := lo; i < hi; i++ {
			m = math.Min(m, r.at(i).v)
		}
		return m, true
	case Max:
		m := math.Inf(-1)
		for i := lo; i < hi; i++ {
			m = math.Max(m, r.at(i).v)
		}
		return m, true
	case Last:
		last := r.at(lo)
		for i := lo + 1; i < hi; i++ {
			if s := r.at(i); s.t > last.t {
				last = s
			}
		}
		return last.v, true
	case Stddev:
		m := mean(r, lo, hi)
		ss := 0.0
		for i := lo; i < hi; i++ {
			d := r.at(i).v - m
			ss += d * d
		}
		return math.Sqrt(ss / fn64), true
	case RMS:
		return rms(r, lo, hi), true
	case Peak:
		return peak(r, lo, hi), true
	case Crest:
		q := rms(r, lo, hi)
		if q == 0 || math.IsInf(q, 0) {
			return 0, false
		}
		return peak(r, lo, hi) / q, true
	case Kurtosis:
		if n < 4 {
			return 0, false
		}
		m := mean(r, lo, hi)
		var m2, m4 float64
		for i := lo; i < hi; i++ {
			d := r.at(i).v - m
			d2 := d * d
			m2 += d2
			m4 += d2 * d2
		}
		m2 /= fn64
		m4 /= fn64
		if m2 == 0 {
			return 0, false
		}
		return m4 / (m2 * m2), true
	case Rate:
		if n < 2 {
			return 0, false
		}
		// Times in seconds from the first sample, so that epoch
		// milliseconds lose no precision.
		t0 := r.at(lo).t
		sec := func(i int) float64 { return float64(r.at(i).t-t0) / 1000 }
		var tm, vm float64
		for i := lo; i < hi; i++ {
			tm += sec(i)
			vm += r.at(i).v
		}
		tm /= fn64
		vm /= fn64
		var stv, stt float64
		for i := lo; i < hi; i++ {
			dt := sec(i) - tm
			stv += dt * (r.at(i).v - vm)
			stt += dt * dt
		}
		if stt == 0 {
			return 0, false
		}
		return stv / stt, true
	}
	return 0, false
}

func mean(r *ring, lo, hi int) float64 {
	s := 0.0
	for i := lo; i < hi; i++ {
		s += r.at(i).v
	}
	return s / float64(hi-lo)
}

func rms(r *ring, lo, hi int) float64 {
	s := 0.0
	for i := lo; i < hi; i++ {
		v := r.at(i).v
		s += v * v
	}
	return math.Sqrt(s / float64(hi-lo))
}

func peak(r *ring, lo, hi int) float64 {
	p := 0.0
	for i := lo; i < hi; i++ {
		p = math.Max(p, math.Abs(r.at(i).v))
	}
	return p
}

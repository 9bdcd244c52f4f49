package scenario

import (
	"math"
	"time"
)

// storms is the rain one site of a class sees: the kinds that drain a
// catchment (flood, pump) share it.
//
// Rain comes in storms. Storms arrive as a Poisson process (storms_per_day)
// and each has the gamma-shaped hyetograph i(τ) = peak·(τ/rise)·e^(1−τ/rise):
// a rise to its peak after rise minutes, then a decay. Peaks are exponential
// with mean peak_mmh, rises 0.5 to 1.5 times rise_min. The storms are the
// class's: every device of a class draws the same ones from a stream seeded
// by the class alone (devices started in the same hour share them), and sees
// them scaled by its site's share (0.7 to 1.3) and delayed by up to 20
// minutes as the cell passes over the city. A storm fault adds a cloudburst
// of storm_peak mm/h at its start, its rise a quarter of its duration (30
// minutes without one).
type storms struct {
	gen      rng       // the class's stream
	at       time.Time // start of the current or next storm (before the site's delay)
	peak     float64   // mm/h
	rise     time.Duration
	perDay   float64
	meanPeak float64
	meanRise time.Duration
	injPeak  float64

	// The site.
	share float64
	delay time.Duration
}

// stormParams are the parameters newStorms reads.
var stormParams = []param{
	{"storms_per_day", 0.3, 0, 50},
	{"peak_mmh", 15, 0.1, 300},
	{"rise_min", 30, 1, 1440},
	{"storm_peak", 80, 0.1, 300},
}

// newStorms draws the site's share and delay from b's stream and seeds the
// class's storms.
func newStorms(b *base, p values) storms {
	s := storms{
		perDay:   p("storms_per_day"),
		meanPeak: p("peak_mmh"),
		meanRise: minutes(p("rise_min")),
		injPeak:  p("storm_peak"),
	}
	s.share = b.rng.between(0.7, 1.3)
	s.delay = time.Duration(b.rng.float() * float64(20*time.Minute))
	// The class's storms come from a stream without the device's index.
	s.gen = rng{derive(b.classSeed, 0x5707)}
	return s
}

func minutes(m float64) time.Duration { return time.Duration(m * float64(time.Minute)) }

// start places the first storm a gap after the hour of t.
func (s *storms) start(t time.Time) {
	s.at = t.Truncate(time.Hour)
	s.draw()
}

// draw places the next storm after the current one's start.
func (s *storms) draw() {
	if s.perDay <= 0 {
		s.at = time.Time{}
		return
	}
	gap := time.Duration(s.gen.exp() / s.perDay * float64(24*time.Hour))
	s.at = s.at.Add(max(gap, time.Minute))
	s.peak = math.Min(300, s.meanPeak*s.gen.exp())
	s.rise = time.Duration(s.gen.between(0.5, 1.5) * float64(s.meanRise))
}

// end is when the current storm has faded (g(12) < 0.0002).
func (s *storms) end() time.Time {
	return s.at.Add(s.delay + 12*s.rise)
}

// catchUp moves past the storms that have faded by cur.
func (s *storms) catchUp(cur time.Time) {
	for !s.at.IsZero() && !cur.Before(s.end()) {
		s.draw()
	}
}

// hyetograph is the storm shape g(u) = u·e^(1−u): 0 at the start, 1 at the
// peak (u = 1), then a decay.
func hyetograph(since, rise time.Duration) float64 {
	if since <= 0 || rise <= 0 {
		return 0
	}
	u := float64(since) / float64(rise)
	if u > 40 {
		return 0
	}
	return u * math.Exp(1-u)
}

// rain is the intensity at the site of b at x, in mm/h.
func (s *storms) rain(b *base, x time.Time) float64 {
	i := 0.0
	if !s.at.IsZero() {
		i += s.peak * hyetograph(x.Sub(s.at.Add(s.delay)), s.rise)
	}
	d := x.Sub(b.t0)
	for _, w := range b.faults {
		if w.kind != FaultStorm || d < w.from {
			continue
		}
		rise := 30 * time.Minute
		if w.to != math.MaxInt64 {
			rise = (w.to - w.from) / 4
		}
		i += s.injPeak * hyetograph(d-w.from, rise)
	}
	return s.share * i
}

// next is the first time after t that a storm reaches the site of b (zero
// when none is known).
func (s *storms) next(b *base, t time.Time) time.Time {
	var next time.Time
	if !s.at.IsZero() {
		if st := s.at.Add(s.delay); st.After(t) {
			next = st
		}
	}
	for _, w := range b.faults {
		if st := b.t0.Add(w.from); w.kind == FaultStorm && st.After(t) && (next.IsZero() || st.Before(next)) {
			next = st
		}
	}
	return next
}

package scenario

import (
	"hash/fnv"
	"math"
)

// rng is a SplitMix64 generator: 8 bytes of state, no allocation, and the
// same sequence on every platform, which is what makes a device's records a
// function of its seed. It is not for secrets.
type rng struct{ s uint64 }

func (r *rng) uint64() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// mix64 is SplitMix64's finaliser: a bijection that spreads every input bit
// over the output.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// derive combines seeds into a new one (order matters).
func derive(seeds ...uint64) uint64 {
	h := uint64(0x6a09e667f3bcc909)
	for _, s := range seeds {
		h = mix64(h ^ mix64(s+0x9e3779b97f4a7c15))
	}
	return h
}

// hashString is a seed for a name (a class's), FNV-1a.
func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// float returns a uniform number in [0, 1).
func (r *rng) float() float64 { return float64(r.uint64()>>11) / (1 << 53) }

// between returns a uniform number in [lo, hi).
func (r *rng) between(lo, hi float64) float64 { return lo + (hi-lo)*r.float() }

// norm returns a standard normal number (Box-Muller, one of the pair).
func (r *rng) norm() float64 {
	u := 1 - r.float() // (0, 1]
	return math.Sqrt(-2*math.Log(u)) * math.Cos(2*math.Pi*r.float())
}

// norm2 returns two independent standard normal numbers.
func (r *rng) norm2() (float64, float64) {
	u := 1 - r.float()
	m := math.Sqrt(-2 * math.Log(u))
	s, c := math.Sincos(2 * math.Pi * r.float())
	return m * c, m * s
}

// exp returns an exponential number with mean 1.
func (r *rng) exp() float64 { return -math.Log(1 - r.float()) }

// poisson returns a Poisson number with mean lambda: Knuth's product of
// uniforms for the small means of a meter's hour, a rounded normal beyond.
func (r *rng) poisson(lambda float64) int {
	switch {
	case lambda <= 0:
		return 0
	case lambda > 30:
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*r.norm())))
	}
	limit, p, n := math.Exp(-lambda), r.float(), 0
	for p > limit {
		p *= r.float()
		n++
	}
	return n
}

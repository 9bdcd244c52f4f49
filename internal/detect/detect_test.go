package detect

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		v    interface{ Validate() error }
		want string // a part of the error; "" for valid
	}{
		{"ewma", &EWMA{Alpha: 0.1, Warmup: 10}, ""},
		{"ewma alpha 1", &EWMA{Alpha: 1}, ""},
		{"ewma alpha 0", &EWMA{Alpha: 0}, "alpha 0 is not in (0, 1]"},
		{"ewma alpha > 1", &EWMA{Alpha: 1.5}, "alpha 1.5 is not in (0, 1]"},
		{"ewma alpha NaN", &EWMA{Alpha: math.NaN()}, "alpha NaN"},
		{"ewma warmup", &EWMA{Alpha: 0.1, Warmup: -1}, "negative warmup -1"},
		{"ewma min std", &EWMA{Alpha: 0.1, MinStd: -1}, "min std -1"},
		{"ewma min std inf", &EWMA{Alpha: 0.1, MinStd: math.Inf(1)}, "min std +Inf"},
		{"cusum", &CUSUM{Target: 5, Sigma: 1, K: 0.5, H: 4}, ""},
		{"cusum learn", &CUSUM{K: 0.5, H: 4, Warmup: 2, Learn: true}, ""},
		{"cusum learn target", &CUSUM{Sigma: 1, K: 0, H: 4, Warmup: 1, Learn: true}, ""},
		{"cusum k", &CUSUM{Sigma: 1, K: -0.1, H: 4}, "negative slack k -0.1"},
		{"cusum h", &CUSUM{Sigma: 1, K: 0.5, H: 0}, "decision interval h 0 is not > 0"},
		{"cusum warmup", &CUSUM{Sigma: 1, K: 0.5, H: 4, Warmup: -1}, "negative warmup -1"},
		{"cusum sigma", &CUSUM{Sigma: -1, K: 0.5, H: 4}, "negative sigma -1"},
		{"cusum no sigma", &CUSUM{K: 0.5, H: 4}, "sigma 0 without learn"},
		{"cusum learn sigma short", &CUSUM{K: 0.5, H: 4, Warmup: 1, Learn: true}, "at least 2 samples, not 1"},
		{"cusum learn short", &CUSUM{Sigma: 1, K: 0.5, H: 4, Learn: true}, "at least 1 sample, not 0"},
		{"cusum NaN", &CUSUM{Sigma: 1, K: 0.5, H: math.NaN()}, "not all finite"},
		{"hysteresis", &Hysteresis{On: 10, Off: 8}, ""},
		{"hysteresis NaN", &Hysteresis{On: math.NaN(), Off: 8}, "not both finite"},
		{"delay", &Delay{On: time.Second}, ""},
		{"delay negative", &Delay{On: time.Second, Off: -time.Second}, "negative on 1s or off -1s"},
	}
	for _, tt := range tests {
		err := tt.v.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want ErrInvalid with %q", tt.name, err, tt.want)
		}
	}
}

// TestEWMASpike: in unit normal noise, a spike of 6 scores about 6 and
// nothing else scores above 4.5.
func TestEWMASpike(t *testing.T) {
	tests := []struct {
		alpha float64
		spike float64
	}{
		{0.05, 6}, {0.01, 6}, {0.05, -8},
	}
	for _, tt := range tests {
		r := rand.New(rand.NewPCG(3, 4))
		e := &EWMA{Alpha: tt.alpha, Warmup: 100}
		for i := range 2000 {
			x := r.NormFloat64()
			if i == 1500 {
				x = tt.spike
			}
			score, ready := e.Update(x)
			if ready != (i >= 100) {
				t.Fatalf("alpha %v: sample %d ready %v", tt.alpha, i, ready)
			}
			switch {
			case i == 1500:
				if math.Abs(score-tt.spike) > 1.5 {
					t.Errorf("alpha %v: spike %v scores %v", tt.alpha, tt.spike, score)
				}
			case ready && math.Abs(score) > 4.5:
				t.Errorf("alpha %v: sample %d (%v) scores %v", tt.alpha, i, x, score)
			}
		}
		if math.Abs(e.Mean()) > 0.3 || math.Abs(e.Std()-1) > 0.3 {
			t.Errorf("alpha %v: mean %v std %v; want about 0 and 1", tt.alpha, e.Mean(), e.Std())
		}
	}
}

// TestCUSUMShift: with k = 0.5 and h = 5, in-control unit normal noise
// raises no alarm (the in-control average run length is about 465), and a
// shift of one sigma, either way, is caught within 30 samples (average
// about 10).
func TestCUSUMShift(t *testing.T) {
	for _, tt := range []struct {
		name  string
		c     CUSUM
		shift float64
	}{
		{"known up", CUSUM{Target: 20, Sigma: 2, K: 0.5, H: 5}, 2},
		{"known down", CUSUM{Target: 20, Sigma: 2, K: 0.5, H: 5}, -2},
		{"learned up", CUSUM{K: 0.5, H: 5, Warmup: 50, Learn: true}, 2},
	} {
		r := rand.New(rand.NewPCG(5, 6))
		c := tt.c
		for i := range 130 {
			x := 20 + 2*r.NormFloat64()
			if i >= 100 {
				x += tt.shift
			}
			hi, lo, alarm, ready := c.Update(x)
			if hi < 0 || lo < 0 {
				t.Fatalf("%s: sums %v %v", tt.name, hi, lo)
			}
			if alarm {
				if i < 100 {
					t.Fatalf("%s: false alarm at %d", tt.name, i)
				}
				if (tt.shift > 0) != (hi > c.H) {
					t.Fatalf("%s: alarm on the wrong side: hi %v lo %v", tt.name, hi, lo)
				}
				t.Logf("%s: caught at %d", tt.name, i)
				break
			}
			if i == 129 {
				t.Fatalf("%s: shift not caught in 30 samples", tt.name)
			}
			if !ready && !tt.c.Learn {
				t.Fatalf("%s: not ready", tt.name)
			}
		}
	}
}

// TestDelayChangesRarely: whatever the input (random conditions at random
// times, some going backwards), a Delay never changes state twice within
// min(On, Off): off to on takes On, on to off takes Off, counted on the
// newest time seen.
func TestDelayChangesRarely(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 18))
	for round := range 200 {
		d := &Delay{
			On:  time.Duration(r.IntN(5000)) * time.Millisecond,
			Off: time.Duration(r.IntN(5000)) * time.Millisecond,
		}
		if round%10 == 0 {
			d.Off = 0
		}
		var now, lastChange int64
		changes := 0
		for range 5000 {
			step := int64(r.IntN(400)) - 50 // sometimes backwards
			t0 := now + step
			now = max(now, t0)
			state, changed := d.Update(t0, r.IntN(3) > 0 == (round%2 == 0))
			if !changed {
				continue
			}
			gap := d.Off.Milliseconds() // to off
			if state {
				gap = d.On.Milliseconds()
			}
			if changes > 0 && now-lastChange < gap {
				t.Fatalf("round %d, %+v: changed to %v %d ms after the last change; want ≥ %d", round, d, state, now-lastChange, gap)
			}
			if changes > 0 && now-lastChange < min(d.On, d.Off).Milliseconds() {
				t.Fatalf("round %d: two changes within min(On, Off)", round)
			}
			lastChange = now
			changes++
		}
		if changes == 0 && d.On < time.Second {
			t.Errorf("round %d, %+v: never changed: the test tests nothing", round, d)
		}
	}
}

// TestDelayZeroValue: the zero Delay follows its condition.
func TestDelayZeroValue(t *testing.T) {
	var d Delay
	prev := false // a Delay starts off
	for i, cond := range []bool{false, true, true, false, true} {
		state, changed := d.Update(int64(i), cond)
		if state != cond || changed != (cond != prev) {
			t.Errorf("step %d: %v, %v; want %v, %v", i, state, changed, cond, cond != prev)
		}
		prev = cond
	}
}

func BenchmarkEWMA(b *testing.B) {
	e := &EWMA{Alpha: 0.05, Warmup: 10}
	x := 0.0
	for b.Loop() {
		x += 0.37
		e.Update(math.Sin(x))
	}
}

func BenchmarkCUSUM(b *testing.B) {
	c := &CUSUM{Target: 0, Sigma: 1, K: 0.5, H: 5}
	x := 0.0
	for b.Loop() {
		x += 0.37
		if _, _, alarm, _ := c.Update(math.Sin(x)); alarm {
			c.Reset()
		}
	}
}

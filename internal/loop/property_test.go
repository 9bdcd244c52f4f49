package loop

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestActionsStayWithinGuards drives the engine with random vibration and
// feed samples, random device answers and random clock steps, through a
// loop whose action would leave its bounds, step and rate by far; every
// action the engine sends must stay within them, and no more than the rate
// limit's count in any window.
func TestActionsStayWithinGuards(t *testing.T) {
	const (
		lo, hi   = 40.0, 120.0
		maxStep  = 15.0
		maxRate  = 0.5 // per second
		count    = 3
		per      = time.Minute
		cooldown = 5 * time.Second
	)
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			e := newEnv(t, "hub", "")
			e.object("demo:cnc-1", "demo:cnc-spindle", "", "", "")
			clamp := seed%2 == 0
			def := fmt.Sprintf(`
id: wild
mode: active
on: {model: demo:cnc-spindle}
perceive:
  band: {property: vibBandHigh, fn: last}
  feed: {property: feedRate, fn: last}
  pick: {property: toolWear, fn: last}
decide:
  when: band > 1.0
  repeat: 1s
act:
  command: setFeedRate
  args: {feedRate: "pick > 50.0 ? feed * 3.0 - 200.0 : feed * pick / 10.0"}
guard:
  bounds: {feedRate: [%g, %g]}
  max_step: {feedRate: %g}
  max_rate: {feedRate: %g}
  rate_limit: {count: %d, per: %s}
  cooldown: %s
  clamp: %v
`, lo, hi, maxStep, maxRate, count, per, cooldown, clamp)
			if _, _, err := e.engine.Define(e.ctx, "test", "demo", []byte(def)); err != nil {
				t.Fatal(err)
			}
			if err := e.engine.load(e.ctx); err != nil {
				t.Fatal(err)
			}
			now := goldenBase
			feed := 100.0
			type sent struct {
				at time.Time
				v  float64
			}
			var history []sent
			seen := map[int64]bool{}
			for step := 0; step < 400; step++ {
				now = now.Add(time.Duration(rng.IntN(4000)) * time.Millisecond)
				e.clock.set(now)
				band := rng.Float64() * 3
				e.sample("demo:cnc-1", now, map[string]any{"vibBandHigh": band, "feedRate": feed, "toolWear": rng.Float64() * 100})
				if rng.IntN(3) == 0 {
					e.engine.tick(e.ctx)
				}
				evs, err := e.engine.opts.Store.ListEvidence(e.ctx, EvidenceFilter{States: []string{StateSent, StateVerify, StateDone, StateFailed}, Limit: 1000})
				if err != nil {
					t.Fatal(err)
				}
				for i := len(evs) - 1; i >= 0; i-- {
					ev := evs[i]
					if seen[ev.ID] || ev.Action == nil || ev.Action.SentAt == nil {
						continue
					}
					seen[ev.ID] = true
					v := ev.Action.Values["feedRate"]
					at := *ev.Action.SentAt
					if v < lo-1e-9 || v > hi+1e-9 {
						t.Fatalf("step %d: sent %v outside [%v, %v]: %s", step, v, lo, hi, describe(ev))
					}
					if cur, ok := ev.Current["feedRate"]; ok && math.Abs(v-cur) > maxStep+1e-9 {
						t.Fatalf("step %d: sent %v, a step of %v from %v: %s", step, v, math.Abs(v-cur), cur, describe(ev))
					}
					if n := len(history); n > 0 {
						last := history[n-1]
						dt := at.Sub(last.at).Seconds()
						if dt < cooldown.Seconds()-1e-3 {
							t.Fatalf("step %d: sent %s after the previous one, cooldown %s", step, at.Sub(last.at), cooldown)
						}
						if math.Abs(v-last.v) > maxRate*dt+1e-6 {
							t.Fatalf("step %d: sent %v, %v from %v in %.3fs: rate over %v/s", step, v, math.Abs(v-last.v), last.v, dt, maxRate)
						}
					}
					inWindow := 1
					for _, h := range history {
						if at.Sub(h.at) < per {
							inWindow++
						}
					}
					if inWindow > count {
						t.Fatalf("step %d: %d actions within %s, at most %d", step, inWindow, per, count)
					}
					history = append(history, sent{at, v})
					// The device takes the value, most of the time.
					if rng.IntN(5) > 0 {
						feed = v
					}
				}
			}
			if len(history) < 3 {
				t.Fatalf("only %d actions sent in 400 steps: the test did not exercise the guards", len(history))
			}
			t.Logf("clamp %v: %d actions sent", clamp, len(history))
		})
	}
}

package guard

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// FuzzEvaluate builds a policy, a history of one earlier action and a
// proposal from the fuzzer's numbers and checks that Evaluate neither panics
// nor breaks the properties of TestPropertyGuards, and that the decision
// encodes as JSON (evidence is stored that way).
func FuzzEvaluate(f *testing.F) {
	f.Add(72.0, 70.0, 69.0, 0.0, 100.0, 5.0, 1.0, int64(10_000), 3, int64(60_000), int64(0), uint16(0xffff), "door")
	f.Add(120.0, 50.0, 58.0, 0.0, 100.0, 10.0, 1.0, int64(5_000), 0, int64(0), int64(1_000), uint16(0x0fff), "")
	f.Add(5.0, 0.1, 0.1, -1e300, 1e300, 0.2, 0.3, int64(1), 1, int64(1), int64(0), uint16(0x00ff), "a")
	f.Add(math.NaN(), math.Inf(1), math.Inf(-1), 10.0, 5.0, -1.0, math.NaN(), int64(-5), -1, int64(-1), int64(-1), uint16(0xffff), "")
	f.Add(1e308, -1e308, 1e308, math.Inf(-1), math.Inf(1), math.Inf(1), 1e308, int64(0), 2, int64(1000), int64(5), uint16(0x1234), "x")
	f.Fuzz(func(t *testing.T, value, current, last, lo, hi, step, rate float64, ago int64, count int, perMs, cooldownMs int64, flags uint16, cond string) {
		bit := func(i uint) bool { return flags&(1<<i) != 0 }
		p := Policy{Clamp: bit(0), RateLimit: RateLimit{Count: count, Per: time.Duration(perMs) * time.Millisecond},
			Cooldown: time.Duration(cooldownMs) * time.Millisecond}
		if bit(1) || bit(2) {
			var r Range
			if bit(1) {
				r.Min = &lo
			}
			if bit(2) {
				r.Max = &hi
			}
			p.Bounds = map[string]Range{"v": r}
		}
		if bit(3) {
			p.MaxStep = map[string]float64{"v": step}
		}
		if bit(4) {
			p.MaxRate = map[string]float64{"v": rate}
		}
		if bit(5) {
			p.Interlocks = []Condition{{Name: cond, Expr: "x"}}
		}
		if bit(6) {
			p.Permissives = []Condition{{Name: cond + "p", Expr: "y"}}
		}
		if bit(7) {
			p.Approval = Approval{Required: 1, Expires: time.Hour}
		}
		_ = p.Validate()
		now := t0.Add(time.Duration(ago))
		prop := Proposal{Object: "o", Actuator: "a", Loop: "l", Site: "s", Now: now, Values: map[string]float64{"v": value},
			Conditions: map[string]ConditionResult{cond: {Holds: bit(8), Err: map[bool]string{true: "boom"}[bit(9)]}, cond + "p": {Holds: bit(10)}}}
		if bit(11) {
			prop.Current = map[string]float64{"v": current}
		}
		var h *History
		rec := newSentRecord()
		if bit(12) {
			h = NewHistory(int(flags >> 13))
			if bit(13) {
				h.Record("o", "a", t0, map[string]float64{"v": last})
				rec.record("o", "a", t0, map[string]float64{"v": last})
			}
		}
		var bypasses []Bypass
		if bit(14) {
			bypasses = []Bypass{{Guard: cond, Until: now, RequestedBy: "a", ApprovedBy: []string{"a"}}}
		}
		kill := Kill{}
		if bit(15) && bit(14) && bit(13) {
			kill.All = cond + "!"
		}
		d := Evaluate(p, prop, h, bypasses, kill)
		if err := checkDecision(p, prop, d, rec, kill); err != nil {
			t.Fatalf("%v\npolicy %+v\nresults %+v", err, p, d.Results)
		}
		if _, err := json.Marshal(d); err != nil {
			t.Fatalf("decision does not encode: %v", err)
		}
	})
}

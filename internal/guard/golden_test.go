package guard

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/decisions.golden.json")

// TestGoldenDecisions pins the evidence a few typical decisions record:
// the results' names, order, outcomes and details as the engine stores them.
func TestGoldenDecisions(t *testing.T) {
	h := NewHistory(8)
	h.Record("demo:cnc-a-001", "setFeedRate", t0.Add(-20*time.Second), map[string]float64{"feedRate": 64})
	h.Record("demo:cnc-a-001", "setFeedRate", t0.Add(-10*time.Second), map[string]float64{"feedRate": 68})
	feed := Policy{
		Bounds:      map[string]Range{"feedRate": {f(20), f(80)}},
		MaxStep:     map[string]float64{"feedRate": 5},
		MaxRate:     map[string]float64{"feedRate": 0.5},
		RateLimit:   RateLimit{Count: 3, Per: time.Minute},
		Cooldown:    5 * time.Second,
		Clamp:       true,
		Permissives: []Condition{{Name: "spindle_on", Expr: "telemetry.spindleRpm > 100"}},
		Interlocks:  []Condition{{Name: "door_closed", Expr: "telemetry.doorOpen == false"}},
	}
	holds := map[string]ConditionResult{
		"spindle_on":  {Holds: true, Inputs: map[string]any{"telemetry.spindleRpm": 1450.0}},
		"door_closed": {Holds: true, Inputs: map[string]any{"telemetry.doorOpen": false}},
	}
	doorOpen := map[string]ConditionResult{
		"spindle_on":  holds["spindle_on"],
		"door_closed": {Holds: false, Inputs: map[string]any{"telemetry.doorOpen": true}},
	}
	prop := func(value float64, conds map[string]ConditionResult) Proposal {
		p := base()
		p.Values, p.Current, p.Conditions = map[string]float64{"feedRate": value}, map[string]float64{"feedRate": 69}, conds
		return p
	}
	approval := feed
	approval.Approval = Approval{Required: 2, Approvers: []string{"ann", "bob", "cy"}, Expires: 15 * time.Minute}
	setpoint := Policy{Bounds: map[string]Range{"setpoint": {f(4), f(12)}}}
	desired := Proposal{Object: "demo:chiller-1", Actuator: "desired", Site: "demo:plant-b", Loop: "chill",
		Values: map[string]float64{"setpoint": 9}, Current: map[string]float64{"setpoint": 7}, Now: t0}
	bypass := Bypass{Guard: "interlock:door_closed", Loop: "feed", Until: t0.Add(30 * time.Minute),
		Reason: "door switch under repair, guarded by a fitter", RequestedBy: "ann", ApprovedBy: []string{"bob"}}

	got := map[string]Decision{
		"allowed":             Evaluate(feed, prop(72, holds), h, nil, Kill{}),
		"clamped":             Evaluate(feed, prop(95, holds), h, nil, Kill{}),
		"interlock_refused":   Evaluate(feed, prop(72, doorOpen), h, nil, Kill{}),
		"interlock_bypassed":  Evaluate(feed, prop(72, doorOpen), h, []Bypass{bypass}, Kill{}),
		"killed":              Evaluate(feed, prop(72, holds), h, []Bypass{bypass}, Kill{Sites: map[string]string{"demo:plant-a": "fire alarm"}}),
		"waits_for_approval":  Evaluate(approval, prop(72, holds), h, nil, Kill{}),
		"desired_state":       Evaluate(setpoint, desired, NewHistory(8), nil, Kill{}),
		"desired_state_clamp": Evaluate(Policy{Bounds: setpoint.Bounds, Clamp: true}, Proposal{Object: desired.Object, Actuator: "desired", Values: map[string]float64{"setpoint": 2}, Now: t0}, NewHistory(8), nil, Kill{}),
	}
	// Seconds later the cooldown and the rate limit hold the next action.
	h.Record("demo:cnc-a-001", "setFeedRate", t0, got["allowed"].Values)
	next := prop(73, holds)
	next.Now = t0.Add(2 * time.Second)
	got["cooldown_and_rate_limit"] = Evaluate(feed, next, h, nil, Kill{})

	enc, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	enc = append(enc, '\n')
	path := filepath.Join("testdata", "decisions.golden.json")
	if *update {
		if err := os.WriteFile(path, enc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update)", err)
	}
	if !bytes.Equal(enc, want) {
		t.Fatalf("decisions differ from %s (run go test -run Golden -update and review the diff):\n%s", path, enc)
	}
}

package sim_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/hubtest"
)

// chatterYAML: one spindle, always cutting, chattering from the start
// (its stability limit lowered to 70 % feed by the fault).
const chatterYAML = `
name: chatter
tenant: demo
seed: 3
classes:
  - name: cnc
    kind: cnc
    count: 1
    network: ethernet
    interval: 1s
    params: {cut_fraction: 1, feed: 100}
    faults:
      - {kind: chatter, at: 0s}
`

// chatterLoop is examples/loops/chatter-feed.yaml with the times of a test.
const chatterLoop = `
id: chatter-feed
tenant: demo
mode: active
on: {model: demo:cnc-spindle}
perceive:
  band: {property: vibBandHigh, fn: mean, window: 3s}
  feed: {property: feedRate, fn: last}
decide:
  when: band > 1.0
  clear: band < 0.5
  on_delay: 2s
  repeat: 4s
act:
  command: setFeedRate
  args: {feedRate: feed * 0.85}
  alarm: {name: chatter, severity: medium}
  verify: {expect: band < 1.0, within: 30s}
guard:
  bounds: {feedRate: [30, 120]}
  max_step: {feedRate: 20}
  cooldown: 3s
`

// TestChatterLoopBringsVibrationDown: a simulated spindle chatters; the
// chatter loop at the hub lowers its feed override step by step (the
// commands reach the device through the command service and change its
// physics) until the chatter band falls, the decision clears and the
// action is verified.
func TestChatterLoopBringsVibrationDown(t *testing.T) {
	h := hubtest.Start(t)
	start(t, h, chatterYAML)
	h.MustAdmin(201, "POST", "/api/v1/loops", chatterLoop)
	type evidence struct {
		ID       int64              `json:"id"`
		Kind     string             `json:"kind"`
		State    string             `json:"state"`
		Features map[string]float64 `json:"features"`
		Action   *struct {
			Args map[string]float64 `json:"args"`
		} `json:"action"`
	}
	var evs []evidence
	eventually(t, 90*time.Second, "the loop acts and the chatter clears", func() error {
		var out struct{ Evidence []evidence }
		h.MustAdmin(200, "GET", "/api/v1/evidence?loop=demo:chatter-feed&limit=1000", nil).JSON(t, &out)
		evs = out.Evidence
		for _, ev := range evs {
			if ev.Kind == "clear" {
				return nil
			}
		}
		return fmt.Errorf("%d records, no clear yet", len(evs))
	})
	var acted, verified int
	lowest := 100.0
	for _, ev := range evs {
		if ev.Kind == "action" && ev.Action != nil {
			acted++
			lowest = min(lowest, ev.Action.Args["feedRate"])
			if ev.State == "done" {
				verified++
			}
		}
		if ev.Kind == "clear" && ev.Features["band"] >= 0.5 {
			t.Errorf("cleared with band %v, want < 0.5", ev.Features["band"])
		}
	}
	if acted == 0 || verified == 0 || lowest >= 85 || lowest < 30 {
		t.Fatalf("acted %d, verified %d, lowest feed %v: want the feed lowered within bounds and an action verified; records %+v", acted, verified, lowest, evs)
	}
	// The device took the last feed override: its own report says so.
	var latest struct {
		Values map[string]struct {
			V any `json:"value"`
		} `json:"values"`
	}
	h.MustAdmin(200, "GET", "/api/v1/telemetry/demo:cnc-000/latest", nil).JSON(t, &latest)
	if f, _ := latest.Values["feedRate"].V.(float64); f > 85 || f < 30 {
		t.Errorf("the spindle reports feed %v, want it lowered (≤ 85) within bounds", f)
	}
	if b, ok := latest.Values["vibBandHigh"].V.(float64); !ok || b >= 1.0 {
		t.Errorf("the spindle's high band is %v, want it under the chatter threshold", b)
	}
	var alarms struct {
		Alarms []struct{ Name, State string }
	}
	h.MustAdmin(200, "GET", "/api/v1/alarms?object=demo:cnc-000", nil).JSON(t, &alarms)
	if len(alarms.Alarms) != 1 || alarms.Alarms[0].Name != "chatter" || alarms.Alarms[0].State != "unack_cleared" {
		t.Errorf("alarms %+v, want chatter raised and cleared (unacknowledged)", alarms.Alarms)
	}
}

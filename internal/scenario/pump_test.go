package scenario

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/device"
)

// last is the latest value of a property in recs.
func last(t *testing.T, recs []device.Record, name string) float64 {
	t.Helper()
	s := series(recs, name)
	if len(s) == 0 {
		t.Fatalf("no %s reported", name)
	}
	return s[len(s)-1].v
}

func eventsNamed(evs []Event, name string) []Event {
	var out []Event
	for _, e := range evs {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// A storm without the pump: the well fills to its depth and overflows.
func TestPumpStormOverflows(t *testing.T) {
	stormAt := start.Add(time.Hour)
	c := class(t, KindPump, time.Minute, map[string]float64{"storms_per_day": 0}, Fault{Kind: FaultStorm, At: time.Hour, Duration: time.Hour})
	recs, evs := run(c.Device(0, 1), start, start.Add(4*time.Hour), time.Minute)
	well := series(recs, "wellLevel")
	dry := between(well, start, stormAt)
	if rise := dry[len(dry)-1].v - dry[0].v; rise < -1 || rise > 10 {
		t.Errorf("in an hour of dry weather the well moved %.1f cm (base inflow 0.5 l/s: about 6 cm)", rise)
	}
	if dry[0].v > 200 {
		t.Errorf("the well starts at %.1f cm, over the usual start (at most 40 %% of the way to warn_cm)", dry[0].v)
	}
	peak := argmax(well)
	if peak.v < 399 || peak.v > 401.5 {
		t.Errorf("the well peaks at %.1f cm, want its depth, 400", peak.v)
	}
	if n := len(between(well, stormAt.Add(time.Hour), start.Add(4*time.Hour))); n == 0 || mean(between(well, stormAt.Add(time.Hour), start.Add(4*time.Hour))) < 395 {
		t.Error("the well does not stay full after the storm without pumping")
	}
	high := eventsNamed(evs, "wellHigh")
	if len(high) != 1 || high[0].Time.Before(stormAt) || high[0].Data["wellLevel"].(float64) < 300 || high[0].Data["warnLevel"] != 300.0 {
		t.Errorf("wellHigh events %v, want one in the storm at 300 cm or more", high)
	}
	if trips := eventsNamed(evs, "pumpTrip"); len(trips) != 0 {
		t.Errorf("a stopped pump tripped: %v", trips)
	}
	for _, name := range []string{"running", "flow", "power"} {
		if m := argmax(series(recs, name)); m.v != 0 {
			t.Errorf("%s %v at %v: nothing started the pump", name, m.v, m.t)
		}
	}
	if r := argmax(series(recs, "rainfall")); r.v < 40 || r.t.Before(stormAt) {
		t.Errorf("rainfall peaks at %.1f mm/h at %v", r.v, r.t)
	}
}

// Started in a storm, the pump empties the well against the inflow, raises
// the river with its discharge, and stops itself near empty.
func TestPumpStartEmptiesWell(t *testing.T) {
	c := class(t, KindPump, 15*time.Second, map[string]float64{"storms_per_day": 0}, Fault{Kind: FaultStorm, At: 10 * time.Minute, Duration: time.Hour})
	on, off := c.Device(1, 3), c.Device(1, 3)
	// Both to the time the well passes 250 cm.
	var at time.Time
	var level float64
	for tm := start; at.IsZero() && tm.Before(start.Add(2*time.Hour)); tm = tm.Add(15 * time.Second) {
		recs := on.Step(tm)
		off.Step(tm)
		if len(recs) > 0 && last(t, recs, "wellLevel") > 250 {
			at, level = tm, last(t, recs, "wellLevel")
		}
	}
	if at.IsZero() {
		t.Fatal("the storm never filled the well to 250 cm")
	}
	on.Events()
	out, err := on.Command("start", nil)
	if err != nil || out["running"] != true {
		t.Fatalf("start: %v, %v", out, err)
	}
	end := at.Add(30 * time.Minute)
	ron, evs := run(on, at.Add(15*time.Second), end, 15*time.Second)
	roff, _ := run(off, at.Add(15*time.Second), end, 15*time.Second)
	trips := eventsNamed(evs, "pumpTrip")
	if len(trips) != 1 {
		t.Fatalf("pumpTrip events %v, want one when the well ran low", trips)
	}
	trip := trips[0]
	if trip.Data["wellLevel"] != 30.0 || trip.Data["minLevel"] != 30.0 {
		t.Errorf("tripped at %v", trip.Data)
	}
	t.Logf("started at %.1f cm, tripped %v later", level, trip.Time.Sub(at))
	// While it ran: the level fell report after report, it delivered
	// about its capacity, and its power followed the flow.
	well, flow, power := between(series(ron, "wellLevel"), at, trip.Time), between(series(ron, "flow"), at, trip.Time), between(series(ron, "power"), at, trip.Time)
	if len(well) < 4 {
		t.Fatalf("%d reports while it ran", len(well))
	}
	prev := level
	for _, p := range well {
		if p.v >= prev {
			t.Errorf("the well rose to %.1f cm at %v with the pump running", p.v, p.t)
		}
		prev = p.v
	}
	for i, p := range flow {
		if p.v < 200 || p.v > 500 {
			t.Errorf("flow %.1f l/s at %v, want about the capacity, 400", p.v, p.t)
		}
		// ρ·g·Q·H/η at a head of 3 to 8 m: 0.04 to 0.12 kW per l/s.
		if k := power[i].v / p.v; k < 0.04 || k > 0.12 {
			t.Errorf("%.1f kW for %.1f l/s", power[i].v, p.v)
		}
	}
	// Stopped by the trip: no flow, and the storm fills the well again.
	after := between(series(ron, "flow"), trip.Time, end)
	if len(after) == 0 || argmax(after).v != 0 || last(t, ron, "running") != 0 {
		t.Errorf("after the trip: flow %v, running %v", after, last(t, ron, "running"))
	}
	if w := last(t, ron, "wellLevel"); w <= 30 {
		t.Errorf("the well stayed at %.1f cm in the storm after the trip", w)
	}
	// The pump's discharge raised the river over the other's.
	da, db := mean(between(series(roff, "downstreamLevel"), trip.Time.Add(-3*time.Minute), trip.Time)), mean(between(series(ron, "downstreamLevel"), trip.Time.Add(-3*time.Minute), trip.Time))
	t.Logf("downstream %.1f cm unpumped, %.1f cm pumped", da, db)
	if db < da+5 {
		t.Errorf("pumping 400 l/s raised the river from %.1f to %.1f cm only", da, db)
	}
	// The other was never started: its well overflows.
	if w := argmax(series(roff, "wellLevel")).v; w < 399 {
		t.Errorf("without the pump the well peaks at %.1f cm", w)
	}
}

// Desired running starts and stops the pump as the actions do; stop stops
// it before a trip.
func TestPumpDesiredAndStop(t *testing.T) {
	// A small pump without inflow: 50 l/s take 10 cm a minute off 30 m2.
	c := class(t, KindPump, time.Minute, map[string]float64{"storms_per_day": 0, "base_lps": 0, "min_cm": 0, "capacity_lps": 50})
	d := c.Device(0, 1)
	recs, _ := run(d, start, start.Add(10*time.Minute), time.Minute)
	w0 := last(t, recs, "wellLevel")
	if rep := d.Desired(map[string]any{"running": true, "flow": 3.0}); rep["running"] != true || len(rep) != 1 {
		t.Fatalf("desired running true: reported %v", rep)
	}
	recs, evs := run(d, start.Add(11*time.Minute), start.Add(12*time.Minute), time.Minute)
	if len(evs) != 0 || last(t, recs, "running") != 1 || last(t, recs, "flow") < 40 {
		t.Fatalf("after desired running true: %v, events %v", recs, evs)
	}
	if w1 := last(t, recs, "wellLevel"); w1 > w0-8 || w1 < w0-25 {
		t.Errorf("the well went from %.1f to %.1f cm in one to two minutes of pumping 50 l/s", w0, w1)
	}
	if rep := d.Desired(map[string]any{"running": false}); rep["running"] != false {
		t.Fatalf("desired running false: reported %v", rep)
	}
	recs, evs = run(d, start.Add(13*time.Minute), start.Add(20*time.Minute), time.Minute)
	if len(evs) != 0 || argmax(series(recs, "flow")).v != 0 || argmax(series(recs, "power")).v != 0 {
		t.Errorf("after desired running false: flow %v, events %v", series(recs, "flow"), evs)
	}
	// With no inflow a stopped pump's well stands still.
	if s := series(recs, "wellLevel"); math.Abs(s[len(s)-1].v-s[0].v) > 2 {
		t.Errorf("a stopped pump's well moved from %.1f to %.1f cm", s[0].v, s[len(s)-1].v)
	}
	if rep := d.Desired(map[string]any{"running": "yes"}); rep["running"] != false {
		t.Errorf("a non-boolean running changed it: %v", rep)
	}
	// The actions take no arguments; unknown ones are refused.
	if _, err := d.Command("start", json.RawMessage(`{"speed":1}`)); !errors.Is(err, ErrBadArgs) {
		t.Errorf("start with an argument: %v", err)
	}
	if _, err := d.Command("setSpeed", nil); !errors.Is(err, ErrUnknownAction) {
		t.Errorf("setSpeed: %v", err)
	}
	if out, err := d.Command("stop", json.RawMessage(`{}`)); err != nil || out["running"] != false {
		t.Errorf("stop: %v, %v", out, err)
	}
}

// Dry-run protection: the pump stops where the level crosses min_cm, and a
// pump started below it trips at once.
func TestPumpDryRunTrip(t *testing.T) {
	c := class(t, KindPump, time.Minute, map[string]float64{"storms_per_day": 0, "base_lps": 0, "min_cm": 60})
	d := c.Device(2, 1)
	recs, _ := run(d, start, start.Add(5*time.Minute), time.Minute)
	w0, at := last(t, recs, "wellLevel"), recs[len(recs)-1].Time
	if _, err := d.Command("start", nil); err != nil {
		t.Fatal(err)
	}
	recs, evs := run(d, start.Add(6*time.Minute), start.Add(20*time.Minute), time.Minute)
	trips := eventsNamed(evs, "pumpTrip")
	if len(trips) != 1 || trips[0].Data["wellLevel"] != 60.0 {
		t.Fatalf("pumpTrip events %v", trips)
	}
	// 400 l/s or so on 30 m2 takes 1.3 cm/s off the well, from the
	// report the command followed.
	took := trips[0].Time.Sub(at).Seconds()
	if want := (w0 - 60) / (400.0 / 300); took < 0.6*want || took > 1.4*want {
		t.Errorf("from %.1f cm to 60 cm in %.0f s, want about %.0f", w0, took, want)
	}
	if w := last(t, recs, "wellLevel"); math.Abs(w-60) > 1.5 {
		t.Errorf("after the trip without inflow the well is at %.1f cm, want 60", w)
	}
	if last(t, recs, "running") != 0 || last(t, recs, "flow") != 0 {
		t.Error("still running after the trip")
	}
	// Started again at its minimum: it trips at once.
	if out, err := d.Command("start", nil); err != nil || out["running"] != true {
		t.Fatalf("start: %v, %v", out, err)
	}
	from := start.Add(21 * time.Minute)
	recs, evs = run(d, from, start.Add(23*time.Minute), time.Minute)
	if trips := eventsNamed(evs, "pumpTrip"); len(trips) != 1 || trips[0].Time.After(from) {
		t.Errorf("started on a well at its minimum: trips %v", trips)
	}
	if argmax(series(recs, "flow")).v != 0 {
		t.Error("a pump started on an empty well delivered water")
	}
}

// A river fault takes the downstream level over the site's limit for about
// the fault's duration.
func TestPumpRiverFault(t *testing.T) {
	h := time.Hour
	c := class(t, KindPump, time.Minute, map[string]float64{"storms_per_day": 0}, Fault{Kind: FaultRiver, At: h, Duration: h})
	recs, _ := run(c.Device(0, 1), start, start.Add(4*h), time.Minute)
	limits := series(recs, "downstreamLimit")
	lim := limits[0].v
	if lim < 225 || lim > 275 || lim != math.Round(lim) {
		t.Errorf("downstreamLimit %v, want whole cm within 10 %% of 250", lim)
	}
	for _, p := range limits {
		if p.v != lim {
			t.Fatalf("downstreamLimit changed from %v to %v", lim, p.v)
		}
	}
	down := series(recs, "downstreamLevel")
	over := func(from, to time.Time) (n, all int) {
		for _, p := range between(down, from, to) {
			all++
			if p.v > lim {
				n++
			}
		}
		return n, all
	}
	if n, _ := over(start, start.Add(h)); n != 0 {
		t.Errorf("%d reports over the limit before the fault", n)
	}
	if n, all := over(start.Add(h+10*time.Minute), start.Add(2*h)); n != all || all == 0 {
		t.Errorf("%d of %d reports over the limit from 10 minutes into the fault", n, all)
	}
	if n, _ := over(start.Add(2*h+10*time.Minute), start.Add(4*h)); n != 0 {
		t.Errorf("%d reports over the limit from 10 minutes after the fault", n)
	}
	if m := argmax(down); m.v > lim+50+5 {
		t.Errorf("the river rose to %.1f cm, more than river_over_cm over the limit %v", m.v, lim)
	}
}

// The demo's pump stations: within ten minutes the storm fills the wells
// past 200 cm and two of them have the river over its limit, so that a
// loop that starts the pumps meets its interlock.
func TestPumpDemoClass(t *testing.T) {
	s, err := Builtin("demo")
	if err != nil {
		t.Fatal(err)
	}
	var c *Class
	for i := range s.Classes {
		if s.Classes[i].Kind == KindPump {
			c = &s.Classes[i]
		}
	}
	if c == nil || c.Edge || c.Network != "lte-cat1" || c.Interval != 15*time.Second {
		t.Fatalf("the demo's pump class: %+v", c)
	}
	blocked := 0
	for idx := range c.Count {
		recs, _ := run(c.Device(idx, s.Seed), start, start.Add(10*time.Minute), 15*time.Second)
		well := series(recs, "wellLevel")
		if w := well[len(well)-1]; w.v < 200 || w.v-well[0].v < 100 {
			t.Errorf("%s: the well rose from %.1f to %.1f cm only in the first 10 minutes", c.DeviceID(idx), well[0].v, w.v)
		}
		if last(t, recs, "downstreamLevel") > last(t, recs, "downstreamLimit") {
			blocked++
		}
	}
	if blocked != 2 {
		t.Errorf("%d stations with the river over its limit at 10 minutes, want the river fault's 2", blocked)
	}
}

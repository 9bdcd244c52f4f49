package scenario

import (
	"encoding/json"
	"math"
	"time"

	"github.com/wanwu-iot/wanwu/device"
)

// A stormwater pump station: a wet well that a catchment drains into and a
// pump that lifts the water into a river or channel downstream.
//
// Rain comes from the class's storms (storms_per_day, peak_mmh, rise_min,
// storm_peak and storm faults: storm.go describes them), scaled and delayed
// by the site. The catchment's runoff q lags the rain with time constant
// lag_min (dq/dt = (i − q)/lag, as for flood) and flows into the well with
// runoff·catchment_ha hectares: 2.78 l/s per mm/h on a hectare, plus
// base_lps of dry-weather inflow (groundwater). The well is a tank of
// well_m2: dh/dt = (inflow − pumped)/well_m2, 1 cm a second for 10 l/s on
// 1 m2. It starts 10 to 40 % of the way from min_cm to warn_cm (by site)
// and overflows at depth_cm (the level stays there; the rest spills). A
// level over warn_cm raises wellHigh (cleared 10 cm below it): without a
// loop to start the pump, every storm overflows the well.
//
// The pump does not start by itself: the start action or desired running
// true starts it, stop or desired false stops it. Running, it delivers
// capacity_lps at its static lift lift_m (the head with the well empty and
// the river at its dry level); the head rises as the river rises and falls
// as the well fills, and the flow falls 10 % per metre of extra head (50 %
// to 120 % of capacity). Power is ρ·g·Q·H/eta (kW for Q in m3/s, H in m):
// proportional to the flow at a given head; none while stopped. A running
// pump that draws the well below min_cm stops itself at that level and
// raises pumpTrip (dry-run protection); started on a well below min_cm, it
// trips at once.
//
// Downstream, the river's level is its dry-weather level river_base_cm
// (0.7 to 1.3 times it by site) plus three stores. The region's runoff lags
// the same rain with time constant river_lag_h and fills the river with
// river_gain cm per mm, draining with time constant river_drain_h (as
// flood's channel). The pump's own discharge raises it by discharge_cm per
// 100 l/s, settling with a 10-minute time constant. A river fault is a flood
// wave from upstream: while it lasts the level approaches river_over_cm
// above the site's downstreamLimit with time constant river_tau_min, and
// falls back as fast after it, so that an interlock on the downstream level
// blocks pumping for about the fault's duration. downstreamLimit, the level
// above which the station must not pump, is limit_cm, 0.9 to 1.1 times it by
// site (whole centimetres), reported with every report.
type pump struct {
	base
	storms storms

	// The site.
	lpsPerMMH     float64 // inflow per mm/h of runoff, l/s
	baseLps       float64
	areaM2        float64
	depthCm       float64
	warnCm, minCm float64
	capLps, lift  float64
	eta           float64
	riverBase     float64 // cm
	limit         float64 // cm
	riverGain     float64
	dischargeCm   float64 // per 100 l/s
	riverOver     float64 // cm
	lag, riverLag time.Duration
	drain, tau    time.Duration

	running bool
	high    bool

	q, qr              float64 // runoff, mm/h: the catchment's, the region's
	well               float64 // cm
	store, wave, mound float64 // cm of river above its base: storms, a river fault, the discharge
	rainMM, rainH      float64 // rain and hours since the previous report
}

// moundTau is how fast the river's level follows the pump's discharge.
const moundTau = 10 * time.Minute

func newPump(b base, p values) Device {
	d := &pump{
		base:        b,
		lpsPerMMH:   p("runoff") * p("catchment_ha") * 1e4 / 3600,
		baseLps:     p("base_lps"),
		areaM2:      p("well_m2"),
		depthCm:     p("depth_cm"),
		minCm:       p("min_cm"),
		capLps:      p("capacity_lps"),
		lift:        p("lift_m"),
		eta:         p("eta"),
		riverGain:   p("river_gain"),
		dischargeCm: p("discharge_cm"),
		riverOver:   p("river_over_cm"),
		lag:         minutes(p("lag_min")),
		riverLag:    time.Duration(p("river_lag_h") * float64(time.Hour)),
		drain:       time.Duration(p("river_drain_h") * float64(time.Hour)),
		tau:         minutes(p("river_tau_min")),
	}
	d.warnCm = math.Min(p("warn_cm"), d.depthCm)
	d.storms = newStorms(&d.base, p)
	d.riverBase = p("river_base_cm") * d.rng.between(0.7, 1.3)
	d.limit = math.Round(p("limit_cm") * d.rng.between(0.9, 1.1))
	d.well = d.minCm + math.Max(0, d.warnCm-d.minCm)*d.rng.between(0.1, 0.4)
	return d
}

func (d *pump) Step(t time.Time) []device.Record { return d.step(d, t) }

func (d *pump) start(t time.Time) { d.storms.start(t) }

func (d *pump) after(t time.Time) time.Time { return t.Add(d.interval) }

// pumpStep is the physics' step: a well fills or empties by centimetres in
// it.
const pumpStep = 10 * time.Second

func (d *pump) advance(t time.Time) {
	for cur := d.last; cur.Before(t); {
		d.storms.catchUp(cur)
		dt := min(pumpStep, t.Sub(cur))
		d.simulate(cur, dt)
		cur = cur.Add(dt)
	}
}

// downstream is the river's level, cm.
func (d *pump) downstream() float64 { return d.riverBase + d.store + d.wave + d.mound }

// head is the pump's head, m.
func (d *pump) head() float64 {
	return math.Max(0.5, d.lift+(d.downstream()-d.riverBase-d.well)/100)
}

// flow is what the pump delivers at the present head, l/s.
func (d *pump) flow() float64 {
	return d.capLps * clamp(1-0.1*(d.head()-d.lift), 0.5, 1.2)
}

// power is the electrical power at flow q (l/s), kW.
func (d *pump) power(q float64) float64 { return 9.81 * q / 1000 * d.head() / d.eta }

// simulate moves the state over dt from cur.
func (d *pump) simulate(cur time.Time, dt time.Duration) {
	i := d.storms.rain(&d.base, cur.Add(dt/2))
	d.rainMM += i * dt.Hours()
	d.rainH += dt.Hours()
	q0 := d.q
	d.q = approach(d.q, i, dt, d.lag)
	d.qr = approach(d.qr, i, dt, d.riverLag)
	in := d.baseLps + d.lpsPerMMH*(q0+d.q)/2
	out := 0.0
	if d.running {
		out = d.flow()
	}
	cmPerS := func(lps float64) float64 { return lps / (10 * d.areaM2) }
	s := dt.Seconds()
	h := d.well + cmPerS(in-out)*s
	if d.running && h < d.minCm {
		// Dry-run protection: the pump stops where the level crosses
		// min_cm, at once if it is below already.
		frac, at := 0.0, d.well
		if d.well > d.minCm {
			frac, at = (d.well-d.minCm)/(d.well-h), d.minCm
		}
		h = at + cmPerS(in)*(1-frac)*s
		out *= frac
		d.running = false
		d.raise("pumpTrip", cur.Add(time.Duration(frac*float64(dt))), map[string]any{"wellLevel": round(at, 1), "minLevel": d.minCm})
	}
	d.well = clamp(h, 0, d.depthCm)
	d.store = approach(d.store, d.riverGain*d.qr*d.drain.Hours(), dt, d.drain)
	wave := 0.0
	if d.fault(FaultRiver, cur) {
		wave = math.Max(0, d.limit+d.riverOver-d.riverBase)
	}
	d.wave = approach(d.wave, wave, dt, d.tau)
	d.mound = approach(d.mound, d.dischargeCm*out/100, dt, moundTau)
}

func (d *pump) report(t time.Time, out []device.Record, emit bool) []device.Record {
	rain := 0.0
	if d.rainH > 0 {
		rain = d.rainMM / d.rainH
	}
	d.rainMM, d.rainH = 0, 0
	r := d.reportRNG(t)
	well := round(clamp(d.well+0.3*r.norm(), 0, 1000), 1)
	switch {
	case !d.high && well >= d.warnCm:
		d.high = true
		d.raise("wellHigh", t, map[string]any{"wellLevel": well, "warnLevel": d.warnCm})
	case d.high && well < d.warnCm-10:
		d.high = false
	}
	if !emit {
		return out
	}
	flow, power := 0.0, 0.0
	if d.running {
		q := d.flow()
		flow = round(clamp(q*(1+0.01*r.norm()), 0, 5000), 1)
		power = round(clamp(d.power(q), 0, 5000), 2)
	}
	return append(out,
		device.Record{Name: "running", Time: t, Value: d.running},
		device.Record{Name: "wellLevel", Unit: "cm", Time: t, Value: well},
		device.Record{Name: "downstreamLevel", Unit: "cm", Time: t, Value: round(clamp(d.downstream()+0.5*r.norm(), 0, 3000), 1)},
		device.Record{Name: "downstreamLimit", Unit: "cm", Time: t, Value: d.limit},
		device.Record{Name: "flow", Unit: "l/s", Time: t, Value: flow},
		device.Record{Name: "power", Unit: "kW", Time: t, Value: power},
		device.Record{Name: "rainfall", Unit: "mm/h", Time: t, Value: round(clamp(rain, 0, 500), 1)},
	)
}

// Command carries out start and stop.
func (d *pump) Command(action string, args json.RawMessage) (map[string]any, error) {
	switch action {
	case "start", "stop":
		if err := noArgs(action, args); err != nil {
			return nil, err
		}
		d.running = action == "start"
		return map[string]any{"running": d.running}, nil
	}
	return nil, unknownAction(action)
}

// Desired sets running.
func (d *pump) Desired(state map[string]any) map[string]any {
	if v, ok := state["running"].(bool); ok {
		d.running = v
	}
	return map[string]any{"running": d.running}
}

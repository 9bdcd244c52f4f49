package scenario

import (
	"encoding/json"
	"math"
	"time"

	"github.com/wanwu-iot/wanwu/device"
)

// A household gas or water meter on NB-IoT.
//
// Consumption comes in uses (a flush, a shower, a cooking session): in each
// hour their number is Poisson with a mean that follows a daily profile
// (morning and evening peaks, next to nothing at night) scaled to daily_m3,
// and each use draws 0.3 to 1.7 times use_m3. So night hours mostly see no
// flow at all, which is what a leak changes: a leak fault adds a constant
// leak_lps that never stops. The meter, like a real one, calls flow without
// a pause for leak_detect_h a leak (leakAlarm, event leak); a pause clears
// it. A closed valve stops all flow, a leak's included.
//
// Between readings the meter sleeps (PSM): Next is its next reading. Every
// reading is a transmission and costs the battery tx_mah; sleeping costs
// sleep_ua (see battery).
type meter struct {
	base
	gas     bool
	profile *[24]float64

	daily, use  float64 // m3 per day, m3 per use
	leakLPS     float64
	leakDetectH float64

	volume   float64 // the register, m3
	since    float64 // m3 since the previous reading
	prev     time.Time
	valve    bool    // open
	flowingH float64 // hours of flow without a pause
	minFlow  float64 // l/s, the least flow of a sub-step while flowing
	leakSent bool

	bat   battery
	radio radio
	place place
}

// Daily profiles, the share of a day's consumption in each hour (they are
// normalised to sum to 1). Water: a morning peak at 7-8, an evening one at
// 19-20. Gas: breakfast, lunch, and dinner with hot water at 18.
var (
	waterProfile = normalise([24]float64{0.5, 0.3, 0.2, 0.2, 0.3, 1.0, 3.5, 6.0, 5.0, 3.0, 2.5, 2.5, 3.0, 2.5, 2.0, 2.0, 2.5, 3.5, 5.0, 6.0, 5.5, 4.0, 2.5, 1.2})
	gasProfile   = normalise([24]float64{0.2, 0.1, 0.1, 0.1, 0.2, 0.8, 4.0, 6.0, 3.0, 1.5, 1.5, 4.0, 5.0, 2.0, 1.0, 1.0, 2.0, 5.0, 7.0, 5.0, 3.0, 2.0, 1.0, 0.5})
)

func normalise(p [24]float64) *[24]float64 {
	sum := 0.0
	for _, v := range p {
		sum += v
	}
	for i := range p {
		p[i] /= sum
	}
	return &p
}

func newWaterMeter(b base, p values) Device { return newMeter(b, p, false) }
func newGasMeter(b base, p values) Device   { return newMeter(b, p, true) }

func newMeter(b base, p values, gas bool) *meter {
	m := &meter{
		base:        b,
		gas:         gas,
		profile:     waterProfile,
		daily:       p("daily_m3"),
		use:         p("use_m3"),
		leakLPS:     p("leak_lps"),
		leakDetectH: p("leak_detect_h"),
		valve:       true,
		minFlow:     math.Inf(1),
	}
	if gas {
		m.profile = gasProfile
	}
	// Households differ: half to one and a half times the class's usage.
	m.daily *= m.rng.between(0.5, 1.5)
	m.volume = round(m.rng.float()*p("initial_m3"), 3)
	m.bat = newBattery(&m.rng, p)
	m.radio = newRadio(&m.rng)
	m.place = newPlace(&m.rng, p)
	return m
}

func (m *meter) Step(t time.Time) []device.Record { return m.step(m, t) }

func (m *meter) start(t time.Time) { m.prev = t }

func (m *meter) after(t time.Time) time.Time { return t.Add(m.interval) }

// advance integrates consumption in sub-steps that end on the hour, so each
// has one profile value.
func (m *meter) advance(t time.Time) {
	for cur := m.last; cur.Before(t); {
		end := cur.Truncate(time.Hour).Add(time.Hour)
		if end.After(t) {
			end = t
		}
		dt := end.Sub(cur)
		m.consume(cur, dt)
		m.bat.drain(dt)
		cur = end
	}
}

func (m *meter) consume(from time.Time, dt time.Duration) {
	mid := from.Add(dt / 2)
	h := dt.Hours()
	n := m.rng.poisson(m.daily * m.profile[int(hours(mid))%24] * h / m.use)
	v := 0.0
	for range n {
		v += m.use * m.rng.between(0.3, 1.7)
	}
	if m.fault(FaultLeak, mid) {
		v += m.leakLPS * dt.Seconds() / 1000
	}
	if !m.valve {
		v = 0
	}
	m.volume += v
	m.since += v
	if v == 0 {
		m.flowingH, m.minFlow, m.leakSent = 0, math.Inf(1), false
		return
	}
	m.flowingH += h
	m.minFlow = math.Min(m.minFlow, v*1000/dt.Seconds())
	if m.flowingH >= m.leakDetectH && !m.leakSent {
		m.leakSent = true
		m.raise("leak", from.Add(dt), map[string]any{"flow": round(m.minFlow, 5), "hours": round(m.flowingH, 2)})
	}
}

func (m *meter) report(t time.Time, out []device.Record, emit bool) []device.Record {
	flow := 0.0
	if d := t.Sub(m.prev); d >= time.Second {
		flow = m.since * 1000 / d.Seconds()
	}
	m.since, m.prev = 0, t
	m.bat.use(m.bat.txMAh)
	r := m.reportRNG(t)
	if !emit {
		return out
	}
	out = append(out,
		device.Record{Name: "volume", Unit: "m3", Time: t, Value: round(m.volume, 3)},
		device.Record{Name: "flow", Unit: "l/s", Time: t, Value: clamp(round(flow, 5), 0, 100)},
		device.Record{Name: "valve", Time: t, Value: m.valveState()},
		device.Record{Name: "leakAlarm", Time: t, Value: m.leakSent},
		device.Record{Name: "battery", Unit: "%", Time: t, Value: m.bat.percent()},
		device.Record{Name: "batteryVoltage", Unit: "V", Time: t, Value: m.bat.voltage(&r)},
		device.Record{Name: "rsrp", Unit: "dBm", Time: t, Value: m.radio.sample(&r)},
	)
	return m.place.records(t, out)
}

func (m *meter) valveState() string {
	if m.valve {
		return "open"
	}
	return "closed"
}

// valveMAh is what moving the valve's motor takes from the battery.
const valveMAh = 0.5

func (m *meter) Command(action string, args json.RawMessage) (map[string]any, error) {
	switch action {
	case "closeValve", "openValve":
		if err := noArgs(action, args); err != nil {
			return nil, err
		}
		open := action == "openValve"
		if m.valve != open {
			m.valve = open
			m.bat.use(valveMAh)
		}
		return map[string]any{"valve": m.valveState()}, nil
	}
	return nil, unknownAction(action)
}

// Desired: a meter has no writable properties; it reports its valve.
func (m *meter) Desired(map[string]any) map[string]any {
	return map[string]any{"valve": m.valveState()}
}

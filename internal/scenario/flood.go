package scenario

import (
	"encoding/json"
	"time"

	"github.com/wanwu-iot/wanwu/device"
)

// A city flood sensor: a tipping-bucket rain gauge and an ultrasonic level
// sensor over a drain or culvert.
//
// Rain comes from the class's storms (storms_per_day, peak_mmh, rise_min,
// storm_peak and storm faults: storm.go describes them), scaled and delayed
// by the site.
//
// The water level follows the rain through two linear stores: the
// catchment's runoff q lags the rain with time constant lag_min, and the
// channel is a linear reservoir that fills with gain cm per mm of runoff and
// drains with time constant drain_h toward its dry-weather level (base_cm,
// 0.3 to 1.7 times it by site): dq/dt = (i − q)/lag,
// dh/dt = gain·q − (h − base)/drain. A level over alarmLevel raises
// levelAlarm (cleared 5 cm below it).
//
// The sensor reports every interval in dry weather and every
// storm_interval_s while it rains or the water is more than 5 cm above its
// dry level; the rain gauge wakes it from sleep when rain starts.
type flood struct {
	base
	storms storms

	// The site.
	baseCm  float64
	gain    float64
	lag     time.Duration
	drain   time.Duration
	stormIv time.Duration

	q, level   float64 // mm/h, cm
	rainMM     float64 // since the previous report
	prev       time.Time
	alarmLevel float64
	alarm      bool
	sendAlarm  bool // alarmLevel changed: report it

	bat   battery
	radio radio
	place place
}

func newFlood(b base, p values) Device {
	f := &flood{
		base:       b,
		gain:       p("gain"),
		lag:        minutes(p("lag_min")),
		drain:      time.Duration(p("drain_h") * float64(time.Hour)),
		stormIv:    time.Duration(p("storm_interval_s") * float64(time.Second)),
		alarmLevel: p("alarm_cm"),
		sendAlarm:  true,
	}
	f.storms = newStorms(&f.base, p)
	f.baseCm = p("base_cm") * f.rng.between(0.3, 1.7)
	f.bat = newBattery(&f.rng, p)
	f.radio = newRadio(&f.rng)
	f.place = newPlace(&f.rng, p)
	return f
}

func (f *flood) Step(t time.Time) []device.Record { return f.step(f, t) }

func (f *flood) start(t time.Time) {
	f.prev = t
	f.level = f.baseCm
	f.storms.start(t)
}

// rain is the intensity at this site at x, in mm/h.
func (f *flood) rain(x time.Time) float64 { return f.storms.rain(&f.base, x) }

const (
	wetStep = time.Minute
	dryStep = 10 * time.Minute
)

func (f *flood) advance(t time.Time) {
	for cur := f.last; cur.Before(t); {
		f.storms.catchUp(cur)
		// Dry weather with the stores near rest takes long steps, cut
		// short where a storm begins.
		dt := wetStep
		if f.q < 0.01 && f.rain(cur) < 0.01 && f.rain(cur.Add(dryStep)) < 0.01 {
			dt = dryStep
			if s := f.storms.next(&f.base, cur); !s.IsZero() && s.Sub(cur) < dt {
				dt = max(s.Sub(cur), time.Second)
			}
		}
		if rest := t.Sub(cur); rest < dt {
			dt = rest
		}
		i := f.rain(cur.Add(dt / 2))
		f.rainMM += i * dt.Hours()
		f.q = approach(f.q, i, dt, f.lag)
		f.level = approach(f.level, f.baseCm+f.gain*f.q*f.drain.Hours(), dt, f.drain)
		f.bat.drain(dt)
		cur = cur.Add(dt)
	}
}

func (f *flood) wet(t time.Time) bool {
	return f.rain(t) >= 0.1 || f.level > f.baseCm+5
}

func (f *flood) after(t time.Time) time.Time {
	if f.wet(t) {
		return t.Add(f.stormIv)
	}
	next := t.Add(f.interval)
	// The rain gauge's first tip wakes the sensor.
	if s := f.storms.next(&f.base, t); !s.IsZero() && s.Add(f.stormIv).Before(next) {
		next = s.Add(f.stormIv)
	}
	return next
}

func (f *flood) report(t time.Time, out []device.Record, emit bool) []device.Record {
	rain := 0.0
	if d := t.Sub(f.prev); d >= time.Second {
		rain = f.rainMM / d.Hours()
	}
	f.rainMM, f.prev = 0, t
	f.bat.use(f.bat.txMAh)
	r := f.reportRNG(t)
	level := round(clamp(f.level+0.3*r.norm(), 0, 500), 1)
	switch {
	case !f.alarm && level >= f.alarmLevel:
		f.alarm = true
		f.raise("levelAlarm", t, map[string]any{"level": level, "alarmLevel": f.alarmLevel})
	case f.alarm && level < f.alarmLevel-5:
		f.alarm = false
	}
	if !emit {
		return out
	}
	out = append(out,
		device.Record{Name: "rainfall", Unit: "mm/h", Time: t, Value: round(clamp(rain, 0, 500), 1)},
		device.Record{Name: "level", Unit: "cm", Time: t, Value: level},
		device.Record{Name: "alarm", Time: t, Value: f.alarm},
		device.Record{Name: "battery", Unit: "%", Time: t, Value: f.bat.percent()},
		device.Record{Name: "rsrp", Unit: "dBm", Time: t, Value: f.radio.sample(&r)},
	)
	if f.sendAlarm {
		f.sendAlarm = false
		out = append(out, device.Record{Name: "alarmLevel", Unit: "cm", Time: t, Value: f.alarmLevel})
	}
	return f.place.records(t, out)
}

func (f *flood) Command(action string, _ json.RawMessage) (map[string]any, error) {
	return nil, unknownAction(action)
}

// Desired sets alarmLevel (1 to 500 cm).
func (f *flood) Desired(state map[string]any) map[string]any {
	if v, ok := number(state["alarmLevel"]); ok && v >= 1 && v <= 500 && v != f.alarmLevel {
		f.alarmLevel = v
		f.sendAlarm = true
	}
	return map[string]any{"alarmLevel": f.alarmLevel}
}

package scenario

import (
	"encoding/json"
	"math"
	"time"

	"github.com/wanwu-iot/wanwu/device"
)

// A city flood sensor: a tipping-bucket rain gauge and an ultrasonic level
// sensor over a drain or culvert.
//
// Rain comes in storms. Storms arrive as a Poisson process (storms_per_day)
// and each has the gamma-shaped hyetograph i(τ) = peak·(τ/rise)·e^(1−τ/rise):
// a rise to its peak after rise minutes, then a decay. Peaks are exponential
// with mean peak_mmh, rises 0.5 to 1.5 times rise_min. The storms are the
// class's: every device of a class draws the same ones from a stream seeded
// by the class alone (devices started in the same hour share them), and sees
// them scaled by its site's share (0.7 to 1.3) and delayed by up to 20
// minutes as the cell passes over the city. A storm fault adds a cloudburst
// of storm_peak mm/h at its start, its rise a quarter of its duration (30
// minutes without one).
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

	// The storm generator, the class's.
	storms    rng
	stormAt   time.Time // start of the current or next storm (before the site's delay)
	stormPeak float64   // mm/h
	stormRise time.Duration
	perDay    float64
	meanPeak  float64
	meanRise  time.Duration
	injPeak   float64

	// The site.
	share   float64
	delay   time.Duration
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
		perDay:     p("storms_per_day"),
		meanPeak:   p("peak_mmh"),
		meanRise:   minutes(p("rise_min")),
		injPeak:    p("storm_peak"),
		gain:       p("gain"),
		lag:        minutes(p("lag_min")),
		drain:      time.Duration(p("drain_h") * float64(time.Hour)),
		stormIv:    time.Duration(p("storm_interval_s") * float64(time.Second)),
		alarmLevel: p("alarm_cm"),
		sendAlarm:  true,
	}
	f.share = f.rng.between(0.7, 1.3)
	f.delay = time.Duration(f.rng.float() * float64(20*time.Minute))
	f.baseCm = p("base_cm") * f.rng.between(0.3, 1.7)
	f.bat = newBattery(&f.rng, p)
	f.radio = newRadio(&f.rng)
	f.place = newPlace(&f.rng, p)
	// The class's storms come from a stream without the device's index.
	f.storms = rng{derive(b.classSeed, 0x5707)}
	return f
}

func minutes(m float64) time.Duration { return time.Duration(m * float64(time.Minute)) }

func (f *flood) Step(t time.Time) []device.Record { return f.step(f, t) }

func (f *flood) start(t time.Time) {
	f.prev = t
	f.level = f.baseCm
	f.stormAt = t.Truncate(time.Hour) // the first storm comes a gap after the hour
	f.drawStorm()
}

// drawStorm places the next storm after the current one's start.
func (f *flood) drawStorm() {
	if f.perDay <= 0 {
		f.stormAt = time.Time{}
		return
	}
	gap := time.Duration(f.storms.exp() / f.perDay * float64(24*time.Hour))
	f.stormAt = f.stormAt.Add(max(gap, time.Minute))
	f.stormPeak = math.Min(300, f.meanPeak*f.storms.exp())
	f.stormRise = time.Duration(f.storms.between(0.5, 1.5) * float64(f.meanRise))
}

// stormEnd is when the current storm has faded (g(12) < 0.0002).
func (f *flood) stormEnd() time.Time {
	return f.stormAt.Add(f.delay + 12*f.stormRise)
}

// hyetograph is the storm shape g(u) = u·e^(1−u): 0 at the start, 1 at the
// peak (u = 1), then a decay.
func hyetograph(since, rise time.Duration) float64 {
	if since <= 0 || rise <= 0 {
		return 0
	}
	u := float64(since) / float64(rise)
	if u > 40 {
		return 0
	}
	return u * math.Exp(1-u)
}

// rain is the intensity at this site at x, in mm/h.
func (f *flood) rain(x time.Time) float64 {
	i := 0.0
	if !f.stormAt.IsZero() {
		i += f.stormPeak * hyetograph(x.Sub(f.stormAt.Add(f.delay)), f.stormRise)
	}
	d := x.Sub(f.t0)
	for _, w := range f.faults {
		if w.kind != FaultStorm || d < w.from {
			continue
		}
		rise := 30 * time.Minute
		if w.to != math.MaxInt64 {
			rise = (w.to - w.from) / 4
		}
		i += f.injPeak * hyetograph(d-w.from, rise)
	}
	return f.share * i
}

// rainStart is the first time after t that a storm reaches this site (zero
// when none is known).
func (f *flood) rainStart(t time.Time) time.Time {
	var next time.Time
	if !f.stormAt.IsZero() {
		if s := f.stormAt.Add(f.delay); s.After(t) {
			next = s
		}
	}
	for _, w := range f.faults {
		if s := f.t0.Add(w.from); w.kind == FaultStorm && s.After(t) && (next.IsZero() || s.Before(next)) {
			next = s
		}
	}
	return next
}

const (
	wetStep = time.Minute
	dryStep = 10 * time.Minute
)

func (f *flood) advance(t time.Time) {
	for cur := f.last; cur.Before(t); {
		for !f.stormAt.IsZero() && !cur.Before(f.stormEnd()) {
			f.drawStorm()
		}
		// Dry weather with the stores near rest takes long steps, cut
		// short where a storm begins.
		dt := wetStep
		if f.q < 0.01 && f.rain(cur) < 0.01 && f.rain(cur.Add(dryStep)) < 0.01 {
			dt = dryStep
			if s := f.rainStart(cur); !s.IsZero() && s.Sub(cur) < dt {
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
	if s := f.rainStart(t); !s.IsZero() && s.Add(f.stormIv).Before(next) {
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

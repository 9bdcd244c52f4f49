package scenario

import (
	"encoding/json"
	"math"
	"time"

	"github.com/wanwu-iot/wanwu/device"
)

// A building's air-cooled water chiller.
//
// Outside it is out_mean + out_amp·cos(2π(h − 15)/24) °C (warmest at 15:00)
// plus weather, a first-order autoregressive wander of 1 K with a 3-hour time
// constant. The building's cooling load is capacity_kw · load ·
// (0.1 + 0.03·max(0, T_out − 16)), times 0.5 outside office hours (8:00 to
// 19:00).
//
// The chilled water supply approaches the setpoint with time constant
// tau_min (the loop's thermal mass); where the load is more than the chiller
// can deliver (its capacity falls 1 %/K above 35 °C outside), the supply
// settles above the setpoint by the shortfall over the loop's m·cp
// (capacity/5 kW/K: a design ΔT of 5 K). The return is the supply plus
// load/m·cp. Cooling delivered is the load plus what pulling the loop down
// takes. Power is delivered/COP plus fans and controls (aux·capacity), with
// COP = eta · T_evap/(T_cond − T_evap), T_evap = supply − 4 °C, T_cond =
// T_out + 10 °C (in kelvin), between 1.5 and 12: a lower setpoint or a
// hotter day costs power. The setpoint follows desired state and the
// setSetpoint action. An overheat fault fouls the condenser: T_cond rises by
// fouling_k and the capacity drops by 30 %. The supply more than 2 K over
// the setpoint for 15 minutes while running raises supplyHigh.
type chiller struct {
	base
	capKW, tau, eta, fouling, aux float64
	outMean, outAmp, loadScale    float64

	setpoint float64
	running  bool
	supply   float64
	weather  float64 // K
	highFor  time.Duration
	high     bool

	// The latest values, for the report.
	out, ret, power, cop, loadPct float64
}

func newChiller(b base, p values) Device {
	c := &chiller{
		base:      b,
		capKW:     p("capacity_kw"),
		tau:       p("tau_min"),
		eta:       p("eta"),
		fouling:   p("fouling_k"),
		aux:       p("aux"),
		outMean:   p("out_mean"),
		outAmp:    p("out_amp"),
		loadScale: p("load"),
		setpoint:  p("setpoint"),
		running:   true,
	}
	c.loadScale *= c.rng.between(0.8, 1.2) // buildings differ
	c.weather = c.rng.norm()
	c.supply = c.setpoint
	return c
}

func (c *chiller) Step(t time.Time) []device.Record { return c.step(c, t) }

func (c *chiller) start(t time.Time) { c.simulate(t, 0) }

func (c *chiller) after(t time.Time) time.Time { return t.Add(c.interval) }

const chillerStep = time.Minute

func (c *chiller) advance(t time.Time) {
	for cur := c.last; cur.Before(t); {
		dt := min(chillerStep, t.Sub(cur))
		cur = cur.Add(dt)
		c.simulate(cur, dt)
	}
}

// weatherTau and weatherSD shape the outside temperature's wander.
const (
	weatherTau = 3 * time.Hour
	weatherSD  = 1.0
)

// simulate moves the state over dt ending at t.
func (c *chiller) simulate(t time.Time, dt time.Duration) {
	if dt > 0 {
		a := math.Exp(-float64(dt) / float64(weatherTau))
		c.weather = c.weather*a + weatherSD*math.Sqrt(1-a*a)*c.rng.norm()
	}
	h := hours(t)
	out := c.outMean + c.outAmp*math.Cos(2*math.Pi*(h-15)/24) + c.weather
	occupancy := 0.5
	if h >= 8 && h < 19 {
		occupancy = 1
	}
	load := clamp(c.capKW*c.loadScale*(0.1+0.03*math.Max(0, out-16))*occupancy, 0, 1.5*c.capKW)
	avail := c.capKW * (1 - 0.01*math.Max(0, out-35))
	cond := out + 10
	if c.fault(FaultOverheat, t) {
		cond += c.fouling
		avail *= 0.7
	}
	mcp := c.capKW / 5 // kW/K
	tau := time.Duration(c.tau * float64(time.Minute))
	old := c.supply
	if c.running {
		c.supply = approach(c.supply, c.setpoint+math.Max(0, load-avail)/mcp, dt, tau)
	} else {
		c.supply = approach(c.supply, math.Min(30, 14+0.25*(out-20)), dt, tau)
	}
	c.out, c.ret, c.power, c.cop, c.loadPct = out, c.supply+load/mcp, 0, 0, 0
	if !c.running {
		c.ret = c.supply + 0.5
		c.highFor, c.high = 0, false
		return
	}
	delivered := load
	if dt > 0 {
		delivered += mcp * tau.Seconds() * (old - c.supply) / dt.Seconds()
	}
	delivered = clamp(delivered, 0, avail)
	te := c.supply - 4 + 273.15
	tc := cond + 273.15
	c.cop = clamp(c.eta*te/math.Max(tc-te, 1), 1.5, 12)
	c.power = delivered/c.cop + c.aux*c.capKW
	c.loadPct = 100 * delivered / c.capKW
	if c.supply > c.setpoint+2 {
		c.highFor += dt
	} else if c.supply < c.setpoint+1 {
		c.highFor, c.high = 0, false
	}
	if c.highFor >= 15*time.Minute && !c.high {
		c.high = true
		c.raise("supplyHigh", t, map[string]any{"supplyTemp": round(c.supply, 2), "setpoint": c.setpoint})
	}
}

func (c *chiller) report(t time.Time, out []device.Record, emit bool) []device.Record {
	if !emit {
		return out
	}
	r := c.reportRNG(t)
	sensor := func(v float64) float64 { return round(v+0.05*r.norm(), 2) }
	return append(out,
		device.Record{Name: "running", Time: t, Value: c.running},
		device.Record{Name: "setpoint", Unit: "Cel", Time: t, Value: c.setpoint},
		device.Record{Name: "supplyTemp", Unit: "Cel", Time: t, Value: clamp(sensor(c.supply), -5, 40)},
		device.Record{Name: "returnTemp", Unit: "Cel", Time: t, Value: clamp(sensor(c.ret), -5, 45)},
		device.Record{Name: "outsideTemp", Unit: "Cel", Time: t, Value: clamp(round(c.out+0.1*r.norm(), 1), -40, 60)},
		device.Record{Name: "power", Unit: "kW", Time: t, Value: round(c.power, 1)},
		device.Record{Name: "load", Unit: "%", Time: t, Value: round(c.loadPct, 1)},
		device.Record{Name: "cop", Time: t, Value: round(c.cop, 2)},
	)
}

func (c *chiller) Command(action string, args json.RawMessage) (map[string]any, error) {
	switch action {
	case "setSetpoint":
		v, err := numberArg(action, args, "setpoint", 4, 15)
		if err != nil {
			return nil, err
		}
		c.setpoint = v
		return map[string]any{"setpoint": v}, nil
	case "start", "stop":
		if err := noArgs(action, args); err != nil {
			return nil, err
		}
		c.running = action == "start"
		return map[string]any{"running": c.running}, nil
	}
	return nil, unknownAction(action)
}

// Desired sets setpoint (4 to 15 °C) and running.
func (c *chiller) Desired(state map[string]any) map[string]any {
	if v, ok := number(state["setpoint"]); ok && v >= 4 && v <= 15 {
		c.setpoint = v
	}
	if v, ok := state["running"].(bool); ok {
		c.running = v
	}
	return map[string]any{"setpoint": c.setpoint, "running": c.running}
}

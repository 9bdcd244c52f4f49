package scenario

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/device"
)

// dayClasses are classes of every kind with every fault of their kind
// during the day; the CNC reports every minute so that a day stays cheap.
func dayClasses(t testing.TB) []*Class {
	h := time.Hour
	return []*Class{
		class(t, KindCNC, time.Minute, map[string]float64{"wear_rate": 2000},
			Fault{Kind: FaultChatter, At: 2 * h, Duration: 2 * h},
			Fault{Kind: FaultImbalance, At: 6 * h, Duration: 2 * h},
			Fault{Kind: FaultOverheat, At: 10 * h, Duration: 3 * h}),
		class(t, KindGasMeter, 0, map[string]float64{"leak_detect_h": 6}, Fault{Kind: FaultLeak, At: 3 * h}),
		class(t, KindWaterMeter, 15*time.Minute, map[string]float64{"leak_detect_h": 6}, Fault{Kind: FaultLeak, At: 0}),
		class(t, KindFlood, 0, map[string]float64{"storms_per_day": 2}, Fault{Kind: FaultStorm, At: 4 * h, Duration: 2 * h}),
		// A building that needs more than the chiller gives in a fault.
		class(t, KindChiller, 0, map[string]float64{"load": 2}, Fault{Kind: FaultOverheat, At: 12 * h, Duration: 4 * h}),
		// Nothing starts the pump before TestRecordsFitModel's commands:
		// the storm overflows the well.
		class(t, KindPump, 0, map[string]float64{"storms_per_day": 1},
			Fault{Kind: FaultStorm, At: 4 * h, Duration: 2 * h}, Fault{Kind: FaultRiver, At: 8 * h, Duration: h}),
	}
}

func TestDeterminism(t *testing.T) {
	for _, c := range dayClasses(t) {
		t.Run(c.Kind, func(t *testing.T) {
			end := start.Add(24 * time.Hour)
			a, ae := run(c.Device(3, 42), start, end, time.Minute)
			b, be := run(c.Device(3, 42), start, end, time.Minute)
			if len(a) == 0 {
				t.Fatal("no records in a day")
			}
			if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(ae, be) {
				t.Fatal("the same seed gave different records")
			}
			// Calling at other times changes nothing: the reports keep
			// their schedule.
			d := c.Device(3, 42)
			var irregular []device.Record
			for tm, i := start, 0; !tm.After(end); i++ {
				irregular = append(irregular, d.Step(tm)...)
				tm = tm.Add(time.Duration(1+i%7) * 17 * time.Second)
			}
			irregular = append(irregular, d.Step(end)...)
			if !reflect.DeepEqual(a, irregular) {
				t.Fatalf("calling Step at other times changed the records (%d vs %d)", len(a), len(irregular))
			}
			for _, other := range []struct {
				index int
				seed  int64
			}{{3, 43}, {4, 42}} {
				o, _ := run(c.Device(other.index, other.seed), start, end, time.Minute)
				if reflect.DeepEqual(a, o) {
					t.Errorf("device %d with seed %d gave the records of device 3 with seed 42", other.index, other.seed)
				}
			}
		})
	}
}

// TestRecordsFitModel runs each kind for a day through its faults and
// actions and checks every record, event and command result against the
// kind's model.
func TestRecordsFitModel(t *testing.T) {
	commands := map[string][]struct {
		action string
		args   string
	}{
		KindCNC:        {{"setFeedRate", `{"feedRate":80}`}, {"changeTool", ``}, {"captureRaw", `{}`}},
		KindGasMeter:   {{"closeValve", ``}, {"openValve", `{}`}},
		KindWaterMeter: {{"closeValve", ``}, {"openValve", ``}},
		KindChiller:    {{"setSetpoint", `{"setpoint":6}`}, {"stop", ``}, {"start", ``}},
		KindPump:       {{"stop", ``}, {"start", `{}`}},
	}
	for _, c := range dayClasses(t) {
		t.Run(c.Kind, func(t *testing.T) {
			m := modelOf(t, c.Kind)
			seen := map[string]bool{}
			events := map[string]bool{}
			for idx := range 3 {
				d := c.Device(idx, 7)
				recs, evs := run(d, start, start.Add(12*time.Hour), time.Minute)
				for _, cmd := range commands[c.Kind] {
					if err := m.ValidateArgs(cmd.action, argsMap(t, cmd.args)); err != nil {
						t.Fatalf("the test's arguments: %v", err)
					}
					out, err := d.Command(cmd.action, json.RawMessage(cmd.args))
					if err != nil {
						t.Fatalf("%s: %v", cmd.action, err)
					}
					if err := checkMembers(cmd.action, m.Actions[cmd.action].Output, roundTrip(t, out)); err != nil {
						t.Errorf("output of %s: %v", cmd.action, err)
					}
				}
				more, moreEv := run(d, start.Add(12*time.Hour), start.Add(24*time.Hour), time.Minute)
				recs, evs = append(recs, more...), append(evs, moreEv...)
				for _, r := range recs {
					seen[r.Name] = true
					if err := checkRecord(m, r); err != nil {
						t.Fatalf("device %d at %s: %v", idx, r.Time.Format(time.TimeOnly), err)
					}
					if _, err := device.EncodeSenML("demo:x", start, r); err != nil {
						t.Fatalf("%s: %v", r.Name, err)
					}
				}
				for _, e := range evs {
					events[e.Name] = true
					ev, ok := m.Events[e.Name]
					if !ok {
						t.Fatalf("event %s is not in the model", e.Name)
					}
					if err := checkValue(e.Name, ev.Data, roundTrip(t, e.Data)); err != nil {
						t.Errorf("event: %v", err)
					}
				}
				rep := d.Desired(map[string]any{})
				for k, v := range rep {
					p, ok := m.Properties[k]
					if !ok {
						t.Fatalf("reported %s is not a property", k)
					}
					if err := checkValue(k, &p.Schema, v); err != nil {
						t.Errorf("reported: %v", err)
					}
				}
			}
			for name, p := range m.Properties {
				if p.Type == "position" {
					name += "/lat"
				}
				if !seen[name] {
					t.Errorf("property %s never reported", name)
				}
			}
			for name := range m.Events {
				if !events[name] {
					t.Errorf("event %s never raised in a day with the kind's faults", name)
				}
			}
			if _, err := c.Device(0, 1).Command("noSuchAction", nil); !errors.Is(err, ErrUnknownAction) {
				t.Errorf("an unknown action: %v, want ErrUnknownAction", err)
			}
		})
	}
}

func argsMap(t *testing.T, s string) map[string]any {
	t.Helper()
	m := map[string]any{}
	if s != "" {
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// roundTrip is v as the hub sees it: through JSON.
func roundTrip(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCommandArgs(t *testing.T) {
	d := class(t, KindCNC, 0, nil).Device(0, 1)
	for _, args := range []string{`{}`, `{"feedRate":"fast"}`, `{"feedRate":200}`, `{"feedRate":50,"x":1}`, `[1]`} {
		if _, err := d.Command("setFeedRate", json.RawMessage(args)); !errors.Is(err, ErrBadArgs) {
			t.Errorf("setFeedRate %s: %v, want ErrBadArgs", args, err)
		}
	}
	if _, err := d.Command("changeTool", json.RawMessage(`{"now":true}`)); !errors.Is(err, ErrBadArgs) {
		t.Errorf("changeTool with an argument: %v", err)
	}
}

func TestNextAndPhase(t *testing.T) {
	c := class(t, KindWaterMeter, time.Hour, nil)
	d := c.Device(0, 1)
	if !d.Next().IsZero() {
		t.Fatal("Next before the first Step is not zero")
	}
	d.Step(start)
	next := d.Next()
	if next.Before(start) || !next.Before(start.Add(time.Hour)) {
		t.Fatalf("first report at %v, want within the first interval", next)
	}
	if recs := d.Step(next.Add(-time.Second)); len(recs) != 0 {
		t.Fatal("records before Next")
	}
	recs := d.Step(next)
	if len(recs) == 0 || !recs[0].Time.Equal(next) {
		t.Fatalf("at Next: %v", recs)
	}
	if got := d.Next(); !got.Equal(next.Add(time.Hour)) {
		t.Fatalf("then Next = %v, want an hour on", got)
	}
	// A runner that slept a week gets the last 64 readings only.
	recs = d.Step(next.Add(7 * 24 * time.Hour))
	if n := len(series(recs, "volume")); n != maxBehind {
		t.Fatalf("after a week: %d readings, want %d", n, maxBehind)
	}
	// Devices do not report in step.
	other := c.Device(1, 1)
	other.Step(start)
	if other.Next().Equal(next) {
		t.Error("two devices have the same phase")
	}
}

func TestCNCBearingWear(t *testing.T) {
	c := class(t, KindCNC, time.Minute, map[string]float64{"wear_rate": 5000, "cut_fraction": 1})
	recs, _ := run(c.Device(0, 1), start, start.Add(8*time.Hour), 10*time.Minute)
	early, late := start.Add(30*time.Minute), start.Add(7*time.Hour)
	wear := series(recs, "bearingWear")
	if w0, w1 := mean(between(wear, start, early)), mean(between(wear, late, start.Add(9*time.Hour))); w1 < w0+30 {
		t.Fatalf("bearing wear %.1f %% -> %.1f %%: it hardly grew", w0, w1)
	}
	for _, name := range []string{"vibBandMid", "vibRms", "crestFactor"} {
		s := series(recs, name)
		a, b := mean(between(s, start, early)), mean(between(s, late, start.Add(9*time.Hour)))
		t.Logf("%s: %.3f -> %.3f", name, a, b)
		if name != "crestFactor" && b < 2*a {
			t.Errorf("%s rose from %.3f to %.3f only, want at least twice", name, a, b)
		}
	}
}

func TestCNCFeedRateLowersChatter(t *testing.T) {
	c := class(t, KindCNC, 5*time.Second, map[string]float64{"cut_fraction": 1}, Fault{Kind: FaultChatter})
	d := c.Device(0, 1)
	mid := start.Add(10 * time.Minute)
	before, evs := run(d, start, mid, 5*time.Second)
	if len(evs) == 0 || evs[0].Name != "chatter" {
		t.Errorf("no chatter event in a chatter fault: %v", evs)
	}
	out, err := d.Command("setFeedRate", json.RawMessage(`{"feedRate":55}`))
	if err != nil || out["feedRate"] != 55.0 {
		t.Fatalf("setFeedRate: %v, %v", out, err)
	}
	after, _ := run(d, mid.Add(5*time.Second), mid.Add(10*time.Minute), 5*time.Second)
	hb, ha := mean(series(before, "vibBandHigh")), mean(series(after, "vibBandHigh"))
	t.Logf("chatter band: %.3f -> %.3f m/s2", hb, ha)
	if ha > hb/3 {
		t.Errorf("lowering the feed from 100 to 55 %% took the chatter band from %.3f to %.3f only", hb, ha)
	}
	if cb, ca := mean(series(before, "motorCurrent")), mean(series(after, "motorCurrent")); ca >= cb {
		t.Errorf("motor current %.2f -> %.2f A with a lower feed", cb, ca)
	}
	// Desired state does the same.
	if rep := d.Desired(map[string]any{"feedRate": 120.0}); rep["feedRate"] != 120.0 {
		t.Errorf("desired feedRate 120: reported %v", rep)
	}
}

// ab runs the same device of two classes that differ in one thing.
func ab(t *testing.T, a, b *Class, to time.Time, step time.Duration) (ra, rb []device.Record, eb []Event) {
	ra, _ = run(a.Device(2, 9), start, to, step)
	rb, eb = run(b.Device(2, 9), start, to, step)
	return ra, rb, eb
}

func TestCNCImbalance(t *testing.T) {
	p := map[string]float64{"cut_fraction": 1}
	ra, rb, _ := ab(t, class(t, KindCNC, 10*time.Second, p), class(t, KindCNC, 10*time.Second, p, Fault{Kind: FaultImbalance}),
		start.Add(5*time.Minute), 10*time.Second)
	a, b := mean(series(ra, "vib1x")), mean(series(rb, "vib1x"))
	t.Logf("1x: %.3f -> %.3f m/s2", a, b)
	// imbalance_fault is an amplitude of 3 m/s2: an RMS of 2.1 more.
	if b-a < 1.5 {
		t.Errorf("an imbalance took the 1x component from %.3f to %.3f only", a, b)
	}
	if la, lb := mean(series(ra, "vibBandLow")), mean(series(rb, "vibBandLow")); lb <= la {
		t.Errorf("low band %.3f -> %.3f", la, lb)
	}
	if ma, mb := mean(series(ra, "vibBandMid")), mean(series(rb, "vibBandMid")); math.Abs(mb-ma) > 0.2*ma {
		t.Errorf("an imbalance moved the bearing band: %.3f -> %.3f", ma, mb)
	}
}

func TestCNCOverheat(t *testing.T) {
	p := map[string]float64{}
	end := start.Add(3 * time.Hour)
	ra, rb, eb := ab(t, class(t, KindCNC, time.Minute, p), class(t, KindCNC, time.Minute, p, Fault{Kind: FaultOverheat, At: time.Hour}),
		end, time.Minute)
	a, b := series(ra, "spindleTemp"), series(rb, "spindleTemp")
	before := start.Add(time.Hour)
	if d := mean(between(b, start, before)) - mean(between(a, start, before)); math.Abs(d) > 0.01 {
		t.Errorf("the temperatures differ by %.2f K before the fault", d)
	}
	late := start.Add(2 * time.Hour)
	ta, tb := mean(between(a, late, end)), mean(between(b, late, end))
	t.Logf("spindle: %.1f -> %.1f Cel", ta, tb)
	if tb-ta < 25 {
		t.Errorf("an overheat fault raised the spindle temperature from %.1f to %.1f only", ta, tb)
	}
	if len(eb) == 0 || eb[0].Name != "overheat" || eb[0].Time.Before(before) {
		t.Errorf("events in the fault: %v", eb)
	}
}

func TestCNCCaptureRaw(t *testing.T) {
	d := class(t, KindCNC, 0, nil).Device(0, 1)
	d.Step(start.Add(time.Minute))
	out, err := d.Command("captureRaw", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := out["window"].(string)
	if len(s) > 64<<10 {
		t.Fatalf("the window is %d bytes of base64", len(s))
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != 2*windowLen || out["samples"] != windowLen {
		t.Fatalf("window: %d bytes, %v", len(raw), err)
	}
	scale := out["scale"].(float64)
	ss := 0.0
	for i := range windowLen {
		v := float64(int16(binary.LittleEndian.Uint16(raw[2*i:]))) * scale
		ss += v * v
	}
	rms := math.Sqrt(ss / windowLen)
	if rms < 0.1 || rms > 20 {
		t.Errorf("the raw window's RMS is %.3f m/s2", rms)
	}
	again, _ := d.Command("captureRaw", json.RawMessage(`{}`))
	if again["window"] != s {
		t.Error("two captures of one state differ")
	}
}

// TestSpectrum checks the summary against a window of known content.
func TestSpectrum(t *testing.T) {
	c := newCNC(base{}, func(name string) float64 { p, _ := lookupKind(KindCNC).param(name); return p.def }).(*cnc)
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	for i := range s.x { // 2 m/s2 at 100 Hz (1x at 6000 rpm), 1 m/s2 at 500 Hz, 3 m/s2 at 1000 Hz
		ti := float64(i) / sampleRate
		s.x[i] = 2*math.Sin(2*math.Pi*100*ti) + math.Sin(2*math.Pi*500*ti) + 3*math.Sin(2*math.Pi*1000*ti+1)
	}
	sum := c.summarise(s)
	want := summary{rms: math.Sqrt((4 + 1 + 9) / 2.0), x1: math.Sqrt2, band: [3]float64{math.Sqrt2, 1 / math.Sqrt2, 3 / math.Sqrt2}}
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > 0.02*want {
			t.Errorf("%s = %.4f, want %.4f", name, got, want)
		}
	}
	near("rms", sum.rms, want.rms)
	near("1x", sum.x1, want.x1)
	for i := range bands {
		near("band", sum.band[i], want.band[i])
	}
}

func TestWaterLeakNightFlow(t *testing.T) {
	end := start.Add(7 * 24 * time.Hour)
	ra, rb, eb := ab(t, class(t, KindWaterMeter, time.Hour, nil), class(t, KindWaterMeter, time.Hour, nil, Fault{Kind: FaultLeak}),
		end, time.Hour)
	night := func(recs []device.Record) (lo float64, zeros int) {
		lo = math.Inf(1)
		for _, p := range series(recs, "flow") {
			// A reading at h covers the hour before it.
			if h := p.t.Hour(); h >= 2 && h <= 5 {
				lo = math.Min(lo, p.v)
				if p.v == 0 {
					zeros++
				}
			}
		}
		return lo, zeros
	}
	loA, zerosA := night(ra)
	loB, _ := night(rb)
	if loA != 0 || zerosA < 10 {
		t.Errorf("without a leak, the least night flow is %v (%d zero readings of 28)", loA, zerosA)
	}
	if loB <= 0 {
		t.Errorf("with a leak, the night flow still drops to %v", loB)
	}
	if len(eb) == 0 || eb[0].Name != "leak" {
		t.Fatalf("no leak event in a week of leaking: %v", eb)
	}
	if f := eb[0].Data["flow"].(float64); f < 0.004 {
		t.Errorf("the leak event's flow is %v l/s, want about the leak's 0.005", f)
	}
	alarm := series(rb, "leakAlarm")
	if alarm[len(alarm)-1].v != 1 {
		t.Error("leakAlarm is not set after a week of leaking")
	}
	// Closing the valve stops the flow, the leak's too.
	d := class(t, KindWaterMeter, time.Hour, nil, Fault{Kind: FaultLeak}).Device(2, 9)
	run(d, start, start.Add(24*time.Hour), time.Hour)
	if _, err := d.Command("closeValve", nil); err != nil {
		t.Fatal(err)
	}
	recs, _ := run(d, start.Add(25*time.Hour), start.Add(48*time.Hour), time.Hour)
	for _, p := range series(recs, "flow")[1:] {
		if p.v != 0 {
			t.Fatalf("flow %v l/s at %v with the valve closed", p.v, p.t)
		}
	}
}

func TestMeterBattery(t *testing.T) {
	c := class(t, KindGasMeter, time.Hour, map[string]float64{"charge_min": 1})
	d := c.Device(0, 1)
	end := start.Add(365 * 24 * time.Hour)
	var first, last device.Record
	for tm := start; !tm.After(end); tm = tm.Add(24 * time.Hour) {
		for _, r := range d.Step(tm) {
			if r.Name == "battery" {
				if first.Name == "" {
					first = r
				}
				last = r
			}
		}
	}
	a, b := first.Value.(int), last.Value.(int)
	// Hourly transmissions at 0.08 mAh and 10 µA of sleep take about
	// 790 mAh of 2400 a year: a life of three years.
	if b >= a || a-b < 25 || a-b > 40 {
		t.Errorf("battery %d %% -> %d %% in a year, want a drop of about a third", a, b)
	}
}

func TestFloodStormLag(t *testing.T) {
	c := class(t, KindFlood, 30*time.Minute, map[string]float64{"storms_per_day": 0},
		Fault{Kind: FaultStorm, At: 2 * time.Hour, Duration: 2 * time.Hour})
	d := c.Device(0, 1)
	end := start.Add(12 * time.Hour)
	recs, evs := run(d, start, end, time.Minute)
	rain, level := series(recs, "rainfall"), series(recs, "level")
	stormAt := start.Add(2 * time.Hour)
	dry := between(level, start, stormAt)
	base := mean(dry)
	if r := mean(between(rain, start, stormAt)); r != 0 {
		t.Errorf("rain %v before the storm", r)
	}
	rp, lp := argmax(rain), argmax(level)
	t.Logf("rain peak %.1f mm/h at %v, level %.1f -> %.1f cm at %v", rp.v, rp.t.Format(time.TimeOnly), base, lp.v, lp.t.Format(time.TimeOnly))
	if !rp.t.After(stormAt) || !lp.t.After(rp.t.Add(15*time.Minute)) {
		t.Errorf("the level peaks at %v, the rain at %v: want the level later", lp.t, rp.t)
	}
	if lp.v < base+40 {
		t.Errorf("the level rose from %.1f to %.1f cm only", base, lp.v)
	}
	if last := level[len(level)-1].v; last > base+5 {
		t.Errorf("8 hours after the storm the level is %.1f cm, base %.1f", last, base)
	}
	// Reports come faster while it rains.
	if n, m := len(dry), len(between(level, stormAt, stormAt.Add(2*time.Hour))); m < 4*n/2 {
		t.Errorf("%d reports in 2 dry hours, %d in 2 hours of storm", n, m)
	}
	if len(evs) != 1 || evs[0].Name != "levelAlarm" {
		t.Errorf("events: %v", evs)
	}
}

func TestFloodStormsShared(t *testing.T) {
	c := class(t, KindFlood, 30*time.Minute, map[string]float64{"storms_per_day": 3})
	end := start.Add(3 * 24 * time.Hour)
	wet := func(idx int) map[int]bool {
		recs, _ := run(c.Device(idx, 5), start, end, 5*time.Minute)
		hoursWet := map[int]bool{}
		for _, p := range series(recs, "rainfall") {
			if p.v > 0.5 {
				hoursWet[int(p.t.Sub(start).Hours())] = true
			}
		}
		return hoursWet
	}
	a, b := wet(0), wet(1)
	if len(a) == 0 {
		t.Fatal("no rain in three days at 3 storms a day")
	}
	common := 0
	for h := range a {
		if b[h] {
			common++
		}
	}
	if common < len(a)/2 {
		t.Errorf("two sites of a class share %d of %d wet hours: the storms are not the class's", common, len(a))
	}
}

func TestChillerSetpoint(t *testing.T) {
	c := class(t, KindChiller, time.Minute, nil)
	a, b := c.Device(0, 1), c.Device(0, 1)
	noon := start.Add(12 * time.Hour)
	run(a, start, noon, time.Minute)
	run(b, start, noon, time.Minute)
	if rep := b.Desired(map[string]any{"setpoint": 5.0}); rep["setpoint"] != 5.0 {
		t.Fatalf("reported %v", rep)
	}
	later := noon.Add(90 * time.Minute)
	ra, _ := run(a, noon.Add(time.Minute), later, time.Minute)
	rb, _ := run(b, noon.Add(time.Minute), later, time.Minute)
	last := func(recs []device.Record, name string) float64 { s := series(recs, name); return s[len(s)-1].v }
	sa, sb := last(ra, "supplyTemp"), last(rb, "supplyTemp")
	if math.Abs(sa-7) > 0.3 || math.Abs(sb-5) > 0.3 {
		t.Errorf("supply %.2f at setpoint 7, %.2f at setpoint 5", sa, sb)
	}
	// The supply moves toward the new setpoint, not at once.
	if s := series(rb, "supplyTemp"); s[0].v < 6 {
		t.Errorf("a minute after the change the supply is already %.2f", s[0].v)
	}
	// At steady state a lower setpoint costs power (a lower COP).
	tail := noon.Add(60 * time.Minute)
	pa, pb := mean(between(series(ra, "power"), tail, later.Add(time.Minute))), mean(between(series(rb, "power"), tail, later.Add(time.Minute)))
	ca, cb := mean(between(series(ra, "cop"), tail, later.Add(time.Minute))), mean(between(series(rb, "cop"), tail, later.Add(time.Minute)))
	t.Logf("setpoint 7: %.1f kW, COP %.2f; setpoint 5: %.1f kW, COP %.2f", pa, ca, pb, cb)
	if pb <= pa*1.03 || cb >= ca {
		t.Errorf("power %.1f -> %.1f kW, COP %.2f -> %.2f for a setpoint 2 K lower", pa, pb, ca, cb)
	}
	// Pulling the loop down costs power at first.
	if p := series(rb, "power"); p[0].v <= series(ra, "power")[0].v {
		t.Errorf("no extra power while pulling down: %.1f vs %.1f kW", p[0].v, series(ra, "power")[0].v)
	}
	// A hotter afternoon costs power too.
	morning, _ := run(c.Device(1, 1), start, start.Add(15*time.Hour), 10*time.Minute)
	p := series(morning, "power")
	if early, hot := mean(between(p, start.Add(8*time.Hour), start.Add(9*time.Hour))), mean(between(p, start.Add(14*time.Hour), start.Add(15*time.Hour))); hot <= early {
		t.Errorf("power %.1f kW at 8:00, %.1f at 14:00", early, hot)
	}
}

func TestChillerOverheat(t *testing.T) {
	p := map[string]float64{}
	end := start.Add(14 * time.Hour)
	ra, rb, eb := ab(t, class(t, KindChiller, time.Minute, p), class(t, KindChiller, time.Minute, p, Fault{Kind: FaultOverheat, At: 10 * time.Hour}),
		end, 10*time.Minute)
	from := start.Add(11 * time.Hour)
	pa, pb := mean(between(series(ra, "power"), from, end)), mean(between(series(rb, "power"), from, end))
	if pb <= pa {
		t.Errorf("a fouled condenser: power %.1f -> %.1f kW", pa, pb)
	}
	t.Logf("power %.1f -> %.1f kW; events %v", pa, pb, eb)
}

// TestMemory keeps an eye on what a device holds between steps.
func TestMemory(t *testing.T) {
	for _, c := range dayClasses(t) {
		d := c.Device(0, 1)
		run(d, start, start.Add(time.Hour), time.Minute)
		if n := reflect.TypeOf(d).Elem().Size(); n > 512 {
			t.Errorf("%s: a device is %d bytes", c.Kind, n)
		}
	}
}

func BenchmarkStep(b *testing.B) {
	for _, c := range dayClasses(b) {
		b.Run(c.Kind, func(b *testing.B) {
			d := c.Device(0, 1)
			tm := start
			for b.Loop() {
				d.Step(tm)
				d.Events()
				tm = tm.Add(c.Interval)
			}
		})
	}
}

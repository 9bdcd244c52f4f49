package scenario

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"sync"
	"time"

	"gonum.org/v1/gonum/dsp/fourier"

	"github.com/wanwu-iot/wanwu/device"
)

// A CNC milling spindle with an accelerometer on its housing.
//
// Each report the device samples a window of acceleration (windowLen
// samples at sampleRate) and publishes its summary: RMS, peak, crest factor,
// the RMS of the 1× component and of three bands (low 0-250 Hz: rotation
// harmonics, imbalance; mid 250-750 Hz: bearing defect frequencies; high
// 750-1250 Hz: chatter), from a Hann-windowed FFT. The window itself is
// built from:
//
//   - the rotation frequency f_r = rpm/60: 1× at the spindle's own
//     imbalance (imbalance, 0.5 to 1.5 times it by device) plus
//     imbalance_fault in an imbalance fault, 2× at 0.4 of it;
//   - while cutting, the tooth-pass frequency f_tp = teeth·f_r and its
//     second harmonic, from the cutting force: 0.6·feed/100·(1 + tool wear);
//   - the bearing defect frequencies from its geometry (balls, ball_ratio
//     d/D, contact_deg φ): BPFO = n/2·f_r·(1 − d/D·cos φ) and its second
//     harmonic, BPFI = n/2·f_r·(1 + d/D·cos φ) amplitude-modulated at f_r,
//     each 0.02 + 3·w² (2·w² for BPFI) for bearing wear w;
//   - chatter while cutting: a narrow resonance (an AR(2) filter on white
//     noise, about 8 Hz wide) at the structure's mode chatter_hz (±3 % by
//     device), whose amplitude grows as 4·tanh(2(feed/limit − 1)) once the
//     feed passes the stability limit: chatter_feed (chatter_fault_feed in a
//     chatter fault) times the lobe factor 1 + 0.25·cos(2π·chatter_hz/f_tp),
//     most stable where the tooth-pass frequency divides the mode's;
//   - broadband noise, 0.08 + 0.3·w m/s² RMS;
//
// and nothing above 1200 Hz (the sensor's anti-alias filter).
//
// The part cycle is cycle_s long, cutting for cut_fraction of it, idling
// (spindle turning, no cut) for the rest. The spindle temperature is a
// first-order lag (temp_tau_min) toward ambient (±2 K over the day) + 5 K +
// 15 K·load, + overheat_fault in an overheat fault, load being
// feed/100·(1 + 0.5·tool wear) cutting and 0.08 idle; above overheat_temp it
// raises overheat. The motor current is 2.5 A + 9 A·load plus a share of
// the chatter. Bearing wear grows by wear_rate/bearing_life_h·(0.5 + 1.5w)
// per running hour (damage accelerates itself); tool wear by
// 1/tool_life_h·(feed/100)^1.5 per cutting hour, doubled while chattering,
// and the machine changes to a sister tool when it reaches 100 %.
//
// The feed override follows setFeedRate and desired feedRate; a lower feed
// brings the cut back under the stability limit and the chatter band down.
// A high band above chatter_alarm raises chatter. captureRaw returns the
// raw window of the latest state.
type cnc struct {
	base

	fr, teeth       float64 // Hz, teeth
	bpfo, bpfi      float64 // Hz
	mode            float64 // the chatter mode, Hz
	chatterFeed     float64
	chatterFaultFd  float64
	chatterAlarm    float64
	imb, imbFault   float64 // m/s² at 1×
	wearRate        float64
	bearingLifeH    float64
	toolLifeH       float64
	ambient         float64
	tau             time.Duration
	overheatFault   float64
	overheatTemp    float64
	cycle, cutTime  time.Duration
	cyclePhase      time.Duration
	feed            float64 // %
	temp            float64 // °C
	toolWear        float64 // 0..1
	bearingWear     float64 // 0..1
	hot, chattering bool
}

// The accelerometer's window.
const (
	windowLen  = 2048
	sampleRate = 2560.0 // Hz
	antiAlias  = 1200.0 // Hz
)

// The summary's bands, Hz.
var bands = [3][2]float64{{0, 250}, {250, 750}, {750, 1250}}

func newCNC(b base, p values) Device {
	c := &cnc{
		base:           b,
		fr:             p("rpm") / 60,
		teeth:          math.Round(p("teeth")),
		chatterFeed:    p("chatter_feed"),
		chatterFaultFd: p("chatter_fault_feed"),
		chatterAlarm:   p("chatter_alarm"),
		imbFault:       p("imbalance_fault"),
		wearRate:       p("wear_rate"),
		bearingLifeH:   p("bearing_life_h"),
		toolLifeH:      p("tool_life_h"),
		ambient:        p("ambient"),
		tau:            minutes(p("temp_tau_min")),
		overheatFault:  p("overheat_fault"),
		overheatTemp:   p("overheat_temp"),
		cycle:          time.Duration(p("cycle_s") * float64(time.Second)),
		feed:           p("feed"),
	}
	c.cutTime = time.Duration(p("cut_fraction") * float64(c.cycle))
	k := p("ball_ratio") * math.Cos(p("contact_deg")*math.Pi/180)
	n := math.Round(p("balls"))
	c.bpfo = n / 2 * c.fr * (1 - k)
	c.bpfi = n / 2 * c.fr * (1 + k)
	c.mode = p("chatter_hz") * c.rng.between(0.97, 1.03)
	c.imb = p("imbalance") * c.rng.between(0.5, 1.5)
	c.bearingWear = c.rng.between(0, 0.3)
	c.toolWear = c.rng.between(0, 0.8)
	c.cyclePhase = time.Duration(c.rng.float() * float64(c.cycle))
	return c
}

func (c *cnc) Step(t time.Time) []device.Record { return c.step(c, t) }

func (c *cnc) start(t time.Time) {
	c.temp = c.ambientAt(t) + 5 + 15*c.load(c.cutting(t))
}

func (c *cnc) after(t time.Time) time.Time { return t.Add(c.interval) }

func (c *cnc) cutting(t time.Time) bool {
	if c.cycle <= 0 {
		return true
	}
	pos := (t.Sub(c.t0) + c.cyclePhase) % c.cycle
	if pos < 0 {
		pos += c.cycle
	}
	return pos < c.cutTime
}

func (c *cnc) load(cutting bool) float64 {
	if !cutting {
		return 0.08
	}
	return c.feed / 100 * (1 + 0.5*c.toolWear)
}

func (c *cnc) ambientAt(t time.Time) float64 {
	return c.ambient + 2*math.Cos(2*math.Pi*(hours(t)-15)/24)
}

// chatterAmp is the chatter resonance's amplitude (m/s²) while cutting.
func (c *cnc) chatterAmp(t time.Time) float64 {
	limit := c.chatterFeed
	if c.fault(FaultChatter, t) {
		limit = c.chatterFaultFd
	}
	limit *= 1 + 0.25*math.Cos(2*math.Pi*c.mode/(c.teeth*c.fr))
	a := 0.05 * c.feed / 100
	if r := c.feed / limit; r > 1 {
		a += 4 * math.Tanh(2*(r-1))
	}
	return a
}

func (c *cnc) advance(t time.Time) {
	step := time.Second
	if t.Sub(c.last) > 10*time.Minute {
		step = 30 * time.Second // a runner far behind: coarser, still exact for the lags
	}
	for cur := c.last; cur.Before(t); {
		dt := min(step, t.Sub(cur))
		mid := cur.Add(dt / 2)
		cut := c.cutting(mid)
		target := c.ambientAt(mid) + 5 + 15*c.load(cut)
		if c.fault(FaultOverheat, mid) {
			target += c.overheatFault
		}
		c.temp = approach(c.temp, target, dt, c.tau)
		h := dt.Hours()
		c.bearingWear = math.Min(1, c.bearingWear+h*c.wearRate/c.bearingLifeH*(0.5+1.5*c.bearingWear))
		if cut {
			rate := math.Pow(c.feed/100, 1.5) / c.toolLifeH
			if c.chatterAmp(mid) > 1 {
				rate *= 2
			}
			if c.toolWear += h * rate; c.toolWear >= 1 {
				c.toolWear = 0 // the sister tool
			}
		}
		cur = cur.Add(dt)
	}
}

// scratch is the working memory of one window's synthesis and FFT, pooled:
// a device keeps none of it between reports.
type scratch struct {
	fft  *fourier.FFT
	x, y []float64
	coef []complex128
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{
		fft:  fourier.NewFFT(windowLen),
		x:    make([]float64, windowLen),
		y:    make([]float64, windowLen),
		coef: make([]complex128, windowLen/2+1),
	}
}}

// hann is the periodic Hann window and hannPower the sum of its squares.
var hann, hannPower = func() ([]float64, float64) {
	w := make([]float64, windowLen)
	s := 0.0
	for i := range w {
		w[i] = 0.5 * (1 - math.Cos(2*math.Pi*float64(i)/windowLen))
		s += w[i] * w[i]
	}
	return w, s
}()

// synthesize fills s.x with a window of acceleration at t, drawing noise
// from r.
func (c *cnc) synthesize(t time.Time, r *rng, s *scratch) {
	x := s.x
	for i := range x {
		x[i] = 0
	}
	tone := func(f, a float64) {
		if f <= 0 || f >= antiAlias || a <= 0 {
			return
		}
		w := 2 * math.Pi * f / sampleRate
		sw, cw := math.Sincos(w)
		sp, cp := math.Sincos(2 * math.Pi * r.float())
		for i := range x { // a rotating phasor: one multiply-add per sample
			x[i] += a * sp
			sp, cp = sp*cw+cp*sw, cp*cw-sp*sw
		}
	}
	imb := c.imb
	if c.fault(FaultImbalance, t) {
		imb += c.imbFault
	}
	tone(c.fr, imb)
	tone(2*c.fr, 0.4*c.imb+0.05)
	cut := c.cutting(t)
	if cut {
		ftp := c.teeth * c.fr
		atp := 0.6 * c.feed / 100 * (1 + c.toolWear)
		tone(ftp, atp)
		tone(2*ftp, 0.3*atp)
	}
	w2 := c.bearingWear * c.bearingWear
	ao := 0.02 + 3*w2
	tone(c.bpfo, ao)
	tone(2*c.bpfo, 0.4*ao)
	ai := 0.02 + 2*w2
	tone(c.bpfi, ai)
	tone(c.bpfi-c.fr, ai/4) // the 50 % modulation at f_r: sidebands
	tone(c.bpfi+c.fr, ai/4)
	if cut {
		c.chatter(r, s, c.chatterAmp(t))
	}
	sd := 0.08 + 0.3*c.bearingWear
	for i := 0; i < len(x); i += 2 {
		a, b := r.norm2()
		x[i] += sd * a
		x[i+1] += sd * b
	}
}

// chatter adds to s.x a narrow band of RMS amp/√2 (that of a sinusoid of
// amplitude amp) around the mode: white noise through a two-pole resonator,
// run in for a while first so that the window is stationary.
func (c *cnc) chatter(r *rng, s *scratch, amp float64) {
	const radius = 0.99 // bandwidth ≈ (1 − radius)·fs/π ≈ 8 Hz
	const runIn = 400   // four time constants
	a1 := 2 * radius * math.Cos(2*math.Pi*c.mode/sampleRate)
	a2 := -radius * radius
	// The drive is uniform, not normal: the narrow filter sums so many
	// inputs that its output is normal anyway, and a uniform is the
	// cheapest draw.
	var y1, y2 float64
	for range runIn {
		y1, y2 = a1*y1+a2*y2+r.float()-0.5, y1
	}
	y := s.y
	sum := 0.0
	for i := range y {
		y1, y2 = a1*y1+a2*y2+r.float()-0.5, y1
		y[i] = y1
		sum += y1 * y1
	}
	if sum == 0 {
		return
	}
	k := amp / math.Sqrt2 / math.Sqrt(sum/float64(len(y)))
	for i := range y {
		s.x[i] += k * y[i]
	}
}

// summary is what a report publishes of a window.
type summary struct {
	rms, peak, crest, x1 float64
	band                 [3]float64
}

func (c *cnc) summarise(s *scratch) summary {
	x := s.x
	mean := 0.0
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	var sum summary
	ss := 0.0
	for i, v := range x {
		v -= mean
		ss += v * v
		sum.peak = math.Max(sum.peak, math.Abs(v))
		s.y[i] = v * hann[i]
	}
	sum.rms = math.Sqrt(ss / float64(len(x)))
	if sum.rms > 0 {
		sum.crest = sum.peak / sum.rms
	}
	coef := s.fft.Coefficients(s.coef, s.y)
	df := sampleRate / windowLen
	// power is the one-sided mean square in bins [lo, hi] (Parseval, with
	// the window's power taken out).
	power := func(lo, hi int) float64 {
		lo, hi = max(lo, 1), min(hi, len(coef)-1)
		p := 0.0
		for k := lo; k <= hi; k++ {
			re, im := real(coef[k]), imag(coef[k])
			p += re*re + im*im
		}
		return 2 * p / (float64(len(x)) * hannPower)
	}
	for i, b := range bands {
		lo := int(math.Ceil(b[0] / df))
		hi := int(math.Ceil(b[1]/df)) - 1
		sum.band[i] = math.Sqrt(power(lo, hi))
	}
	k1 := int(math.Round(c.fr / df))
	sum.x1 = math.Sqrt(power(k1-3, k1+3))
	return sum
}

func (c *cnc) report(t time.Time, out []device.Record, emit bool) []device.Record {
	switch {
	case !c.hot && c.temp > c.overheatTemp:
		c.hot = true
		c.raise("overheat", t, map[string]any{"temperature": round(c.temp, 1)})
	case c.hot && c.temp < c.overheatTemp-5:
		c.hot = false
	}
	if !emit {
		return out
	}
	r := c.reportRNG(t)
	s := scratchPool.Get().(*scratch)
	c.synthesize(t, &r, s)
	sum := c.summarise(s)
	scratchPool.Put(s)
	switch {
	case !c.chattering && sum.band[2] > c.chatterAlarm:
		c.chattering = true
		c.raise("chatter", t, map[string]any{"bandHigh": round(sum.band[2], 3), "feedRate": c.feed})
	case c.chattering && sum.band[2] < c.chatterAlarm/2:
		c.chattering = false
	}
	cut := c.cutting(t)
	load := c.load(cut)
	chat := 0.0
	if cut {
		chat = c.chatterAmp(t)
	}
	rpm := c.fr * 60 * (1 - 0.004*load)
	v := func(x float64) float64 { return round(clamp(x, 0, 500), 3) }
	return append(out,
		device.Record{Name: "spindleSpeed", Unit: "1/min", Time: t, Value: round(clamp(rpm+2*r.norm(), 0, 24000), 0)},
		device.Record{Name: "feedRate", Unit: "%", Time: t, Value: c.feed},
		device.Record{Name: "cutting", Time: t, Value: cut},
		device.Record{Name: "spindleTemp", Unit: "Cel", Time: t, Value: round(clamp(c.temp+0.1*r.norm(), -20, 150), 1)},
		device.Record{Name: "motorCurrent", Unit: "A", Time: t, Value: round(clamp(2.5+9*load+0.4*chat+0.1*r.norm(), 0, 100), 2)},
		device.Record{Name: "vibRms", Unit: "m/s2", Time: t, Value: v(sum.rms)},
		device.Record{Name: "vibPeak", Unit: "m/s2", Time: t, Value: round(clamp(sum.peak, 0, 2000), 3)},
		device.Record{Name: "crestFactor", Time: t, Value: round(clamp(sum.crest, 0, 100), 2)},
		device.Record{Name: "vib1x", Unit: "m/s2", Time: t, Value: v(sum.x1)},
		device.Record{Name: "vibBandLow", Unit: "m/s2", Time: t, Value: v(sum.band[0])},
		device.Record{Name: "vibBandMid", Unit: "m/s2", Time: t, Value: v(sum.band[1])},
		device.Record{Name: "vibBandHigh", Unit: "m/s2", Time: t, Value: v(sum.band[2])},
		device.Record{Name: "toolWear", Unit: "%", Time: t, Value: round(100*c.toolWear, 1)},
		device.Record{Name: "bearingWear", Unit: "%", Time: t, Value: round(100*c.bearingWear, 1)},
	)
}

// captureRaw returns the window of the latest state as int16 samples,
// little-endian, base64: 2048 samples are 5.4 KB of text, well within a
// command result. The scale is chosen so that the peak uses the full range,
// as an auto-ranging sensor would.
func (c *cnc) captureRaw() map[string]any {
	r := rng{derive(c.seed, uint64(c.last.UnixNano()), 0x7a3)}
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	c.synthesize(c.last, &r, s)
	peak := 0.0
	for _, v := range s.x {
		peak = math.Max(peak, math.Abs(v))
	}
	scale := math.Max(peak/math.MaxInt16, 1e-6)
	buf := make([]byte, 2*windowLen)
	for i, v := range s.x {
		q := clamp(math.Round(v/scale), math.MinInt16, math.MaxInt16)
		binary.LittleEndian.PutUint16(buf[2*i:], uint16(int16(q)))
	}
	return map[string]any{
		"window":     base64.StdEncoding.EncodeToString(buf),
		"samples":    windowLen,
		"sampleRate": sampleRate,
		"scale":      scale,
	}
}

func (c *cnc) Command(action string, args json.RawMessage) (map[string]any, error) {
	switch action {
	case "setFeedRate":
		v, err := numberArg(action, args, "feedRate", 0, 150)
		if err != nil {
			return nil, err
		}
		c.feed = v
		return map[string]any{"feedRate": v}, nil
	case "changeTool":
		if err := noArgs(action, args); err != nil {
			return nil, err
		}
		c.toolWear = 0
		return map[string]any{"toolWear": 0.0}, nil
	case "captureRaw":
		if err := noArgs(action, args); err != nil {
			return nil, err
		}
		return c.captureRaw(), nil
	}
	return nil, unknownAction(action)
}

// Desired sets feedRate (0 to 150 %).
func (c *cnc) Desired(state map[string]any) map[string]any {
	if v, ok := number(state["feedRate"]); ok && v >= 0 && v <= 150 {
		c.feed = v
	}
	return map[string]any{"feedRate": c.feed}
}

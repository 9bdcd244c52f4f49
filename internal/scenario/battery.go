package scenario

import (
	"math"
	"time"

	"github.com/wanwu-iot/wanwu/device"
)

// battery is a primary lithium thionyl chloride cell, what NB-IoT meters and
// sensors run on for years: a flat 3.6 V for most of its life, then a fall
// to about 3.0 V over the last tenth of its charge. The charge falls with the
// sleep current over time and by a fixed amount per transmission (the
// radio's wake, attach and send). An empty battery stays at 0 % and the
// device goes on reporting: the simulator's fleet does not die out.
type battery struct {
	soc     float64 // state of charge, 0..1
	capMAh  float64
	txMAh   float64
	sleepUA float64
}

func newBattery(r *rng, p values) battery {
	return battery{
		soc:     r.between(p("charge_min"), 1),
		capMAh:  p("battery_mah"),
		txMAh:   p("tx_mah"),
		sleepUA: p("sleep_ua"),
	}
}

func (bt *battery) drain(dt time.Duration) {
	bt.use(bt.sleepUA / 1000 * dt.Hours())
}

func (bt *battery) use(mAh float64) {
	bt.soc = math.Max(0, bt.soc-mAh/bt.capMAh)
}

func (bt *battery) percent() int { return int(math.Round(bt.soc * 100)) }

func (bt *battery) voltage(r *rng) float64 {
	v := 3.58 + 0.06*bt.soc - 0.6*math.Max(0, 0.1-bt.soc)/0.1 + 0.004*r.norm()
	return round(clamp(v, 0, 4), 3)
}

// radio is an NB-IoT or Cat-1 module's signal: a site's own RSRP (buildings,
// basements: meters live in bad places) and a few dB of fading per report.
type radio struct{ rsrp float64 }

func newRadio(r *rng) radio { return radio{rsrp: r.between(-118, -80)} }

func (rd radio) sample(r *rng) int {
	return int(clamp(math.Round(rd.rsrp+3*r.norm()), -140, -44))
}

// place is where a device is installed, scattered uniformly over a disc
// around the class's centre. It is reported on the first report and once a
// day after, not on every report: it does not change.
type place struct {
	lat, lon float64
	sent     time.Time
}

func newPlace(r *rng, p values) place {
	const kmPerDegree = 111.32
	d := p("radius_km") * math.Sqrt(r.float())
	a := 2 * math.Pi * r.float()
	lat := p("lat") + d*math.Cos(a)/kmPerDegree
	lon := p("lon") + d*math.Sin(a)/(kmPerDegree*math.Cos(p("lat")*math.Pi/180))
	return place{lat: round(clamp(lat, -90, 90), 6), lon: round(clamp(lon, -180, 180), 6)}
}

func (pl *place) records(t time.Time, out []device.Record) []device.Record {
	if !pl.sent.IsZero() && t.Sub(pl.sent) < 24*time.Hour {
		return out
	}
	pl.sent = t
	return append(out,
		device.Record{Name: "location/lat", Unit: "lat", Time: t, Value: pl.lat},
		device.Record{Name: "location/lon", Unit: "lon", Time: t, Value: pl.lon})
}

package scenario

import (
	"slices"
	"time"

	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// The kinds of device physics.
const (
	KindCNC        = "cnc"
	KindGasMeter   = "gas-meter"
	KindWaterMeter = "water-meter"
	KindFlood      = "flood"
	KindChiller    = "chiller"
	KindPump       = "pump"
)

// The kinds of injected fault.
const (
	FaultChatter   = "chatter"   // cnc: the chatter stability limit drops (a long or worn tool, a deeper cut)
	FaultImbalance = "imbalance" // cnc: a mass imbalance adds to the 1x component
	FaultOverheat  = "overheat"  // cnc: the spindle cooling fails; chiller: the condenser fouls
	FaultLeak      = "leak"      // meters: a constant flow that never stops
	FaultStorm     = "storm"     // flood, pump: a cloudburst
	FaultRiver     = "river"     // pump: a flood wave raises the river downstream over its limit
)

// modelVersion is the version of every model in examples/models.
const modelVersion = "1.0.0"

// param is one kind-specific parameter of a class: its default and the range
// Parse accepts. doc.go has the same table for readers; a test keeps the two
// in step.
type param struct {
	name          string
	def, min, max float64
}

// values looks up a class's parameter, its default where the class sets
// none.
type values func(name string) float64

// kind is one kind of device physics.
type kind struct {
	name     string
	model    string        // the model's local name in examples/models
	network  string        // default link profile
	interval time.Duration // default reporting interval
	minIvl   time.Duration
	maxIvl   time.Duration
	params   []param
	faults   []string
	build    func(b base, p values) Device
}

var (
	batteryParams = []param{
		{"battery_mah", 2400, 100, 100000},
		{"tx_mah", 0.08, 0, 100},
		{"sleep_ua", 10, 0, 10000},
		{"charge_min", 0.6, 0, 1},
	}
	placeParams = []param{
		{"lat", 31.23, -85, 85},
		{"lon", 121.47, -180, 180},
		{"radius_km", 10, 0, 500},
	}
)

func meterParams(daily, use, leak float64) []param {
	p := []param{
		{"daily_m3", daily, 0, 100},
		{"use_m3", use, 0.001, 10},
		{"leak_lps", leak, 0.0001, 10},
		{"leak_detect_h", 24, 1, 720},
		{"initial_m3", 2000, 0, 1e6},
	}
	p = append(p, batteryParams...)
	return append(p, placeParams...)
}

var kinds = []*kind{
	{
		name: KindCNC, model: "cnc-spindle", network: netprofile.Ethernet,
		interval: 5 * time.Second, minIvl: time.Second, maxIvl: time.Hour,
		params: []param{
			{"rpm", 6000, 600, 12000},
			{"teeth", 4, 1, 12},
			{"feed", 100, 0, 150},
			{"balls", 9, 5, 30},
			{"ball_ratio", 0.2, 0.05, 0.4},
			{"contact_deg", 15, 0, 45},
			{"chatter_hz", 900, 300, 1200},
			{"chatter_feed", 120, 10, 150},
			{"chatter_fault_feed", 70, 10, 150},
			{"chatter_alarm", 1, 0.1, 100},
			{"imbalance", 0.3, 0, 50},
			{"imbalance_fault", 3, 0, 50},
			{"wear_rate", 1, 0, 1e6},
			{"bearing_life_h", 20000, 1, 1e6},
			{"tool_life_h", 2, 0.01, 1000},
			{"ambient", 22, -20, 50},
			{"temp_tau_min", 20, 1, 600},
			{"overheat_fault", 35, 0, 100},
			{"overheat_temp", 60, 20, 150},
			{"cycle_s", 300, 10, 86400},
			{"cut_fraction", 0.85, 0, 1},
		},
		faults: []string{FaultChatter, FaultImbalance, FaultOverheat},
		build:  newCNC,
	},
	{
		name: KindGasMeter, model: "gas-meter", network: netprofile.NBIoT,
		interval: time.Hour, minIvl: time.Second, maxIvl: 24 * time.Hour,
		params: meterParams(1.2, 0.15, 0.01),
		faults: []string{FaultLeak},
		build:  newGasMeter,
	},
	{
		name: KindWaterMeter, model: "water-meter", network: netprofile.NBIoT,
		interval: time.Hour, minIvl: time.Second, maxIvl: 24 * time.Hour,
		params: meterParams(0.35, 0.02, 0.005),
		faults: []string{FaultLeak},
		build:  newWaterMeter,
	},
	{
		name: KindFlood, model: "flood-sensor", network: netprofile.NBIoT,
		interval: 30 * time.Minute, minIvl: time.Second, maxIvl: 24 * time.Hour,
		params: append(append(append(slices.Clip(stormParams), []param{
			{"gain", 1.5, 0, 100},
			{"lag_min", 30, 1, 1440},
			{"drain_h", 1.5, 0.05, 240},
			{"base_cm", 15, 0, 400},
			{"alarm_cm", 80, 1, 500},
			{"storm_interval_s", 300, 10, 86400},
		}...), withDefault(batteryParams, "battery_mah", 8000)...), placeParams...),
		faults: []string{FaultStorm},
		build:  newFlood,
	},
	{
		name: KindChiller, model: "chiller", network: netprofile.Ethernet,
		interval: 30 * time.Second, minIvl: time.Second, maxIvl: time.Hour,
		params: []param{
			{"capacity_kw", 400, 10, 2000},
			{"setpoint", 7, 4, 15},
			{"out_mean", 28, -30, 50},
			{"out_amp", 6, 0, 30},
			{"load", 1, 0, 3},
			{"tau_min", 10, 0.5, 600},
			{"eta", 0.5, 0.1, 0.9},
			{"fouling_k", 12, 0, 50},
			{"aux", 0.03, 0, 0.5},
		},
		faults: []string{FaultOverheat},
		build:  newChiller,
	},
	{
		name: KindPump, model: "pump-station", network: netprofile.LTECat1,
		interval: 30 * time.Second, minIvl: time.Second, maxIvl: time.Hour,
		params: append(slices.Clip(stormParams), []param{
			{"catchment_ha", 2, 0.01, 1000},
			{"runoff", 0.8, 0, 1},
			{"lag_min", 10, 1, 1440},
			{"base_lps", 0.5, 0, 1000},
			{"well_m2", 30, 1, 1000},
			{"depth_cm", 400, 50, 1000},
			{"warn_cm", 300, 10, 1000},
			{"min_cm", 30, 0, 500},
			{"capacity_lps", 400, 10, 3000},
			{"lift_m", 6, 1, 30},
			{"eta", 0.7, 0.3, 0.9},
			{"river_base_cm", 100, 0, 1000},
			{"limit_cm", 250, 10, 1500},
			{"river_gain", 1.5, 0, 100},
			{"river_lag_h", 2, 0.1, 48},
			{"river_drain_h", 3, 0.1, 240},
			{"discharge_cm", 10, 0, 500},
			{"river_over_cm", 50, 1, 500},
			{"river_tau_min", 3, 0.5, 600},
		}...),
		faults: []string{FaultStorm, FaultRiver},
		build:  newPump,
	},
}

// withDefault is ps with one parameter's default changed.
func withDefault(ps []param, name string, def float64) []param {
	out := append([]param(nil), ps...)
	for i := range out {
		if out[i].name == name {
			out[i].def = def
		}
	}
	return out
}

func lookupKind(name string) *kind {
	for _, k := range kinds {
		if k.name == name {
			return k
		}
	}
	return nil
}

func (k *kind) param(name string) (param, bool) {
	for _, p := range k.params {
		if p.name == name {
			return p, true
		}
	}
	return param{}, false
}

// modelRef is the kind's model under namespace ns.
func (k *kind) modelRef(ns string) string { return ns + ":" + k.model + "@" + modelVersion }

// Kinds lists the kinds of device physics.
func Kinds() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.name
	}
	return out
}

package ingest

import "math"

// Unit conversion. A device may send a value in any unit that measures the
// same quantity as the model's unit; ingest converts it, so that a property
// is stored in one unit whatever its devices send (a Fahrenheit sensor and a
// Celsius sensor of the same model chart on one axis).
//
// Names are SenML units (RFC 8428 §12.1, RFC 8798) where one exists. A few
// units common in the field that SenML lacks are accepted from devices as
// well (degF, kPa, bar, psi, ...); a thing model itself can only name SenML
// units (thingmodel checks that), so these appear only on the "from" side.

// unitDef places a unit on its quantity's base scale: base = v*factor + offset.
type unitDef struct {
	dim    string // quantity; conversion only within one
	factor float64
	offset float64
}

var unitTable = func() map[string]unitDef {
	t := make(map[string]unitDef)
	add := func(dim string, names map[string]float64) {
		for n, f := range names {
			t[n] = unitDef{dim: dim, factor: f}
		}
	}
	// Temperature, base K. The offsets are exact decimal constants.
	t["K"] = unitDef{dim: "temperature", factor: 1}
	t["Cel"] = unitDef{dim: "temperature", factor: 1, offset: 273.15}
	t["degF"] = unitDef{dim: "temperature", factor: 5.0 / 9.0, offset: 459.67 * 5.0 / 9.0}
	t["Far"] = t["degF"] // seen in the wild for Fahrenheit; SenML has neither
	// Power levels in decibels are logarithmic, so dBm and dBW differ by an
	// offset, not a factor: dBW = dBm - 30.
	t["dBW"] = unitDef{dim: "power level", factor: 1}
	t["dBm"] = unitDef{dim: "power level", factor: 1, offset: -30}

	add("length", map[string]float64{"m": 1, "cm": 1e-2, "mm": 1e-3, "um": 1e-6, "km": 1e3, "ft": 0.3048, "in": 0.0254})
	add("mass", map[string]float64{"kg": 1, "g": 1e-3, "mg": 1e-6, "t": 1e3, "lb": 0.45359237})
	add("time", map[string]float64{"s": 1, "ms": 1e-3, "us": 1e-6, "min": 60, "h": 3600, "d": 86400})
	add("speed", map[string]float64{"m/s": 1, "km/h": 1 / 3.6, "m/h": 1.0 / 3600, "mm/h": 1e-3 / 3600,
		"mph": 0.44704, "kn": 1852.0 / 3600})
	add("pressure", map[string]float64{"Pa": 1, "hPa": 100, "kPa": 1e3, "MPa": 1e6, "bar": 1e5, "mbar": 100,
		"psi": 6894.757293168361, "mmHg": 133.322387415, "atm": 101325})
	// Dimensionless ratios: "/" is the SenML unit for a plain ratio (0..1),
	// %RH and %EL are percentages with a meaning attached; the numbers
	// convert all the same (%RH 55 = / 0.55).
	add("ratio", map[string]float64{"/": 1, "%": 1e-2, "%RH": 1e-2, "%EL": 1e-2, "/100": 1e-2, "/1000": 1e-3,
		"ppm": 1e-6, "ppb": 1e-9})
	add("voltage", map[string]float64{"V": 1, "mV": 1e-3, "uV": 1e-6, "kV": 1e3})
	add("current", map[string]float64{"A": 1, "mA": 1e-3, "uA": 1e-6, "kA": 1e3})
	add("energy", map[string]float64{"J": 1, "kJ": 1e3, "MJ": 1e6, "Wh": 3600, "kWh": 3.6e6, "MWh": 3.6e9,
		"cal": 4.184, "kcal": 4184})
	add("power", map[string]float64{"W": 1, "mW": 1e-3, "kW": 1e3, "MW": 1e6})
	add("apparent power", map[string]float64{"VA": 1, "kVA": 1e3})
	add("reactive power", map[string]float64{"var": 1, "kvar": 1e3})
	add("apparent energy", map[string]float64{"VAs": 1, "VAh": 3600, "kVAh": 3.6e6})
	add("reactive energy", map[string]float64{"vars": 1, "varh": 3600, "kvarh": 3.6e6})
	add("charge", map[string]float64{"C": 1, "Ah": 3600, "mAh": 3.6})
	add("frequency", map[string]float64{"Hz": 1, "1/s": 1, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9,
		"1/min": 1.0 / 60, "rpm": 1.0 / 60, "1/h": 1.0 / 3600})
	add("volume", map[string]float64{"m3": 1, "l": 1e-3, "L": 1e-3, "ml": 1e-6, "mL": 1e-6, "cm3": 1e-6})
	add("flow", map[string]float64{"m3/s": 1, "l/s": 1e-3, "L/s": 1e-3, "l/min": 1e-3 / 60, "L/min": 1e-3 / 60,
		"m3/h": 1.0 / 3600, "l/h": 1e-3 / 3600, "L/h": 1e-3 / 3600})
	add("information", map[string]float64{"bit": 1, "B": 8, "kB": 8e3, "MB": 8e6, "GB": 8e9,
		"KiB": 8 << 10, "MiB": 8 << 20, "GiB": 8 << 30})
	add("data rate", map[string]float64{"bit/s": 1, "kbit/s": 1e3, "Mbit/s": 1e6, "Gbit/s": 1e9,
		"B/s": 8, "kB/s": 8e3, "MB/s": 8e6})
	add("angle", map[string]float64{"rad": 1, "deg": math.Pi / 180})
	add("mass concentration", map[string]float64{"kg/m3": 1, "g/m3": 1e-3, "mg/m3": 1e-6, "ug/m3": 1e-9})
	return t
}()

// ConvertUnit converts v from unit from to unit to. ok is false when either
// unit is unknown to the conversion table or they measure different
// quantities; equal units always convert, known or not ("count" to "count").
func ConvertUnit(v float64, from, to string) (out float64, ok bool) {
	if from == to {
		return v, true
	}
	a, okA := unitTable[from]
	b, okB := unitTable[to]
	if !okA || !okB || a.dim != b.dim {
		return 0, false
	}
	if a.offset == 0 && b.offset == 0 {
		out = v * (a.factor / b.factor)
		return roundSignificant(out, out), true
	}
	// With offsets the result can be far smaller than the terms that made
	// it (32 degF is 0 Cel by way of 273.15 K), so the rounding follows the
	// largest term, not the result.
	out = (v*a.factor + a.offset - b.offset) / b.factor
	mag := max(math.Abs(v*a.factor), math.Abs(a.offset), math.Abs(b.offset)) / b.factor
	return roundSignificant(out, mag), true
}

// Convertible reports whether ConvertUnit converts between from and to.
func Convertible(from, to string) bool {
	_, ok := ConvertUnit(0, from, to)
	return ok
}

// roundSignificant rounds x to 12 significant digits of magnitude mag.
// Conversion factors such as 1/3.6 are inexact in binary, so 20 Cel would
// otherwise become 68.00000000000001 degF; no sensor resolves 12 digits, so
// nothing real is lost, and values a device sent in the model's unit are
// never converted.
func roundSignificant(x, mag float64) float64 {
	if x == 0 || mag == 0 || !finite(x) || !finite(mag) {
		return x
	}
	e := math.Floor(math.Log10(math.Abs(mag)))
	if e > 200 || e < -200 { // the scale would overflow; such values are exact enough
		return x
	}
	if k := 11 - e; k >= 0 {
		p := math.Pow(10, k)
		return math.Round(x*p) / p
	} else {
		p := math.Pow(10, -k)
		return math.Round(x/p) * p
	}
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

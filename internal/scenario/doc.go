// Package scenario is the device physics and the scenario file format of
// the simulator (`wanwu sim`): which devices a simulated fleet has, on which
// links, and how each kind of device behaves. It knows nothing of
// connections or the hub: a runner makes each class's devices with
// Class.Device, calls Step on each device's schedule (Next) and publishes
// what it returns, and hands commands and desired state back to Command and
// Desired.
//
// # Scenario files
//
// A scenario is YAML (Parse; Builtin has "demo", "city" and "factory"):
//
//	name: demo                # required: letters, digits, '-', '_'
//	description: ...          # optional
//	tenant: demo              # default demo: the devices' and models' tenant
//	seed: 1                   # default 0: same seed, same records
//	classes:
//	  - name: cnc-a           # required, unique: devices are cnc-a-000, ...
//	    kind: cnc             # required: cnc, gas-meter, water-meter, flood, chiller, pump
//	    count: 10             # required: 1 to 100000
//	    model: demo:cnc-spindle@1.0.0  # default: the kind's, in the tenant
//	    network: ethernet     # default per kind: nb-iot, lte-cat1, 5g-redcap, wlan, ethernet
//	    protocol: mqtt        # default: the network profile's (coap on nb-iot)
//	    interval: 5s          # default per kind (below), within its range
//	    params: {wear_rate: 2000}   # the kind's parameters (below)
//	    faults:
//	      - kind: chatter     # a fault of the kind (below)
//	        at: 2m            # from each device's first Step; default 0
//	        duration: 10m     # default: to the end
//	        devices: 2        # a count or a share, "25%"; default all
//
// Unknown fields, out-of-range values, a parameter or fault the kind does not
// have are refused, each problem naming its field ("classes[1].count: must
// be between 1 and 100000").
//
// # Kinds
//
// Each kind reports one thing model of examples/models (Models): its
// records carry the model's names and units and stay within its ranges.
// Each file's comment describes its physics in full; in short:
//
//	kind         model                   network   interval (range)     faults
//	cnc          demo:cnc-spindle@1.0.0  ethernet  5s (1s-1h)           chatter, imbalance, overheat
//	gas-meter    demo:gas-meter@1.0.0    nb-iot    1h (1s-24h)          leak
//	water-meter  demo:water-meter@1.0.0  nb-iot    1h (1s-24h)          leak
//	flood        demo:flood-sensor@1.0.0 nb-iot    30m (1s-24h)         storm
//	chiller      demo:chiller@1.0.0      ethernet  30s (1s-1h)          overheat
//	pump         demo:pump-station@1.0.0 lte-cat1  30s (1s-1h)          storm, river
//
// cnc (cnc.go): a milling spindle's vibration synthesised as a 2048-sample
// window at 2560 Hz from rotation harmonics, tooth pass, bearing defect
// frequencies (BPFO, BPFI from the bearing's geometry) growing with wear,
// chatter above a feed stability limit, and noise; summarised through an
// FFT into RMS, peak, crest factor, 1× and three band RMS values. Spindle
// temperature (first-order thermal lag), motor current, feed override
// (setFeedRate, desired feedRate), tool and bearing wear, raw window on
// captureRaw.
//
//	parameter           default  range         meaning
//	rpm                 6000     600-12000     spindle speed, 1/min
//	teeth               4        1-12          cutter teeth
//	feed                100      0-150         initial feed override, %
//	balls               9        5-30          bearing rolling elements
//	ball_ratio          0.2      0.05-0.4      ball over pitch diameter, d/D
//	contact_deg         15       0-45          bearing contact angle
//	chatter_hz          900      300-1200      the structure's mode (±3 % by device)
//	chatter_feed        120      10-150        feed (%) where chatter starts, before the lobe factor
//	chatter_fault_feed  70       10-150        the same in a chatter fault
//	chatter_alarm       1        0.1-100       high band RMS (m/s2) that raises chatter
//	imbalance           0.3      0-50          1× amplitude, m/s2 (0.5-1.5× by device)
//	imbalance_fault     3        0-50          1× amplitude an imbalance fault adds, m/s2
//	wear_rate           1        0-1000000     speed-up of bearing wear
//	bearing_life_h      20000    1-1000000     running hours to a worn bearing at wear_rate 1
//	tool_life_h         2        0.01-1000     cutting hours of a tool at 100 % feed
//	ambient             22       -20-50        shop temperature, Cel (±2 K over the day)
//	temp_tau_min        20       1-600         spindle thermal time constant, minutes
//	overheat_fault      35       0-100         temperature rise of an overheat fault, K
//	overheat_temp       60       20-150        temperature that raises overheat, Cel
//	cycle_s             300      10-86400      part cycle, s
//	cut_fraction        0.85     0-1           share of the cycle spent cutting
//
// gas-meter, water-meter (meter.go): hourly (interval) cumulative volume
// from Poisson-distributed uses that follow a daily profile, average flow,
// valve (closeValve, openValve), leak detection (leakAlarm, event leak)
// after leak_detect_h of flow without a pause, a primary lithium battery
// drained by sleep and per transmission, RSRP, location. They sleep
// between readings: Next is the next one.
//
//	parameter      gas     water   range         meaning
//	daily_m3       1.2     0.35    0-100         mean consumption per day, m3 (0.5-1.5× by household)
//	use_m3         0.15    0.02    0.001-10      mean volume of one use, m3
//	leak_lps       0.01    0.005   0.0001-10     flow of a leak fault, l/s
//	leak_detect_h  24      24      1-720         hours of flow without a pause that make a leak
//	initial_m3     2000    2000    0-1000000     registers start uniform in [0, initial_m3)
//	battery_mah    2400    2400    100-100000    battery capacity, mAh
//	tx_mah         0.08    0.08    0-100         charge one transmission takes, mAh
//	sleep_ua       10      10      0-10000       sleep current, µA
//	charge_min     0.6     0.6     0-1           batteries start uniform in [charge_min, 1]
//	lat, lon       31.23, 121.47   ±85, ±180     centre of the area, degrees
//	radius_km      10      10      0-500         radius of the area, km
//
// flood (flood.go): rainfall (mm/h) from a class-wide storm generator
// (storm.go: Poisson arrivals, rising then decaying intensity), water level
// (cm) following it through a lagged runoff and a draining linear
// reservoir, levelAlarm over alarmLevel (writable), reporting every
// storm_interval_s while wet; battery, RSRP, location as for meters.
//
//	parameter         default  range         meaning
//	storms_per_day    0.3      0-50          mean storm arrivals per day
//	peak_mmh          15       0.1-300       mean storm peak intensity, mm/h
//	rise_min          30       1-1440        mean time to a storm's peak, minutes
//	storm_peak        80       0.1-300       peak of a storm fault, mm/h
//	gain              1.5      0-100         level rise per mm of runoff, cm
//	lag_min           30       1-1440        catchment runoff lag, minutes
//	drain_h           1.5      0.05-240      channel drainage time constant, hours
//	base_cm           15       0-400         dry-weather level, cm (0.3-1.7× by site)
//	alarm_cm          80       1-500         initial alarmLevel, cm
//	storm_interval_s  300      10-86400      reporting interval while wet, s
//	battery_mah       8000     100-100000    as for meters (tx_mah, sleep_ua, charge_min too)
//	lat, lon, radius_km                      as for meters
//
// chiller (chiller.go): outside temperature with a daily cycle and weather,
// a building load, chilled water supply approaching the setpoint (desired
// setpoint, setSetpoint) unless the load exceeds the capacity, return
// temperature, power from a Carnot-fraction COP: it rises as the setpoint
// falls and as the outside warms. running (desired, start, stop).
//
//	parameter    default  range      meaning
//	capacity_kw  400      10-2000    rated cooling capacity, kW
//	setpoint     7        4-15       initial supply setpoint, Cel
//	out_mean     28       -30-50     mean outside temperature, Cel
//	out_amp      6        0-30       amplitude of its daily cycle, K
//	load         1        0-3        scale of the building's load (0.8-1.2× by building)
//	tau_min      10       0.5-600    chilled water loop time constant, minutes
//	eta          0.5      0.1-0.9    COP as a share of Carnot's
//	fouling_k    12       0-50       condenser temperature rise of an overheat fault, K
//	aux          0.03     0-0.5      fans and controls, share of capacity
//
// pump (pump.go): a stormwater pump station. Rainfall from the class's
// storms (as flood's) runs off a catchment through a lag into a wet well
// (wellLevel, cm), which overflows at its depth and raises wellHigh over a
// warning level. The pump only runs when told (start, stop, desired
// running); it empties the well at its capacity (flow, l/s; power, kW, from
// the flow and the head) and stops itself below a minimum level (pumpTrip,
// dry-run protection). The river downstream (downstreamLevel) rises with the
// region's runoff through a longer lag and with the pump's discharge; a
// river fault takes it over the site's downstreamLimit, above which a loop's
// interlock should stop the pump.
//
//	parameter       default  range        meaning
//	storms_per_day  0.3      0-50         as for flood (peak_mmh, rise_min, storm_peak too)
//	catchment_ha    2        0.01-1000    area that drains to the well, ha
//	runoff          0.8      0-1          share of the rain that runs off
//	lag_min         10       1-1440       catchment runoff lag, minutes
//	base_lps        0.5      0-1000       dry-weather inflow, l/s
//	well_m2         30       1-1000       plan area of the wet well, m2
//	depth_cm        400      50-1000      depth of the well: it overflows above, cm
//	warn_cm         300      10-1000      level that raises wellHigh (at most depth_cm), cm
//	min_cm          30       0-500        level below which the pump trips, cm
//	capacity_lps    400      10-3000      pump flow at its static lift, l/s
//	lift_m          6        1-30         static lift, m
//	eta             0.7      0.3-0.9      pump and motor efficiency
//	river_base_cm   100      0-1000       dry-weather river level, cm (0.7-1.3× by site)
//	limit_cm        250      10-1500      downstreamLimit, cm (0.9-1.1× by site)
//	river_gain      1.5      0-100        river rise per mm of the region's runoff, cm
//	river_lag_h     2        0.1-48       the region's runoff lag, hours
//	river_drain_h   3        0.1-240      river drainage time constant, hours
//	discharge_cm    10       0-500        river rise per 100 l/s pumped, cm
//	river_over_cm   50       1-500        how far a river fault takes the level over the limit, cm
//	river_tau_min   3        0.5-600      time constant of a river fault's rise and fall, minutes
//
// # Determinism and cost
//
// A device's records depend only on its class, index and the seed, and on
// the commands and desired states it was given: random numbers come from a
// SplitMix64 stream per device (and one per class for what a class shares,
// the storms of flood and pump), reports fall on the device's own schedule,
// and the physics advances from report to report. Daily cycles follow the clock of
// the times passed to Step (their location). A device keeps a few hundred
// bytes between steps; the CNC's window and FFT work in pooled scratch
// memory, and the raw window is only built when captureRaw asks for it.
package scenario

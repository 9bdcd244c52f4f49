package netprofile

import (
	"fmt"
	"math"
	"regexp"
	"time"
)

// FieldError is a profile field, or a part of a profile file, with a value
// that cannot be used.
type FieldError struct {
	// Line is the line in the profile file; 0 when the profile did not come
	// from a file (Validate) or the file has no such line.
	Line int
	// Field is the field's path, with the names the file uses:
	// "loss.good" from Validate, "profiles[2].loss.good" from Parse.
	Field string
	// Reason says what is wrong with the value: "must be in [0,1]".
	Reason string
}

func (e *FieldError) Error() string {
	s := "netprofile: "
	if e.Line > 0 {
		s += fmt.Sprintf("line %d: ", e.Line)
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Reason
}

// Bounds Validate applies beyond the obvious ones (no negative durations,
// probabilities in [0,1]). The sleep timers' are the largest values the NAS
// timer encodings carry (3GPP TS 24.008 §10.5.7.4 GPRS Timer 2 for T3324:
// 31 × 6 minutes; §10.5.7.4a GPRS Timer 3 for T3412: 31 × 320 hours) and the
// longest NB-IoT eDRX cycle (TS 24.008 §10.5.5.32, TS 36.304: 1024
// hyperframes of 10.24 s). MaxLatency keeps the emulator's arithmetic on
// delays far from overflow and catches a unit typo ("1500s" for "1500ms").
const (
	MaxLatency        = time.Hour
	MaxActiveTimer    = 186 * time.Minute
	MaxPeriodicUpdate = 9920 * time.Hour
	MaxEDRXCycle      = 10485760 * time.Millisecond
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Validate reports the first field of p that the hub or the emulator cannot
// use, as a *FieldError: a name other than lower-case letters, digits, '.',
// '_' and '-' (at most 63, starting with a letter or digit), a protocol
// other than "coap" or "mqtt", a negative or overlong duration, a jitter cap
// below its median, a rate that is not positive, a probability outside
// [0,1], a bad state the chain can enter but never leave, an MTU outside
// [68,65535] (68 is IPv4's minimum, RFC 791), a payload limit that is not
// positive, PSM without a periodic update longer than its active timer, a
// price or budget below zero.
func (p Profile) Validate() error {
	for _, c := range []struct {
		bad           bool
		field, reason string
	}{
		{p.Name == "", "name", "missing"},
		{!nameRE.MatchString(p.Name), "name", fmt.Sprintf("%q: must be 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", p.Name)},
		{p.Protocol != "coap" && p.Protocol != "mqtt", "protocol", fmt.Sprintf("%q: must be coap or mqtt", p.Protocol)},
		{!durationIn(p.Latency.Base, 0, MaxLatency), "latency.base", "must be in [0s," + MaxLatency.String() + "]"},
		{!durationIn(p.Latency.JitterMedian, 0, MaxLatency), "latency.jitter_median", "must be in [0s," + MaxLatency.String() + "]"},
		{!durationIn(p.Latency.JitterMax, p.Latency.JitterMedian, MaxLatency), "latency.jitter_max", "must be in [jitter_median," + MaxLatency.String() + "]"},
		{p.UplinkBPS <= 0, "uplink_bps", "must be > 0"},
		{p.DownlinkBPS <= 0, "downlink_bps", "must be > 0"},
		{!probability(p.Loss.Good), "loss.good", "must be in [0,1]"},
		{!probability(p.Loss.Bad), "loss.bad", "must be in [0,1]"},
		{!probability(p.Loss.GoodToBad), "loss.good_to_bad", "must be in [0,1]"},
		{!probability(p.Loss.BadToGood), "loss.bad_to_good", "must be in [0,1]"},
		{p.Loss.GoodToBad > 0 && p.Loss.BadToGood == 0, "loss.bad_to_good", "must be > 0 when good_to_bad is: the link would stay bad for good"},
		{p.MTU < 68 || p.MTU > 65535, "mtu", "must be in [68,65535]"},
		{p.MaxPayload <= 0, "max_payload", "must be > 0"},
		{!durationIn(p.Sleep.ActiveTimer, 0, MaxActiveTimer), "sleep.active_timer", "must be in [0s," + MaxActiveTimer.String() + "]"},
		{!durationIn(p.Sleep.PeriodicUpdate, 0, MaxPeriodicUpdate), "sleep.periodic_update", "must be in [0s," + MaxPeriodicUpdate.String() + "]"},
		{p.Sleep.PSM && p.Sleep.PeriodicUpdate <= p.Sleep.ActiveTimer, "sleep.periodic_update", "must be longer than active_timer with psm"},
		{!durationIn(p.Sleep.EDRXCycle, 0, MaxEDRXCycle), "sleep.edrx_cycle", "must be in [0s," + MaxEDRXCycle.String() + "]"},
		{!(p.PricePerMB >= 0) || math.IsInf(p.PricePerMB, 1), "price_per_mb", "must be a finite number >= 0"},
		{p.DailyBudget < 0, "daily_budget", "must be >= 0"},
	} {
		if c.bad {
			return &FieldError{Field: c.field, Reason: c.reason}
		}
	}
	return nil
}

func durationIn(d, lo, hi time.Duration) bool { return d >= lo && d <= hi }

// probability is false for NaN too.
func probability(x float64) bool { return x >= 0 && x <= 1 }

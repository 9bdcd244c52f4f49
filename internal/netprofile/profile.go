// Package netprofile defines the link profiles of the networks wanwu's
// devices use (NB-IoT, LTE-Cat1, 5G RedCap, WLAN, wired Ethernet): latency
// and jitter, rates, loss (random and bursty), MTU and largest payload, sleep
// behaviour (PSM, eDRX), price and daily byte budget. The figures and their
// sources are in the repository's docs/NETWORKS.md.
//
// One definition serves both sides: the hub reads an object's profile to
// hold downlink for a sleeping device and to account its bytes against a
// budget; the link emulator (package linkemu) and the simulator apply the
// same profile to a simulated device's real connection.
package netprofile

import (
	"slices"
	"time"
)

// The built-in profiles' names, as an object's record and the configuration
// carry them.
const (
	NBIoT    = "nb-iot"
	LTECat1  = "lte-cat1"
	RedCap   = "5g-redcap"
	WLAN     = "wlan"
	Ethernet = "ethernet"
)

// Profile is one kind of link.
type Profile struct {
	// Name is the profile's name (NBIoT, ...).
	Name string `json:"name" yaml:"name"`
	// Title is a human name ("NB-IoT (Cat-NB1/NB2)").
	Title string `json:"title" yaml:"title"`
	// Protocol is what a device on this link speaks by default: "coap"
	// (CoAP over DTLS with SenML CBOR) or "mqtt" (MQTT over TLS with SenML
	// JSON).
	Protocol string `json:"protocol" yaml:"protocol"`
	// Latency is the one-way delay: Base plus a random jitter.
	Latency Latency `json:"latency" yaml:"latency"`
	// UplinkBPS and DownlinkBPS are the rates in bit/s of IP packets,
	// headers included: what a device sees in practice where we have a
	// figure (NB-IoT), else the category's peak (docs/NETWORKS.md says
	// which).
	UplinkBPS   int64 `json:"uplink_bps" yaml:"uplink_bps"`
	DownlinkBPS int64 `json:"downlink_bps" yaml:"downlink_bps"`
	// Loss is the packet loss model.
	Loss Loss `json:"loss" yaml:"loss"`
	// MTU is the largest IP packet; MaxPayload the largest application
	// message a device should send in one request (CoAP block-wise or
	// batching beyond it).
	MTU        int `json:"mtu" yaml:"mtu"`
	MaxPayload int `json:"max_payload" yaml:"max_payload"`
	// Sleep is how the device sleeps (zero: always reachable).
	Sleep Sleep `json:"sleep" yaml:"sleep"`
	// PricePerMB is what a MB (10^6 bytes) on the air costs, in CNY.
	PricePerMB float64 `json:"price_per_mb" yaml:"price_per_mb"`
	// DailyBudget is the default byte budget of a device on this link per
	// UTC day (0: none).
	DailyBudget int64 `json:"daily_budget" yaml:"daily_budget"`
}

// Latency is a one-way delay: Base plus a jitter drawn from a log-normal
// distribution with median JitterMedian, never above JitterMax. JitterMax is
// also about the 99.9th percentile: the distribution's σ is
// ln(JitterMax/JitterMedian)/3.09, so that a cap set far above the median
// gives a long tail rather than a pile of draws at the cap.
type Latency struct {
	Base         time.Duration `json:"base" yaml:"base"`
	JitterMedian time.Duration `json:"jitter_median" yaml:"jitter_median"`
	JitterMax    time.Duration `json:"jitter_max" yaml:"jitter_max"`
}

// Loss is a Gilbert-Elliott packet loss model: a good and a bad state, each
// with its own loss probability, and per-packet probabilities of moving
// between them. GoodToBad 0 gives random (Bernoulli) loss at Good.
type Loss struct {
	Good      float64 `json:"good" yaml:"good"`               // loss probability in the good state
	Bad       float64 `json:"bad" yaml:"bad"`                 // loss probability in the bad state
	GoodToBad float64 `json:"good_to_bad" yaml:"good_to_bad"` // P(good → bad) per packet
	BadToGood float64 `json:"bad_to_good" yaml:"bad_to_good"` // P(bad → good) per packet
}

// Rate is the long-run share of packets lost: the loss probabilities of
// the two states weighted by the chain's stationary distribution, in which
// the link is bad a share GoodToBad/(GoodToBad+BadToGood) of the time. The
// chain starts in the good state, so a link that never leaves it
// (GoodToBad 0) loses Good.
func (l Loss) Rate() float64 {
	if l.GoodToBad == 0 {
		return l.Good
	}
	bad := l.GoodToBad / (l.GoodToBad + l.BadToGood)
	return (1-bad)*l.Good + bad*l.Bad
}

// Sleep is a device's power saving. With PSM the device is reachable for
// ActiveTimer (T3324) after each uplink and then sleeps until its next
// uplink, at the latest PeriodicUpdate (T3412) later. With eDRX (and no
// PSM) it is reachable once every EDRXCycle.
type Sleep struct {
	PSM            bool          `json:"psm" yaml:"psm"`
	ActiveTimer    time.Duration `json:"active_timer" yaml:"active_timer"`
	PeriodicUpdate time.Duration `json:"periodic_update" yaml:"periodic_update"`
	EDRXCycle      time.Duration `json:"edrx_cycle" yaml:"edrx_cycle"`
}

// RoundTrip is the link's typical round trip: twice the base latency and
// the median jitter. A protocol's retransmission timer should wait a good
// deal longer (CoAP's ACK_TIMEOUT is 2 s by default; on NB-IoT that fires
// before most answers arrive).
func (p Profile) RoundTrip() time.Duration {
	return 2 * (p.Latency.Base + p.Latency.JitterMedian)
}

// Sleeps reports whether a device on this link is unreachable at times.
func (s Sleep) Sleeps() bool { return s.PSM || s.EDRXCycle > 0 }

// builtin are the profiles wanwu ships; docs/NETWORKS.md gives each figure
// with its source or says it is an assumption.
var builtin = []Profile{
	{
		Name: NBIoT, Title: "NB-IoT (LTE Cat-NB1/NB2)", Protocol: "coap",
		Latency:     Latency{Base: time.Second, JitterMedian: 500 * time.Millisecond, JitterMax: 8 * time.Second},
		UplinkBPS:   40_000,
		DownlinkBPS: 20_000,
		Loss:        Loss{Good: 0.01, Bad: 0.9, GoodToBad: 0.005, BadToGood: 0.2},
		MTU:         1280, MaxPayload: 512,
		Sleep:      Sleep{PSM: true, ActiveTimer: 10 * time.Second, PeriodicUpdate: 24 * time.Hour},
		PricePerMB: 1.0, DailyBudget: 16 << 10,
	},
	{
		Name: LTECat1, Title: "LTE Cat-1 (Cat-1 bis)", Protocol: "mqtt",
		Latency:     Latency{Base: 30 * time.Millisecond, JitterMedian: 10 * time.Millisecond, JitterMax: 200 * time.Millisecond},
		UplinkBPS:   5_000_000,
		DownlinkBPS: 10_000_000,
		Loss:        Loss{Good: 0.001, Bad: 0.5, GoodToBad: 0.001, BadToGood: 0.3},
		MTU:         1500, MaxPayload: 64 << 10,
		PricePerMB: 0.3, DailyBudget: 20 << 20,
	},
	{
		Name: RedCap, Title: "5G NR RedCap", Protocol: "mqtt",
		Latency:     Latency{Base: 10 * time.Millisecond, JitterMedian: 3 * time.Millisecond, JitterMax: 50 * time.Millisecond},
		UplinkBPS:   50_000_000,
		DownlinkBPS: 150_000_000,
		Loss:        Loss{Good: 0.0001, Bad: 0.3, GoodToBad: 0.0005, BadToGood: 0.5},
		MTU:         1500, MaxPayload: 256 << 10,
		PricePerMB: 0.1, DailyBudget: 500 << 20,
	},
	{
		Name: WLAN, Title: "WLAN (IEEE 802.11)", Protocol: "mqtt",
		Latency:     Latency{Base: 2 * time.Millisecond, JitterMedian: time.Millisecond, JitterMax: 30 * time.Millisecond},
		UplinkBPS:   20_000_000,
		DownlinkBPS: 20_000_000,
		Loss:        Loss{Good: 0.001, Bad: 0.3, GoodToBad: 0.002, BadToGood: 0.1},
		MTU:         1500, MaxPayload: 256 << 10,
	},
	{
		Name: Ethernet, Title: "Wired Ethernet", Protocol: "mqtt",
		Latency:     Latency{Base: 200 * time.Microsecond, JitterMedian: 50 * time.Microsecond, JitterMax: time.Millisecond},
		UplinkBPS:   100_000_000,
		DownlinkBPS: 100_000_000,
		MTU:         1500, MaxPayload: 1 << 20,
	},
}

// Lookup returns the built-in profile of that name.
func Lookup(name string) (Profile, bool) {
	i := slices.IndexFunc(builtin, func(p Profile) bool { return p.Name == name })
	if i < 0 {
		return Profile{}, false
	}
	return builtin[i], true
}

// Names lists the built-in profiles' names, slowest link first.
func Names() []string {
	out := make([]string, len(builtin))
	for i, p := range builtin {
		out[i] = p.Name
	}
	return out
}

// All returns the built-in profiles, slowest link first.
func All() []Profile { return slices.Clone(builtin) }

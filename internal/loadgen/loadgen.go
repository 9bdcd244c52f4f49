// Package loadgen is wanwu's MQTT load generator, the engine behind
// `wanwu bench`. It drives N simulated devices with real MQTT clients
// (github.com/eclipse/paho.golang for MQTT 5, github.com/eclipse/paho.mqtt.golang
// for 3.1.1) against any broker address — a wanwu hub or a peer such as
// mosquitto — so that both sides of a comparison see the same load from the
// same generator.
//
// Run publishes M messages (or for a duration) from each of N clients with
// at most Inflight unacknowledged publishes per client, and counts what a
// separate subscriber actually receives, by (client, sequence) pair: ok,
// lost (acknowledged but never delivered) or duplicate. Against a wanwu hub
// whose job is to persist rather than relay, Options.Store counts instead:
// no subscriber connects, and after publishing every device's messages are
// read back from the hub's store (HubStore, through its Prometheus API). It reports
// publish→acknowledgement and publish→delivery latency percentiles from the
// sorted per-message durations, and, given the target's PID, the target's
// CPU-seconds (utime+stime from /proc/<pid>/stat) per million messages and its
// resident memory (VmRSS). CPU-seconds matter more than rates on machines
// where the generator and the server share a few cores.
//
// Idle connects N clients, holds them and reports the target's RSS growth per
// connection. SourceAddrs spreads client sockets over several loopback
// addresses so that N may exceed one address's ephemeral ports.
//
// Payloads are SenML JSON that a wanwu hub accepts as telemetry:
//
//	[{"bn":"bench:dev-7/","n":"temperature","v":21.5,"t":1760000000.123},{"n":"seq","v":42}]
//
// padded with JSON whitespace to the requested size. The base name carries
// the client, the "seq" record the sequence number; "t" strictly increases per
// client at millisecond resolution so that no two samples of one series share
// a timestamp in a time-series store.
package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// Defaults of Options.
const (
	DefaultBroker         = "tcp://127.0.0.1:1883"
	DefaultTenant         = "bench"
	DefaultClients        = 100
	DefaultMessages       = 1000
	DefaultInflight       = 16
	DefaultPayloadSize    = 100
	DefaultProtocol       = 5
	DefaultConnectWorkers = 64
	DefaultTimeout        = 30 * time.Second
	DefaultDrainQuiet     = 3 * time.Second
	DefaultDrainMax       = 60 * time.Second
	DefaultIdleSettle     = 3 * time.Second
	DefaultKeepAlive      = 60 * time.Second
	DefaultConnectTries   = 5
)

// ErrOptions is wrapped by every error about invalid Options.
var ErrOptions = errors.New("loadgen: invalid options")

// Options describes one load. The zero value of every field means its default.
type Options struct {
	// Broker is the target: tcp://host:port or ssl://host:port (also
	// mqtt://, mqtts://, tls://).
	Broker string
	// TLS configures ssl:// connections (nil: system roots).
	TLS *tls.Config
	// Protocol is the MQTT version: 5 (paho.golang) or 3 for 3.1.1
	// (paho.mqtt.golang).
	Protocol int

	// Clients is the number of simulated devices N.
	Clients int
	// MessagesPerClient is M; ignored when Duration is set.
	MessagesPerClient int
	// Duration, when set, publishes for this long instead of M messages.
	Duration time.Duration
	// Rate is messages per second per client; 0 sends as fast as the
	// in-flight window allows. Client i of N starts its schedule i/N of an
	// interval late, as independent devices do; Aligned starts all at once.
	Rate float64
	// Aligned sends every client's k-th message at the same instant (a
	// fleet on one clock: bursts of N messages) instead of spreading them.
	Aligned bool
	// QoS of publishes and of the counting subscription: 0, 1 or 2.
	QoS int
	// PayloadSize is the payload length in bytes (default 100); a size
	// below the unpadded SenML message means no padding.
	PayloadSize int
	// Inflight is the most unacknowledged publishes per client (default 16).
	Inflight int

	// Tenant names the devices: codes are <Tenant>:dev-<i>, i from 0.
	Tenant string
	// CodeFor overrides the code (and client id) of client i.
	CodeFor func(i int) string
	// TopicFor overrides the topic of client i; the default is the wanwu
	// device topic wanwu/v1/<tenant>/dev-<i>/telemetry.
	TopicFor func(i int) string
	// Credentials returns the username and password of client i; nil or
	// an empty username means none.
	Credentials func(i int) (username, password string)

	// SubscribeTopic is the counting subscriber's filter (for example
	// wanwu/v1/bench/+/telemetry or #); empty means no subscriber, and then
	// nothing is counted as delivered.
	SubscribeTopic string
	// SubscriberProtocol is the counting subscriber's MQTT version
	// (default 5 whatever Protocol is: the subscriber is the measuring
	// instrument, and paho.mqtt.golang's receive path falls behind a broker
	// at a few ten thousand messages per second).
	SubscriberProtocol int
	// SubscriberQoS, when set, is the QoS of the counting subscription
	// (default: QoS).
	SubscriberQoS *byte
	// SubscriberUsername and SubscriberPassword authenticate the subscriber
	// (for wanwu: any label and an API token).
	SubscriberUsername, SubscriberPassword string

	// TargetPID, when non-zero, is the broker process to sample in /proc.
	TargetPID int
	// SourceAddrs are local IP addresses to bind client sockets to, used
	// round-robin (empty: the kernel chooses).
	SourceAddrs []string

	// ConnectWorkers bounds concurrent connection attempts (default 64).
	ConnectWorkers int
	// ConnectTries is how often a refused or failed connect is tried
	// (default 5), with growing backoff: brokers rate-limit connects.
	ConnectTries int
	// Timeout bounds one connect, subscribe or publish round trip (default 30s).
	Timeout time.Duration
	// KeepAlive of every client (default 60s).
	KeepAlive time.Duration
	// DrainQuiet ends the wait for deliveries after publishing once
	// nothing arrived for this long (default 3s); DrainMax bounds the
	// whole wait (default 60s).
	DrainQuiet, DrainMax time.Duration
	// IdleSettle is how long Idle holds the connections before measuring
	// the target (default 3s).
	IdleSettle time.Duration

	// Queryable, when set, reports whether message seq of device code,
	// published at published, can be read back from the target's store
	// (wanwu: HubQueryable). QueryableEvery samples one acknowledged message
	// in that many (default 100) and polls Queryable until true, for
	// publish→queryable latency.
	Queryable      func(ctx context.Context, code string, seq int, published time.Time) (bool, error)
	QueryableEvery int

	// Store, when set and SubscribeTopic is empty, counts deliveries by
	// reading each device's messages back from the target's store after
	// publishing: the run waits until the store holds what was acknowledged
	// (or nothing more arrives for DrainQuiet), samples the target's CPU,
	// then checks every (client, seq) pair. There is no publish→delivery
	// latency in this mode.
	Store Store

	// Progress, when set, receives one-line progress messages.
	Progress func(msg string)
}

func (o Options) withDefaults() (Options, error) {
	if o.Broker == "" {
		o.Broker = DefaultBroker
	}
	if o.Protocol == 0 {
		o.Protocol = DefaultProtocol
	}
	if o.Clients == 0 {
		o.Clients = DefaultClients
	}
	if o.MessagesPerClient == 0 && o.Duration == 0 {
		o.MessagesPerClient = DefaultMessages
	}
	if o.PayloadSize == 0 {
		o.PayloadSize = DefaultPayloadSize
	}
	if o.SubscriberProtocol == 0 {
		o.SubscriberProtocol = 5
	}
	if o.Inflight == 0 {
		o.Inflight = DefaultInflight
	}
	if o.Tenant == "" {
		o.Tenant = DefaultTenant
	}
	if o.CodeFor == nil {
		tenant := o.Tenant
		o.CodeFor = func(i int) string { return DeviceCode(tenant, i) }
	}
	if o.TopicFor == nil {
		codeFor := o.CodeFor
		o.TopicFor = func(i int) string { return DeviceTopic(codeFor(i)) }
	}
	if o.ConnectWorkers == 0 {
		o.ConnectWorkers = DefaultConnectWorkers
	}
	if o.ConnectTries == 0 {
		o.ConnectTries = DefaultConnectTries
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.DrainQuiet == 0 {
		o.DrainQuiet = DefaultDrainQuiet
	}
	if o.DrainMax == 0 {
		o.DrainMax = DefaultDrainMax
	}
	if o.IdleSettle == 0 {
		o.IdleSettle = DefaultIdleSettle
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	switch {
	case o.Protocol != 3 && o.Protocol != 4 && o.Protocol != 5:
		return o, fmt.Errorf("%w: protocol %d (want 3 for MQTT 3.1.1 or 5)", ErrOptions, o.Protocol)
	case o.Clients < 0:
		return o, fmt.Errorf("%w: clients %d", ErrOptions, o.Clients)
	case o.MessagesPerClient < 0 || o.Duration < 0:
		return o, fmt.Errorf("%w: messages and duration must not be negative", ErrOptions)
	case o.QoS < 0 || o.QoS > 2:
		return o, fmt.Errorf("%w: qos %d", ErrOptions, o.QoS)
	case o.Inflight < 1 || o.Inflight > 65535:
		return o, fmt.Errorf("%w: inflight %d (want 1..65535)", ErrOptions, o.Inflight)
	case o.Rate < 0:
		return o, fmt.Errorf("%w: rate %v", ErrOptions, o.Rate)
	case o.PayloadSize < 0:
		return o, fmt.Errorf("%w: payload size %d", ErrOptions, o.PayloadSize)
	}
	if o.SubscriberProtocol != 3 && o.SubscriberProtocol != 4 && o.SubscriberProtocol != 5 {
		return o, fmt.Errorf("%w: subscriber protocol %d (want 3 or 5)", ErrOptions, o.SubscriberProtocol)
	}
	if o.Protocol == 4 { // the 3.1.1 protocol level byte
		o.Protocol = 3
	}
	if o.SubscriberProtocol == 4 {
		o.SubscriberProtocol = 3
	}
	if o.SubscriberQoS != nil && *o.SubscriberQoS > 2 {
		return o, fmt.Errorf("%w: subscriber qos %d", ErrOptions, *o.SubscriberQoS)
	}
	if _, _, err := parseBroker(o.Broker); err != nil {
		return o, err
	}
	return o, nil
}

// DeviceCode is the code of bench device i of tenant: <tenant>:dev-<i>.
func DeviceCode(tenant string, i int) string { return fmt.Sprintf("%s:dev-%d", tenant, i) }

// DeviceTopic is a device's telemetry topic per the wanwu device protocol:
// code tenant:id publishes under wanwu/v1/<tenant>/<id>/telemetry.
func DeviceTopic(code string) string {
	for i := 0; i < len(code); i++ {
		if code[i] == ':' {
			return "wanwu/v1/" + code[:i] + "/" + code[i+1:] + "/telemetry"
		}
	}
	return "wanwu/v1/" + code + "/telemetry"
}

// Result is what one run measured. Durations marshal as nanoseconds.
type Result struct {
	Mode     string `json:"mode"` // "mqtt" or "idle"
	Broker   string `json:"broker"`
	Protocol int    `json:"protocol"`
	QoS      int    `json:"qos"`
	Clients  int    `json:"clients"`
	// Connected is how many clients connected (the rest are in Errors).
	Connected         int     `json:"connected"`
	MessagesPerClient int     `json:"messages_per_client,omitempty"`
	Inflight          int     `json:"inflight"`
	Rate              float64 `json:"rate_per_client,omitempty"`
	Aligned           bool    `json:"aligned,omitempty"`
	PayloadBytes      int     `json:"payload_bytes"`

	Sent      int64 `json:"sent"`      // publishes handed to the client library
	Acked     int64 `json:"acked"`     // acknowledged (QoS 0: written)
	Delivered int64 `json:"delivered"` // distinct (client, seq) pairs the subscriber received
	// Lost counts acknowledged pairs never delivered.
	Lost int64 `json:"lost"`
	// Duplicates counts receipts of a pair beyond its first.
	Duplicates int64 `json:"duplicates"`
	// DeliveredUnacked counts pairs delivered although their publish
	// failed or timed out (not an error of the broker).
	DeliveredUnacked int64 `json:"delivered_unacked"`
	// Counted is whether deliveries were counted; CountedBy says how:
	// "subscriber" or "store" (read back from the target's store).
	Counted   bool   `json:"counted"`
	CountedBy string `json:"counted_by,omitempty"`
	// Errors counts failures by kind (connect, connack_0x87, publish,
	// puback_0x97, timeout, foreign_message, ...).
	Errors map[string]int64 `json:"errors,omitempty"`

	ConnectTime   time.Duration `json:"connect_ns"`
	PublishWindow time.Duration `json:"publish_window_ns"` // first publish to last acknowledgement
	DrainTime     time.Duration `json:"drain_ns"`          // last acknowledgement to the end of delivery counting
	// Throughput is acknowledged messages per second over PublishWindow.
	Throughput float64 `json:"throughput_msgs_per_s"`

	PublishToAck     Percentiles `json:"publish_to_ack"`
	PublishToDeliver Percentiles `json:"publish_to_deliver"`
	// PublishToQueryable is measured on sampled messages when Options.Queryable is set.
	PublishToQueryable *Percentiles `json:"publish_to_queryable,omitempty"`

	TargetPID int `json:"target_pid,omitempty"`
	// TargetCPUSeconds is the target's utime+stime over the measured
	// window (publishing and draining; for idle, connecting and holding).
	TargetCPUSeconds float64 `json:"target_cpu_s,omitempty"`
	// CPUSecondsPerMillion is TargetCPUSeconds per million acknowledged messages.
	CPUSecondsPerMillion float64 `json:"target_cpu_s_per_million,omitempty"`
	// GeneratorCPUSeconds is this process's own CPU time over the same window.
	GeneratorCPUSeconds float64 `json:"generator_cpu_s"`
	// GeneratorSchedP99 is the 99th percentile of how long the generator's
	// goroutines waited to run once runnable, over the publishing window:
	// measured latencies include it.
	GeneratorSchedP99 time.Duration `json:"generator_sched_p99_ns,omitempty"`
	TargetRSSBefore   int64         `json:"target_rss_before_bytes,omitempty"` // before any client connected
	TargetRSSAfter    int64         `json:"target_rss_after_bytes,omitempty"`  // at the end of the window, clients still connected
	TargetRSSPeak     int64         `json:"target_rss_peak_bytes,omitempty"`   // highest sample (every 250 ms)
	// RSSPerConnection is (after - before) / connected, for idle runs.
	RSSPerConnection float64 `json:"rss_per_connection_bytes,omitempty"`

	Started time.Time     `json:"started"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

func (r *Result) addErr(kind string, n int64) {
	if n == 0 {
		return
	}
	if r.Errors == nil {
		r.Errors = map[string]int64{}
	}
	r.Errors[kind] += n
}

// Package config defines the hub's configuration: one YAML file format with
// documented defaults, overridden by command-line flags.
//
// Precedence, lowest first: built-in defaults, the file named by --config,
// flags given on the command line. Unknown keys in the file are errors, so a
// typo never silently falls back to a default. `wanwu hub --print-config`
// prints the effective configuration in this same format.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// Duration is a time.Duration written as a Go duration string ("720h").
type Duration time.Duration

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration like 720h: %w", n.Line, err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// ByteSize is a size in bytes written with an optional binary or decimal
// unit: "256MiB", "1GiB", "500MB", "4096".
type ByteSize uint64

// MarshalYAML writes the size with the largest binary unit that divides it.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// String writes the size as MarshalYAML does.
func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		n    uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && uint64(b)%u.n == 0 {
			return strconv.FormatUint(uint64(b)/u.n, 10) + u.name
		}
	}
	return strconv.FormatUint(uint64(b), 10)
}

// UnmarshalYAML reads a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// ParseByteSize reads "256MiB", "1GiB", "500MB", "10kB" or a plain number of bytes.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') {
		i--
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult, ok := map[string]uint64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
	v, err := strconv.ParseUint(num, 10, 64)
	if !ok || err != nil || (mult > 1 && v > (1<<64-1)/mult) {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit, like 256MiB or 1GB", s)
	}
	return ByteSize(v * mult), nil
}

// Hub is the configuration of the hub role.
type Hub struct {
	// DataDir holds the database, keys, CA, JetStream files and the admin token.
	DataDir  string   `yaml:"data_dir"`
	HTTP     HTTP     `yaml:"http"`
	MQTT     MQTT     `yaml:"mqtt"`
	CoAP     CoAP     `yaml:"coap"`
	Twins    Twins    `yaml:"twins"`
	Commands Commands `yaml:"commands"`
	// TLSHosts are the names and addresses in the hub's server certificate.
	TLSHosts  []string  `yaml:"tls_hosts"`
	Telemetry Telemetry `yaml:"telemetry"`
	Bus       Bus       `yaml:"bus"`
	Storage   Storage   `yaml:"storage"`
	Identity  Identity  `yaml:"identity"`
	Networks  Networks  `yaml:"networks"`
	// Edge applies to `wanwu edge` only: its hub and its outboxes.
	Edge    Edge    `yaml:"edge"`
	ML      ML      `yaml:"ml"`
	Console Console `yaml:"console"`
	Debug   Debug   `yaml:"debug"`
	Log     Log     `yaml:"log"`
}

// HTTP configures the HTTP API listeners.
type HTTP struct {
	// Listen is the API address; port 0 picks a free port.
	Listen string `yaml:"listen"`
	// TLSListen serves the same API over HTTPS with the hub's server
	// certificate; devices may present client certificates there.
	TLSListen string `yaml:"tls_listen"`
}

// MQTT configures the MQTT adapter.
type MQTT struct {
	// Listen is plain MQTT (device tokens or API tokens as password); "" = off.
	Listen string `yaml:"listen"`
	// TLSListen is MQTT over TLS (client certificates or tokens); "" = off.
	TLSListen string `yaml:"tls_listen"`
	// DevListen admits anonymous clients limited to DevACL: lab tools only; "" = off.
	DevListen string   `yaml:"dev_listen"`
	DevACL    []string `yaml:"dev_acl"`
	// MaxInflight bounds the QoS 1/2 messages a subscriber may leave
	// unacknowledged (1-65535, packet ids are 16 bits); further ones
	// wait in its queue (MaxQueued). Both bound the hub's memory per
	// slow integration.
	MaxInflight int `yaml:"max_inflight"`
	// MaxQueued bounds the QoS 1/2 messages that wait, per subscriber,
	// for room among its MaxInflight (0: none wait); beyond it they are
	// dropped and counted. About 1 KiB of memory each.
	MaxQueued int `yaml:"max_queued"`
	// Limits are per second, with bursts (docs/PROTOCOL.md §5).
	Limits struct {
		ConnectPerDevice      float64 `yaml:"connect_per_device"`
		ConnectPerDeviceBurst int     `yaml:"connect_per_device_burst"`
		ConnectPerAddr        float64 `yaml:"connect_per_addr"`
		ConnectPerAddrBurst   int     `yaml:"connect_per_addr_burst"`
		PublishPerDevice      float64 `yaml:"publish_per_device"`
		PublishPerDeviceBurst int     `yaml:"publish_per_device_burst"`
		// Failed authentications, charged to the source address (over
		// its budget the address is refused before authentication) and
		// to the code the client named (over its budget failures are
		// answered "rate exceeded"; valid credentials still pass).
		AuthFailuresPerAddr        float64 `yaml:"auth_failures_per_addr"`
		AuthFailuresPerAddrBurst   int     `yaml:"auth_failures_per_addr_burst"`
		AuthFailuresPerDevice      float64 `yaml:"auth_failures_per_device"`
		AuthFailuresPerDeviceBurst int     `yaml:"auth_failures_per_device_burst"`
	} `yaml:"limits"`
}

// CoAP configures the CoAP adapter.
type CoAP struct {
	// DTLSListen is CoAP over DTLS (UDP): PSK per device or a client
	// certificate from the hub CA; "" = off.
	DTLSListen string `yaml:"dtls_listen"`
	// Listen is plain CoAP over UDP for development: every request
	// carries a device token (?t=); "" = off.
	Listen string `yaml:"listen"`
	// SessionIdle is how long a DTLS session (and a plain-UDP
	// endpoint's state) without traffic is kept: a device that wakes
	// within it sends at once, later it shakes hands again. A kept
	// DTLS session costs about 50 KiB and five goroutines.
	SessionIdle Duration `yaml:"session_idle"`
	// SleepingSessionIdle is how long the DTLS session of a device on a
	// PSM network profile is kept without traffic: its periodic update
	// timer (T3412) and active timer, at most this (0: as SessionIdle). A
	// meter that reports hourly then wakes into its session instead of
	// shaking hands again, which on NB-IoT costs ten times its reading
	// (bench/RESULTS.md, bytes on the air).
	SleepingSessionIdle Duration `yaml:"sleeping_session_idle"`
	// Limits are requests per second, with bursts.
	Limits struct {
		RequestPerDevice      float64 `yaml:"request_per_device"`
		RequestPerDeviceBurst int     `yaml:"request_per_device_burst"`
		RequestPerAddr        float64 `yaml:"request_per_addr"`
		RequestPerAddrBurst   int     `yaml:"request_per_addr_burst"`
	} `yaml:"limits"`
}

// Twins bounds the device twins.
type Twins struct {
	// MaxDocBytes bounds each of a twin's desired and reported documents (compact JSON).
	MaxDocBytes int `yaml:"max_doc_bytes"`
}

// Commands configures command delivery.
type Commands struct {
	// DefaultTTL is how long a command waits for its device when the issuer sets none.
	DefaultTTL Duration `yaml:"default_ttl"`
	// AckTimeout is how long a delivery waits for the device's
	// acknowledgement before it is retried (with backoff).
	AckTimeout Duration `yaml:"ack_timeout"`
	// MaxAttempts is how many deliveries are tried before the command fails.
	MaxAttempts int `yaml:"max_attempts"`
}

// ML configures models at the node.
type ML struct {
	// RolloutEvery is the time between two evaluations of the gates of
	// the model rollouts staged at the node.
	RolloutEvery Duration `yaml:"rollout_every"`
	// CaptureBefore and CaptureAfter are the span of the windows of raw
	// data taken around alarms and loop decisions for the datasets.
	CaptureBefore Duration `yaml:"capture_before"`
	CaptureAfter  Duration `yaml:"capture_after"`
}

// Console configures the web console every node serves at / of its HTTP
// listener.
type Console struct {
	// SessionLifetime is how long a sign-in lasts.
	SessionLifetime Duration `yaml:"session_lifetime"`
	// SecureCookies marks the console's cookies Secure whatever the
	// request came over: for a node behind a proxy that terminates TLS,
	// where the console sees plain HTTP (it marks them so over TLS anyway).
	SecureCookies bool `yaml:"secure_cookies"`
	// LiveEvery is how often an object page's live stream reads the latest
	// values; MaxLiveStreams bounds the live streams open at once.
	LiveEvery      Duration `yaml:"live_every"`
	MaxLiveStreams int      `yaml:"max_live_streams"`
}

// Telemetry configures ingest and the time-series store.
type Telemetry struct {
	// OutOfOrderWindow is how late a sample may arrive (edge backlogs).
	OutOfOrderWindow Duration `yaml:"out_of_order_window"`
	// Retention is how long samples are kept.
	Retention Duration `yaml:"retention"`
	// MaxPayload bounds one device message, in bytes.
	MaxPayload int `yaml:"max_payload"`
	// FutureSkew is how far ahead of the hub's clock a timestamp may be.
	FutureSkew Duration `yaml:"future_skew"`
}

// Bus configures the embedded bus and the ingest log.
type Bus struct {
	// Listen exposes the embedded NATS server; "" keeps it in-process only.
	Listen string `yaml:"listen"`
	// Sync is "always" (fsync before acknowledging) or an interval like "2s".
	Sync string `yaml:"sync"`
	// IngestMaxAge is how long the ingest log keeps accepted data: the
	// window in which its consumers (the stores, later edge forwarders)
	// can read it back after a restart or falling behind.
	IngestMaxAge Duration `yaml:"ingest_max_age"`
	// IngestMaxBytes bounds the ingest log's size, oldest data dropped
	// first (0: bounded by ingest_max_age and the disk only). A consumer
	// that falls behind the window is told the exact range it lost.
	IngestMaxBytes ByteSize `yaml:"ingest_max_bytes"`
}

// Storage configures the data directory's disk guard.
type Storage struct {
	// MinFree is the free space the data directory's filesystem keeps:
	// below it device data is refused (MQTT 0x97, CoAP 5.03, HTTP 507,
	// each saying why) so that the hub can still write its own state;
	// 0 turns the threshold off (a store that meets a full disk still
	// stops device data until space returns).
	MinFree ByteSize `yaml:"min_free"`
}

// Identity configures certificates, keys and tokens.
type Identity struct {
	// CertValidity is the lifetime of issued device certificates and credentials.
	CertValidity Duration `yaml:"cert_validity"`
	// RotationOverlap is how long a rotated-out key keeps working.
	RotationOverlap Duration `yaml:"rotation_overlap"`
	// TokenSkew is the clock difference tolerated between a device and
	// the hub: a device token is accepted from token_skew before its
	// iat until token_skew after its exp.
	TokenSkew Duration `yaml:"token_skew"`
	// ImportMaxRows is the most rows one bulk CSV import may have.
	ImportMaxRows int `yaml:"import_max_rows"`
	// DecommissionReleaseCodes is what a decommission does with the code
	// when the request does not say: release it for a new object (true)
	// or keep it reserved for good (false, the default).
	DecommissionReleaseCodes bool `yaml:"decommission_release_codes"`
}

// Networks configures how the hub applies each device's network profile
// (package netprofile, docs/NETWORKS.md): its daily byte budget, and when a
// device whose link sleeps (PSM) can be reached.
type Networks struct {
	// FlushEvery is how often the bytes counted per device are written
	// to the database (table device_bytes) and added to the metrics; a
	// shutdown writes what is left. The byte figures the API serves are
	// those of the last flush.
	FlushEvery Duration `yaml:"flush_every"`
	// Profiles overrides figures of the built-in profiles for this
	// deployment, by profile name (nb-iot, lte-cat1, 5g-redcap, wlan,
	// ethernet): what a carrier's contract or network actually gives.
	Profiles map[string]ProfileOverride `yaml:"profiles"`
}

// Edge configures the edge role: the hub it forwards to, its identity and
// the quota of each forwarding class (alarm, control, telemetry, bulk).
type Edge struct {
	// Hub is the hub's HTTPS API URL ("https://hub.example:8443"): the
	// link is TLS with the edge's client certificate.
	Hub string `yaml:"hub"`
	// Identity is the directory of the edge's identity (key, certificate,
	// the hub CA); "" is <data_dir>/identity.
	Identity string `yaml:"identity"`
	// Quota bounds what each class holds while the hub is unreachable.
	// Alarm and control keep everything and refuse devices' messages of
	// their class when full; telemetry downsamples its oldest values into
	// per-minute rollups; bulk drops its oldest. Each reduction leaves a
	// signed gap record.
	Quota EdgeQuota `yaml:"quota"`
	// RetryMax bounds the wait between attempts to reach the hub: the
	// link's return is noticed within it.
	RetryMax Duration `yaml:"retry_max"`
	// Share grants the hub the raw values of properties classified
	// important or core, as "<model id>/<property>"; the values of the
	// others stay at the edge and the hub gets their per-minute rollups
	// (min, mean, max, count).
	Share []string `yaml:"share"`
	// Southbound are the field devices the edge polls (Modbus TCP, Modbus
	// RTU behind a TCP gateway): each an object behind this edge at the
	// hub whose thing model maps its registers (mapping.modbus).
	Southbound []SouthboundDevice `yaml:"southbound"`
}

// SouthboundDevice is one polled field device: its code and where it
// answers.
type SouthboundDevice struct {
	Code string `yaml:"code"`
	// URL is tcp://host:port (Modbus TCP) or rtuovertcp://host:port (Modbus
	// RTU behind a TCP gateway).
	URL string `yaml:"url"`
	// Unit is the Modbus unit (slave) id, 1 by default.
	Unit uint8 `yaml:"unit"`
	// Timeout bounds one request (default 1s).
	Timeout Duration `yaml:"timeout"`
}

// EdgeQuota is the outbox quota of each forwarding class.
type EdgeQuota struct {
	Alarm     ByteSize `yaml:"alarm"`
	Control   ByteSize `yaml:"control"`
	Telemetry ByteSize `yaml:"telemetry"`
	Bulk      ByteSize `yaml:"bulk"`
}

// ProfileOverride replaces the figures it sets of one built-in profile.
type ProfileOverride struct {
	// DailyBudget is a device's byte budget per UTC day, up and down
	// together (0: none).
	DailyBudget *ByteSize `yaml:"daily_budget,omitempty"`
	// ActiveTimer (T3324) is how long a PSM device stays reachable
	// after an uplink; PeriodicUpdate (T3412) the longest it sleeps.
	ActiveTimer    *Duration `yaml:"active_timer,omitempty"`
	PeriodicUpdate *Duration `yaml:"periodic_update,omitempty"`
	// EDRXCycle is how often a device with eDRX (and no PSM) listens.
	EDRXCycle *Duration `yaml:"edrx_cycle,omitempty"`
}

// Profile returns the built-in profile of that name with this
// deployment's overrides applied.
func (n Networks) Profile(name string) (netprofile.Profile, bool) {
	p, ok := netprofile.Lookup(name)
	if !ok {
		return p, false
	}
	o := n.Profiles[name]
	if o.DailyBudget != nil {
		p.DailyBudget = int64(*o.DailyBudget)
	}
	if o.ActiveTimer != nil {
		p.Sleep.ActiveTimer = time.Duration(*o.ActiveTimer)
	}
	if o.PeriodicUpdate != nil {
		p.Sleep.PeriodicUpdate = time.Duration(*o.PeriodicUpdate)
	}
	if o.EDRXCycle != nil {
		p.Sleep.EDRXCycle = time.Duration(*o.EDRXCycle)
	}
	return p, true
}

// Debug configures diagnostics.
type Debug struct {
	// PprofListen serves Go's /debug/pprof on this address (keep it on
	// loopback); "" = off.
	PprofListen string `yaml:"pprof_listen"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// DefaultHub returns the built-in defaults.
func DefaultHub() Hub {
	var c Hub
	c.DataDir = "wanwu-data"
	c.HTTP.Listen = "127.0.0.1:8080"
	c.HTTP.TLSListen = ""
	c.MQTT.Listen = "127.0.0.1:1883"
	c.MQTT.TLSListen = "127.0.0.1:8883"
	c.MQTT.DevACL = []string{"wanwu/v1/dev/#"}
	c.MQTT.MaxInflight = 65535
	c.MQTT.MaxQueued = 1 << 18
	l := &c.MQTT.Limits
	l.ConnectPerDevice, l.ConnectPerDeviceBurst = 1, 5
	l.ConnectPerAddr, l.ConnectPerAddrBurst = 50, 200
	l.PublishPerDevice, l.PublishPerDeviceBurst = 100, 200
	l.AuthFailuresPerAddr, l.AuthFailuresPerAddrBurst = 1, 30
	l.AuthFailuresPerDevice, l.AuthFailuresPerDeviceBurst = 1, 10
	c.CoAP.DTLSListen = "127.0.0.1:5684"
	c.CoAP.Listen = ""
	c.CoAP.SessionIdle = Duration(5 * time.Minute)
	c.CoAP.SleepingSessionIdle = Duration(25 * time.Hour)
	cl := &c.CoAP.Limits
	cl.RequestPerDevice, cl.RequestPerDeviceBurst = 100, 200
	cl.RequestPerAddr, cl.RequestPerAddrBurst = 1000, 2000
	c.Twins.MaxDocBytes = 8 << 10
	c.Commands.DefaultTTL = Duration(24 * time.Hour)
	c.Commands.AckTimeout = Duration(20 * time.Second)
	c.Commands.MaxAttempts = 5
	c.TLSHosts = []string{"localhost", "127.0.0.1", "::1"}
	c.Telemetry.OutOfOrderWindow = Duration(24 * time.Hour)
	c.Telemetry.Retention = Duration(30 * 24 * time.Hour)
	c.Telemetry.MaxPayload = 64 << 10
	c.Telemetry.FutureSkew = Duration(5 * time.Minute)
	c.Bus.Listen = ""
	c.Bus.Sync = bus.SyncAlways
	c.Bus.IngestMaxAge = Duration(72 * time.Hour)
	c.Storage.MinFree = 256 << 20
	c.Identity.CertValidity = Duration(365 * 24 * time.Hour)
	c.Identity.RotationOverlap = Duration(7 * 24 * time.Hour)
	c.Identity.TokenSkew = Duration(5 * time.Minute)
	c.Identity.ImportMaxRows = 100000
	c.Networks.FlushEvery = Duration(10 * time.Second)
	c.Edge.Quota = EdgeQuota{Alarm: 64 << 20, Control: 256 << 20, Telemetry: 4 << 30, Bulk: 1 << 30}
	c.Edge.RetryMax = Duration(500 * time.Millisecond)
	c.ML.RolloutEvery = Duration(5 * time.Second)
	c.ML.CaptureBefore = Duration(2 * time.Minute)
	c.ML.CaptureAfter = Duration(10 * time.Second)
	c.Console.SessionLifetime = Duration(8 * time.Hour)
	c.Console.LiveEvery = Duration(time.Second)
	c.Console.MaxLiveStreams = 256
	c.Log.Level = "info"
	c.Log.Format = "text"
	return c
}

// DefaultEdge returns the built-in defaults of the edge role: the hub's,
// with its own data directory and API port, and no TLS listeners (their
// certificate would come from the hub's CA, which an edge cannot use):
// local devices connect with device tokens over MQTT and CoAP.
func DefaultEdge() Hub {
	c := DefaultHub()
	c.DataDir = "wanwu-edge"
	c.HTTP.Listen = "127.0.0.1:8090"
	c.MQTT.TLSListen = ""
	c.CoAP.DTLSListen = ""
	c.CoAP.Listen = "127.0.0.1:5683"
	return c
}

// LoadFile applies a YAML file on top of c.
func (c *Hub) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// Unknown keys are named with their path and the keys allowed there;
	// the YAML decoder's own message names Go types instead.
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	if len(root.Content) > 0 {
		if errs := unknownKeys(root.Content[0], reflect.TypeOf(*c), ""); len(errs) > 0 {
			return fmt.Errorf("config: %s: %w", path, errors.Join(errs...))
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}

// unknownKeys walks a YAML mapping beside the struct type it decodes into
// and reports each key the type does not have, with the keys it does.
func unknownKeys(n *yaml.Node, t reflect.Type, prefix string) []error {
	if n.Kind != yaml.MappingNode || t.Kind() != reflect.Struct {
		return nil
	}
	fields := map[string]reflect.Type{}
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = t.Field(i).Type
		names = append(names, name)
	}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		if !ok {
			where := "at the top level"
			if prefix != "" {
				where = "under " + strings.TrimSuffix(prefix, ".")
			}
			errs = append(errs, fmt.Errorf("line %d: unknown key %q; %s the keys are: %s", k.Line, prefix+k.Value, where, strings.Join(names, ", ")))
			continue
		}
		errs = append(errs, unknownKeys(v, ft, prefix+k.Value+".")...)
	}
	return errs
}

// Validate checks values that flags and files cannot type-check.
func (c *Hub) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		errs = append(errs, fmt.Errorf("http.listen: %w", err))
	}
	for name, addr := range map[string]string{"http.tls_listen": c.HTTP.TLSListen, "mqtt.listen": c.MQTT.Listen, "mqtt.tls_listen": c.MQTT.TLSListen, "mqtt.dev_listen": c.MQTT.DevListen,
		"coap.listen": c.CoAP.Listen, "coap.dtls_listen": c.CoAP.DTLSListen} {
		if addr != "" {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	if (c.HTTP.TLSListen != "" || c.MQTT.TLSListen != "") && len(c.TLSHosts) == 0 {
		errs = append(errs, errors.New("tls_hosts: a TLS listener needs at least one host name or address"))
	}
	if c.Telemetry.OutOfOrderWindow < 0 || c.Telemetry.Retention <= 0 || c.Telemetry.FutureSkew < 0 {
		errs = append(errs, errors.New("telemetry: out_of_order_window and future_skew must not be negative, retention must be positive"))
	}
	if c.ML.CaptureBefore <= 0 || c.ML.CaptureBefore > Duration(24*time.Hour) || c.ML.CaptureAfter < 0 || c.ML.CaptureAfter > Duration(time.Hour) {
		errs = append(errs, errors.New("ml.capture_before: want above 0 and at most 24h; ml.capture_after: 0 to 1h"))
	}
	if c.ML.RolloutEvery < Duration(100*time.Millisecond) || c.ML.RolloutEvery > Duration(time.Hour) {
		errs = append(errs, fmt.Errorf("ml.rollout_every: %s: want 100ms to 1h", time.Duration(c.ML.RolloutEvery)))
	}
	if c.Console.SessionLifetime < Duration(time.Minute) || c.Console.SessionLifetime > Duration(30*24*time.Hour) {
		errs = append(errs, fmt.Errorf("console.session_lifetime: %s: want 1m to 720h", time.Duration(c.Console.SessionLifetime)))
	}
	if c.Console.LiveEvery < Duration(100*time.Millisecond) || c.Console.LiveEvery > Duration(time.Minute) {
		errs = append(errs, fmt.Errorf("console.live_every: %s: want 100ms to 1m", time.Duration(c.Console.LiveEvery)))
	}
	if c.Console.MaxLiveStreams < 1 || c.Console.MaxLiveStreams > 100000 {
		errs = append(errs, fmt.Errorf("console.max_live_streams: %d: want 1 to 100000", c.Console.MaxLiveStreams))
	}
	if c.MQTT.MaxInflight < 1 || c.MQTT.MaxInflight > 65535 {
		errs = append(errs, fmt.Errorf("mqtt.max_inflight: %d: want 1 to 65535 (packet ids are 16 bits)", c.MQTT.MaxInflight))
	}
	if c.MQTT.MaxQueued < 0 {
		errs = append(errs, fmt.Errorf("mqtt.max_queued: %d: must not be negative", c.MQTT.MaxQueued))
	}
	if l := c.MQTT.Limits; l.ConnectPerDevice <= 0 || l.ConnectPerAddr <= 0 || l.PublishPerDevice <= 0 ||
		l.AuthFailuresPerAddr <= 0 || l.AuthFailuresPerDevice <= 0 ||
		l.ConnectPerDeviceBurst < 1 || l.ConnectPerAddrBurst < 1 || l.PublishPerDeviceBurst < 1 ||
		l.AuthFailuresPerAddrBurst < 1 || l.AuthFailuresPerDeviceBurst < 1 {
		errs = append(errs, errors.New("mqtt.limits: rates must be positive and bursts at least 1"))
	}
	if c.CoAP.SessionIdle < Duration(time.Second) {
		errs = append(errs, fmt.Errorf("coap.session_idle: %s: want at least 1s", time.Duration(c.CoAP.SessionIdle)))
	}
	if c.CoAP.SleepingSessionIdle < 0 {
		errs = append(errs, fmt.Errorf("coap.sleeping_session_idle: %s: want 0 (off) or more", time.Duration(c.CoAP.SleepingSessionIdle)))
	}
	if l := c.CoAP.Limits; l.RequestPerDevice <= 0 || l.RequestPerAddr <= 0 || l.RequestPerDeviceBurst < 1 || l.RequestPerAddrBurst < 1 {
		errs = append(errs, errors.New("coap.limits: rates must be positive and bursts at least 1"))
	}
	if c.Twins.MaxDocBytes < 256 || c.Twins.MaxDocBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("twins.max_doc_bytes: %d is not between 256 and 1 MiB", c.Twins.MaxDocBytes))
	}
	if c.Commands.DefaultTTL <= 0 || c.Commands.AckTimeout <= 0 || c.Commands.MaxAttempts < 1 {
		errs = append(errs, errors.New("commands: default_ttl and ack_timeout must be positive, max_attempts at least 1"))
	}
	if c.Telemetry.MaxPayload < 256 || c.Telemetry.MaxPayload > 16<<20 {
		errs = append(errs, fmt.Errorf("telemetry.max_payload: %d is not between 256 and 16 MiB", c.Telemetry.MaxPayload))
	}
	if c.Bus.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Bus.Listen); err != nil {
			errs = append(errs, fmt.Errorf("bus.listen: %w", err))
		}
	}
	if c.Bus.IngestMaxAge < Duration(time.Minute) {
		errs = append(errs, fmt.Errorf("bus.ingest_max_age: %s: want at least 1m", time.Duration(c.Bus.IngestMaxAge)))
	}
	if c.Bus.IngestMaxBytes != 0 && c.Bus.IngestMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("bus.ingest_max_bytes: %s: want 0 (no bound) or at least 1MiB", c.Bus.IngestMaxBytes))
	}
	if _, err := bus.ParseSync(c.Bus.Sync); err != nil {
		errs = append(errs, fmt.Errorf("bus.sync: %w", err))
	}
	if c.Identity.CertValidity <= 0 {
		errs = append(errs, errors.New("identity.cert_validity: must be positive"))
	}
	if c.Identity.TokenSkew < 0 || c.Identity.TokenSkew > Duration(time.Hour) {
		errs = append(errs, fmt.Errorf("identity.token_skew: %s: want 0 to 1h", time.Duration(c.Identity.TokenSkew)))
	}
	if c.Identity.RotationOverlap < 0 {
		errs = append(errs, errors.New("identity.rotation_overlap: must not be negative"))
	}
	if c.Identity.ImportMaxRows <= 0 {
		errs = append(errs, errors.New("identity.import_max_rows: must be positive"))
	}
	if c.Networks.FlushEvery < Duration(100*time.Millisecond) || c.Networks.FlushEvery > Duration(10*time.Minute) {
		errs = append(errs, fmt.Errorf("networks.flush_every: %s: want 100ms to 10m", time.Duration(c.Networks.FlushEvery)))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Networks.Profiles)) {
		o := c.Networks.Profiles[name]
		if _, ok := netprofile.Lookup(name); !ok {
			errs = append(errs, fmt.Errorf("networks.profiles: %q is not a network profile; want one of %s", name, strings.Join(netprofile.Names(), ", ")))
			continue
		}
		for _, f := range []struct {
			key string
			d   *Duration
		}{{"active_timer", o.ActiveTimer}, {"periodic_update", o.PeriodicUpdate}, {"edrx_cycle", o.EDRXCycle}} {
			if f.d != nil && *f.d < 0 {
				errs = append(errs, fmt.Errorf("networks.profiles.%s.%s: %s: must not be negative", name, f.key, time.Duration(*f.d)))
			}
		}
		if p, _ := c.Networks.Profile(name); p.Sleep.PSM && p.Sleep.ActiveTimer <= 0 {
			errs = append(errs, fmt.Errorf("networks.profiles.%s.active_timer: a PSM profile needs a positive active timer", name))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not text or json", c.Log.Format))
	}
	for i, d := range c.Edge.Southbound {
		f := fmt.Sprintf("edge.southbound[%d]", i)
		if d.Code == "" {
			errs = append(errs, fmt.Errorf("%s.code: must not be empty", f))
		}
		if u, err := url.Parse(d.URL); err != nil || (u.Scheme != "tcp" && u.Scheme != "rtuovertcp") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s.url: %q is not tcp://host:port or rtuovertcp://host:port", f, d.URL))
		}
	}
	return errors.Join(errs...)
}

// YAML renders c in the file format, with a header naming the precedence.
func (c Hub) YAML() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# wanwu hub configuration (defaults < this file < flags)\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return buf.Bytes(), nil
}

package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/hubclient"
	"github.com/wanwu-iot/wanwu/internal/linkemu"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
	"github.com/wanwu-iot/wanwu/internal/scenario"
)

// Options configure a fleet.
type Options struct {
	// Hub is the hub's API base URL (http://127.0.0.1:8080); Token an API
	// token that may create the tenant (admin) or at least register
	// models and objects in it (operator).
	Hub   string
	Token string
	// MQTT and CoAP are the device endpoints (default: the hub's host,
	// mqtts://HOST:8883 and coaps://HOST:5684).
	MQTT string
	CoAP string
	// ServerName is the name the hub's TLS certificate carries (default:
	// the endpoints' host).
	ServerName string
	// Scenario is the fleet to run.
	Scenario *scenario.Scenario
	// Seed, when not 0, replaces the scenario's seed.
	Seed int64
	// StateFile caches the devices' identities between runs (mode 0600);
	// "" keeps them in memory only (a run against the same hub then gives
	// each device a new key).
	StateFile string
	// Claim has each device claim its identity with a claim token, as a
	// device in the field does (one token per class, made with Token),
	// instead of registering them all through the bulk import. Slower:
	// the hub limits claims per source address.
	Claim bool
	// NoEmulation connects the devices without their link profiles.
	NoEmulation bool
	// Profiles replace built-in profiles of the same name for the links
	// (a worse coverage, another price): netprofile.Parse reads them from
	// a file. The hub knows the built-in names only, so a new name is
	// refused.
	Profiles []netprofile.Profile
	// Sources are local addresses the devices' connections start from, in
	// turn, so that the hub's per-address limits see many addresses. On a
	// loopback IPv4 hub the default is 127.0.1.1 to 127.0.1.254.
	Sources []string
	// Ramp spreads the devices' first connections over this long (default
	// 5 ms per device, at least 2 s, at most 2 minutes).
	Ramp time.Duration
	// Logger receives the fleet's events (default: discard). The devices'
	// own logs go to DeviceLogger (default: discard).
	Logger       *slog.Logger
	DeviceLogger *slog.Logger
	// Progress, if set, receives one line per provisioning step.
	Progress func(string)
	// Edge, when set, is the edge node the scenario's edge classes are
	// placed behind: they are registered with it and connect to it.
	Edge *EdgeRoute
}

// EdgeRoute is an edge node's code and its endpoints for local devices,
// which take device tokens: mqtt://host:port and coap://host:port.
type EdgeRoute struct {
	Code, MQTT, CoAP string
}

// Sim is a running fleet.
type Sim struct {
	opts    Options
	seed    int64
	log     *slog.Logger
	devices []*simDevice
	classes []*classStats

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  time.Time
}

// classStats are one class's counters; the devices add to them.
type classStats struct {
	class    *scenario.Class
	network  string
	protocol string
	// edge is the edge node the class is behind ("" the hub).
	edge    string
	devices int

	online   atomic.Int64
	sent     atomic.Int64 // messages acknowledged by the hub
	records  atomic.Int64
	refused  atomic.Int64 // messages the hub refused
	failures atomic.Int64 // connection and send failures (retried)
	commands atomic.Int64 // commands carried out
	twins    atomic.Int64 // desired changes applied
	events   atomic.Int64 // events acknowledged

	mu      sync.Mutex
	reasons map[string]int64 // refusals and failures by reason
	lastErr string
}

func (c *classStats) note(reason string, err error) {
	c.mu.Lock()
	c.reasons[reason]++
	if err != nil {
		c.lastErr = err.Error()
	}
	c.mu.Unlock()
}

// simDevice is one simulated device.
type simDevice struct {
	code    string
	index   int
	class   *classStats
	profile netprofile.Profile
	link    *linkemu.Link // nil without emulation
	id      *device.Identity
	source  string

	mu     sync.Mutex // guards phys: the loop, commands and twins use it
	phys   scenario.Device
	online atomic.Bool
}

// New checks the options; Start provisions and runs the fleet.
func New(opts Options) (*Sim, error) {
	if opts.Scenario == nil {
		return nil, errors.New("sim: a scenario is required")
	}
	u, err := url.Parse(opts.Hub)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("sim: hub %q: want http://host:port or https://host:port", opts.Hub)
	}
	host := u.Hostname()
	if opts.MQTT == "" {
		opts.MQTT = "mqtts://" + net.JoinHostPort(host, "8883")
	}
	if opts.CoAP == "" {
		opts.CoAP = "coaps://" + net.JoinHostPort(host, "5684")
	}
	if opts.Sources == nil {
		if a, err := netip.ParseAddr(host); err == nil && a.Is4() && a.IsLoopback() {
			for i := 1; i < 255; i++ {
				opts.Sources = append(opts.Sources, fmt.Sprintf("127.0.1.%d", i))
			}
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.DeviceLogger == nil {
		opts.DeviceLogger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Progress == nil {
		opts.Progress = func(string) {}
	}
	s := &Sim{opts: opts, seed: opts.Scenario.Seed, log: opts.Logger}
	if opts.Seed != 0 {
		s.seed = opts.Seed
	}
	profiles := map[string]netprofile.Profile{}
	for _, p := range netprofile.All() {
		profiles[p.Name] = p
	}
	for _, p := range opts.Profiles {
		if _, ok := profiles[p.Name]; !ok {
			return nil, fmt.Errorf("sim: profile %q: not one of the networks the hub knows (%s); a profile file changes their figures (base: nb-iot, say, with the same name)", p.Name, strings.Join(netprofile.Names(), ", "))
		}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("sim: profile %s: %w", p.Name, err)
		}
		profiles[p.Name] = p
	}
	n := 0
	for i := range opts.Scenario.Classes {
		cl := &opts.Scenario.Classes[i]
		p, ok := profiles[cl.Network]
		if !ok {
			return nil, fmt.Errorf("sim: class %s: unknown network %q", cl.Name, cl.Network)
		}
		proto := cl.Protocol
		if proto == "" {
			proto = p.Protocol
		}
		cs := &classStats{class: cl, network: cl.Network, protocol: proto, devices: cl.Count, reasons: map[string]int64{}}
		if cl.Edge && opts.Edge != nil {
			cs.edge = opts.Edge.Code
		}
		s.classes = append(s.classes, cs)
		for j := 0; j < cl.Count; j++ {
			code := opts.Scenario.Tenant + ":" + cl.DeviceID(j)
			d := &simDevice{code: code, index: j, class: cs, profile: p, phys: cl.Device(j, s.seed)}
			if !opts.NoEmulation {
				d.link = linkemu.New(p, s.seed^int64(hash(code)))
			}
			if len(opts.Sources) > 0 {
				d.source = opts.Sources[n%len(opts.Sources)]
			}
			s.devices = append(s.devices, d)
			n++
		}
	}
	if opts.Ramp <= 0 {
		s.opts.Ramp = min(max(time.Duration(n)*5*time.Millisecond, 2*time.Second), 2*time.Minute)
	}
	return s, nil
}

func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// Start registers what the hub lacks (tenant, models, devices) and starts
// the devices, spread over the ramp; it returns once they are started, not
// connected. The fleet runs until Shutdown.
func (s *Sim) Start(ctx context.Context) error {
	hc := hubclient.New(s.opts.Hub, s.opts.Token)
	models := map[string][]byte{}
	for _, c := range s.classes {
		doc, err := c.class.ModelJSON()
		if err != nil {
			return fmt.Errorf("sim: class %s: %w", c.class.Name, err)
		}
		models[c.class.Model] = doc
	}
	var members []member
	for _, d := range s.devices {
		members = append(members, member{Code: d.code, Model: d.class.class.Model, Network: d.class.network, Class: d.class.class.Name, Source: d.source, Edge: d.class.edge,
			Path: area(d.class.class.Kind) + "/" + d.class.class.Name})
	}
	ids, err := provision(ctx, hc, s.opts.Scenario.Tenant, models, members, s.opts.StateFile, s.opts.Claim, s.opts.Progress)
	if err != nil {
		return err
	}
	for _, d := range s.devices {
		d.id = ids[d.code]
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.start = time.Now()
	step := s.opts.Ramp / time.Duration(max(len(s.devices), 1))
	for i, d := range s.devices {
		delay := time.Duration(i) * step
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.run(d, delay)
		}()
	}
	s.log.Info("fleet started", "scenario", s.opts.Scenario.Name, "devices", len(s.devices), "seed", s.seed, "ramp", s.opts.Ramp)
	return nil
}

// Identities are the devices' identities, by code, once Start provisioned
// them.
func (s *Sim) Identities() map[string]*device.Identity {
	out := make(map[string]*device.Identity, len(s.devices))
	for _, d := range s.devices {
		if d.id != nil {
			out[d.code] = d.id
		}
	}
	return out
}

// Shutdown stops every device and waits for them.
func (s *Sim) Shutdown(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sim: shutdown: %w", ctx.Err())
	}
}

// options are the SDK options of one device.
func (s *Sim) options(d *simDevice) device.Options {
	o := device.Options{
		Identity:     d.id,
		MemoryBuffer: true,
		MaxBuffer:    1 << 20,
		ServerName:   s.opts.ServerName,
		Logger:       s.opts.DeviceLogger,
		OnConnect: func() {
			if !d.online.Swap(true) {
				d.class.online.Add(1)
			}
		},
		OnError: func(err error) {
			if d.online.Swap(false) {
				d.class.online.Add(-1)
			}
			d.class.failures.Add(1)
			d.class.note(failureReason(err), err)
		},
	}
	var local net.IP
	if d.source != "" {
		local = net.ParseIP(d.source)
	}
	if d.class.protocol == "coap" {
		o.CoAP = s.opts.CoAP
		if d.class.edge != "" {
			o.CoAP = s.opts.Edge.CoAP
		}
		if d.link != nil {
			// A retransmission timer for the link's round trip, as an
			// NB-IoT module's CoAP stack is configured.
			o.CoAPAckTimeout = max(2*time.Second, 2*d.profile.RoundTrip())
		}
		if d.profile.Sleep.PSM {
			// The hub keeps a PSM device's session across its sleep
			// (coap.sleeping_session_idle): wake into it rather than shake
			// hands again, as long as the network would let it sleep.
			o.CoAPSessionIdle = d.profile.Sleep.PeriodicUpdate
		}
		o.ListenPacket = func(ctx context.Context) (net.PacketConn, error) {
			laddr := &net.UDPAddr{IP: local}
			pc, err := net.ListenUDP("udp", laddr)
			if err != nil {
				return nil, err
			}
			if d.link == nil {
				return pc, nil
			}
			return d.link.PacketConn(pc), nil
		}
	} else {
		o.Broker = s.opts.MQTT
		if d.class.edge != "" {
			o.Broker = s.opts.Edge.MQTT
		}
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dl := &net.Dialer{}
			if local != nil {
				dl.LocalAddr = &net.TCPAddr{IP: local}
			}
			c, err := dl.DialContext(ctx, network, addr)
			if err != nil || d.link == nil {
				return c, err
			}
			return d.link.Conn(c), nil
		}
	}
	return o
}

// failureReason is a short, countable name of a connection or send failure.
func failureReason(err error) string {
	s := err.Error()
	for _, r := range []struct{ match, reason string }{
		{"refused: reason 0x86", "bad_credentials"},
		{"refused: reason 0x87", "not_authorized"},
		{"refused: reason 0x8a", "banned"},
		{"refused: reason 0x9f", "rate_limited"},
		{"refused", "connect_refused"},
		{"certificate", "tls_certificate"},
		{"handshake", "handshake_failed"},
		{"connection refused", "unreachable"},
		{"4.01", "unauthorized"},
		{"4.29", "rate_limited"},
		{"5.03", "unavailable"},
		{"connection lost", "connection_lost"},
		{"timeout", "timeout"},
		{"deadline", "timeout"},
	} {
		if strings.Contains(s, r.match) {
			return r.reason
		}
	}
	return "other"
}

// run is one device's life: connect, then report as the physics says,
// sleeping between reports where the link sleeps (PSM).
func (s *Sim) run(d *simDevice, delay time.Duration) {
	select {
	case <-time.After(delay):
	case <-s.ctx.Done():
		return
	}
	c, err := device.Connect(s.ctx, s.options(d))
	if err != nil {
		d.class.note("client", err)
		s.log.Warn("device not started", "device", d.code, "err", err)
		return
	}
	defer func() {
		c.Close()
		if d.online.Swap(false) {
			d.class.online.Add(-1)
		}
	}()
	_ = c.OnCommand(func(ctx context.Context, cmd device.Command) device.Result {
		d.mu.Lock()
		out, err := d.phys.Command(cmd.Action, cmd.Args)
		events := d.phys.Events()
		d.mu.Unlock()
		d.class.commands.Add(1)
		s.sendEvents(ctx, d, c, events)
		if err != nil {
			return device.Failed(err.Error())
		}
		return device.Succeeded(out)
	})
	_ = c.OnDesired(func(ctx context.Context, delta device.Delta) {
		d.mu.Lock()
		reported := d.phys.Desired(delta.State)
		d.mu.Unlock()
		d.class.twins.Add(1)
		if len(reported) > 0 {
			if err := c.ReportState(ctx, reported); err != nil {
				d.class.note("report_state", err)
			}
		}
	})
	psm := d.link != nil && d.profile.Sleep.PSM
	// The first Step starts the physics; the first report falls within one
	// interval, at the device's own phase.
	d.mu.Lock()
	recs := d.phys.Step(time.Now())
	events := d.phys.Events()
	d.mu.Unlock()
	if d.class.protocol == "coap" {
		// Power-up: the device attaches and asks for what waits (the
		// DTLS handshake, GET /tw/d and GET /c) before its first report,
		// as a meter does when it is installed.
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
		if err := c.Poll(ctx); err != nil && s.ctx.Err() == nil {
			d.class.note(failureReason(err), err)
		}
		cancel()
		if psm && !s.awake(d, c) {
			return
		}
	}
	for {
		if len(recs) > 0 || len(events) > 0 {
			if psm {
				d.link.Wake()
			}
			if len(recs) > 0 {
				s.publish(d, c, recs)
			}
			s.sendEvents(s.ctx, d, c, events)
			if psm && !s.awake(d, c) {
				return
			}
		}
		d.mu.Lock()
		next := d.phys.Next()
		d.mu.Unlock()
		if wait := time.Until(next); wait > 0 {
			select {
			case <-time.After(wait):
			case <-s.ctx.Done():
				return
			}
		}
		d.mu.Lock()
		recs = d.phys.Step(time.Now())
		events = d.phys.Events()
		d.mu.Unlock()
	}
}

// awake keeps a PSM device reachable for its profile's active timer after
// its uplink (the SDK asks for what waits meanwhile), then puts it to sleep
// unless its next report is due; false when the fleet stops.
func (s *Sim) awake(d *simDevice, c *device.Client) bool {
	// T3324 runs from the device's latest exchange with the network: the
	// SDK asks for what waits after its report, and carries out commands.
	for {
		wait := time.Until(c.LastExchange().Add(d.profile.Sleep.ActiveTimer))
		if wait <= 0 {
			break
		}
		select {
		case <-time.After(wait):
		case <-s.ctx.Done():
			return false
		}
	}
	d.mu.Lock()
	next := d.phys.Next()
	d.mu.Unlock()
	if time.Until(next) > 0 {
		d.link.Sleep()
	}
	return true
}

// publish sends one report and counts the hub's answer. A report not
// acknowledged within a minute stays in the device's buffer and goes on.
func (s *Sim) publish(d *simDevice, c *device.Client, recs []device.Record) {
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	err := c.Publish(ctx, recs...)
	var refused *device.RefusedError
	switch {
	case err == nil:
		d.class.sent.Add(1)
		d.class.records.Add(int64(len(recs)))
	case errors.As(err, &refused):
		d.class.refused.Add(1)
		d.class.note(refused.Reason, err)
	case s.ctx.Err() != nil:
	default:
		d.class.note("pending", err)
	}
}

// sendEvents sends the events the physics raised.
func (s *Sim) sendEvents(ctx context.Context, d *simDevice, c *device.Client, events []scenario.Event) {
	for _, ev := range events {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := c.Event(ctx, ev.Name, ev.Data)
		cancel()
		var refused *device.RefusedError
		switch {
		case err == nil:
			d.class.events.Add(1)
		case errors.As(err, &refused):
			d.class.refused.Add(1)
			d.class.note(refused.Reason, err)
		case ctx.Err() == nil:
			d.class.note("event", err)
		}
	}
}

// ClassStats are one device class's figures.
type ClassStats struct {
	Class    string `json:"class"`
	Kind     string `json:"kind"`
	Network  string `json:"network"`
	Protocol string `json:"protocol"`
	// Edge is the edge node the class is behind ("" the hub).
	Edge     string           `json:"edge,omitempty"`
	Devices  int              `json:"devices"`
	Online   int64            `json:"online"`
	Messages int64            `json:"messages"` // acknowledged by the hub
	Records  int64            `json:"records"`
	Refused  int64            `json:"refused"`
	Failures int64            `json:"failures"` // connection and send failures, retried
	Commands int64            `json:"commands"`
	Twins    int64            `json:"twin_changes"`
	Events   int64            `json:"events"`
	Reasons  map[string]int64 `json:"reasons,omitempty"`
	LastErr  string           `json:"last_error,omitempty"`
}

// NetworkStats sum the classes on one network, with the bytes on the air.
type NetworkStats struct {
	Network   string  `json:"network"`
	Devices   int     `json:"devices"`
	Online    int64   `json:"online"`
	Messages  int64   `json:"messages"`
	Refused   int64   `json:"refused"`
	Commands  int64   `json:"commands"`
	BytesUp   int64   `json:"bytes_up"`
	BytesDown int64   `json:"bytes_down"`
	Lost      int64   `json:"packets_lost"`
	CostCNY   float64 `json:"cost_cny"`
}

// Stats is the fleet at one moment.
type Stats struct {
	Scenario string         `json:"scenario"`
	Seed     int64          `json:"seed"`
	Uptime   time.Duration  `json:"uptime_ns"`
	Devices  int            `json:"devices"`
	Online   int64          `json:"online"`
	Messages int64          `json:"messages"`
	Refused  int64          `json:"refused"`
	Commands int64          `json:"commands"`
	Classes  []ClassStats   `json:"classes"`
	Networks []NetworkStats `json:"networks"`
}

// Stats reads the counters.
func (s *Sim) Stats() Stats {
	st := Stats{Scenario: s.opts.Scenario.Name, Seed: s.seed, Devices: len(s.devices)}
	if !s.start.IsZero() {
		st.Uptime = time.Since(s.start)
	}
	nets := map[string]*NetworkStats{}
	net := func(name string) *NetworkStats {
		n := nets[name]
		if n == nil {
			n = &NetworkStats{Network: name}
			nets[name] = n
		}
		return n
	}
	for _, c := range s.classes {
		cs := ClassStats{Class: c.class.Name, Kind: c.class.Kind, Network: c.network, Protocol: c.protocol, Edge: c.edge, Devices: c.devices,
			Online: c.online.Load(), Messages: c.sent.Load(), Records: c.records.Load(), Refused: c.refused.Load(),
			Failures: c.failures.Load(), Commands: c.commands.Load(), Twins: c.twins.Load(), Events: c.events.Load()}
		c.mu.Lock()
		if len(c.reasons) > 0 {
			cs.Reasons = make(map[string]int64, len(c.reasons))
			for k, v := range c.reasons {
				cs.Reasons[k] = v
			}
		}
		cs.LastErr = c.lastErr
		c.mu.Unlock()
		st.Classes = append(st.Classes, cs)
		n := net(c.network)
		n.Devices += c.devices
		n.Online += cs.Online
		n.Messages += cs.Messages
		n.Refused += cs.Refused
		n.Commands += cs.Commands
		st.Online += cs.Online
		st.Messages += cs.Messages
		st.Refused += cs.Refused
		st.Commands += cs.Commands
	}
	for _, d := range s.devices {
		if d.link == nil {
			continue
		}
		ls := d.link.Stats()
		n := net(d.profile.Name)
		n.BytesUp += ls.Up.Bytes
		n.BytesDown += ls.Down.Bytes
		n.Lost += ls.Up.Lost + ls.Down.Lost
	}
	for name, n := range nets {
		if p, ok := netprofile.Lookup(name); ok {
			n.CostCNY = float64(n.BytesUp+n.BytesDown) / 1e6 * p.PricePerMB
		}
		st.Networks = append(st.Networks, *n)
	}
	order := map[string]int{}
	for i, name := range netprofile.Names() {
		order[name] = i
	}
	sort.Slice(st.Networks, func(i, j int) bool { return order[st.Networks[i].Network] < order[st.Networks[j].Network] })
	return st
}

// MarshalJSON writes Uptime in seconds.
func (st Stats) MarshalJSON() ([]byte, error) {
	type alias Stats
	return json.Marshal(struct {
		alias
		Uptime  time.Duration `json:"uptime_ns,omitempty"`
		UptimeS float64       `json:"uptime_s"`
	}{alias: alias(st), UptimeS: st.Uptime.Seconds()})
}

// area is where a kind of device stands in the demo's hierarchy: machines
// and chillers in the plant, meters, flood sensors and pumps in the city.
func area(kind string) string {
	switch kind {
	case scenario.KindCNC, scenario.KindChiller:
		return "plant"
	}
	return "city"
}

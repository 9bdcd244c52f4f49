// Package mqtt is the hub's MQTT 3.1.1 and 5.0 endpoint: the embedded
// mochi-mqtt broker with wanwu's hook for authentication (mutual TLS with
// hub-issued certificates, device tokens, API tokens for integrations),
// admission, per-device topic ACLs, rate limits and ingest.
//
// The adapter is thin (docs/ARCHITECTURE.md, "Extension points"): authenticate, authorize, decode and
// validate through package ingest, hand over to the pipeline, and answer.
// Connect rate limits are charged so that nobody is kept out by others
// naming it: failed authentications to their source address and the code
// they named, successful ones to the device (Limits). A connection that
// ends on malformed traffic or a packet over MaxPacket is counted by cause
// and logged, rate-limited, through package protoerr. A
// QoS 1/2 telemetry publish is acknowledged only after the pipeline says the
// data is durable; a rejected one is answered with a reason (MQTT 5 PUBACK
// reason code and string; MQTT 3.1.1 a message on the device's errors topic)
// and kept in the dead-letter stream.
//
// The downlink (downlink.go) follows a device's subscriptions: while one
// covers its commands topic, the connection is the device's command sink
// (package command decides what to send, in order; the device's PUBACK
// confirms delivery); twin desired state and delta are published when the
// device subscribes, connects with a resumed session, asks on twin/get, or
// when the desired state changes. Twin reports and command results are
// written to the metadata database before the PUBACK.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/netuse"
	"github.com/wanwu-iot/wanwu/internal/protoerr"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// TopicAliasMaximum is the highest topic alias a client may set up on a
// connection, advertised in the CONNACK; a higher one ends the connection
// with DISCONNECT 0x94 [MQTT-3.3.2-9]. A device publishes on a handful of
// topics, and each alias holds its topic for the connection's life.
const TopicAliasMaximum = 32

// Limits are the per-device and per-address rate limits (PROTOCOL.md §5).
//
// What is charged to whom: every CONNECT to its source address
// (ConnectPerAddr); a successful authentication to the device
// (ConnectPerDevice); a failed one to its source address (AuthFailuresPerAddr:
// once spent, the address is refused before authentication) and to the
// device code it named (AuthFailuresPerDevice: once spent, failures naming
// the code are answered "connection rate exceeded", and valid credentials
// still pass). So failures cannot spend a device's own connect budget: an
// attacker who names a device's code keeps out no one but itself.
type Limits struct {
	ConnectPerDevice      rate.Limit
	ConnectPerDeviceBurst int
	ConnectPerAddr        rate.Limit
	ConnectPerAddrBurst   int
	PublishPerDevice      rate.Limit
	PublishPerDeviceBurst int

	AuthFailuresPerAddr        rate.Limit
	AuthFailuresPerAddrBurst   int
	AuthFailuresPerDevice      rate.Limit
	AuthFailuresPerDeviceBurst int
}

// DefaultLimits are the documented defaults.
func DefaultLimits() Limits {
	return Limits{
		ConnectPerDevice: 1, ConnectPerDeviceBurst: 5,
		ConnectPerAddr: 50, ConnectPerAddrBurst: 200,
		PublishPerDevice: 100, PublishPerDeviceBurst: 200,
		AuthFailuresPerAddr: 1, AuthFailuresPerAddrBurst: 30,
		AuthFailuresPerDevice: 1, AuthFailuresPerDeviceBurst: 10,
	}
}

// Options configure the endpoint. The caller owns the listeners' addresses;
// Start opens them.
type Options struct {
	// Listen is a plain TCP address (development); "" = none.
	Listen string
	// TLSListen is the TLS address; TLS must be set with it.
	TLSListen string
	TLS       *tls.Config
	// DevListen admits anonymous clients, limited to DevACL; off unless set.
	DevListen string
	// DevACL lists the topic filters anonymous clients may publish and subscribe to.
	DevACL []string

	Registry *registry.Registry
	// Intake accepts what devices publish (decode, dead letters, pipeline).
	Intake *adapter.Intake
	// Presence hears of device sessions and requests; nil: none.
	Presence adapter.Presence
	// Twins and Commands serve the twin and command topics; nil refuses them.
	Twins    *twin.Service
	Commands *command.Service
	Limits   Limits
	// MaxPacket bounds an MQTT packet (default 64 KiB + headers).
	MaxPacket uint32
	// MaxInflight bounds a client's unacknowledged QoS 1/2 deliveries
	// (default and most 65535: packet ids are 16 bits); MaxQueued more
	// wait for room (0: none; the hub's configuration says 262144). Beyond
	// both the broker drops deliveries to that client, counted in
	// wanwu_mqtt_deliveries_dropped_total{reason="queue_full"}.
	MaxInflight uint16
	MaxQueued   int
	Logger      *slog.Logger
	Metrics     prometheus.Registerer
	// Usage, when set, counts each device's bytes: every connection is
	// metered (an atomic add per read and write) and attributed to its
	// device once its session starts.
	Usage *netuse.Accountant
	// ProtocolErrors counts and logs connections that end on malformed
	// traffic or a packet over MaxPacket; nil: made here, registered with
	// Metrics (a hub shares one among its protocol adapters).
	ProtocolErrors *protoerr.Recorder
}

// Server is the running endpoint.
type Server struct {
	opts   Options
	log    *slog.Logger
	broker *mochi.Server
	hook   *hook

	// ctx ends when Shutdown begins; g owns the goroutines that serve
	// device requests and push twins off the connections' goroutines.
	ctx    context.Context
	cancel context.CancelFunc
	g      adapter.Group

	mu      sync.Mutex
	addrs   map[string]net.Addr
	started bool
	stopped bool
}

// Listener ids, also the names Addr takes.
const (
	ListenerTCP = "tcp"
	ListenerTLS = "tls"
	ListenerDev = "dev"
)

// New builds the endpoint.
func New(o Options) (*Server, error) {
	if o.Registry == nil || o.Intake == nil {
		return nil, errors.New("mqtt: Registry and Intake are required")
	}
	if o.TLSListen != "" && o.TLS == nil {
		return nil, errors.New("mqtt: TLSListen needs a TLS config")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits()
	}
	if d := DefaultLimits(); o.Limits.AuthFailuresPerAddr == 0 {
		o.Limits.AuthFailuresPerAddr, o.Limits.AuthFailuresPerAddrBurst = d.AuthFailuresPerAddr, d.AuthFailuresPerAddrBurst
	}
	if d := DefaultLimits(); o.Limits.AuthFailuresPerDevice == 0 {
		o.Limits.AuthFailuresPerDevice, o.Limits.AuthFailuresPerDeviceBurst = d.AuthFailuresPerDevice, d.AuthFailuresPerDeviceBurst
	}
	if o.MaxPacket == 0 {
		o.MaxPacket = 64<<10 + 1024
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = 65535
	}
	if o.DevListen != "" && len(o.DevACL) == 0 {
		o.DevACL = []string{root + "dev/#"}
	}
	log := o.Logger.With("component", "mqtt")
	if o.ProtocolErrors == nil {
		var err error
		if o.ProtocolErrors, err = protoerr.New(protoerr.Options{Metrics: o.Metrics, Logger: log}); err != nil {
			return nil, fmt.Errorf("mqtt: protocol error metric: %w", err)
		}
	}
	caps := mochi.NewDefaultServerCapabilities()
	// Both are advertised in the CONNACK and enforced: a larger packet ends
	// the connection with DISCONNECT 0x95, a higher alias with 0x94.
	caps.MaximumPacketSize = o.MaxPacket
	caps.TopicAliasMaximum = TopicAliasMaximum
	caps.MaximumSessionExpiryInterval = 7 * 24 * 3600
	// An acknowledgement carries its own properties (a reason string), never
	// a copy of the publish's: paho-mqtt 1.6.1 fails on echoed ones.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	// The broker drops a QoS 0 delivery when this many packets wait to be
	// written to the client (QoS 1/2 ones are bounded by the in-flight
	// store instead); mochi's default.
	caps.MaximumClientWritesPending = 8192
	// QoS 1/2 deliveries a client may have unacknowledged, and how many more
	// may wait for room before the broker drops them: an integration catching
	// up with a burst needs both.
	caps.MaximumInflight = o.MaxInflight
	caps.MaximumQueued = o.MaxQueued
	broker := mochi.New(&mochi.Options{
		Capabilities:             caps,
		Logger:                   log.With("part", "broker"),
		InlineClient:             true, // the hub publishes rejections, twins and commands on devices' topics
		ClientNetWriteBufferSize: 16 << 10,
	})
	s := &Server{opts: o, log: log, broker: broker, addrs: map[string]net.Addr{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	h, err := newHook(s)
	if err != nil {
		return nil, err
	}
	s.hook = h
	if err := broker.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("mqtt: hook: %w", err)
	}
	broker.SetAsyncPublisher(h)
	broker.SetConnectionErrorHandler(h.connectionEnded)
	return s, nil
}

// Start opens the listeners and serves.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("mqtt: already started")
	}
	s.started = true
	open := func(id, addr string, tlsConf *tls.Config) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return adapter.ListenError(listenKeys[id], addr, err)
		}
		s.addrs[id] = ln.Addr()
		if s.opts.Usage != nil {
			// Under TLS, so that records and handshakes count as sent.
			ln = netuse.Listener(ln)
		}
		if tlsConf != nil {
			ln = tls.NewListener(ln, tlsConf)
		}
		if err := s.broker.AddListener(listeners.NewNet(id, ln)); err != nil {
			ln.Close()
			return fmt.Errorf("mqtt: listener %s: %w", id, err)
		}
		return nil
	}
	if err := open(ListenerTCP, s.opts.Listen, nil); err != nil {
		return err
	}
	if err := open(ListenerTLS, s.opts.TLSListen, s.opts.TLS); err != nil {
		return err
	}
	if s.opts.DevListen != "" {
		s.log.Warn("MQTT development listener admits ANONYMOUS clients; never expose it", "addr", s.opts.DevListen, "acl", s.opts.DevACL)
	}
	if err := open(ListenerDev, s.opts.DevListen, nil); err != nil {
		return err
	}
	if err := s.broker.Serve(); err != nil {
		return fmt.Errorf("mqtt: serve: %w", err)
	}
	return nil
}

// listenKeys are the configuration keys of the listeners, for errors.
var listenKeys = map[string]string{ListenerTCP: "mqtt.listen", ListenerTLS: "mqtt.tls_listen", ListenerDev: "mqtt.dev_listen"}

// Name is "mqtt" (adapter.Adapter).
func (s *Server) Name() string { return "mqtt" }

// Listeners returns the bound address of each open listener by its name
// (ListenerTCP, ListenerTLS, ListenerDev).
func (s *Server) Listeners() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return adapter.Addrs(s.addrs)
}

// Addr is the bound address of a listener (ListenerTCP, ListenerTLS, ListenerDev), "" if closed.
func (s *Server) Addr(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.addrs[id]; ok {
		return a.String()
	}
	return ""
}

// DisconnectDevice closes the connection of a device whose identity changed
// (revoked, quarantined, key revoked); it reconnects through admission again.
func (s *Server) DisconnectDevice(code string) {
	if cl, ok := s.broker.Clients.Get(code); ok {
		s.log.Info("disconnecting device after an identity change", "device", code)
		_ = s.broker.DisconnectClient(cl, errIdentityChanged)
	}
}

// Shutdown disconnects clients, closes the listeners and waits for the
// client goroutines; in-flight publishes finish their pipeline hand-over first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped || !s.started {
		s.stopped = true
		s.mu.Unlock()
		s.cancel()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- s.broker.Close() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = fmt.Errorf("mqtt: shutdown: %w", ctx.Err())
	}
	s.cancel()
	if werr := s.g.Wait(ctx); werr != nil && err == nil {
		err = fmt.Errorf("mqtt: shutdown: %w", werr)
	}
	return err
}

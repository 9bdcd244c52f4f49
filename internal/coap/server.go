package coap

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options/config"
	"github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/netuse"
	"github.com/wanwu-iot/wanwu/internal/ratelimit"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// Limits are the request rate limits. Every datagram counts against its
// source address (before anything else is done with it); every
// authenticated request, including each block of a block-wise transfer,
// counts against its device.
type Limits struct {
	RequestsPerDevice      rate.Limit
	RequestsPerDeviceBurst int
	RequestsPerAddr        rate.Limit
	RequestsPerAddrBurst   int
}

// DefaultLimits are the documented defaults: a device as for MQTT publishes
// (100/s, burst 200); an address generously, since NB-IoT devices share
// carrier NAT addresses (1000/s, burst 2000).
func DefaultLimits() Limits {
	return Limits{
		RequestsPerDevice: 100, RequestsPerDeviceBurst: 200,
		RequestsPerAddr: 1000, RequestsPerAddrBurst: 2000,
	}
}

// Defaults.
const (
	// DefaultPort is the CoAP port (RFC 7252 §6.1), DefaultDTLSPort the
	// coaps port (§6.2).
	DefaultPort     = 5683
	DefaultDTLSPort = 5684
	// DefaultNotifyTimeout bounds how long a confirmable notification waits
	// for its ACK (RFC 7252 §4.8.2 MAX_TRANSMIT_WAIT is 93 s; the command
	// service redelivers after its own AckTimeout anyway).
	DefaultNotifyTimeout = 45 * time.Second
	// DefaultIdle is how long a DTLS session, or a plain-UDP endpoint's
	// state (deduplication cache, observations), is kept without traffic.
	DefaultIdle = 5 * time.Minute
)

// Listener names for Addr.
const (
	ListenerUDP  = "udp"
	ListenerDTLS = "dtls"
)

// Options configure the endpoint.
type Options struct {
	// Listen is the plain UDP address (development; requests carry a device
	// token in the query "t="); "" = off. ":5683" listens on every IPv4 and
	// IPv6 address.
	Listen string
	// DTLSListen is the DTLS address (PSK or certificate); "" = off.
	DTLSListen string
	// Certificate is the server certificate for DTLS with certificates, and
	// ClientCAs the CA that issued the device certificates. Without a
	// certificate the DTLS listener offers PSK only.
	Certificate *tls.Certificate
	ClientCAs   *x509.CertPool
	// PSK returns the pre-shared key of a PSK identity (a device code);
	// nil = no PSK cipher suites.
	PSK func(ctx context.Context, identity string) ([]byte, error)

	Registry *registry.Registry
	// Intake accepts what devices send (decode, dead letters, pipeline).
	Intake *adapter.Intake
	// Presence hears of twin and command requests (CoAP has no sessions:
	// its devices are present while they send); nil: none.
	Presence adapter.Presence
	// Twins and Commands serve /tw/* and /c*; nil answers those paths with
	// 5.01 Not Implemented.
	Twins    *twin.Service
	Commands *command.Service
	// Usage, when set, counts each device's bytes: the datagrams of a
	// plain-UDP endpoint, the records of a DTLS session (an atomic add
	// each), attributed to the device that authenticated there.
	Usage *netuse.Accountant

	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Limits  Limits
	// MaxPayload caps a request body, and the reassembled body of a
	// block-wise transfer; default the Decoder's MaxPayload.
	MaxPayload int
	// NotifyTimeout: see DefaultNotifyTimeout.
	NotifyTimeout time.Duration
	// Idle: see DefaultIdle.
	Idle time.Duration
	// SleepIdle, if set, says how long a device's idle DTLS session is
	// kept when that is longer than Idle (a device that sleeps between
	// reports, PSM); 0 keeps it for Idle.
	SleepIdle func(code string) time.Duration
	// HandshakeTimeout bounds a DTLS handshake; default
	// DTLSHandshakeTimeout. A handshake that fails at the Finished check (a
	// wrong key, an unknown or revoked identity) ends when it runs out.
	HandshakeTimeout time.Duration
}

// Server is the CoAP endpoint.
type Server struct {
	opts Options
	log  *slog.Logger
	m    metrics

	devLimit  *ratelimit.Keyed[string]
	addrLimit *ratelimit.Keyed[netip.Addr] // by source address: no string per datagram

	maxPayload   int
	maxDatagram  uint32
	blockTimeout time.Duration
	idle         time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	// g owns the server's goroutines: listeners, periodic runners, twin
	// notifications, command deliveries.
	g adapter.Group

	conns       sync.Map // *client.Conn → *connState
	tokens      *tokenCache
	obs         observers
	unconfirmed sync.Map // device code → id of a command handed over without confirmation

	malformedLog logLimiter
	authLog      logLimiter // refused PSK identities, by reason
	pskSecret    [32]byte   // dummyPSK's key

	mu      sync.Mutex
	udp     *udpListener
	dtls    *dtlsListener
	addrs   map[string]net.Addr
	started bool
	stopped bool
}

type metrics struct {
	requests      *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	accepted      *prometheus.CounterVec
	dropped       *prometheus.CounterVec
	malformed     *prometheus.CounterVec
	amplification prometheus.Counter
	observers     prometheus.GaugeFunc
	sessions      *prometheus.GaugeVec
}

// New checks the options and builds the endpoint; Start opens the listeners.
func New(o Options) (*Server, error) {
	if o.Registry == nil || o.Intake == nil {
		return nil, errors.New("coap: Registry and Intake are required")
	}
	if o.DTLSListen != "" && o.PSK == nil && o.Certificate == nil {
		return nil, errors.New("coap: DTLSListen needs PSK or a Certificate")
	}
	if o.Certificate != nil && o.ClientCAs == nil {
		return nil, errors.New("coap: a DTLS Certificate needs ClientCAs to verify devices")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits()
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = o.Intake.Decoder().MaxPayload()
	}
	if o.NotifyTimeout <= 0 {
		o.NotifyTimeout = DefaultNotifyTimeout
	}
	if o.Idle <= 0 {
		o.Idle = DefaultIdle
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DTLSHandshakeTimeout
	}
	s := &Server{
		opts:         o,
		log:          o.Logger.With("component", "coap"),
		devLimit:     ratelimit.New[string](o.Limits.RequestsPerDevice, o.Limits.RequestsPerDeviceBurst),
		addrLimit:    ratelimit.New[netip.Addr](o.Limits.RequestsPerAddr, o.Limits.RequestsPerAddrBurst),
		maxPayload:   o.MaxPayload,
		maxDatagram:  uint32(o.MaxPayload) + 2048, // header, token, options (a device token in the query)
		blockTimeout: 10 * time.Second,
		idle:         o.Idle,
		tokens:       newTokenCache(100_000),
		addrs:        map[string]net.Addr{},
	}
	s.obs.init()
	if _, err := rand.Read(s.pskSecret[:]); err != nil {
		return nil, fmt.Errorf("coap: %w", err)
	}
	s.m = metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_coap_requests_total", Help: "CoAP requests answered, by listener and response code.",
		}, []string{"listener", "code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_coap_rejected_total", Help: "CoAP requests refused, by reason.",
		}, []string{"reason"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_coap_accepted_total", Help: "Device messages accepted over CoAP, by kind.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_coap_dropped_total", Help: "CoAP datagrams dropped or answered before processing, by cause.",
		}, []string{"cause"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_coap_malformed_total", Help: "CoAP datagrams that are no CoAP message, and DTLS handshakes that did not complete, by listener and cause; dropped.",
		}, []string{"listener", "cause"}),
		amplification: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wanwu_coap_amplification_suppressed_total", Help: "Answers to unauthenticated sources not sent because they exceeded 3x the request.",
		}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wanwu_coap_sessions", Help: "Open DTLS sessions (dtls) and plain-UDP endpoints with state (udp); each closes after coap.session_idle without traffic.",
		}, []string{"listener"}),
	}
	s.m.observers = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wanwu_coap_observers", Help: "Active CoAP observations (RFC 7641) of /tw/d and /c.",
	}, func() float64 { return float64(s.obs.count()) })
	if reg := o.Metrics; reg != nil {
		for _, c := range []prometheus.Collector{s.m.requests, s.m.rejected, s.m.accepted, s.m.dropped, s.m.malformed, s.m.amplification, s.m.observers, s.m.sessions} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("coap: metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Start opens the listeners and serves.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("coap: already started")
	}
	s.started = true
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.opts.Listen != "" {
		conn, err := coapNet.NewListenUDP("udp", s.opts.Listen)
		if err != nil {
			s.closeLocked()
			return adapter.ListenError("coap.listen", s.opts.Listen, err)
		}
		s.udp = newUDPListener(s, conn)
		s.addrs[ListenerUDP] = conn.LocalAddr()
		s.log.Warn("CoAP plain UDP listener: device tokens travel unencrypted; use DTLS in production", "addr", conn.LocalAddr().String())
		s.g.Go(func() {
			s.udp.serve(s.ctx)
		})
	}
	if s.opts.DTLSListen != "" {
		l, err := s.startDTLS()
		if err != nil {
			s.closeLocked()
			return err
		}
		s.dtls = l
		s.addrs[ListenerDTLS] = l.addr()
	}
	return nil
}

// Name is "coap" (adapter.Adapter).
func (s *Server) Name() string { return "coap" }

// Listeners returns the bound address of each open listener by its name
// (ListenerUDP, ListenerDTLS).
func (s *Server) Listeners() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return adapter.Addrs(s.addrs)
}

// TwinChanged is NotifyTwin, for adapter.Adapter.
func (s *Server) TwinChanged(code string) { s.NotifyTwin(code) }

// Addr is the bound address of a listener (ListenerUDP, ListenerDTLS), "" if none.
func (s *Server) Addr(listener string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.addrs[listener]; ok {
		return a.String()
	}
	return ""
}

// DisconnectDevice ends what a device whose identity changed (revoked,
// quarantined, key revoked or rotated) holds: its DTLS sessions are closed,
// and its plain-UDP endpoints and observations are dropped. The device must
// authenticate and pass admission again.
func (s *Server) DisconnectDevice(code string) {
	s.mu.Lock()
	u, d := s.udp, s.dtls
	s.mu.Unlock()
	s.tokens.dropDevice(code)
	if d != nil {
		d.closeDevice(s, code)
	}
	if u != nil {
		u.closeDevice(code)
	}
	s.obs.dropDevice(code)
}

// Shutdown closes the listeners and sessions and waits for their goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped || !s.started {
		s.stopped = true
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.closeLocked()
	s.mu.Unlock()
	if err := s.g.Wait(ctx); err != nil {
		return fmt.Errorf("coap: shutdown: %w", err)
	}
	return nil
}

func (s *Server) closeLocked() {
	if s.cancel != nil {
		s.cancel()
	}
	if s.udp != nil {
		s.udp.close()
	}
	if s.dtls != nil {
		s.dtls.close()
	}
}

// connConfig sets what the plain UDP and DTLS connections share.
func (s *Server) connConfig(cfg *client.Config) {
	cfg.Handler = s.handle
	cfg.Errors = func(err error) {
		if errors.Is(err, blockwise.ErrRequestEntityIncomplete) {
			// Answered 4.08 by go-coap's reassembly (RFC 7959 §2.9.2).
			s.m.rejected.WithLabelValues("request_entity_incomplete").Inc()
			return
		}
		if !coapNet.IsCancelOrCloseError(err) {
			s.log.Debug("coap", "err", err)
		}
	}
	cfg.MaxMessageSize = s.maxDatagram
	cfg.BlockwiseEnable = true
	cfg.BlockwiseSZX = blockwise.SZX1024
	cfg.BlockwiseTransferTimeout = s.blockTimeout
	cfg.ReceivedMessageQueueSize = 64
	cfg.ProcessReceivedMessage = s.processReceived
	cfg.MessagePool = messagePool
}

var messagePool = pool.New(1024, 2048)

// requestMonitor sees every message of a connection before go-coap handles
// it: it records RSTs (RFC 7641 §3.6: a Reset to a notification ends the
// observation).
func (s *Server) requestMonitor(cc *client.Conn, req *pool.Message) (bool, error) {
	switch req.Type() {
	case message.Reset:
		s.obs.reset(cc, req.MessageID())
	case message.NonConfirmable:
		// RFC 7252 §4.5: duplicate NONs are silently ignored (go-coap's
		// response cache only deduplicates CONs).
		if req.Code() >= codes.GET && req.Code() <= codes.DELETE {
			if st := s.state(cc); st != nil && st.seenNON(req.MessageID(), time.Now()) {
				s.m.dropped.WithLabelValues("duplicate").Inc()
				return true, nil
			}
		}
	}
	return false, nil
}

// newConn registers a connection's state.
func (s *Server) newConn(cc *client.Conn, sess *udpSession) {
	st := &connState{udp: sess}
	s.conns.Store(cc, st)
	open := s.m.sessions.WithLabelValues(listenerName(st))
	open.Inc()
	cc.AddOnClose(func() {
		s.conns.Delete(cc)
		s.obs.dropConn(cc)
		open.Dec()
		s.opts.Usage.Release(st.meter(cc))
	})
}

func (s *Server) state(cc *client.Conn) *connState {
	if v, ok := s.conns.Load(cc); ok {
		return v.(*connState)
	}
	return nil
}

// processReceived wraps go-coap's processing of a request: a block-wise
// request whose reassembled body would exceed MaxPayload is stripped of its
// Block1 option and marked, so that go-coap does not buffer it and the
// handler answers 4.13 (RFC 7959 §2.9.3) instead. A block that is not the
// last is authenticated and counted against its device here, since go-coap
// answers it (2.31) without calling the handler: one that fails is marked
// and stripped likewise, and the handler answers 4.01 or 4.29 without
// processing it.
func (s *Server) processReceived(req *pool.Message, cc *client.Conn, handler config.HandlerFunc[*client.Conn]) {
	h := &exchange{}
	ctx := context.WithValue(req.Context(), exchangeKey{}, h)
	if s.blockTooLarge(req) {
		req.Remove(message.Block1)
		ctx = context.WithValue(ctx, tooLargeKey{}, true)
	} else if rf := s.admitBlock(cc, req); rf != nil {
		req.Remove(message.Block1)
		req.Remove(message.Size1)
		ctx = context.WithValue(ctx, refusedKey{}, rf)
	}
	req.SetContext(ctx)
	cc.ProcessReceivedMessageWithHandler(req, handler)
	// The response has been sent: notifications of observations this
	// request registered may follow it now (RFC 7641 §3.4 orders them after).
	for _, ob := range h.registered {
		ob.markReady()
	}
}

type tooLargeKey struct{}

// refusedKey marks a request refused before go-coap handled it; its value
// is a *refusal.
type refusedKey struct{}

// refusal is the answer to a refused block: a failed authentication's
// code and reason, or a device's rejection.
type refusal struct {
	code   codes.Code
	reason string
	rej    *ingest.Rejection
}

// admitBlock authenticates a block of a block-wise request body that is not
// the last (Block1 with M=1, RFC 7959 §2.3) and counts it against its
// device, as the handler does for every other request: nil when it may be
// buffered.
func (s *Server) admitBlock(cc *client.Conn, req *pool.Message) *refusal {
	if req.Code() != codes.POST && req.Code() != codes.PUT {
		return nil
	}
	v, err := req.GetOptionUint32(message.Block1)
	if err != nil {
		return nil
	}
	if _, _, more, err := blockwise.DecodeBlockOption(v); err != nil || !more {
		return nil // the last block reaches the handler, which does the same
	}
	st := s.state(cc)
	if st == nil {
		return nil
	}
	dev, c, why := s.authenticate(cc, st, req)
	if dev == nil {
		return &refusal{code: c, reason: why}
	}
	segs := pathSegments(req)
	remediation := len(segs) == 2 && segs[0] == "c"
	if rej := s.gate(dev, remediation, time.Now()); rej != nil {
		return &refusal{rej: rej}
	}
	return nil
}

// exchange collects what a request's handling must finish after its
// response was sent.
type exchange struct {
	registered []*observer
}

type exchangeKey struct{}

// blockTooLarge reports whether a request announces (Size1, RFC 7959 §4) or
// reaches (Block1 offset + this block) more than MaxPayload.
func (s *Server) blockTooLarge(req *pool.Message) bool {
	if size, err := req.GetOptionUint32(60); err == nil && int64(size) > int64(s.maxPayload) { // Size1
		return true
	}
	v, err := req.GetOptionUint32(27) // Block1
	if err != nil {
		return false
	}
	szx, num, _, err := blockwise.DecodeBlockOption(v)
	if err != nil {
		return false
	}
	if szx > blockwise.SZX1024 {
		szx = blockwise.SZX1024
	}
	n, _ := req.BodySize()
	return num*szx.Size()+n > int64(s.maxPayload)
}

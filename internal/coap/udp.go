package coap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/monitor/inactivity"
	"github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/wanwu-iot/wanwu/internal/netuse"
)

// The plain UDP listener runs its own read loop over go-coap's connection
// machinery (udp/client.Conn) instead of go-coap's udp server, so that every
// datagram is screened before go-coap parses or answers it: per-address rate
// limits, the amplification rule (a source that has not authenticated never
// gets an answer larger than 3× its request, and go-coap's own 4.02
// diagnostics are replaced by empty ones) and RSTs for unparsable CONs.

// udpSession is the client.Session of one remote endpoint on the plain UDP
// listener. It refuses to send a source that has not authenticated more than
// amplificationFactor times the size of its last request.
type udpSession struct {
	ctx     atomic.Pointer[context.Context]
	cancel  context.CancelFunc
	done    context.Context
	doneFn  context.CancelFunc
	conn    *coapNet.UDPConn
	raddr   *net.UDPAddr
	maxSize uint32
	dropped func()
	// direct, when set, writes answers straight to raddrPort: the listener
	// is bound to one address, so no control message picks the source.
	direct    *net.UDPConn
	raddrPort netip.AddrPort

	authed  atomic.Bool  // a request from this endpoint authenticated
	lastReq atomic.Int64 // size of the last datagram received
	meter   netuse.Meter // datagrams' bytes, both ways

	mu      sync.Mutex
	onClose []func()
}

// amplificationFactor bounds answers to unauthenticated sources (RFC 7252
// §11.3 asks servers to limit amplification; the factor is the hub's rule).
const amplificationFactor = 3

func newUDPSession(ctx context.Context, conn *coapNet.UDPConn, direct *net.UDPConn, raddr netip.AddrPort, maxSize uint32, dropped func()) *udpSession {
	c, cancel := context.WithCancel(ctx)
	d, doneFn := context.WithCancel(context.Background())
	s := &udpSession{cancel: cancel, done: d, doneFn: doneFn, conn: conn, raddr: net.UDPAddrFromAddrPort(raddr), maxSize: maxSize, dropped: dropped,
		direct: direct, raddrPort: raddr}
	s.ctx.Store(&c)
	return s
}

func (s *udpSession) Context() context.Context { return *s.ctx.Load() }
func (s *udpSession) Close() error             { s.cancel(); return nil }
func (s *udpSession) MaxMessageSize() uint32   { return s.maxSize }
func (s *udpSession) RemoteAddr() net.Addr     { return s.raddr }
func (s *udpSession) LocalAddr() net.Addr      { return s.conn.LocalAddr() }
func (s *udpSession) NetConn() net.Conn        { return s.conn.NetConn() }
func (s *udpSession) Done() <-chan struct{}    { return s.done.Done() }

func (s *udpSession) SetContextValue(key, val any) {
	c := context.WithValue(s.Context(), key, val)
	s.ctx.Store(&c)
}

func (s *udpSession) AddOnClose(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onClose = append(s.onClose, f)
}

// shutdown runs the close callbacks once the connection is closed.
func (s *udpSession) shutdown() {
	s.cancel()
	s.mu.Lock()
	fns := s.onClose
	s.onClose = nil
	s.mu.Unlock()
	for _, f := range fns {
		f()
	}
	s.doneFn()
}

// allowed reports whether n bytes may go to this endpoint.
func (s *udpSession) allowed(n int) bool {
	return s.authed.Load() || int64(n) <= amplificationFactor*s.lastReq.Load()
}

func (s *udpSession) WriteMessage(req *pool.Message) error {
	data, err := req.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		return fmt.Errorf("coap: marshal: %w", err)
	}
	return s.write(data, req.ControlMessage())
}

// write sends a datagram to the endpoint unless the amplification bound
// forbids it; cm picks the source address on a wildcard listener.
func (s *udpSession) write(data []byte, cm *coapNet.ControlMessage) error {
	if !s.allowed(len(data)) {
		s.dropped()
		return nil
	}
	if s.direct != nil {
		if _, err := s.direct.WriteToUDPAddrPort(data, s.raddrPort); err != nil {
			return fmt.Errorf("coap: write: %w", err)
		}
		s.meter.Down(len(data))
		return nil
	}
	if err := s.conn.WriteWithOptions(data, coapNet.WithRemoteAddr(s.raddr), coapNet.WithControlMessage(cm)); err != nil {
		return err
	}
	s.meter.Down(len(data))
	return nil
}

func (s *udpSession) WriteMulticastMessage(*pool.Message, *net.UDPAddr, ...coapNet.MulticastOption) error {
	return errors.New("coap: no multicast")
}

// Run is not used: the listener's loop feeds the connection.
func (s *udpSession) Run(*client.Conn) error {
	<-s.Context().Done()
	return nil
}

// udpListener is the plain UDP listener's read loop and endpoint table.
type udpListener struct {
	s    *Server
	conn *coapNet.UDPConn
	// direct is the socket itself when the listener is bound to one address:
	// datagrams are then read and answered without control messages, which
	// only a wildcard listener needs (to answer from the address a request
	// was sent to), and without allocating per datagram.
	direct *net.UDPConn
	// opts is the screen's option buffer, reused: serve is one goroutine.
	opts message.Options

	mu    sync.Mutex
	conns map[netip.AddrPort]*udpEndpoint
	wg    sync.WaitGroup
}

func newUDPListener(s *Server, conn *coapNet.UDPConn) *udpListener {
	l := &udpListener{s: s, conn: conn, conns: map[netip.AddrPort]*udpEndpoint{}, opts: make(message.Options, 0, 16)}
	if uc, ok := conn.NetConn().(*net.UDPConn); ok {
		if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && !la.IP.IsUnspecified() {
			l.direct = uc
		}
		// The default receive buffer (about 200 KiB, a few hundred datagrams
		// with their kernel overhead) overflowed under `wanwu bench coap
		// --non` while the read loop waited for a core; the kernel caps this
		// at net.core.rmem_max.
		if err := uc.SetReadBuffer(udpReadBuffer); err != nil {
			s.log.Debug("coap udp: receive buffer", "err", err)
		}
	}
	return l
}

type udpEndpoint struct {
	cc   *client.Conn
	sess *udpSession
	// idle is the connection's inactivity monitor: the fast path, which
	// bypasses the connection, tells it the endpoint is alive.
	idle *inactivity.Monitor[*client.Conn]
	// answers deduplicates the fast path's CON requests (fast.go).
	answers exchangeCache
}

// udpReadBuffer is the plain UDP listener's socket receive buffer.
const udpReadBuffer = 4 << 20

// maxEndpoints bounds the remote endpoints tracked at once; beyond it new
// sources are ignored until idle ones expire.
const maxEndpoints = 100_000

func (l *udpListener) serve(ctx context.Context) {
	buf := make([]byte, l.s.maxDatagram)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				l.checkExpirations(now)
			}
		}
	}()
	// cm is declared once: its address goes to ReadWithOptions, which
	// moved it to the heap on every iteration (a pointer stored in it
	// before is kept by whoever took it).
	var cm *coapNet.ControlMessage
	for {
		var n int
		var raddr netip.AddrPort
		var err error
		cm = nil
		if l.direct != nil {
			n, raddr, err = l.direct.ReadFromUDPAddrPort(buf)
		} else {
			var ua *net.UDPAddr
			n, err = l.conn.ReadWithOptions(buf, coapNet.WithContext(ctx), coapNet.WithGetControlMessage(&cm), coapNet.WithGetRemoteAddr(&ua))
			if ua != nil {
				raddr = ua.AddrPort()
			}
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) || errors.Is(err, coapNet.ErrConnectionIsClosed) {
				return
			}
			l.s.log.Debug("coap udp read", "err", err)
			continue
		}
		if !raddr.IsValid() {
			continue
		}
		// One endpoint per address: an IPv4 source seen through a dual-stack
		// socket is the same device as seen through an IPv4 one.
		raddr = netip.AddrPortFrom(raddr.Addr().Unmap(), raddr.Port())
		l.datagram(raddr, cm, buf[:n])
	}
}

// datagram screens one datagram and hands it to its endpoint's connection.
func (l *udpListener) datagram(raddr netip.AddrPort, cm *coapNet.ControlMessage, data []byte) {
	var v verdict
	v, l.opts = l.s.screen(raddr.Addr(), data, l.opts)
	if v.reply != nil {
		// A reply the screen wrote is never larger than the request.
		if l.direct != nil {
			_, _ = l.direct.WriteToUDPAddrPort(v.reply, raddr)
		} else {
			_ = l.conn.WriteWithOptions(v.reply, coapNet.WithRemoteAddr(net.UDPAddrFromAddrPort(raddr)), coapNet.WithControlMessage(replyControl(cm)))
		}
	}
	if !v.pass {
		return
	}
	ep := l.endpoint(raddr)
	if ep == nil {
		return
	}
	ep.sess.lastReq.Store(int64(len(data)))
	ep.sess.meter.Up(len(data))
	if event, ok := fastRoute(&v.msg); ok {
		ep.idle.Notify()
		l.s.fastIngest(ep, cm, &v.msg, event)
		return
	}
	// Never wait for one endpoint's handler here: this loop reads for all.
	if err := ep.cc.TryProcess(cm, data); err != nil {
		if errors.Is(err, client.ErrReceiveQueueFull) {
			l.s.m.dropped.WithLabelValues("endpoint_busy").Inc()
			return
		}
		l.s.log.Debug("coap udp: dropping endpoint", "remote", raddr, "err", err)
		l.closeEndpoint(ep)
	}
}

// replyControl turns a received control message into one for the answer
// (source = the address the request was sent to).
func replyControl(cm *coapNet.ControlMessage) *coapNet.ControlMessage {
	if cm == nil || len(cm.Dst) == 0 || cm.Dst.IsMulticast() {
		return nil
	}
	return &coapNet.ControlMessage{Src: cm.Dst, IfIndex: cm.IfIndex}
}

func (l *udpListener) endpoint(key netip.AddrPort) *udpEndpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ep, ok := l.conns[key]; ok && ep.cc.Context().Err() == nil {
		return ep
	}
	if len(l.conns) >= maxEndpoints {
		return nil
	}
	sess := newUDPSession(l.s.ctx, l.conn, l.direct, key, l.s.maxDatagram, func() { l.s.m.amplification.Inc() })
	cfg := client.DefaultConfig
	l.s.connConfig(&cfg)
	var cc *client.Conn
	idle := inactivity.New(l.s.idle, func(cc *client.Conn) { _ = cc.Close() })
	cc = client.NewConnWithOpts(sess, &cfg,
		client.WithInactivityMonitor(idle),
		client.WithRequestMonitor(l.s.requestMonitor),
		client.WithBlockWise(func(cc *client.Conn) *blockwise.BlockWise[*client.Conn] {
			return blockwise.New(cc, l.s.blockTimeout, cfg.Errors, func(t message.Token) (*pool.Message, bool) {
				return cc.GetObservationRequest(t)
			})
		}),
	)
	ep := &udpEndpoint{cc: cc, sess: sess, idle: idle}
	cc.AddOnClose(func() {
		l.mu.Lock()
		if l.conns[key] == ep {
			delete(l.conns, key)
		}
		l.mu.Unlock()
	})
	l.s.newConn(cc, sess)
	l.conns[key] = ep
	return ep
}

func (l *udpListener) closeEndpoint(ep *udpEndpoint) {
	_ = ep.cc.Close()
	ep.sess.shutdown()
}

func (l *udpListener) checkExpirations(now time.Time) {
	l.mu.Lock()
	eps := make([]*udpEndpoint, 0, len(l.conns))
	for _, ep := range l.conns {
		eps = append(eps, ep)
	}
	l.mu.Unlock()
	for _, ep := range eps {
		if ep.cc.Context().Err() != nil {
			l.closeEndpoint(ep)
			continue
		}
		ep.cc.CheckExpirations(now)
		if ep.cc.Context().Err() != nil {
			l.closeEndpoint(ep)
		}
	}
}

func (l *udpListener) close() {
	_ = l.conn.Close()
	l.mu.Lock()
	eps := l.conns
	l.conns = map[netip.AddrPort]*udpEndpoint{}
	l.mu.Unlock()
	for _, ep := range eps {
		l.closeEndpoint(ep)
	}
	l.wg.Wait()
}

// endpointsOf returns the endpoints whose requests authenticated as code.
func (l *udpListener) closeDevice(code string) {
	l.mu.Lock()
	var eps []*udpEndpoint
	for _, ep := range l.conns {
		if st := l.s.state(ep.cc); st != nil && st.code() == code {
			eps = append(eps, ep)
		}
	}
	l.mu.Unlock()
	for _, ep := range eps {
		l.closeEndpoint(ep)
	}
}

// verdict is what screen decides about a datagram.
type verdict struct {
	pass  bool            // hand it to go-coap
	reply []byte          // answer to send (never larger than the datagram)
	msg   message.Message // the datagram decoded, when pass (it shares the datagram's memory)
}

// screen looks at a datagram before go-coap does. It drops what cannot be
// parsed (answering an unparsable CON with RST, RFC 7252 §4.2), datagrams
// over the per-address rate, and answers a confirmable request with a
// critical option the hub does not act on (unsupportedCritical) with an
// empty 4.02 Bad Option (RFC 7252 §5.4.1), where go-coap would add a
// diagnostic longer than the request.
// opts is a buffer for the decoded options, returned for reuse (grown, if a
// datagram needed more).
func (s *Server) screen(addr netip.Addr, data []byte, opts message.Options) (verdict, message.Options) {
	if len(data) < 4 || data[0]>>6 != 1 {
		s.malformedUDP(causeNotCoAP, addr)
		return verdict{}, opts // not CoAP: silently ignored (RFC 7252 §4.2, §4.3)
	}
	if !s.addrLimit.Allow(addr, time.Now()) {
		s.m.dropped.WithLabelValues("rate_limited_addr").Inc()
		return verdict{}, opts
	}
	typ := message.Type(data[0] >> 4 & 0x3)
	m := message.Message{Options: opts[:0]}
	cause := decodeDatagram(data, &m)
	opts = m.Options[:0]
	if cause != "" {
		// A message format error (§3, §4.1): a CON is rejected with an
		// RST (§4.2), a NON silently ignored (§4.3).
		s.malformedUDP(cause, addr)
		if typ == message.Confirmable {
			return verdict{reply: emptyMessage(message.Reset, data)}, opts
		}
		return verdict{}, opts
	}
	if m.Type == message.Confirmable && m.Code != codes.Empty && m.Code>>5 != 0 {
		// A response or a reserved class (§4.2): the hub sends devices no
		// requests, so it lacks the context and rejects it.
		s.m.dropped.WithLabelValues("unexpected_response").Inc()
		return verdict{reply: emptyMessage(message.Reset, data)}, opts
	}
	if m.Type == message.Confirmable && m.Code != codes.Empty { // a request: responses are rejected above
		if unsupportedCritical(m.Options) {
			s.m.dropped.WithLabelValues("bad_option").Inc()
			return verdict{reply: badOption(data, m.Token)}, opts
		}
	}
	return verdict{pass: true, msg: m}, opts
}

// malformedUDP is malformed for the plain UDP listener, which knows the
// source as a netip.Addr (no net.Addr is made unless the line is logged).
func (s *Server) malformedUDP(cause string, addr netip.Addr) {
	s.m.malformed.WithLabelValues(ListenerUDP, cause).Inc()
	if n, ok := s.malformedLog.allow(ListenerUDP, time.Now()); ok {
		s.log.Warn("coap: malformed traffic dropped", "listener", ListenerUDP, "cause", cause, "remote", addr.String(), "count", n)
	}
}

// emptyMessage is a 4-byte message of type typ echoing the request's
// message id (an RST or an empty ACK).
func emptyMessage(typ message.Type, req []byte) []byte {
	return []byte{1<<6 | byte(typ)<<4, 0, req[2], req[3]}
}

// badOption is a piggybacked 4.02 Bad Option without options or payload.
func badOption(req []byte, token []byte) []byte {
	b := []byte{1<<6 | byte(message.Acknowledgement)<<4 | byte(len(token)), byte(codes.BadOption), req[2], req[3]}
	return append(b, token...)
}

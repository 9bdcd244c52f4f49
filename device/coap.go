package device

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
)

// coapTransport sends telemetry, reported state and command results as
// confirmable CoAP POSTs (docs/PROTOCOL.md §7): over plain UDP with a device
// token in each request's "t=" query, or over DTLS with the identity's
// certificate. It fetches the twin's delta and commands in queue mode: with
// GET /tw/d and GET /c after each telemetry message and each command result
// (poll), as a device that sleeps between its reports does.
type coapTransport struct {
	c    *Client
	addr string
	dtls *piondtls.Config // nil: plain UDP with tokens

	// dialing holds a token while a request looks for the connection or
	// dials one: one handshake at a time, without holding mu. A DTLS
	// handshake over a slow or silent link takes up to a minute, and mu
	// must stay free meanwhile for lastExchange, drop and run.
	dialing chan struct{}

	// mu guards the fields below; it is never held across I/O.
	mu     sync.Mutex
	conn   *udpclient.Conn
	used   time.Time // the latest exchange on conn
	closed bool      // run closed the transport: no more dials
	token  string
	renew  time.Time // sign a new token from then on
}

func newCoAP(c *Client, u *url.URL) (*coapTransport, error) {
	t := &coapTransport{c: c, dialing: make(chan struct{}, 1)}
	port := "5683"
	switch u.Scheme {
	case "coap":
	case "coaps":
		port = "5684"
		host := c.opts.ServerName
		if host == "" {
			host = u.Hostname()
		}
		tc, err := c.opts.Identity.TLSConfig(host)
		if err != nil {
			return nil, err
		}
		t.dtls = &piondtls.Config{
			Certificates:          tc.Certificates,
			RootCAs:               tc.RootCAs,
			ServerName:            host,
			ExtendedMasterSecret:  piondtls.RequireExtendedMasterSecret,
			ConnectionIDGenerator: piondtls.OnlySendCIDGenerator(),
			FlightInterval:        c.opts.CoAPAckTimeout / 2,
		}
	default:
		return nil, fmt.Errorf("device: CoAP endpoint %q: want coap://host:port or coaps://host:port", u)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("device: CoAP endpoint %q: no host", u)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	t.addr = net.JoinHostPort(u.Hostname(), port)
	return t, nil
}

// run closes the connection when the client closes. A dial still in
// progress then is canceled by the same context and closes what it got.
func (t *coapTransport) run(ctx context.Context) {
	<-ctx.Done()
	t.mu.Lock()
	cc := t.conn
	t.conn, t.closed = nil, true
	t.mu.Unlock()
	if cc != nil {
		_ = cc.Close()
		<-cc.Done()
	}
}

// connect returns the connection, dialing one if there is none, or when the
// one there was idle for longer than the hub keeps a session (the hub would
// no longer know its DTLS session: shake hands again rather than send into
// it and wait for the retransmissions to time out). It holds mu only
// between the network's steps, so that a handshake that takes long (a
// lossy link, a hub that does not answer) holds up neither lastExchange nor
// the client's Close; a request waiting for another's dial gives up when
// its ctx ends.
func (t *coapTransport) connect(ctx context.Context) (*udpclient.Conn, error) {
	select {
	case t.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-t.dialing }()
	t.mu.Lock()
	now := time.Now()
	var idle *udpclient.Conn
	if t.conn != nil && now.Sub(t.used) > t.c.opts.CoAPSessionIdle {
		idle, t.conn = t.conn, nil
	}
	if cc := t.conn; cc != nil {
		t.used = now
		t.mu.Unlock()
		return cc, nil
	}
	closed := t.closed
	t.mu.Unlock()
	if idle != nil {
		_ = idle.Close()
		<-idle.Done()
	}
	if closed {
		return nil, ErrClosed
	}
	// The dial ends when the client closes, whoever's request it serves.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.c.ctx, cancel)
	defer stop()
	var cc *udpclient.Conn
	var err error
	switch {
	case t.dtls != nil:
		cc, err = t.dialDTLS(ctx)
	default:
		cc, err = udp.Dial(t.addr, t.errors(), t.transmission())
	}
	if err != nil {
		return nil, fmt.Errorf("coap: dial %s: %w", t.addr, err)
	}
	t.mu.Lock()
	closed = t.closed
	if !closed {
		t.conn, t.used = cc, time.Now()
	}
	t.mu.Unlock()
	if closed {
		// The client closed during the dial: run found nothing to close.
		_ = cc.Close()
		<-cc.Done()
		return nil, ErrClosed
	}
	t.c.connected()
	return cc, nil
}

// errors sends go-coap's connection errors to the client's log (go-coap
// would print them on standard output).
func (t *coapTransport) errors() options.ErrorsOpt {
	return options.WithErrors(func(err error) { t.c.log.Debug("coap: connection error", "err", err) })
}

// transmission sets the CoAP ACK_TIMEOUT (RFC 7252 §4.8), keeping NSTART 1
// and MAX_RETRANSMIT 4.
func (t *coapTransport) transmission() options.TransmissionOpt {
	return options.WithTransmission(1, t.c.opts.CoAPAckTimeout, 4)
}

// dialDTLS shakes hands with the hub, over the datagram socket
// Options.ListenPacket opens (a link emulator's, say) or a UDP socket
// connected to the hub, before the connection carries requests: a
// handshake left to the connection's first read or write would have no
// deadline, and a request would wait for it whatever its context says, so
// a handshake whose flight the hub dropped (it restarted, or ended the
// device's sessions, in the middle) would hold every request for good.
// Given up, the next request shakes hands anew.
func (t *coapTransport) dialDTLS(ctx context.Context) (*udpclient.Conn, error) {
	var pc net.PacketConn
	var raddr net.Addr
	if t.c.opts.ListenPacket != nil {
		ua, err := net.ResolveUDPAddr("udp", t.addr)
		if err != nil {
			return nil, err
		}
		if pc, err = t.c.opts.ListenPacket(ctx); err != nil {
			return nil, err
		}
		raddr = ua
	} else {
		var d net.Dialer
		c, err := d.DialContext(ctx, "udp", t.addr)
		if err != nil {
			return nil, err
		}
		pc, raddr = dtlsnet.PacketConnFromConn(c), c.RemoteAddr()
	}
	dc, err := piondtls.Client(pc, raddr, t.dtls)
	if err == nil {
		// As long as a confirmable request may take (MAX_TRANSMIT_WAIT,
		// RFC 7252 §4.8.2: 93 s with the default ACK_TIMEOUT).
		hctx, cancel := context.WithTimeout(ctx, t.c.opts.CoAPAckTimeout*93/2)
		err = dc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = dc.Close()
		}
	}
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	return dtls.Client(dc, options.WithCloseSocket(), t.errors(), t.transmission()), nil
}

// drop closes a connection that failed, so the next request dials anew.
func (t *coapTransport) drop(cc *udpclient.Conn) {
	t.mu.Lock()
	mine := t.conn == cc
	if mine {
		t.conn = nil
	}
	t.mu.Unlock()
	if mine {
		_ = cc.Close() // lets the link's last packets go: not under mu
	}
}

// tokenLocked returns a device token, signing a new one when the current
// one nears its expiry (a tenth of its lifetime before, at most a minute).
func (t *coapTransport) tokenLocked() (string, error) {
	now := t.c.opts.Now()
	if t.token != "" && now.Before(t.renew) {
		return t.token, nil
	}
	tok, err := t.c.opts.Identity.Token(now, t.c.opts.TokenTTL)
	if err != nil {
		return "", err
	}
	exp, _ := devtoken.Expiry(tok)
	t.token, t.renew = tok, exp.Add(-min(t.c.opts.TokenTTL/10, time.Minute))
	return tok, nil
}

// send POSTs payload and reads the answer.
func (t *coapTransport) send(ctx context.Context, kind msgKind, payload []byte) error {
	path, cf := "/t", message.AppSenmlJSON
	if len(payload) > 0 && payload[0] != '[' {
		cf = message.AppSenmlCbor // a CBOR array's first byte is 0x8_ or 0x98/0x99
	}
	switch kind.what {
	case "reported":
		path, cf = "/tw/r", message.AppJSON
	case "result":
		path, cf = "/c/"+kind.id, message.AppJSON
	case "event":
		path, cf = "/e/"+kind.id, message.AppJSON
	}
	code, diag, err := t.request(ctx, codes.POST, path, cf, payload)
	if err != nil {
		return err
	}
	if code == codes.Changed || code == codes.Created {
		return nil
	}
	return answerError("POST "+path, code, diag)
}

// answerError is the error of an answer other than success: a
// *RefusedError for a refusal that holds, a plain error otherwise.
func answerError(what string, code codes.Code, diag []byte) error {
	switch code {
	case codes.Unauthorized, codes.TooManyRequests, codes.ServiceUnavailable, codes.InternalServerError, codes.GatewayTimeout:
		return fmt.Errorf("coap: %s: %v %s", what, code, diag)
	}
	reason, msg, ok := strings.Cut(string(diag), ": ")
	if !ok {
		reason, msg = code.String(), string(diag)
	}
	return &RefusedError{Reason: reason, Message: msg}
}

// request sends one confirmable request and returns the answer's code and
// body.
func (t *coapTransport) request(ctx context.Context, method codes.Code, path string, cf message.MediaType, payload []byte) (codes.Code, []byte, error) {
	cc, err := t.connect(ctx)
	var tok string
	if err == nil && t.dtls == nil {
		t.mu.Lock()
		tok, err = t.tokenLocked()
		t.mu.Unlock()
	}
	if err != nil {
		return 0, nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var req *pool.Message
	if method == codes.GET {
		req, err = cc.NewGetRequest(rctx, path)
		if err == nil {
			req.SetAccept(message.AppJSON)
		}
	} else {
		req, err = cc.NewPostRequest(rctx, path, cf, bytes.NewReader(payload))
	}
	if err != nil {
		return 0, nil, fmt.Errorf("coap: %w", err)
	}
	defer cc.ReleaseMessage(req)
	// An option value holds at most 255 bytes: a longer token goes in
	// several "t=" options, which the hub joins in order.
	for len(tok) > 0 {
		n := min(len(tok), 200)
		req.AddOptionString(message.URIQuery, "t="+tok[:n])
		tok = tok[n:]
	}
	resp, err := cc.Do(req)
	if err != nil {
		t.drop(cc)
		return 0, nil, fmt.Errorf("coap: %v %s: %w", method, path, err)
	}
	defer cc.ReleaseMessage(resp)
	t.mu.Lock()
	t.used = time.Now()
	t.mu.Unlock()
	var body []byte
	if resp.Body() != nil {
		body, _ = resp.ReadBody()
	}
	if resp.Code() == codes.Unauthorized {
		// A token the hub no longer takes (clocks apart, a key rotated):
		// sign a new one for the next try.
		t.mu.Lock()
		t.token = ""
		t.mu.Unlock()
	}
	return resp.Code(), body, nil
}

// lastExchange is when the latest answer came.
func (t *coapTransport) lastExchange() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.used
}

// subscribe does nothing: the next poll asks for what the handler takes.
func (t *coapTransport) subscribe(string) {}

// poll asks the hub for the twin's delta (GET /tw/d) and the next command
// (GET /c), for the functions the application set, and queues what it
// gets. Commands come one at a time: runCommands polls again after each
// result.
func (t *coapTransport) poll(ctx context.Context) error {
	desired, command := t.c.down.handlers()
	if desired {
		code, body, err := t.request(ctx, codes.GET, "/tw/d", 0, nil)
		if err != nil {
			return err
		}
		if code != codes.Content {
			return answerError("GET /tw/d", code, body)
		}
		var d Delta
		if err := json.Unmarshal(body, &d); err != nil {
			return fmt.Errorf("coap: GET /tw/d: %w", err)
		}
		if len(d.State) > 0 {
			t.c.down.twin.set(d)
		}
	}
	if command {
		code, body, err := t.request(ctx, codes.GET, "/c", 0, nil)
		if err != nil {
			return err
		}
		if code != codes.Content {
			return answerError("GET /c", code, body)
		}
		if len(bytes.TrimSpace(body)) == 0 {
			return nil
		}
		var cmd Command
		if err := json.Unmarshal(body, &cmd); err != nil || cmd.ID == "" {
			return fmt.Errorf("coap: GET /c: a command not understood: %v", err)
		}
		t.c.down.pushCommand(cmd)
	}
	return nil
}

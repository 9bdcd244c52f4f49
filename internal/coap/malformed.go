package coap

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	dtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/wanwu-iot/wanwu/internal/netuse"
)

// Malformed traffic is dropped where it is found, counted by listener and
// cause in wanwu_coap_malformed_total, and logged as one line at most every
// malformedLogEvery per listener (the line says how many it stands for): a
// flood of garbage must not flood the log.

// Causes of wanwu_coap_malformed_total.
const (
	causeNotCoAP       = "not_coap"        // shorter than a CoAP header, or not version 1 (RFC 7252 §3)
	causeTokenLength   = "token_length"    // token length 9-15, reserved (§3)
	causeTruncated     = "truncated"       // a token or option running past the datagram (§3, §3.1)
	causeBadOptions    = "bad_options"     // an option that cannot be parsed (§3.1)
	causeEmptyPayload  = "empty_payload"   // a payload marker with nothing after it (§3)
	causeEmptyWithData = "empty_with_data" // an Empty message with bytes after its header (§4.1)
	// A DTLS handshake that did not complete: a datagram that looked like
	// a ClientHello and was not one, a client that gave up, or a wrong key
	// (deliberately not told apart from an unknown or revoked identity).
	causeHandshakeTimeout = "handshake_timeout"
	causeHandshakeError   = "handshake_error"
)

// malformedLogEvery bounds the malformed-traffic log to a line per listener.
const malformedLogEvery = 10 * time.Second

// decodeDatagram decodes a CoAP message into m (its Options are the buffer
// to use; they share data) and returns why it is a message format error
// (RFC 7252 §3, §4.1), "" when it is none.
func decodeDatagram(data []byte, m *message.Message) string {
	if len(data) < 4 || data[0]>>6 != 1 {
		return causeNotCoAP
	}
	var err error
	for {
		_, err = coder.DefaultCoder.Decode(data, m)
		if errors.Is(err, message.ErrOptionsTooSmall) && cap(m.Options) < 256 {
			m.Options = make(message.Options, 0, max(16, cap(m.Options)*2))
			continue
		}
		break
	}
	switch {
	case err == nil:
	case errors.Is(err, message.ErrInvalidTokenLen):
		return causeTokenLength
	case errors.Is(err, message.ErrEmptyPayload):
		return causeEmptyPayload
	case errors.Is(err, coder.ErrMessageTruncated), errors.Is(err, message.ErrOptionTruncated):
		return causeTruncated
	default:
		return causeBadOptions
	}
	if m.Code == codes.Empty && len(data) > 4 {
		return causeEmptyWithData
	}
	return ""
}

// malformed counts a malformed datagram or failed handshake and logs it,
// rate-limited.
func (s *Server) malformed(listener, cause string, remote net.Addr) {
	s.m.malformed.WithLabelValues(listener, cause).Inc()
	if n, ok := s.malformedLog.allow(listener, time.Now()); ok {
		s.log.Warn("coap: malformed traffic dropped", "listener", listener, "cause", cause, "remote", remote.String(), "count", n)
	}
}

// handshakeFailed counts a failed DTLS handshake with the malformed
// traffic and logs it, rate-limited, with what most often causes it.
func (s *Server) handshakeFailed(cause string, remote net.Addr) {
	s.m.malformed.WithLabelValues(ListenerDTLS, cause).Inc()
	if n, ok := s.malformedLog.allow(ListenerDTLS+"/"+cause, time.Now()); ok {
		s.log.Warn("coap dtls: handshake failed; a PSK that is not the one its identity names ends this way "+
			"(after a key rotation a bare code names the old key until the overlap ends: use the identity 'ctl device psk' prints)",
			"cause", cause, "remote", remote.String(), "count", n)
	}
}

// logLimiter lets a line through once per malformedLogEvery and key, and
// counts what it held back.
type logLimiter struct {
	mu   sync.Mutex
	next map[string]time.Time
	held map[string]int
}

// allow reports whether to log now, and how many events the line stands
// for (this one and those held back since the last line).
func (l *logLimiter) allow(key string, now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next == nil {
		l.next, l.held = map[string]time.Time{}, map[string]int{}
	}
	if now.Before(l.next[key]) {
		l.held[key]++
		return 0, false
	}
	n := l.held[key] + 1
	l.held[key] = 0
	l.next[key] = now.Add(malformedLogEvery)
	return n, true
}

// screenedListener hands go-coap's DTLS server screenedConns.
type screenedListener struct {
	*coapNet.DTLSListener
	s *Server
}

func (l screenedListener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	c, err := l.DTLSListener.AcceptWithContext(ctx)
	if err != nil {
		return nil, err
	}
	if dc, ok := c.(*dtls.Conn); ok {
		return &screenedConn{Conn: dc, s: l.s, opts: make(message.Options, 0, 16)}, nil
	}
	return c, nil
}

// screenedConn is a DTLS session's connection as go-coap reads it: a failed
// handshake is counted, and a record that is no CoAP message is dropped
// (an RST answers a confirmable one, RFC 7252 §4.2) instead of reaching
// go-coap, whose session ends at the first message it cannot parse.
//
// It also counts the session's bytes: each message read or written with
// the overhead its DTLS record adds (recordOverhead). The handshake's
// flights are below what pion lets the hub see, and not counted.
type screenedConn struct {
	*dtls.Conn
	s    *Server
	opts message.Options // decode buffer: a session is read by one goroutine

	meter    netuse.Meter
	overhead atomic.Int64 // bytes a record adds to a message, once the handshake is done
}

func (c *screenedConn) HandshakeContext(ctx context.Context) error {
	err := c.Conn.HandshakeContext(ctx)
	if err == nil {
		if st, ok := c.Conn.ConnectionState(); ok {
			c.overhead.Store(int64(recordOverhead(st.CipherSuiteID)))
		}
	}
	if err != nil {
		cause := causeHandshakeError
		if errors.Is(err, context.DeadlineExceeded) {
			cause = causeHandshakeTimeout
		}
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			c.s.handshakeFailed(cause, c.RemoteAddr())
		}
	}
	return err
}

func (c *screenedConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil {
			return n, err
		}
		c.meter.Up(n + int(c.overhead.Load()))
		m := message.Message{Options: c.opts[:0]}
		cause := decodeDatagram(p[:n], &m)
		c.opts = m.Options[:0]
		if cause == "" {
			return n, nil
		}
		c.s.malformed(ListenerDTLS, cause, c.RemoteAddr())
		if cause != causeNotCoAP && message.Type(p[0]>>4&0x3) == message.Confirmable {
			_, _ = c.Write(emptyMessage(message.Reset, p[:n]))
		}
	}
}

func (c *screenedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.meter.Down(n + int(c.overhead.Load()))
	}
	return n, err
}

// recordOverhead is what a DTLS 1.2 record of the suite adds to the
// message it carries: the 13-byte header (RFC 6347 §4.1) and the
// cipher's explicit nonce and tag (AES-CCM_8: 8 + 8, RFC 6655; AES-CCM
// and AES-GCM: 8 + 16, RFC 5288), for CBC the IV, an HMAC-SHA256 and
// padding to the block (at most 16). A session with connection ids
// (RFC 9146) carries up to 8 more bytes and a content type byte per
// record, not counted.
func recordOverhead(id dtls.CipherSuiteID) int {
	const header = 13
	switch id {
	case dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8:
		return header + 8 + 8
	case dtls.TLS_PSK_WITH_AES_128_CBC_SHA256:
		return header + 16 + 32 + 16
	}
	return header + 8 + 16
}

// dtlsConnOf is the DTLS connection of a go-coap connection, nil if it has
// none.
func dtlsConnOf(nc net.Conn) *dtls.Conn {
	switch c := nc.(type) {
	case *screenedConn:
		return c.Conn
	case *dtls.Conn:
		return c
	}
	return nil
}

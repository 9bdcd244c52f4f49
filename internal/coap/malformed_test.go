package coap

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// malformedCases are message format errors (RFC 7252 §3, §4.1) and how the
// hub answers them: an RST for a CON (§4.2), nothing for a NON (§4.3) or
// for what is no CoAP at all. payload is filled in with a valid telemetry
// request's options by the test; a request that has them would be answered
// 2.04 or 4.01 if it were processed.
func malformedCases(t *testing.T, valid func(typ message.Type, mid uint16) []byte) []struct {
	name  string
	req   []byte
	cause string
	rst   bool
} {
	withMarker := func(typ message.Type, mid uint16) []byte { return append(valid(typ, mid), 0xff) }
	return []struct {
		name  string
		req   []byte
		cause string
		rst   bool
	}{
		{"§3 CON with a payload marker and no payload", withMarker(message.Confirmable, 0x6001), causeEmptyPayload, true},
		{"§3 NON with a payload marker and no payload", withMarker(message.NonConfirmable, 0x6002), causeEmptyPayload, false},
		{"§3 token length 9", []byte{0x49, 0x01, 0x60, 0x03, 1, 2, 3, 4, 5, 6, 7, 8, 9}, causeTokenLength, true},
		{"§3 token past the end", []byte{0x54, 0x01, 0x60, 0x04, 1, 2}, causeTruncated, false},
		{"§3.1 option delta 15", []byte{0x40, 0x02, 0x60, 0x05, 0xf1, 0x00}, causeBadOptions, true},
		{"§4.1 Empty NON with bytes", []byte{0x50, 0x00, 0x60, 0x06, 0xff, 0x01}, causeEmptyWithData, false},
		{"not CoAP", []byte("\x16\xfe\xfdgarbage"), causeNotCoAP, false},
		{"3 bytes", []byte{0x40, 0x01, 0x60}, causeNotCoAP, false},
	}
}

// TestMalformedUDP: a message format error is dropped before any
// processing (a payload marker with an empty payload too: go-coap took it
// for a request without payload and the hub answered 4.01 or 4.00), answered
// with an RST when confirmable, and counted by cause in
// wanwu_coap_malformed_total{listener="udp"}.
func TestMalformedUDP(t *testing.T) {
	var logged lockedBuffer
	e := newEnv(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	d := e.device("acme:pump-mf-1", true)
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	tok := d.token(t)
	valid := func(typ message.Type, mid uint16) []byte {
		o := withOpt(opts("/t", "t="+tok), message.ContentFormat, uint32(message.AppJSON))
		return encode(t, message.Message{Type: typ, Code: codes.POST, MessageID: int32(mid), Token: []byte{6, byte(mid)}, Options: o})
	}
	for _, c := range malformedCases(t, valid) {
		t.Run(c.name, func(t *testing.T) {
			counter := e.srv.m.malformed.WithLabelValues(ListenerUDP, c.cause)
			before := testutil.ToFloat64(counter)
			timeout := 5 * time.Second
			if !c.rst {
				timeout = 300 * time.Millisecond
			}
			b := r.roundTrip(c.req, timeout)
			switch {
			case c.rst && (len(b) != 4 || b[0]>>4&3 != byte(message.Reset) || binary.BigEndian.Uint16(b[2:]) != binary.BigEndian.Uint16(c.req[2:])):
				t.Fatalf("answered %x, want a 4-byte RST echoing the message id", b)
			case !c.rst && b != nil:
				t.Fatalf("answered %x, want nothing", b)
			}
			if got := testutil.ToFloat64(counter) - before; got != 1 {
				t.Fatalf("wanwu_coap_malformed_total{listener=udp,cause=%s} grew by %v, want 1", c.cause, got)
			}
		})
	}
	// One line for them all (rate-limited), with a message; no payloads.
	if n := strings.Count(logged.String(), `msg="coap: malformed traffic dropped"`); n != 1 {
		t.Errorf("%d log lines for the malformed datagrams, want 1:\n%s", n, logged.String())
	}
	if strings.Contains(logged.String(), `msg=""`) {
		t.Errorf("a log line without a message:\n%s", logged.String())
	}
}

// lockedBuffer is a bytes.Buffer for a logger written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMalformedDTLS: inside a DTLS session, a record that is no CoAP
// message is dropped and counted (listener="dtls"), a confirmable one
// answered with an RST, and the session goes on: the next request is
// answered. (go-coap ended the session at the first message it could not
// parse, and nothing was counted.)
func TestMalformedDTLS(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-mf-2", true)
	key, err := e.pskOf(e.ctx, d.code)
	if err != nil {
		t.Fatal(err)
	}
	conn := dialPSK(t, e.srv.Addr(ListenerDTLS), d.code, key)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	read := func(timeout time.Duration) []byte {
		buf := make([]byte, 2048)
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
		n, err := conn.Read(buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}
	valid := func(typ message.Type, mid uint16) []byte {
		o := withOpt(opts("/t"), message.ContentFormat, uint32(message.AppJSON))
		return encode(t, message.Message{Type: typ, Code: codes.POST, MessageID: int32(mid), Token: []byte{7, byte(mid)}, Options: o})
	}
	for _, c := range malformedCases(t, valid) {
		counter := e.srv.m.malformed.WithLabelValues(ListenerDTLS, c.cause)
		before := testutil.ToFloat64(counter)
		if _, err := conn.Write(c.req); err != nil {
			t.Fatal(err)
		}
		timeout := 5 * time.Second
		if !c.rst {
			timeout = 300 * time.Millisecond
		}
		b := read(timeout)
		switch {
		case c.rst && (len(b) != 4 || b[0]>>4&3 != byte(message.Reset) || binary.BigEndian.Uint16(b[2:]) != binary.BigEndian.Uint16(c.req[2:])):
			t.Fatalf("%s: answered %x, want a 4-byte RST echoing the message id", c.name, b)
		case !c.rst && b != nil:
			t.Fatalf("%s: answered %x, want nothing", c.name, b)
		}
		if got := testutil.ToFloat64(counter) - before; got != 1 {
			t.Errorf("%s: wanwu_coap_malformed_total{listener=dtls,cause=%s} grew by %v, want 1", c.name, c.cause, got)
		}
	}
	req := encode(t, message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: 0x6100, Token: []byte{8}, Options: withOpt(opts("/t"), message.ContentFormat, uint32(message.AppJSON)), Payload: []byte(`{"setpoint":56}`)})
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	b := read(5 * time.Second)
	if b == nil {
		t.Fatal("the session ended: no answer to a valid request after the malformed ones")
	}
	if m := decode(t, b); m.Code != codes.Changed {
		t.Fatalf("valid request after the malformed ones answered %v", m.Code)
	}
}

// dialPSK opens a DTLS-PSK connection by hand (pion), for tests that send
// raw records or watch the handshake itself.
func dialPSK(t *testing.T, addr, identity string, key []byte) *piondtls.Conn {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := piondtls.Client(dtlsnet.PacketConnFromConn(pc), raddr, &piondtls.Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte(identity),
		CipherSuites:    []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestGarbageDTLS: a datagram to the DTLS listener that looks like the
// start of a handshake and is none is counted when the handshake it began
// runs out (pion ignores the junk and waits for a ClientHello; it drops
// datagrams that are no handshake record before a session exists, unseen).
func TestGarbageDTLS(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HandshakeTimeout = time.Second })
	r := dialRaw(t, e.srv.Addr(ListenerDTLS))
	counter := e.srv.m.malformed.WithLabelValues(ListenerDTLS, causeHandshakeTimeout)
	before := testutil.ToFloat64(counter)
	// A handshake record (content type 22, DTLS 1.2) whose body is junk.
	junk := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}
	if b := r.roundTrip(junk, 300*time.Millisecond); b != nil {
		t.Logf("answered %x", b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(counter) == before {
		if time.Now().After(deadline) {
			t.Fatal("a garbage handshake was not counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

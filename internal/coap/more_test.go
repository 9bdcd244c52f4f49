package coap

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wanwu-iot/wanwu/internal/command"
)

// TestDTLS: RFC 7252 §9.1 DTLS in PreSharedKey mode (identity = code) and
// Certificate mode (a device certificate from the hub CA), §9.1.3.
func TestDTLS(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-3", true)
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	pc, err := e.pskClient(d)
	if err != nil {
		t.Fatalf("PSK handshake: %v", err)
	}
	if r := post(t, pc, message.Confirmable, "/t", "", message.AppJSON, telemetryJSON(30, base)); r.Code() != codes.Changed {
		t.Fatalf("PSK: %v %q", r.Code(), body(t, r))
	}
	cc, err := e.certClient(d)
	if err != nil {
		t.Fatalf("certificate handshake: %v", err)
	}
	if r := post(t, cc, message.NonConfirmable, "/t", "", message.AppJSON, telemetryJSON(31, base.Add(time.Second))); r.Code() != codes.Changed {
		t.Fatalf("certificate: %v %q", r.Code(), body(t, r))
	}
	if n := e.waitSamples(d.code, "temperature", base.Add(-time.Second), base.Add(time.Minute), 2); n != 2 {
		t.Fatalf("stored %d samples, want 2", n)
	}
	// A wrong PSK fails the handshake; the client notices at its deadline.
	// (Through go-coap's client, a request could wait forever: it took
	// pion's handshake lock behind the connection's reader, whose handshake
	// has no deadline.)
	handshake := func(identity string, key []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return dialPSK(t, e.srv.Addr(ListenerDTLS), identity, key).HandshakeContext(ctx)
	}
	if err := handshake(d.code, e.psk.Derive(d.code, "not-the-key")); err == nil {
		t.Fatal("a wrong PSK completed the handshake")
	}
	// Quarantine: only GET /c (4.03 otherwise); revocation closes the
	// session, and the next handshake fails as a wrong key's does
	// (TestFailedPSKAuthIsUniform).
	if _, err := e.reg.Quarantine(e.ctx, "admin", d.code, "test"); err != nil {
		t.Fatal(err)
	}
	e.srv.DisconnectDevice(d.code)
	qc, err := e.pskClient(d)
	if err != nil {
		t.Fatal(err)
	}
	if r := post(t, qc, message.Confirmable, "/t", "", message.AppJSON, telemetryJSON(32, base)); r.Code() != codes.Forbidden {
		t.Fatalf("quarantined POST /t: %v", r.Code())
	}
	if r, err := qc.Get(ctxT(t), "/c"); err != nil || r.Code() != codes.Content {
		t.Fatalf("quarantined GET /c: %v %v", r, err)
	}
	oldKey, err := e.pskOf(e.ctx, d.code)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Revoke(e.ctx, "admin", d.code, "test"); err != nil {
		t.Fatal(err)
	}
	e.srv.DisconnectDevice(d.code)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := qc.Get(ctx, "/c"); err == nil {
		t.Fatal("the revoked device's session still answers")
	}
	if err := handshake(d.code, oldKey); err == nil {
		t.Fatal("the revoked device completed a handshake")
	}
}

// TestIPv6: RFC 7252 §6 coap URIs with IPv6 literals; the listener on
// "[::]" serves both families.
func TestIPv6(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback on this machine")
	}
	e := newEnv(t, func(o *Options) { o.Listen = "[::1]:0"; o.DTLSListen = "" })
	d := e.device("acme:pump-6", true)
	cc := e.udpClient(e.srv.Addr(ListenerUDP))
	if !strings.HasPrefix(e.srv.Addr(ListenerUDP), "[::1]:") {
		t.Fatalf("addr %s", e.srv.Addr(ListenerUDP))
	}
	if r := post(t, cc, message.Confirmable, "/t", d.token(t), message.AppJSON, telemetryJSON(1, time.Now())); r.Code() != codes.Changed {
		t.Fatalf("%v %q", r.Code(), body(t, r))
	}
}

// raw is a UDP socket speaking CoAP by hand.
type raw struct {
	t    *testing.T
	conn *net.UDPConn
}

func dialRaw(t *testing.T, addr string) *raw {
	a, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &raw{t: t, conn: c}
}

func encode(t *testing.T, m message.Message) []byte {
	t.Helper()
	n, _ := coder.DefaultCoder.Size(m)
	b := make([]byte, n)
	if _, err := coder.DefaultCoder.Encode(m, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// roundTrip sends a datagram and returns the answer (nil after timeout).
func (r *raw) roundTrip(b []byte, timeout time.Duration) []byte {
	r.t.Helper()
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatal(err)
	}
	buf := make([]byte, 70000)
	_ = r.conn.SetReadDeadline(time.Now().Add(timeout))
	n, err := r.conn.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func decode(t *testing.T, b []byte) message.Message {
	t.Helper()
	m := message.Message{Options: make(message.Options, 0, 16)}
	if _, err := coder.DefaultCoder.Decode(b, &m); err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	return m
}

func opts(path string, query ...string) message.Options {
	var o message.Options
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		o = append(o, message.Option{ID: message.URIPath, Value: []byte(seg)})
	}
	for _, q := range query {
		o = append(o, message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	return o
}

func withOpt(o message.Options, id message.OptionID, v uint32) message.Options {
	var buf [4]byte
	n, _ := message.EncodeUint32(buf[:], v)
	o = append(o, message.Option{ID: id, Value: append([]byte(nil), buf[:n]...)})
	// Options must be sorted by number for encoding.
	for i := len(o) - 1; i > 0 && o[i].ID < o[i-1].ID; i-- {
		o[i], o[i-1] = o[i-1], o[i]
	}
	return o
}

// TestDeduplication: RFC 7252 §4.5: a retransmitted CON (same message id
// from the same endpoint) is answered with the same response and processed
// once; a NON duplicate likewise (§4.5, "SHOULD" for NON).
func TestDeduplication(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-7", true)
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	// Without "ts" the hub stamps arrival time, so a second processing would
	// store a second sample.
	for i, typ := range []message.Type{message.Confirmable, message.NonConfirmable} {
		o := withOpt(opts("/t", "t="+d.token(t)), message.ContentFormat, uint32(message.AppJSON))
		req := encode(t, message.Message{Type: typ, Code: codes.POST, MessageID: int32(0x1000 + i), Token: []byte{1, 2, byte(i)}, Options: o, Payload: []byte(`{"setpoint":50}`)})
		first := r.roundTrip(req, 5*time.Second)
		if first == nil {
			t.Fatalf("%v: no answer", typ)
		}
		m1 := decode(t, first)
		if m1.Code != codes.Changed {
			t.Fatalf("%v: %v", typ, m1.Code)
		}
		if typ == message.Confirmable {
			if m1.Type != message.Acknowledgement || m1.MessageID != 0x1000 {
				t.Fatalf("CON answered with %v mid %d, want piggybacked ACK (§5.2.1)", m1.Type, m1.MessageID)
			}
			// The retransmission gets the same ACK from the cache.
			m2 := decode(t, r.roundTrip(req, 5*time.Second))
			if m2.Code != codes.Changed || m2.MessageID != m1.MessageID || m2.Type != message.Acknowledgement {
				t.Fatalf("retransmission answered %v %v mid %d", m2.Type, m2.Code, m2.MessageID)
			}
			continue
		}
		// A duplicate NON is silently ignored: the next answer is the one
		// to a fresh ping (an empty CON, answered by RST, §4.3).
		if _, err := r.conn.Write(req); err != nil {
			t.Fatal(err)
		}
		next := r.roundTrip([]byte{0x40, 0, 0x77, 0x77}, 5*time.Second)
		if len(next) != 4 || binary.BigEndian.Uint16(next[2:]) != 0x7777 {
			t.Fatalf("after a duplicate NON the next answer is %x, want the ping's RST", next)
		}
	}
	e.expectSamples(d.code, "setpoint", base, 2) // one per message, none for the duplicates
}

// TestNONAnsweredNON: RFC 7252 §5.2.3: the answer to a NON request is
// itself NON, with the request's token, on the fast path (POST /t) and on
// go-coap's (POST /tw/r, GET /tw/d). (go-coap v3.5.5 answered CON, which made
// the device acknowledge an answer it had not asked to be confirmed.)
func TestNONAnsweredNON(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-8", true)
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	cases := []struct {
		name string
		code codes.Code
		path string
		body string
		want codes.Code
	}{
		{"telemetry", codes.POST, "/t", `{"setpoint":50}`, codes.Changed},
		{"twin report", codes.POST, "/tw/r", `{"setpoint":50}`, codes.Changed},
		{"twin report refused", codes.POST, "/tw/r", `{"setpoint":"hot"}`, codes.BadRequest},
		{"desired state", codes.GET, "/tw/d", "", codes.Content},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := opts(c.path, "t="+d.token(t))
			if c.body != "" {
				o = withOpt(o, message.ContentFormat, uint32(message.AppJSON))
			}
			tok := []byte{5, byte(i)}
			req := encode(t, message.Message{Type: message.NonConfirmable, Code: c.code, MessageID: int32(0x3000 + i), Token: tok, Options: o, Payload: []byte(c.body)})
			b := r.roundTrip(req, 5*time.Second)
			if b == nil {
				t.Fatal("no answer")
			}
			if m := decode(t, b); m.Type != message.NonConfirmable || m.Code != c.want || !bytes.Equal(m.Token, tok) {
				t.Fatalf("answered %v %v token %x, want NonConfirmable %v token %x", m.Type, m.Code, []byte(m.Token), c.want, tok)
			}
		})
	}
}

// TestRejectedRequests: what RFC 7252 says a server must refuse rather than
// process: a critical option it does not act on (§5.4.1: 4.02 for CON, a NON
// ignored and not stored), a proxy request (§5.7.2: 5.05), an Accept it cannot
// serve (§5.10.4: 4.06), a method no path takes (4.05), an Empty message
// with bytes after its header (§4.1) and a CON it lacks the context for
// (§4.2: RST).
func TestRejectedRequests(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-9", true)
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	tok := d.token(t)
	with := func(o message.Options, id message.OptionID, v []byte) message.Options {
		o = withOpt(o, id, 0)
		for i := range o {
			if o[i].ID == id {
				o[i].Value = v
			}
		}
		return o
	}
	telemetry := func() message.Options {
		return withOpt(opts("/t", "t="+tok), message.ContentFormat, uint32(message.AppJSON))
	}
	const body = `{"setpoint":52}`
	const none = message.Type(-1)
	cases := []struct {
		name     string
		req      []byte
		wantType message.Type // none: no answer
		wantCode codes.Code
	}{
		{"§5.4.1 CON with an unknown critical option", encode(t, message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: 0x4001, Token: []byte{1}, Options: withOpt(telemetry(), 9, 1), Payload: []byte(body)}), message.Acknowledgement, codes.BadOption},
		{"§5.4.1 NON with an unknown critical option", encode(t, message.Message{Type: message.NonConfirmable, Code: codes.POST, MessageID: 0x4002, Token: []byte{2}, Options: withOpt(telemetry(), 9, 1), Payload: []byte(body)}), none, 0},
		{"§5.10.8 If-Match, which the hub does not evaluate", encode(t, message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: 0x4003, Token: []byte{3}, Options: with(telemetry(), message.IfMatch, []byte{1}), Payload: []byte(body)}), message.Acknowledgement, codes.BadOption},
		{"§5.4.1 NON with If-None-Match", encode(t, message.Message{Type: message.NonConfirmable, Code: codes.POST, MessageID: 0x4004, Token: []byte{4}, Options: with(telemetry(), message.IfNoneMatch, nil), Payload: []byte(body)}), none, 0},
		{"§5.7.2 CON with Proxy-Uri", encode(t, message.Message{Type: message.Confirmable, Code: codes.GET, MessageID: 0x4005, Token: []byte{5}, Options: with(opts("/tw/d", "t="+tok), message.ProxyURI, []byte("coap://example.com/x"))}), message.Acknowledgement, codes.ProxyingNotSupported},
		{"§5.7.2 NON with Proxy-Scheme", encode(t, message.Message{Type: message.NonConfirmable, Code: codes.GET, MessageID: 0x4006, Token: []byte{6}, Options: with(opts("/tw/d", "t="+tok), message.ProxyScheme, []byte("http"))}), message.NonConfirmable, codes.ProxyingNotSupported},
		{"§5.10.4 Accept CBOR on /tw/d", encode(t, message.Message{Type: message.Confirmable, Code: codes.GET, MessageID: 0x4007, Token: []byte{7}, Options: withOpt(opts("/tw/d", "t="+tok), message.Accept, uint32(message.AppCBOR))}), message.Acknowledgement, codes.NotAcceptable},
		{"§5.10.4 Accept CBOR on /c", encode(t, message.Message{Type: message.Confirmable, Code: codes.GET, MessageID: 0x4008, Token: []byte{8}, Options: withOpt(opts("/c", "t="+tok), message.Accept, uint32(message.AppCBOR))}), message.Acknowledgement, codes.NotAcceptable},
		{"§5.10.4 Accept JSON on /tw/d", encode(t, message.Message{Type: message.Confirmable, Code: codes.GET, MessageID: 0x4009, Token: []byte{9}, Options: withOpt(opts("/tw/d", "t="+tok), message.Accept, uint32(message.AppJSON))}), message.Acknowledgement, codes.Content},
		{"RFC 8132 FETCH, which no path takes", encode(t, message.Message{Type: message.Confirmable, Code: codes.Code(5), MessageID: 0x400a, Token: []byte{10}, Options: opts("/tw/d", "t="+tok)}), message.Acknowledgement, codes.MethodNotAllowed},
		{"§4.1 Empty CON with a payload", []byte{0x40, 0x00, 0x40, 0x0b, 0xff, 0x01}, message.Reset, codes.Empty},
		{"§4.2 CON carrying a response", []byte{0x41, byte(codes.Content), 0x40, 0x0c, 0x0c}, message.Reset, codes.Empty},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			timeout := 5 * time.Second
			if c.wantType == none {
				timeout = 300 * time.Millisecond
			}
			b := r.roundTrip(c.req, timeout)
			switch {
			case c.wantType == none && b != nil:
				t.Fatalf("answered %v, want no answer", decode(t, b).Code)
			case c.wantType == none:
				return
			case b == nil:
				t.Fatalf("no answer, want %v %v", c.wantType, c.wantCode)
			}
			m := decode(t, b)
			if m.Type != c.wantType || m.Code != c.wantCode {
				t.Fatalf("answered %v %v, want %v %v", m.Type, m.Code, c.wantType, c.wantCode)
			}
			if m.Type != message.NonConfirmable && m.MessageID != int32(binary.BigEndian.Uint16(c.req[2:])) {
				t.Fatalf("answer's message id %#x does not echo the request's", m.MessageID)
			}
		})
	}
	// None of the refused telemetry was stored: a good message after them
	// is the only sample.
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	good := encode(t, message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: 0x4100, Token: []byte{0x41}, Options: telemetry(), Payload: []byte(body)})
	if m := decode(t, r.roundTrip(good, 5*time.Second)); m.Code != codes.Changed {
		t.Fatalf("good telemetry answered %v", m.Code)
	}
	e.expectSamples(d.code, "setpoint", base, 1)
}

// TestBlockwise: RFC 7959 §2.5 Block1 transfers are reassembled; a body
// announced (Size1, §4) or grown beyond MaxPayload is refused with 4.13 and
// Size1 = the limit (§2.9.3), without buffering more.
func TestBlockwise(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-8", true)
	// A 3 KiB SenML body through go-coap's client, which splits it.
	var recs []string
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i := 0; i < 50; i++ {
		recs = append(recs, `{"n":"temperature","u":"Cel","v":21.5,"t":`+itoa(int(at.Unix())+i)+`,"bn":"acme:pump-8/"}`)
	}
	payload := []byte("[" + strings.Join(recs, ",") + "]")
	if len(payload) < 3000 {
		t.Fatalf("payload %d bytes", len(payload))
	}
	cc := e.udpClient("")
	if resp := post(t, cc, message.Confirmable, "/t", d.token(t), message.AppSenmlJSON, payload); resp.Code() != codes.Changed {
		t.Fatalf("block-wise POST: %v %q", resp.Code(), body(t, resp))
	}
	if n := e.waitSamples(d.code, "temperature", at.Add(-time.Second), at.Add(time.Minute), 50); n != 50 {
		t.Fatalf("stored %d samples, want 50", n)
	}

	// The bomb: blocks beyond MaxPayload (8 KiB here).
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	tok := d.token(t)
	block := bytes.Repeat([]byte("x"), 1024)
	var last message.Message
	for num := uint32(0); num < 20; num++ {
		o := withOpt(opts("/t", "t="+tok), message.Block1, num<<4|1<<3|6)
		ans := r.roundTrip(encode(t, message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: int32(0x2000 + num), Token: []byte{9, 9}, Options: o, Payload: block}), 5*time.Second)
		if ans == nil {
			t.Fatalf("block %d: no answer", num)
		}
		last = decode(t, ans)
		if last.Code != codes.Continue {
			if num != 8 {
				t.Fatalf("block %d answered %v, want 2.31 until block 8", num, last.Code)
			}
			break
		}
	}
	if last.Code != codes.RequestEntityTooLarge {
		t.Fatalf("bomb answered %v, want 4.13", last.Code)
	}
	if v, err := last.Options.GetUint32(message.Size1); err != nil || v != 8<<10 {
		t.Fatalf("Size1 %d %v, want %d", v, err, 8<<10)
	}
	// Size1 announcing a megabyte is refused at the first block.
	o := withOpt(withOpt(opts("/t", "t="+tok), message.Block1, 0<<4|1<<3|6), message.Size1, 1<<20)
	ans := decode(t, r.roundTrip(encode(t, message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: 0x3000, Token: []byte{8}, Options: o, Payload: block}), 5*time.Second))
	if ans.Code != codes.RequestEntityTooLarge {
		t.Fatalf("Size1 1 MiB answered %v, want 4.13", ans.Code)
	}
}

// TestAmplification: RFC 7252 §11.3: answers to requests that did not
// authenticate are never more than 3× the request (here, at most the
// request's size), including go-coap's own 4.02 for unknown critical
// options (§5.4.1) and RST for an unparsable CON (§4.2).
func TestAmplification(t *testing.T) {
	e := newEnv(t, nil)
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	cases := []struct {
		name string
		req  []byte
		want codes.Code
	}{
		{"no token", encode(t, message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: 1, Options: opts("/t"), Payload: []byte("{}")}), codes.Unauthorized},
		{"bad token", encode(t, message.Message{Type: message.Confirmable, Code: codes.GET, MessageID: 2, Token: []byte{1}, Options: opts("/tw/d", "t=x.y.z")}), codes.Unauthorized},
		{"unknown critical option", encode(t, message.Message{Type: message.Confirmable, Code: codes.GET, MessageID: 3, Options: message.Options{{ID: 9}}}), codes.BadOption},
		{"long path", encode(t, message.Message{Type: message.Confirmable, Code: codes.GET, MessageID: 4, Token: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Options: opts("/a/b/c/d/e")}), codes.Unauthorized},
	}
	for _, c := range cases {
		ans := r.roundTrip(c.req, 5*time.Second)
		if ans == nil {
			t.Fatalf("%s: no answer", c.name)
		}
		if len(ans) > 3*len(c.req) {
			t.Errorf("%s: %d-byte answer to a %d-byte request", c.name, len(ans), len(c.req))
		}
		if m := decode(t, ans); m.Code != c.want {
			t.Errorf("%s: %v, want %v", c.name, m.Code, c.want)
		}
	}
	// An unparsable CON (token length 9 is reserved, §3) gets a 4-byte RST.
	bad := []byte{0x49, 0x01, 0x12, 0x34, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	ans := r.roundTrip(bad, 5*time.Second)
	if len(ans) != 4 || ans[0]>>4&3 != byte(message.Reset) || binary.BigEndian.Uint16(ans[2:]) != 0x1234 {
		t.Fatalf("unparsable CON: answer %x, want RST for mid 0x1234", ans)
	}
}

// TestTwinObserve: RFC 7641 §3.1/§4.2: GET /tw/d with Observe registers;
// every desired change is a notification with an increasing Observe value.
func TestTwinObserve(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-9", true)
	cc, err := e.pskClient(d)
	if err != nil {
		t.Fatal(err)
	}
	// Report, then observe desired.
	if r := post(t, cc, message.Confirmable, "/tw/r", "", message.AppJSON, []byte(`{"setpoint":20}`)); r.Code() != codes.Changed {
		t.Fatalf("POST /tw/r: %v %q", r.Code(), body(t, r))
	}
	if r := post(t, cc, message.Confirmable, "/tw/r", "", message.AppJSON, []byte(`{"setpoint":"hot"}`)); r.Code() != codes.BadRequest {
		t.Fatalf("bad report: %v %q", r.Code(), body(t, r))
	}
	got := make(chan twinMessage, 8)
	obs, err := cc.Observe(ctxT(t), "/tw/d", func(m *pool.Message) {
		b, _ := m.ReadBody()
		var tm twinMessage
		if json.Unmarshal(b, &tm) == nil {
			got <- tm
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Cancel(ctxT(t))
	first := <-got
	if first.Version != 0 {
		t.Fatalf("first representation %+v", first)
	}
	if _, err := e.twins.SetDesired(e.ctx, "admin", d.code, []byte(`{"setpoint":42}`), -1); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-got:
		if n.Version != 1 || n.Desired["setpoint"] != 42.0 || n.Delta["setpoint"] != 42.0 {
			t.Fatalf("notification %+v", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification of the desired change")
	}
}

// waitStatus polls a command until it reaches status.
func (e *env) waitStatus(t *testing.T, id string, status command.Status) *command.Command {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := e.cmds.Get(e.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if c.Status == status {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %s is %s, want %s", id, c.Status, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCommandsObserve: a command issued while the device slept waits
// (queue mode); the device wakes and observes /c (RFC 7641) with a CON
// registration, receives the command as a confirmable notification whose ACK
// (RFC 7252 §4.2) confirms delivery, and posts its result.
func TestCommandsObserve(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-10", true)
	c, _, err := e.cmds.Issue(e.ctx, "admin", command.IssueRequest{Code: d.code, Action: "reboot", Args: []byte(`{"delay":1}`), ID: "cmd-1"})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := e.pskClient(d)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan commandMessage, 8)
	obs, err := cc.Observe(ctxT(t), "/c", func(m *pool.Message) {
		b, _ := m.ReadBody()
		var cm commandMessage
		if len(b) > 0 && json.Unmarshal(b, &cm) == nil {
			got <- cm
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Cancel(ctxT(t))
	select {
	case cm := <-got:
		if cm.ID != c.ID || cm.Action != "reboot" {
			t.Fatalf("got %+v", cm)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no command notification")
	}
	e.waitStatus(t, c.ID, command.Delivered)
	if r := post(t, cc, message.Confirmable, "/c/"+c.ID, "", message.AppJSON, []byte(`{"status":"succeeded"}`)); r.Code() != codes.Changed {
		t.Fatalf("result: %v %q", r.Code(), body(t, r))
	}
	e.waitStatus(t, c.ID, command.Succeeded)
	if r := post(t, cc, message.Confirmable, "/c/nope", "", message.AppJSON, []byte(`{"status":"succeeded"}`)); r.Code() != codes.NotFound {
		t.Fatalf("unknown command: %v", r.Code())
	}
	// Issued while observing: delivered at once.
	c2, _, err := e.cmds.Issue(e.ctx, "admin", command.IssueRequest{Code: d.code, Action: "reboot", ID: "cmd-2", Args: []byte(`{"delay":2}`)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case cm := <-got:
		if cm.ID != c2.ID {
			t.Fatalf("got %+v", cm)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification for a command issued while observing")
	}
	e.waitStatus(t, c2.ID, command.Delivered)
}

// TestCommandsPoll: a sleeping device that wakes and polls GET /c (NON, no
// Observe) gets what waited; its next poll confirms it.
func TestCommandsPoll(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-11", true)
	c, _, err := e.cmds.Issue(e.ctx, "admin", command.IssueRequest{Code: d.code, Action: "reboot", ID: "poll-1", Args: []byte(`{"delay":3}`)})
	if err != nil {
		t.Fatal(err)
	}
	cc := e.udpClient("")
	get := func() *pool.Message {
		req, _ := cc.NewGetRequest(ctxT(t), "/c")
		req.AddQuery("t=" + d.token(t))
		req.SetType(message.NonConfirmable)
		r, err := cc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := get()
	var cm commandMessage
	if err := json.Unmarshal([]byte(body(t, r)), &cm); err != nil || cm.ID != c.ID {
		t.Fatalf("poll: %v %q", r.Code(), body(t, r))
	}
	r = get()
	if r.Code() != codes.Content || body(t, r) != "" {
		t.Fatalf("second poll: %v %q", r.Code(), body(t, r))
	}
	e.waitStatus(t, c.ID, command.Delivered)
}

// TestMessageIDsOfBothSides: RFC 7252 §4.4: message ids are generated by the
// sender, so a device's request may carry the id the hub gave one of its own
// NON responses to that device. Deduplication (§4.5) matches requests by the
// requester's id only: such a request is a new one, processed and answered
// with its own token, whether NON or CON. (go-coap v3.5.5 cached NON
// responses under the hub's id and replayed a stale answer instead: the
// request was lost, and a CON one acknowledged.)
func TestMessageIDsOfBothSides(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-7", true)
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	send := func(typ message.Type, mid int32, tok byte) message.Message {
		t.Helper()
		o := withOpt(opts("/t", "t="+d.token(t)), message.ContentFormat, uint32(message.AppJSON))
		req := encode(t, message.Message{Type: typ, Code: codes.POST, MessageID: mid, Token: []byte{9, tok}, Options: o, Payload: []byte(`{"setpoint":51}`)})
		b := r.roundTrip(req, 5*time.Second)
		if b == nil {
			t.Fatalf("%v mid %#x: no answer", typ, mid)
		}
		m := decode(t, b)
		if m.Code != codes.Changed || !bytes.Equal(m.Token, []byte{9, tok}) {
			t.Fatalf("%v mid %#x: answered %v with token %x, want 2.04 with token 09%02x", typ, mid, m.Code, m.Token, tok)
		}
		return m
	}
	first := send(message.NonConfirmable, 0x2000, 1)
	// The hub's NON response carries an id of the hub's choosing; the next
	// requests use it (and the one after it) as their own.
	send(message.NonConfirmable, first.MessageID, 2)
	second := send(message.NonConfirmable, 0x2001, 3)
	send(message.Confirmable, second.MessageID, 4)
	if n := e.waitSamples(d.code, "setpoint", base, time.Now().Add(time.Minute), 4); n != 4 {
		t.Fatalf("stored %d samples, want 4", n)
	}
}

// TestRequestIsNotAnAck: RFC 7252 §4.4: only an Acknowledgement or Reset
// echoing its message id answers a confirmable message. A device's request
// that happens to carry the id of an unacknowledged CON notification does
// not confirm the command in it: the hub retransmits (§4.2) until the ACK.
// (go-coap v3.5.5 took any message with that id as the ACK.)
func TestRequestIsNotAnAck(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-12", true)
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	read := func(timeout time.Duration) *message.Message {
		t.Helper()
		buf := make([]byte, 2048)
		_ = r.conn.SetReadDeadline(time.Now().Add(timeout))
		n, err := r.conn.Read(buf)
		if err != nil {
			return nil
		}
		m := decode(t, buf[:n])
		return &m
	}
	o := withOpt(opts("/c", "t="+d.token(t)), message.Observe, 0)
	reg := encode(t, message.Message{Type: message.Confirmable, Code: codes.GET, MessageID: 0x3000, Token: []byte{7, 7}, Options: o})
	if _, err := r.conn.Write(reg); err != nil {
		t.Fatal(err)
	}
	if m := read(5 * time.Second); m == nil || m.Type != message.Acknowledgement || m.Code != codes.Content {
		t.Fatalf("observe registration answered %+v", m)
	}
	c, _, err := e.cmds.Issue(e.ctx, "admin", command.IssueRequest{Code: d.code, Action: "reboot", ID: "ack-1", Args: []byte(`{"delay":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	note := read(10 * time.Second)
	if note == nil || note.Type != message.Confirmable || !bytes.Contains(note.Payload, []byte(c.ID)) {
		t.Fatalf("want a CON notification with the command, got %+v", note)
	}
	// A NON request with the notification's id: answered, and no ACK.
	po := withOpt(opts("/t", "t="+d.token(t)), message.ContentFormat, uint32(message.AppJSON))
	req := encode(t, message.Message{Type: message.NonConfirmable, Code: codes.POST, MessageID: note.MessageID, Token: []byte{8, 8}, Options: po, Payload: []byte(`{"setpoint":52}`)})
	if _, err := r.conn.Write(req); err != nil {
		t.Fatal(err)
	}
	var answered, retransmitted bool
	deadline := time.Now().Add(8 * time.Second)
	for (!answered || !retransmitted) && time.Now().Before(deadline) {
		m := read(time.Until(deadline))
		switch {
		case m == nil:
		case bytes.Equal(m.Token, []byte{8, 8}):
			answered = m.Code == codes.Changed
		case m.Type == message.Confirmable && m.MessageID == note.MessageID:
			retransmitted = true
		}
	}
	if !answered || !retransmitted {
		t.Fatalf("request answered %v, notification retransmitted %v; want both", answered, retransmitted)
	}
	if got, err := e.cmds.Get(e.ctx, c.ID); err != nil || got.Status == command.Delivered {
		t.Fatalf("command %v (%v) before its ACK", got.Status, err)
	}
	if _, err := r.conn.Write(emptyMessage(message.Acknowledgement, encode(t, message.Message{Type: message.Confirmable, MessageID: note.MessageID}))); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(t, c.ID, command.Delivered)
}

// TestBusyEndpointDoesNotStopOthers: one goroutine reads the plain UDP
// listener for every source. A device that sends far more than its handler
// keeps up with loses datagrams (counted as endpoint_busy; CON requests are
// retransmitted, RFC 7252 §4.2) instead of stopping that loop: another
// device is answered meanwhile.
func TestBusyEndpointDoesNotStopOthers(t *testing.T) {
	e := newEnv(t, nil)
	flooder := e.device("acme:pump-13", true)
	other := e.device("acme:pump-14", true)
	busy := e.srv.m.dropped.WithLabelValues("endpoint_busy")
	before := testutil.ToFloat64(busy)
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	// Twin reports go through go-coap's connection, whose handler waits
	// for each commit (telemetry takes the fast path, which never queues).
	o := withOpt(opts("/tw/r", "t="+flooder.token(t)), message.ContentFormat, uint32(message.AppJSON))
	for i := range 300 {
		req := encode(t, message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: int32(0x4000 + i), Token: []byte{1, byte(i >> 8), byte(i)}, Options: o, Payload: []byte(`{"setpoint":53}`)})
		if _, err := r.conn.Write(req); err != nil {
			t.Fatal(err)
		}
	}
	r2 := dialRaw(t, e.srv.Addr(ListenerUDP))
	o2 := withOpt(opts("/t", "t="+other.token(t)), message.ContentFormat, uint32(message.AppJSON))
	req := encode(t, message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: 0x5000, Token: []byte{2}, Options: o2, Payload: []byte(`{"setpoint":54}`)})
	b := r2.roundTrip(req, 5*time.Second)
	if b == nil {
		t.Fatal("the other device got no answer while one endpoint was flooding")
	}
	if m := decode(t, b); m.Code != codes.Changed {
		t.Fatalf("the other device got %v", m.Code)
	}
	if got := testutil.ToFloat64(busy) - before; got == 0 {
		t.Fatal("no datagram of the flooding endpoint was dropped as endpoint_busy: the read loop waited for it")
	}
}

package coap

import (
	"encoding/json"
	"net"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDTLSConnectionID: RFC 9146: a device whose NAT gave it a new outside
// port while it slept keeps its DTLS session. Its records carry the
// connection id the hub chose in the handshake, so the hub finds the session
// by that id rather than by the address, answers at the new address (§6,
// peer address update), and notifies the device there. Without connection
// ids the device's records from the new port belong to no session and it
// would have to shake hands again, several round trips on NB-IoT.
func TestDTLSConnectionID(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-21", true)
	key, err := e.pskOf(e.ctx, d.code)
	if err != nil {
		t.Fatal(err)
	}
	nat := newNATProxy(t, e.srv.Addr(ListenerDTLS))
	cc, err := dtls.Dial(nat.addr(), &piondtls.Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte(d.code),
		CipherSuites:    []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
		// The device sends the hub's connection id and asks for none.
		ConnectionIDGenerator: piondtls.OnlySendCIDGenerator(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	if r := post(t, cc, message.Confirmable, "/t", "", message.AppJSON, telemetryJSON(40, base)); r.Code() != codes.Changed {
		t.Fatalf("before rebinding: %v %q", r.Code(), body(t, r))
	}
	versions := make(chan int64, 8)
	obs, err := cc.Observe(ctxT(t), "/tw/d", func(m *pool.Message) {
		b, _ := m.ReadBody()
		var tm twinMessage
		if json.Unmarshal(b, &tm) == nil {
			versions <- tm.Version
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Cancel(ctxT(t))
	if v := <-versions; v != 0 {
		t.Fatalf("first representation: version %d", v)
	}

	nat.rebind(t)
	if r := post(t, cc, message.Confirmable, "/t", "", message.AppJSON, telemetryJSON(41, base.Add(time.Second))); r.Code() != codes.Changed {
		t.Fatalf("after rebinding: %v %q", r.Code(), body(t, r))
	}
	if n := e.waitSamples(d.code, "temperature", base.Add(-time.Second), base.Add(time.Minute), 2); n != 2 {
		t.Fatalf("stored %d samples, want 2", n)
	}
	// The hub now sends to the new port: a desired change reaches the
	// observation made before the rebinding.
	if _, err := e.twins.SetDesired(e.ctx, "admin", d.code, []byte(`{"setpoint":44}`), -1); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-versions:
		if v != 1 {
			t.Fatalf("notification of version %d, want 1", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification at the new address")
	}
}

// natProxy relays datagrams between one client and a server as a NAT does:
// the server sees the proxy's outside port, which rebind replaces, as a NAT
// does when its mapping expired while the device slept.
type natProxy struct {
	inside *net.UDPConn // the client talks to this
	server *net.UDPAddr

	mu      sync.Mutex
	outside *net.UDPConn // the server sees this port
	client  *net.UDPAddr
	wg      sync.WaitGroup
}

func newNATProxy(t *testing.T, server string) *natProxy {
	t.Helper()
	sa, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	in, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &natProxy{inside: in, server: sa}
	p.rebind(t)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := in.ReadFromUDP(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.client = from
			out := p.outside
			p.mu.Unlock()
			_, _ = out.WriteToUDP(buf[:n], p.server)
		}
	}()
	t.Cleanup(func() {
		_ = in.Close()
		p.mu.Lock()
		_ = p.outside.Close()
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *natProxy) addr() string { return p.inside.LocalAddr().String() }

// rebind replaces the outside port; what the server sends to the old one is
// lost.
func (p *natProxy) rebind(t *testing.T) {
	t.Helper()
	out, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	old := p.outside
	p.outside = out
	p.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, err := out.Read(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			client := p.client
			p.mu.Unlock()
			if client != nil {
				_, _ = p.inside.WriteToUDP(buf[:n], client)
			}
		}
	}()
}

// TestSessionIdle: a DTLS session with traffic stays; one idle for longer
// than Options.Idle is closed, and the device's next request needs a new
// handshake.
func TestSessionIdle(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Idle = time.Second })
	d := e.device("acme:pump-22", true)
	cc, err := e.pskClient(d)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i := range 6 { // 3 s of requests every half second: never idle for 1 s
		if r := post(t, cc, message.Confirmable, "/t", "", message.AppJSON, telemetryJSON(50, base.Add(time.Duration(i)*time.Second))); r.Code() != codes.Changed {
			t.Fatalf("request %d of a busy session: %v", i, r.Code())
		}
		time.Sleep(500 * time.Millisecond)
	}
	sessions := e.srv.m.sessions.WithLabelValues(ListenerDTLS)
	if n := testutil.ToFloat64(sessions); n != 1 {
		t.Fatalf("wanwu_coap_sessions{listener=dtls} = %v with one session open", n)
	}
	select {
	case <-cc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a session idle for 5 s was not closed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(sessions) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("wanwu_coap_sessions{listener=dtls} = %v after the session closed", testutil.ToFloat64(sessions))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

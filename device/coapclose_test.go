package device_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/linkemu"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// udpRelay forwards datagrams between devices and a UDP endpoint, one
// upstream socket per device socket, and drops everything either way while
// silent: a hub that stops answering, a cell the device lost.
type udpRelay struct {
	pc     net.PacketConn
	target *net.UDPAddr
	silent atomic.Bool
	seen   atomic.Int64 // datagrams from devices, dropped ones included
	// rebind, when set, sends the first datagram of a DTLS handshake's
	// ClientKeyExchange, and all after it, from a new upstream port: the
	// device's NAT rebound in the middle of its handshake.
	rebind  atomic.Bool
	rebound atomic.Int32

	mu   sync.Mutex
	ups  map[string]*net.UDPConn
	wg   sync.WaitGroup
	done bool
}

func newUDPRelay(t *testing.T, target string) *udpRelay {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRelay{pc: pc, target: ta, ups: map[string]*net.UDPConn{}}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(func() {
		pc.Close()
		r.mu.Lock()
		r.done = true
		for _, up := range r.ups {
			up.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *udpRelay) addr() string { return r.pc.LocalAddr().String() }

func (r *udpRelay) serve() {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		r.seen.Add(1)
		if r.silent.Load() {
			continue
		}
		r.mu.Lock()
		up := r.ups[from.String()]
		if up != nil && r.rebind.Load() && clientKeyExchange(buf[:n]) && r.rebound.CompareAndSwap(0, 1) {
			up.Close() // its reader ends: the hub's answers to that port are lost
			up = nil
		}
		if up == nil && !r.done {
			if up, err = net.DialUDP("udp", nil, r.target); err != nil {
				r.mu.Unlock()
				continue
			}
			r.ups[from.String()] = up
			r.wg.Add(1)
			go r.back(up, from)
		}
		r.mu.Unlock()
		if up != nil {
			up.Write(buf[:n])
		}
	}
}

// clientKeyExchange reports whether a datagram holds a DTLS handshake
// record (content type 22, epoch 0) carrying a ClientKeyExchange (16).
func clientKeyExchange(b []byte) bool {
	for len(b) >= 14 {
		n := 13 + (int(b[11])<<8 | int(b[12]))
		if b[0] == 22 && b[3] == 0 && b[4] == 0 && b[13] == 16 {
			return true
		}
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return false
}

// back forwards the endpoint's answers on up to the device at dev.
func (r *udpRelay) back(up *net.UDPConn, dev net.Addr) {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		if !r.silent.Load() {
			r.pc.WriteTo(buf[:n], dev)
		}
	}
}

// within runs f and reports whether it returned within d; f goes on
// regardless.
func within(d time.Duration, f func()) bool {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// TestCoAPCloseOnSleepyLink: a CoAP/DTLS device on an NB-IoT-like link
// (PSM sleep, a slow uplink) holds up neither LastExchange, nor another
// request past its deadline, nor its Close while its DTLS handshake or a
// request goes unanswered or its link sleeps, and the report it could not
// deliver stays in its buffer for the next Connect. A fleet simulator asks LastExchange to time the device's sleep:
// when LastExchange waited for a handshake the hub did not answer (up to a
// minute), the device's goroutine could not see the fleet stop, and a
// shutdown waited past its deadline.
func TestCoAPCloseOnSleepyLink(t *testing.T) {
	h := startHub(t)
	id := claim(t, h, "nb-close", "--model", "acme:pump@1.0.0")
	p, ok := netprofile.Lookup(netprofile.NBIoT)
	if !ok {
		t.Fatal("no nb-iot profile")
	}
	// NB-IoT's rates, MTU and sleep; a short, lossless latency so that the
	// test is fast and its packets are never lost at random.
	p.Latency = netprofile.Latency{Base: 20 * time.Millisecond, JitterMedian: 5 * time.Millisecond, JitterMax: 50 * time.Millisecond}
	p.Loss = netprofile.Loss{}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)

	for _, tc := range []struct {
		name string
		// before runs once the first report is acknowledged, if first;
		// then the second report is published and during runs once the
		// device sent something for it.
		first          bool
		before, during func(r *udpRelay, l *linkemu.Link)
		pending        int // reports left in the buffer
	}{
		{name: "handshake unanswered", pending: 1,
			before: func(r *udpRelay, _ *linkemu.Link) { r.silent.Store(true) }},
		{name: "asleep during the handshake", pending: 1,
			during: func(_ *udpRelay, l *linkemu.Link) { l.Sleep() }},
		{name: "request unanswered", first: true, pending: 1,
			before: func(r *udpRelay, _ *linkemu.Link) { r.silent.Store(true) }},
		{name: "asleep with a request outstanding", first: true, pending: 1,
			during: func(_ *udpRelay, l *linkemu.Link) { l.Sleep() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := newUDPRelay(t, h.CoAP().Addr(coap.ListenerDTLS))
			link := linkemu.New(p, 1)
			dir := t.TempDir()
			opts := device.Options{Identity: id, CoAP: "coaps://" + relay.addr(), ServerName: "localhost",
				BufferDir: dir, NoSync: true, Logger: testLogger(t),
				CoAPSessionIdle: p.Sleep.PeriodicUpdate,
				ListenPacket: func(context.Context) (net.PacketConn, error) {
					pc, err := net.ListenPacket("udp", "127.0.0.1:0")
					if err != nil {
						return nil, err
					}
					return link.PacketConn(pc), nil
				}}
			c, err := device.Connect(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			t.Cleanup(func() {
				if !closed {
					c.Close()
				}
			})
			if tc.first {
				if err := c.Publish(ctx(t), device.Record{Name: "speed", Time: base, Value: 1}); err != nil {
					t.Fatalf("first report: %v", err)
				}
				if c.LastExchange().IsZero() {
					t.Error("no exchange after an acknowledged report")
				}
			}
			if tc.before != nil {
				tc.before(relay, link)
			}
			sent := relay.seen.Load()
			pub := make(chan error, 1)
			go func() {
				pub <- c.Publish(context.Background(), device.Record{Name: "speed", Time: base.Add(time.Second), Value: 2})
			}()
			eventually(t, "the device sends for the second report", func() error {
				if relay.seen.Load() == sent {
					return errors.New("nothing yet")
				}
				return nil
			})
			if tc.during != nil {
				tc.during(relay, link)
			}
			// The device now shakes hands, waits for an answer, or
			// retries after its link refused to send.
			time.Sleep(300 * time.Millisecond)
			var last time.Time
			if !within(time.Second, func() { last = c.LastExchange() }) {
				t.Error("LastExchange waited for the connection")
			}
			if tc.first && last.IsZero() {
				t.Error("LastExchange forgot the first report's answer")
			}
			// A request of the application's with a short deadline
			// gives up at it rather than waiting for the connection.
			var rerr error
			if !within(2*time.Second, func() {
				rctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer cancel()
				rerr = c.ReportState(rctx, map[string]any{"mode": "auto"})
			}) {
				t.Error("ReportState went on past its deadline")
			} else if rerr == nil {
				t.Error("ReportState succeeded with no answer from the hub")
			}
			start := time.Now()
			if !within(4*time.Second, func() { c.Close() }) {
				t.Fatalf("Close did not return within 4 s")
			}
			closed = true
			t.Logf("Close took %v", time.Since(start))
			select {
			case err := <-pub:
				if !errors.Is(err, device.ErrClosed) {
					t.Errorf("the second report's Publish: %v, want ErrClosed", err)
				}
			case <-time.After(time.Second):
				t.Error("the second report's Publish did not return at Close")
			}

			// Nothing lost: the report not acknowledged is in the buffer
			// for the next Connect (whose handshake goes unanswered).
			relay.silent.Store(true)
			link.Wake()
			again, err := device.Connect(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := again.Buffered(); got != tc.pending {
				t.Errorf("%d reports buffered after Close, want %d", got, tc.pending)
			}
			if !within(4*time.Second, func() { again.Close() }) {
				t.Error("Close during the next handshake did not return within 4 s")
			}
		})
	}
}

// TestCoAPHandshakeCutShort: a DTLS handshake whose last flight reaches
// the hub from another port (the device's NAT rebound in the middle; or
// the hub restarted, or ended the device's sessions, under it) is given up
// after CoAP's MAX_TRANSMIT_WAIT and shaken again, and the report goes
// through. The connection's own handshake, left to its first request, had
// no deadline: it sent its last flight again for good, and the device
// never sent anything more.
func TestCoAPHandshakeCutShort(t *testing.T) {
	h := startHub(t)
	id := claim(t, h, "nb-rebind", "--model", "acme:pump@1.0.0")
	relay := newUDPRelay(t, h.CoAP().Addr(coap.ListenerDTLS))
	relay.rebind.Store(true)
	c := connect(t, device.Options{Identity: id, CoAP: "coaps://" + relay.addr(), ServerName: "localhost",
		MemoryBuffer: true, CoAPAckTimeout: 100 * time.Millisecond}) // MAX_TRANSMIT_WAIT 4.65 s
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Publish(pctx, device.Record{Name: "speed", Time: base, Value: 1}); err != nil {
		t.Fatalf("publish after a handshake cut short: %v", err)
	}
	if relay.rebound.Load() != 1 {
		t.Error("the relay did not move the handshake's ClientKeyExchange to a new port")
	}
	exactlyOnce(t, h, id.Code, "speed", base, 1)
}

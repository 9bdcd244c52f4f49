package linkemu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// profile returns a fast, lossless profile changed by change: tests scale
// the figures so that each runs in well under a few seconds.
func profile(change func(p *netprofile.Profile)) netprofile.Profile {
	p := netprofile.Profile{Name: "test", Protocol: "mqtt", UplinkBPS: 1e10, DownlinkBPS: 1e10, MTU: 1500, MaxPayload: 1 << 20}
	if change != nil {
		change(&p)
	}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

// tcpPair connects over loopback and returns the device's end wrapped in l
// and the hub's end.
func tcpPair(t testing.TB, l *Link) (dev, hub net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	hub, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	dev = l.Conn(c)
	t.Cleanup(func() {
		dev.Close()
		hub.Close()
	})
	return dev, hub
}

// udpPair returns a device's socket wrapped in l and the hub's socket.
func udpPair(t testing.TB, l *Link) (dev, hub net.PacketConn) {
	t.Helper()
	hub, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dev = l.PacketConn(c)
	t.Cleanup(func() {
		dev.Close()
		hub.Close()
	})
	return dev, hub
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// airTime is how long n bytes take at bps.
func airTime(n int, bps int64) time.Duration {
	return time.Duration(int64(n) * 8 * int64(time.Second) / bps)
}

// The slack allowed above a transfer's expected time: a loaded 2-core
// machine may be late, never early.
func late(expected time.Duration) time.Duration { return 2*expected + 500*time.Millisecond }

func TestStreamRateAndLatency(t *testing.T) {
	const (
		size    = 60_000
		latency = 50 * time.Millisecond
		bps     = 800_000
	)
	l := New(profile(func(p *netprofile.Profile) {
		p.Latency.Base = latency
		p.UplinkBPS, p.DownlinkBPS = bps, bps
	}), 1)
	for _, tc := range []struct {
		name     string
		from, to func(dev, hub net.Conn) net.Conn
		counters func(Stats) Counters
	}{
		{"uplink", func(dev, _ net.Conn) net.Conn { return dev }, func(_, hub net.Conn) net.Conn { return hub }, func(s Stats) Counters { return s.Up }},
		{"downlink", func(_, hub net.Conn) net.Conn { return hub }, func(dev, _ net.Conn) net.Conn { return dev }, func(s Stats) Counters { return s.Down }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev, hub := tcpPair(t, l)
			from, to := tc.from(dev, hub), tc.to(dev, hub)
			before := tc.counters(l.Stats())
			payload := make([]byte, size)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			start := time.Now()
			go func() {
				if _, err := from.Write(payload); err != nil {
					t.Error(err)
				}
			}()
			got := make([]byte, 0, size)
			buf := make([]byte, 4096)
			var first time.Duration
			to.SetReadDeadline(time.Now().Add(10 * time.Second))
			for len(got) < size {
				n, err := to.Read(buf)
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(got), err)
				}
				if len(got) == 0 {
					first = time.Since(start)
				}
				got = append(got, buf[:n]...)
			}
			elapsed := time.Since(start)
			if !bytes.Equal(got, payload) {
				t.Fatal("the bytes arrived changed")
			}
			c := tc.counters(l.Stats())
			packets, onAir := c.Packets-before.Packets, c.Bytes-before.Bytes
			if onAir != size+40*packets || packets < (size+1459)/1460 {
				t.Errorf("%d packets, %d bytes on the air for %d bytes of payload", packets, onAir, size)
			}
			// The first segment arrives after the latency; the last after
			// every segment's air time and the latency.
			if min := latency; first < min || first > late(min) {
				t.Errorf("first bytes after %v, want %v to %v", first, min, late(min))
			}
			if min := airTime(int(onAir), bps) + latency; elapsed < min || elapsed > late(min) {
				t.Errorf("%d bytes in %v (%.0f kbit/s), want %v to %v", size, elapsed, float64(size*8)/elapsed.Seconds()/1000, min, late(min))
			}
		})
	}
}

func TestDatagramRateAndLatency(t *testing.T) {
	const (
		count   = 20
		size    = 1000 - 28
		latency = 100 * time.Millisecond
		bps     = 320_000
	)
	l := New(profile(func(p *netprofile.Profile) {
		p.Latency.Base = latency
		p.UplinkBPS, p.DownlinkBPS = bps, bps
	}), 1)
	for _, up := range []bool{true, false} {
		name := map[bool]string{true: "uplink", false: "downlink"}[up]
		t.Run(name, func(t *testing.T) {
			dev, hub := udpPair(t, l)
			from, to, toAddr := dev, hub, hub.LocalAddr()
			if !up {
				from, to, toAddr = hub, dev, dev.LocalAddr()
			}
			start := time.Now()
			for i := range count {
				b := make([]byte, size)
				b[0] = byte(i)
				if _, err := from.WriteTo(b, toAddr); err != nil {
					t.Fatal(err)
				}
			}
			to.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 2048)
			for i := range count {
				n, _, err := to.ReadFrom(buf)
				if err != nil {
					t.Fatal(err)
				}
				if n != size || buf[0] != byte(i) {
					t.Fatalf("datagram %d: %d bytes, number %d", i, n, buf[0])
				}
				// The i-th datagram arrives after its own air time and all
				// those before it, and the latency.
				if elapsed, min := time.Since(start), airTime((i+1)*1000, bps)+latency; elapsed < min || elapsed > late(min) {
					t.Fatalf("datagram %d after %v, want %v to %v", i, elapsed, min, late(min))
				}
			}
		})
	}
}

func TestLatencyWithJitter(t *testing.T) {
	const base, jitterMax = 30 * time.Millisecond, 40 * time.Millisecond
	l := New(profile(func(p *netprofile.Profile) {
		p.Latency = netprofile.Latency{Base: base, JitterMedian: 10 * time.Millisecond, JitterMax: jitterMax}
	}), 7)
	dev, hub := udpPair(t, l)
	hub.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for i := range 30 {
		start := time.Now()
		if _, err := dev.WriteTo([]byte{byte(i)}, hub.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := hub.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
		// No datagram is faster than the base latency or slower than the
		// base and the jitter's cap (and a loaded machine's lateness).
		if d := time.Since(start); d < base || d > base+jitterMax+200*time.Millisecond {
			t.Errorf("datagram %d took %v, want %v to %v", i, d, base, base+jitterMax)
		}
	}
}

func TestOversize(t *testing.T) {
	const mtu = 576
	l := New(profile(func(p *netprofile.Profile) { p.MTU = mtu }), 1)
	dev, hub := udpPair(t, l)
	hub.SetReadDeadline(time.Now().Add(5 * time.Second))
	dev.SetReadDeadline(time.Now().Add(5 * time.Second))
	largest := mtu - IPv4Header - UDPHeader
	buf := make([]byte, 2048)

	// Uplink: the larger datagram is dropped without an error; the next
	// one arrives.
	for _, n := range []int{largest + 1, largest, 1000} {
		if m, err := dev.WriteTo(make([]byte, n), hub.LocalAddr()); m != n || err != nil {
			t.Fatalf("WriteTo(%d bytes) = %d, %v", n, m, err)
		}
	}
	if n, _, err := hub.ReadFrom(buf); n != largest || err != nil {
		t.Fatalf("hub read %d, %v; want the %d-byte datagram", n, err, largest)
	}
	// Downlink likewise.
	for _, n := range []int{largest + 1, largest} {
		if _, err := hub.WriteTo(make([]byte, n), dev.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	if n, _, err := dev.ReadFrom(buf); n != largest || err != nil {
		t.Fatalf("device read %d, %v; want the %d-byte datagram", n, err, largest)
	}
	want := Stats{
		Up:   Counters{Bytes: mtu, Packets: 1, Oversize: 2},
		Down: Counters{Bytes: mtu, Packets: 1, Oversize: 1},
	}
	if got := l.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}

	// A stream never exceeds the MTU: its segments are cut to MTU-40.
	sdev, shub := tcpPair(t, l)
	if _, err := sdev.Write(make([]byte, 3*(mtu-40)+1)); err != nil {
		t.Fatal(err)
	}
	shub.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(shub, make([]byte, 3*(mtu-40)+1)); err != nil {
		t.Fatal(err)
	}
	if got := l.Stats().Up; got.Packets != 1+4 || got.Bytes != mtu+3*mtu+41 || got.Oversize != 2 {
		t.Errorf("after a stream write of 3 full segments and a byte: %+v", got)
	}
}

func TestAccounting(t *testing.T) {
	l := New(profile(func(p *netprofile.Profile) { p.Latency.Base = time.Millisecond }), 1)
	dev, hub := udpPair(t, l)
	hub.SetReadDeadline(time.Now().Add(5 * time.Second))
	dev.SetReadDeadline(time.Now().Add(5 * time.Second))
	sizes := []int{0, 1, 100, 1472}
	buf := make([]byte, 2048)
	for _, n := range sizes {
		if _, err := dev.WriteTo(make([]byte, n), hub.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if got, _, err := hub.ReadFrom(buf); got != n || err != nil {
			t.Fatalf("hub read %d, %v; want %d bytes", got, err, n)
		}
		if _, err := hub.WriteTo(make([]byte, n), dev.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if got, _, err := dev.ReadFrom(buf); got != n || err != nil {
			t.Fatalf("device read %d, %v; want %d bytes", got, err, n)
		}
	}
	// 0+1+100+1472 bytes of payload and 4 IPv4 and UDP headers each way.
	each := Counters{Bytes: 1573 + 4*28, Packets: 4}
	if got := l.Stats(); got != (Stats{Up: each, Down: each}) {
		t.Errorf("Stats() = %+v, want %+v each way", got, each)
	}
}

// TestLossRate checks that over many datagrams the share lost is close to
// the model's stationary rate. The seed is fixed, so the outcome is too;
// the bounds are four standard deviations of the estimate.
func TestLossRate(t *testing.T) {
	for _, tc := range []struct {
		name string
		loss netprofile.Loss
	}{
		{"random", netprofile.Loss{Good: 0.1}},
		{"bursty", netprofile.Loss{Good: 0.02, Bad: 0.6, GoodToBad: 0.05, BadToGood: 0.2}},
		{"nb-iot", func() netprofile.Loss { p, _ := netprofile.Lookup(netprofile.NBIoT); return p.Loss }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 50_000
			l := New(profile(func(p *netprofile.Profile) { p.Loss = tc.loss }), 42)
			dev, hub := udpPair(t, l)
			b := make([]byte, 8)
			for range n {
				if _, err := dev.WriteTo(b, hub.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			s := l.Stats().Up
			if s.Packets != n {
				t.Fatalf("%d packets counted, want %d", s.Packets, n)
			}
			got, want := float64(s.Lost)/n, tc.loss.Rate()
			// Bursts make consecutive outcomes correlated: the chain's
			// autocorrelation ρ = 1-GoodToBad-BadToGood widens the
			// estimate's deviation by at most √((1+ρ)/(1-ρ)).
			rho := 0.0
			if tc.loss.GoodToBad > 0 {
				rho = 1 - tc.loss.GoodToBad - tc.loss.BadToGood
			}
			sd := math.Sqrt(want * (1 - want) / n * (1 + rho) / (1 - rho))
			t.Logf("lost %.4f, model %.4f, σ %.4f", got, want, sd)
			if tol := 4 * sd; got < want-tol || got > want+tol {
				t.Errorf("lost %.4f, want %.4f ± %.4f", got, want, tol)
			}
		})
	}
}

// TestDeterminism sends the same numbered datagrams through links with the
// same seed: the same ones arrive. Another seed loses others.
func TestDeterminism(t *testing.T) {
	const n = 150
	lossy := profile(func(p *netprofile.Profile) {
		p.Loss = netprofile.Loss{Good: 0.05, Bad: 0.7, GoodToBad: 0.1, BadToGood: 0.3}
		p.UplinkBPS = 2_000_000 // keep the hub's socket buffer from overflowing
	})
	arrived := func(seed int64) []uint32 {
		l := New(lossy, seed)
		dev, hub := udpPair(t, l)
		for i := range uint32(n) {
			if _, err := dev.WriteTo(binary.BigEndian.AppendUint32(nil, i), hub.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		s := l.Stats().Up
		var got []uint32
		buf := make([]byte, 16)
		hub.SetReadDeadline(time.Now().Add(5 * time.Second))
		for int64(len(got)) < s.Packets-s.Lost {
			m, _, err := hub.ReadFrom(buf)
			if err != nil {
				t.Fatalf("seed %d: %d of %d datagrams arrived: %v", seed, len(got), s.Packets-s.Lost, err)
			}
			got = append(got, binary.BigEndian.Uint32(buf[:m]))
		}
		return got
	}
	a, b, c := arrived(1), arrived(1), arrived(2)
	if len(a) == n || len(a) == 0 {
		t.Fatalf("%d of %d arrived: the test needs some lost", len(a), n)
	}
	if !slices.Equal(a, b) {
		t.Errorf("the same seed lost different datagrams:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Error("another seed lost the same datagrams")
	}
}

func TestSleepDatagrams(t *testing.T) {
	l := New(profile(func(p *netprofile.Profile) { p.Latency.Base = 200 * time.Millisecond }), 1)
	dev, hub := udpPair(t, l)
	buf := make([]byte, 64)

	// A datagram in flight when the device falls asleep is dropped.
	if _, err := hub.WriteTo([]byte("early"), dev.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the datagram on the air", func() bool { return l.Stats().Down.Packets == 1 })
	l.Sleep()
	if !l.Asleep() {
		t.Fatal("Asleep() = false after Sleep")
	}
	if got := l.Stats().Down; got != (Counters{Asleep: 1}) {
		t.Errorf("after Sleep: %+v, want the datagram counted as slept through", got)
	}
	// Writes fail; datagrams for the sleeping device are dropped.
	if _, err := dev.WriteTo([]byte("x"), hub.LocalAddr()); !errors.Is(err, ErrAsleep) {
		t.Errorf("WriteTo while asleep: %v, want ErrAsleep", err)
	}
	for range 3 {
		if _, err := hub.WriteTo([]byte("asleep"), dev.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "3 more datagrams slept through", func() bool { return l.Stats().Down.Asleep == 4 })
	l.Wake()
	if l.Asleep() {
		t.Fatal("Asleep() = true after Wake")
	}
	dev.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _, err := dev.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q, %v after Wake; want nothing (all dropped)", buf[:n], err)
	}
	// Awake, both ways flow again.
	if _, err := hub.WriteTo([]byte("awake"), dev.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	dev.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := dev.ReadFrom(buf); err != nil || string(buf[:n]) != "awake" {
		t.Fatalf("read %q, %v; want awake", buf[:n], err)
	}
	if _, err := dev.WriteTo([]byte("up"), hub.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	hub.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := hub.ReadFrom(buf); err != nil || string(buf[:n]) != "up" {
		t.Fatalf("hub read %q, %v; want up", buf[:n], err)
	}
	if got := l.Stats(); got.Down.Asleep != 4 || got.Down.Packets != 1 || got.Up.Packets != 1 {
		t.Errorf("Stats() = %+v", got)
	}
}

func TestSleepStream(t *testing.T) {
	l := New(profile(func(p *netprofile.Profile) { p.Latency.Base = 10 * time.Millisecond }), 1)
	dev, hub := tcpPair(t, l)
	l.Sleep()
	if _, err := dev.Write([]byte("x")); !errors.Is(err, ErrAsleep) {
		t.Errorf("Write while asleep: %v, want ErrAsleep", err)
	}
	if _, err := hub.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	// The bytes are held while the device sleeps, well past the latency.
	buf := make([]byte, 64)
	dev.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := dev.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q, %v while asleep; want a timeout", buf[:n], err)
	}
	dev.SetReadDeadline(time.Now().Add(5 * time.Second))
	time.AfterFunc(50*time.Millisecond, l.Wake)
	if n, err := io.ReadFull(dev, buf[:4]); err != nil || string(buf[:n]) != "held" {
		t.Fatalf("read %q, %v after Wake; want held", buf[:n], err)
	}
	if _, err := dev.Write([]byte("up")); err != nil {
		t.Fatalf("Write after Wake: %v", err)
	}
}

// TestStreamLoss checks that a lossy link loses no bytes of a stream, and
// counts the retransmissions it makes instead.
func TestStreamLoss(t *testing.T) {
	l := New(profile(func(p *netprofile.Profile) {
		p.Latency.Base = 2 * time.Millisecond
		p.Loss = netprofile.Loss{Good: 0.15}
	}), 3)
	dev, hub := tcpPair(t, l)
	payload := make([]byte, 30_000)
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	start := time.Now()
	if _, err := dev.Write(payload); err != nil {
		t.Fatal(err)
	}
	hub.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(hub, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the bytes arrived changed")
	}
	s := l.Stats().Up
	segments := int64((len(payload) + 1459) / 1460)
	// 20 segments of 1460 bytes and one of 800; each loss sends one again.
	resent := s.Bytes - int64(len(payload)) - 40*s.Packets
	if s.Lost == 0 || s.Packets != segments+s.Lost || resent < 800*s.Lost || resent > 1460*s.Lost {
		t.Errorf("%+v for %d segments", s, segments)
	}
	// Every lost segment is sent again one RTO (at least 200 ms) later.
	if elapsed := time.Since(start); elapsed < minRTO {
		t.Errorf("a lossy transfer took %v, less than one retransmission timeout", elapsed)
	}
}

func TestDeadlines(t *testing.T) {
	l := New(profile(nil), 1)
	dev, _ := udpPair(t, l)
	sdev, _ := tcpPair(t, l)
	for _, tc := range []struct {
		name string
		conn interface{ SetReadDeadline(time.Time) error }
		read func() error
	}{
		{"datagram", dev, func() error { _, _, err := dev.ReadFrom(make([]byte, 8)); return err }},
		{"stream", sdev, func() error { _, err := sdev.Read(make([]byte, 8)); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A deadline set before the read.
			start := time.Now()
			tc.conn.SetReadDeadline(start.Add(50 * time.Millisecond))
			err := tc.read()
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("read: %v, want a timeout", err)
			}
			if d := time.Since(start); d < 50*time.Millisecond {
				t.Errorf("timed out after %v, before the deadline", d)
			}
			// A deadline moved while the read waits.
			tc.conn.SetReadDeadline(time.Time{})
			time.AfterFunc(20*time.Millisecond, func() { tc.conn.SetReadDeadline(time.Now()) })
			if err := tc.read(); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read: %v, want a timeout", err)
			}
		})
	}
	sdev.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := sdev.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write after its deadline: %v", err)
	}
}

// TestClose checks that Close lets what the device sent arrive, ends the
// connection's goroutines, and makes further use fail.
func TestClose(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	const latency = 100 * time.Millisecond
	l := New(profile(func(p *netprofile.Profile) { p.Latency.Base = latency }), 1)

	dev, hub := udpPair(t, l)
	sdev, shub := tcpPair(t, l)
	if _, err := dev.WriteTo([]byte("bye"), hub.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := sdev.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sdev.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < latency-5*time.Millisecond {
		t.Errorf("Close returned after %v, before what was sent could arrive", d)
	}
	buf := make([]byte, 8)
	hub.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := hub.ReadFrom(buf); err != nil || string(buf[:n]) != "bye" {
		t.Errorf("hub read %q, %v; want bye", buf[:n], err)
	}
	shub.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(shub); err != nil || string(b) != "bye" {
		t.Errorf("hub read %q, %v; want bye, then EOF", b, err)
	}
	if _, _, err := dev.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after Close: %v", err)
	}
	if _, err := sdev.Write(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := sdev.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	hub.Close()
	shub.Close()
	// The goroutines ended with Close; only the runtime's own may linger.
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines })
	if l.Stats().Up.Packets != 2 {
		t.Errorf("Stats() = %+v", l.Stats())
	}
}

// TestCloseDrainsAtMostDrainMax checks that Close waits for what the
// device sent for at most drainMax: packets due later (a sleeping NB-IoT
// device's, minutes of latency) are dropped with the connection, so that a
// fleet's shutdown does not wait for them.
func TestCloseDrainsAtMostDrainMax(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	l := New(profile(func(p *netprofile.Profile) { p.Latency.Base = time.Minute }), 1)
	dev, hub := udpPair(t, l)
	sdev, shub := tcpPair(t, l)
	if _, err := dev.WriteTo([]byte("late"), hub.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := sdev.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	errs := make(chan error, 2)
	go func() { errs <- dev.Close() }()
	go func() { errs <- sdev.Close() }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	d := time.Since(start)
	if d < drainMax-50*time.Millisecond || d > drainMax+time.Second {
		t.Errorf("Close returned after %v, want about %v", d, drainMax)
	}
	buf := make([]byte, 8)
	hub.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := hub.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("hub read %q, %v; want nothing", buf[:n], err)
	}
	shub.SetReadDeadline(time.Now().Add(time.Second))
	if b, err := io.ReadAll(shub); err != nil || len(b) > 0 {
		t.Errorf("hub read %q, %v; want EOF", b, err)
	}
	hub.Close()
	shub.Close()
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines })
}

// TestEOF checks that the hub closing a stream reaches the device after the
// bytes it sent.
func TestEOF(t *testing.T) {
	l := New(profile(func(p *netprofile.Profile) { p.Latency.Base = 20 * time.Millisecond }), 1)
	dev, hub := tcpPair(t, l)
	hub.Write([]byte("last words"))
	hub.Close()
	dev.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(dev); err != nil || string(b) != "last words" {
		t.Errorf("read %q, %v; want last words, then EOF", b, err)
	}
}

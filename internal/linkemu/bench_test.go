//go:build unix

package linkemu

import (
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// BenchmarkWriteTo measures what sending a datagram costs through a link
// (no latency, no rate limit, so that only the emulator's own work is
// added) beside the bare socket, until it is on the socket: the time per
// datagram and the process's CPU time per datagram (cpu-ns/op), which
// counts the link's sending goroutine too. The hub does not read: the
// kernel drops what overflows its buffer, as the benchmark measures sends.
func BenchmarkWriteTo(b *testing.B) {
	payload := make([]byte, 100)
	for _, tc := range []struct {
		name string
		wrap func(c net.PacketConn) net.PacketConn
	}{
		{"socket", func(c net.PacketConn) net.PacketConn { return c }},
		{"link", func(c net.PacketConn) net.PacketConn { return New(profile(nil), 1).PacketConn(c) }},
		{"link-lossy-jitter", func(c net.PacketConn) net.PacketConn {
			p, _ := netprofile.Lookup(netprofile.Ethernet)
			p.Loss = netprofile.Loss{Good: 0.01, Bad: 0.5, GoodToBad: 0.01, BadToGood: 0.2}
			p.UplinkBPS = 1e10
			return New(p, 1).PacketConn(c)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			hub, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer hub.Close()
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			dev := tc.wrap(c)
			to := hub.LocalAddr()
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				if _, err := dev.WriteTo(payload, to); err != nil {
					b.Fatal(err)
				}
			}
			dev.Close() // waits until the last datagram is on the socket
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleLinks reports what an idle link with one wrapped UDP socket
// holds: heap bytes and goroutines per link, beyond the socket's own.
func BenchmarkIdleLinks(b *testing.B) {
	const n = 1000
	p, _ := netprofile.Lookup(netprofile.NBIoT)
	for b.Loop() {
		socks := make([]net.PacketConn, n)
		for i := range socks {
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			socks[i] = c
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		conns := make([]net.PacketConn, n)
		for i, c := range socks {
			conns[i] = New(p, int64(i)).PacketConn(c)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/link")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stackB/link")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/link")
		for _, c := range conns {
			c.Close()
		}
	}
}

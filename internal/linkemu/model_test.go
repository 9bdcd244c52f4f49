package linkemu

import (
	"slices"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// These tests drive the model without sockets or clocks: a link's draws
// for a sequence of packets sent at given times.

// schedule returns the arrival times of n datagrams of 100 bytes sent 1 ms
// apart on l's uplink, the zero time for those lost.
func schedule(l *Link, n int) []time.Time {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]time.Time, n)
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range out {
		if due, lost := l.datagram(&l.up, t0.Add(time.Duration(i)*time.Millisecond), 100); !lost {
			out[i] = due
		}
	}
	return out
}

func TestModelDeterministic(t *testing.T) {
	p, _ := netprofile.Lookup(netprofile.NBIoT)
	a, b, c := schedule(New(p, 9), 2000), schedule(New(p, 9), 2000), schedule(New(p, 10), 2000)
	if !slices.Equal(a, b) {
		t.Error("the same seed gave other losses or delays")
	}
	if slices.Equal(a, c) {
		t.Error("another seed gave the same losses and delays")
	}
	// The loss pattern does not depend on the latency's figures.
	q := p
	q.Latency = netprofile.Latency{Base: time.Millisecond}
	d := schedule(New(q, 9), 2000)
	for i := range a {
		if a[i].IsZero() != d[i].IsZero() {
			t.Fatalf("datagram %d: lost %v with one latency, %v with another", i, a[i].IsZero(), d[i].IsZero())
		}
	}
}

func TestJitter(t *testing.T) {
	lat := netprofile.Latency{Base: 10 * time.Millisecond, JitterMedian: 20 * time.Millisecond, JitterMax: 200 * time.Millisecond}
	l := New(profile(func(p *netprofile.Profile) { p.Latency = lat }), 5)
	const n = 100_000
	d := make([]time.Duration, n)
	for i := range d {
		d[i] = l.delay(&l.up)
	}
	slices.Sort(d)
	if d[0] < lat.Base || d[n-1] > lat.Base+lat.JitterMax {
		t.Errorf("delays from %v to %v, want them within %v to %v", d[0], d[n-1], lat.Base, lat.Base+lat.JitterMax)
	}
	if med := d[n/2] - lat.Base; med < 19*time.Millisecond || med > 21*time.Millisecond {
		t.Errorf("median jitter %v, want about %v", med, lat.JitterMedian)
	}
	// JitterMax is about the 99.9th percentile: some draws reach the cap,
	// but few.
	atCap := n - slices.Index(d, lat.Base+lat.JitterMax)
	if atCap < n/10000 || atCap > n/300 {
		t.Errorf("%d of %d delays at the cap, want about 0.1%%", atCap, n)
	}
}

// TestBursts checks the Gilbert-Elliott chain beyond its mean: a loss is
// followed by another far more often than on average, as the bad state's
// mean length 1/BadToGood makes it.
func TestBursts(t *testing.T) {
	loss := netprofile.Loss{Good: 0, Bad: 1, GoodToBad: 0.01, BadToGood: 0.25}
	l := New(profile(func(p *netprofile.Profile) { p.Loss = loss }), 11)
	const n = 200_000
	var lost, pairs, bursts int
	prev := false
	l.mu.Lock()
	for range n {
		cur := l.up.count(loss, 1)
		if cur {
			lost++
			if prev {
				pairs++
			} else {
				bursts++
			}
		}
		prev = cur
	}
	l.mu.Unlock()
	// With Good 0 and Bad 1 a loss is the bad state: the chance that the
	// next packet is lost too is 1-BadToGood, and bursts last 1/BadToGood.
	if got := float64(pairs) / float64(lost); got < 0.72 || got > 0.78 {
		t.Errorf("P(loss | loss) = %.3f, want 0.75", got)
	}
	if got := float64(lost) / float64(bursts); got < 3.7 || got > 4.3 {
		t.Errorf("mean burst %.2f packets, want 4", got)
	}
}

// TestSegmentRetransmission checks a lost segment's delay: one RTO,
// doubling.
func TestSegmentRetransmission(t *testing.T) {
	base := 100 * time.Millisecond
	p := profile(func(p *netprofile.Profile) {
		p.Latency.Base = base
		p.Loss = netprofile.Loss{Good: 1} // every transmission lost
	})
	l := New(p, 1)
	if want := 2 * base; l.rto != want {
		t.Fatalf("RTO %v, want %v", l.rto, want)
	}
	t0 := time.Now()
	l.mu.Lock()
	due := l.segment(&l.up, t0, 1000)
	s := l.stats.Up
	l.mu.Unlock()
	// Sent at once and 6 times more, 1+2+4+8+16+32 RTOs later in all,
	// then delivered anyway one latency later.
	if want := t0.Add(63*l.rto + base); due.Sub(t0) < want.Sub(t0) || due.Sub(want) > time.Microsecond {
		t.Errorf("due after %v, want %v", due.Sub(t0), want.Sub(t0))
	}
	if s.Packets != 7 || s.Lost != 7 || s.Bytes != 7000 {
		t.Errorf("counters %+v, want 7 transmissions of 1000 bytes, all lost", s)
	}
}

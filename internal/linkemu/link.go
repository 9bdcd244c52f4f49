// Package linkemu emulates a device's network link inside the process: it
// wraps the device's real connection to the hub (a TCP stream for MQTT over
// TLS, a UDP socket for CoAP over DTLS) and applies a netprofile.Profile to
// it, with no root and no tc. One Link is one device's radio; every
// connection the device opens goes through it and shares its air time,
// its sleep and its counters.
//
// # What it applies
//
// Each packet, uplink (device to hub, on write) and downlink (hub to
// device, on read), is put on the air after the packets before it in the
// same direction, for size×8/rate seconds (the serialization delay of a
// link of the profile's rate, packet by packet), then arrives one one-way
// latency later: the profile's base latency plus a log-normal jitter
// (netprofile.Latency). Packets are never reordered: one that would
// overtake an earlier one of the same connection arrives with it, as the
// radio layers of cellular links deliver in sequence.
//
// Loss follows the profile's Gilbert-Elliott model, drawn per packet and
// per direction. A lost datagram is dropped. A lost TCP segment is not:
// TCP sends it again, so it arrives one retransmission timeout later,
// max(200 ms, 2×(base+jitter median) + 4×jitter median) after the 200 ms
// floor of Linux and the SRTT+4·RTTVAR of RFC 6298, doubling at each loss
// of the same segment, delivered regardless after six retransmissions; the
// segments behind it wait for it, as TCP's in-order delivery makes them.
//
// Streams are cut into segments of at most MTU−40 bytes (IPv4 and TCP
// headers), so they never exceed the MTU. A datagram larger than MTU−28
// (IPv4 and UDP headers) is dropped and counted as oversize, in both
// directions, rather than fragmented: IPv6 routers never fragment, NB-IoT
// carriers commonly drop IPv4 fragments, and CoAP (RFC 7252 §4.6) asks
// for messages that fit one packet, so a device that sends larger ones has
// a bug that tests should see as a counted loss rather than a hidden
// fragmentation.
//
// # Sleep
//
// The device decides when it sleeps (Sleep, Wake): a PSM device sleeps
// after its active timer, an eDRX one between paging windows. While it
// sleeps, a write returns ErrAsleep; datagrams arriving for it are dropped
// and counted (what the hub sends meanwhile must wait in the hub's queue,
// not here); stream bytes arriving for it are held and delivered after
// Wake, as TCP's retransmissions would deliver them. Packets the device
// sent before it slept still arrive.
//
// # Counting
//
// Stats counts what goes over the air per direction: bytes with the IPv4
// header (20) and the UDP (8) or TCP (20) header of each packet, lost
// packets and TCP retransmissions included; packets, lost, oversize, and
// datagrams the device slept through. Radio-layer overheads (PDCP, RLC,
// MAC, 802.11 headers, HARQ retransmissions), TCP's handshake, pure ACKs
// and FIN, and the RRC connection setup a cellular device makes before
// sending after idle are not counted and not modelled in time.
//
// # Resources
//
// A Link holds no goroutine and no buffer of its own. A wrapped connection
// has one goroutine reading the real connection (downlink) with a buffer
// of one packet, and one more sending the uplink only while there is
// uplink in flight; both end before Close returns. Bytes in flight are
// bounded per direction by a window of twice the link's bandwidth-delay
// product (64 KiB to 4 MiB): a writer blocks when the uplink's is full,
// and the hub's TCP sees its window close when the downlink's is.
//
// The same seed gives the same draws: the loss pattern and the jitter of
// the n-th packet in each direction do not depend on timing, so two links
// with the same profile and seed that carry the same packets lose the
// same ones.
package linkemu

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// Header sizes counted per packet.
const (
	IPv4Header = 20
	UDPHeader  = 8
	TCPHeader  = 20
)

// ErrAsleep is returned by a write on a link whose device sleeps.
var ErrAsleep = errors.New("linkemu: the device is asleep")

// Counters are one direction's traffic on the air.
type Counters struct {
	// Bytes on the air: payload and IPv4 and UDP or TCP headers, of every
	// packet sent, lost ones and TCP retransmissions included.
	Bytes int64
	// Packets sent on the air, lost ones and retransmissions included.
	Packets int64
	// Lost is how many of those were lost: datagrams dropped, TCP segments
	// that had to be sent again.
	Lost int64
	// Oversize counts datagrams dropped before the air for exceeding the
	// MTU; they are not in Bytes or Packets.
	Oversize int64
	// Asleep counts downlink datagrams dropped because the device slept
	// when they arrived; they are not in Bytes or Packets.
	Asleep int64
}

// Stats are a link's counters.
type Stats struct {
	Up, Down Counters
}

// Link is one device's network link. Its methods are safe for concurrent
// use.
type Link struct {
	p     netprofile.Profile
	mtu   int
	rto   time.Duration // first retransmission timeout of a lost segment
	sigma float64       // σ of the jitter's log-normal distribution

	mu     sync.Mutex
	asleep bool
	up     air
	down   air
	stats  Stats
	conns  []*conn
}

// air is one direction of the link.
type air struct {
	bps    int64      // 0: no pacing
	window int        // bytes in flight a connection may have
	free   time.Time  // when the air is free of the packets sent so far
	bad    bool       // Gilbert-Elliott state
	loss   *rand.Rand // draws of the loss model, two per packet
	jitter *rand.Rand // draws of the jitter, one per packet
	c      *Counters
}

// The retransmission timeout's floor (Linux's TCP_RTO_MIN) and the
// retransmissions after which a segment is delivered anyway.
const (
	minRTO         = 200 * time.Millisecond
	maxRetransmits = 6
)

// New returns the link of one device with profile p, its random draws
// seeded by seed. It does not validate p (call p.Validate on a profile from
// a user): a rate of 0 means no pacing, an MTU below 68 is taken as 1500.
func New(p netprofile.Profile, seed int64) *Link {
	l := &Link{p: p, mtu: p.MTU}
	if l.mtu < 68 {
		l.mtu = 1500
	}
	lat := p.Latency
	l.rto = max(minRTO, 2*(lat.Base+lat.JitterMedian)+4*lat.JitterMedian)
	if lat.JitterMedian > 0 && lat.JitterMax > lat.JitterMedian {
		l.sigma = math.Log(float64(lat.JitterMax)/float64(lat.JitterMedian)) / 3.09
	}
	oneWay := lat.Base + max(lat.JitterMax, lat.JitterMedian)
	l.up = newAir(p.UplinkBPS, oneWay, seed, 0, &l.stats.Up)
	l.down = newAir(p.DownlinkBPS, oneWay, seed, 2, &l.stats.Down)
	return l
}

func newAir(bps int64, oneWay time.Duration, seed int64, stream uint64, c *Counters) air {
	a := air{bps: max(bps, 0), c: c, window: 4 << 20}
	if a.bps > 0 {
		bdp := float64(a.bps) / 8 * oneWay.Seconds()
		a.window = int(min(max(2*bdp, 64<<10), 4<<20))
	}
	a.loss = rand.New(rand.NewPCG(mix(seed, stream), mix(seed, stream+100)))
	a.jitter = rand.New(rand.NewPCG(mix(seed, stream+1), mix(seed, stream+101)))
	return a
}

// mix is SplitMix64's finalizer over seed and a stream number, so that the
// generators of one link, and of links whose seeds differ by one, start
// far apart.
func mix(seed int64, stream uint64) uint64 {
	z := uint64(seed) + (stream+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Profile returns the link's profile.
func (l *Link) Profile() netprofile.Profile { return l.p }

// Stats returns the link's counters so far.
func (l *Link) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Sleep puts the device to sleep: until Wake, its writes return ErrAsleep,
// datagrams for it are dropped, stream bytes for it are held. Downlink
// datagrams still in flight when it falls asleep are dropped too.
func (l *Link) Sleep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.asleep {
		return
	}
	l.asleep = true
	now := time.Now()
	for _, c := range l.conns {
		if !c.stream {
			c.down.q = slices.DeleteFunc(c.down.q, func(p packet) bool {
				if !p.due.After(now) {
					return false // it arrived before the device slept
				}
				c.down.bytes -= len(p.data)
				l.stats.Down.Asleep++
				l.stats.Down.Packets--
				l.stats.Down.Bytes -= int64(len(p.data) + c.header)
				return true
			})
			c.down.last = time.Time{}
			if n := len(c.down.q); n > 0 {
				c.down.last = c.down.q[n-1].due
			}
			c.down.wake()
		}
		c.up.wake() // writers waiting for room now fail
	}
}

// Wake wakes the device: it sends and receives again, and the stream bytes
// held while it slept are delivered.
func (l *Link) Wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.asleep {
		return
	}
	l.asleep = false
	for _, c := range l.conns {
		c.down.wake()
	}
}

// Asleep reports whether the device sleeps.
func (l *Link) Asleep() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.asleep
}

// The methods below are called with l.mu held.

// count puts one packet of size bytes (headers included) on the air
// without pacing it and reports whether it is lost.
func (a *air) count(p netprofile.Loss, size int) (lost bool) {
	a.c.Packets++
	a.c.Bytes += int64(size)
	prob, stay := p.Good, 1-p.GoodToBad
	if a.bad {
		prob, stay = p.Bad, 1-p.BadToGood
	}
	lost = a.loss.Float64() < prob
	if a.loss.Float64() >= stay {
		a.bad = !a.bad
	}
	if lost {
		a.c.Lost++
	}
	return lost
}

// send puts a packet of size bytes on the air at now, after the packets
// before it, and returns when its last bit left and whether it is lost.
func (l *Link) send(a *air, now time.Time, size int) (sent time.Time, lost bool) {
	start := now
	if a.free.After(start) {
		start = a.free
	}
	if a.bps > 0 {
		start = start.Add(time.Duration(int64(size) * 8 * int64(time.Second) / a.bps))
	}
	a.free = start
	return start, a.count(l.p.Loss, size)
}

// delay draws one one-way latency.
func (l *Link) delay(a *air) time.Duration {
	lat := l.p.Latency
	d := lat.Base
	if lat.JitterMedian > 0 {
		j := float64(lat.JitterMedian) * math.Exp(l.sigma*a.jitter.NormFloat64())
		if top := max(lat.JitterMax, lat.JitterMedian); j >= float64(top) {
			d += top
		} else {
			d += time.Duration(j)
		}
	}
	return d
}

// datagram sends one datagram of size bytes on the air at now and returns
// when it arrives, or that it is lost.
func (l *Link) datagram(a *air, now time.Time, size int) (due time.Time, lost bool) {
	sent, lost := l.send(a, now, size)
	return sent.Add(l.delay(a)), lost
}

// segment sends one TCP segment of size bytes on the air at now and
// returns when it arrives, retransmissions included.
func (l *Link) segment(a *air, now time.Time, size int) time.Time {
	sent, lost := l.send(a, now, size)
	rto := l.rto
	for i := 0; lost && i < maxRetransmits; i++ {
		sent = sent.Add(rto)
		rto *= 2
		lost = a.count(l.p.Loss, size)
	}
	return sent.Add(l.delay(a))
}

package linkemu

import (
	"bytes"
	"errors"
	"net"
	"os"
	"time"
)

// PacketConn wraps c, the device's UDP socket (CoAP, or DTLS: pion's
// dtls.Client takes the result), in the link. The returned socket owns c:
// it reads c from a goroutine of its own and closes it on Close. c's
// deadlines are left alone; the returned socket's apply to its own reads
// and writes.
//
// WriteTo queues the datagram on the uplink and returns; it blocks only
// while the uplink's window is full, and fails with ErrAsleep while the
// device sleeps. A datagram lost or too large for the MTU is dropped
// without an error, as a network drops it. ReadFrom returns the datagrams
// that have arrived, one per call. An error reading c (other than a
// datagram too large) ends the downlink: ReadFrom returns it once the
// datagrams that arrived before it are read.
func (l *Link) PacketConn(c net.PacketConn) net.PacketConn {
	pc := &packetConn{conn: newConn(l, false), c: c}
	pc.send = func(p packet) error {
		_, err := c.WriteTo(p.data, p.addr)
		return err
	}
	pc.close = c.Close
	pc.start(pc.readLoop)
	return pc
}

type packetConn struct {
	*conn
	c net.PacketConn
}

// readLoop reads the datagrams the hub sends as they come and queues those
// that are not lost on the downlink.
func (pc *packetConn) readLoop() {
	l := pc.l
	buf := make([]byte, pc.mss+1) // one byte more shows a datagram too large
	for {
		l.mu.Lock()
		ok := pc.roomDown()
		l.mu.Unlock()
		if !ok {
			return
		}
		n, addr, err := pc.c.ReadFrom(buf)
		now := time.Now()
		l.mu.Lock()
		switch {
		case err != nil:
			pc.down.err = err
			pc.down.wake()
		case n > pc.mss:
			l.stats.Down.Oversize++
		case l.asleep:
			l.stats.Down.Asleep++
		default:
			if due, lost := l.datagram(&l.down, now, n+pc.header); !lost {
				pc.down.push(packet{due: due, data: bytes.Clone(buf[:n]), addr: addr})
			}
		}
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// ReadFrom returns the next datagram that has arrived, waiting for one. A
// datagram longer than b is cut to it, as a UDP socket cuts it. Once
// reading the real socket failed and every datagram is read, it returns
// that error.
func (pc *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	l := pc.l
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if pc.closed {
			return 0, nil, net.ErrClosed
		}
		if expired(pc.rdl) {
			return 0, nil, os.ErrDeadlineExceeded
		}
		until := pc.rdl
		if len(pc.down.q) > 0 {
			due := pc.down.q[0].due
			if !due.After(time.Now()) {
				p := pc.down.pop()
				return copy(b, p.data), p.addr, nil
			}
			if until.IsZero() || due.Before(until) {
				until = due
			}
		} else if pc.down.err != nil {
			return 0, nil, pc.down.err
		}
		pc.wait(&pc.down, until)
	}
}

// WriteTo queues the datagram b to addr on the uplink. A datagram longer
// than MTU−28 bytes, or lost, is dropped and counted, and WriteTo reports
// it sent. It fails with ErrAsleep while the device sleeps, net.ErrClosed,
// a deadline, or the error the real socket's last write failed with
// (reported once, as a socket reports an asynchronous error).
func (pc *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	pc.wmu.Lock()
	defer pc.wmu.Unlock()
	l := pc.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(b) > pc.mss {
		if err := pc.writable(); err != nil {
			return 0, pc.takeErr(err)
		}
		l.stats.Up.Oversize++
		return len(b), nil
	}
	if _, err := pc.roomUp(); err != nil {
		return 0, pc.takeErr(err)
	}
	due, lost := l.datagram(&l.up, time.Now(), len(b)+pc.header)
	if !lost {
		pc.up.push(packet{due: due, data: bytes.Clone(b), addr: addr})
		pc.flushLater()
	}
	return len(b), nil
}

// takeErr returns err, clearing it if it is the real socket's write error
// other than its closing: one datagram's failure is reported once.
func (pc *packetConn) takeErr(err error) error {
	if err == pc.up.err && !errors.Is(err, net.ErrClosed) {
		pc.up.err = nil
	}
	return err
}

// LocalAddr returns the real socket's local address.
func (pc *packetConn) LocalAddr() net.Addr { return pc.c.LocalAddr() }

package linkemu

import (
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// conn is what a wrapped stream and a wrapped datagram socket share: the
// two directions' queues of packets in flight, the deadlines, the
// goroutines and Close.
//
// Ownership: every field under "guarded by l.mu" is read and written with
// the link's mutex held, so that Sleep and Wake see all the link's
// connections in one state. The reader goroutine (down) runs from wrap to
// Close; the flusher (up) runs while up holds packets and is started by the
// write that finds it not running. Close waits for both.
type conn struct {
	l      *Link
	stream bool // a TCP stream: segments, retransmission, held while asleep
	header int  // IPv4 plus TCP or UDP header bytes per packet
	mss    int  // the largest payload of one packet

	send  func(p packet) error // writes an uplink packet to the real connection
	close func() error         // closes the real connection
	kill  chan struct{}        // closed by Close: the flusher stops waiting
	wmu   sync.Mutex           // one Write at a time, so that writes do not interleave
	wg    sync.WaitGroup

	// guarded by l.mu
	up, down pipe
	closed   bool
	flushing bool // the flusher runs
	rdl, wdl time.Time
}

// packet is a packet in flight, or a stream segment's unread rest.
type packet struct {
	due  time.Time // when it arrives
	data []byte
	addr net.Addr // the peer (datagrams)
}

// pipe is one direction of one connection: its packets in flight in the
// order they arrive.
type pipe struct {
	q      []packet
	bytes  int       // payload bytes in q
	last   time.Time // due of the last packet pushed
	notify chan struct{}
	err    error // reading the real connection failed (down), writing it (up)
}

// push appends p, arriving no earlier than the packet before it.
func (p *pipe) push(pk packet) {
	if pk.due.Before(p.last) {
		pk.due = p.last
	}
	p.last = pk.due
	p.q = append(p.q, pk)
	p.bytes += len(pk.data)
	p.wake()
}

// pop removes the first packet.
func (p *pipe) pop() packet {
	pk := p.q[0]
	p.q[0] = packet{}
	p.q = p.q[1:]
	if len(p.q) == 0 {
		p.q = nil // let the array go while idle
	}
	p.bytes -= len(pk.data)
	p.wake()
	return pk
}

// wake wakes everyone waiting on p.
func (p *pipe) wake() {
	if p.notify != nil {
		close(p.notify)
		p.notify = nil
	}
}

func newConn(l *Link, stream bool) *conn {
	c := &conn{l: l, stream: stream, kill: make(chan struct{})}
	if stream {
		c.header = IPv4Header + TCPHeader
	} else {
		c.header = IPv4Header + UDPHeader
	}
	c.mss = l.mtu - c.header
	return c
}

// start registers c with its link and starts its reader.
func (c *conn) start(read func()) {
	c.l.mu.Lock()
	c.l.conns = append(c.l.conns, c)
	c.l.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		read()
	}()
}

// wait releases l.mu until p changes or until (if not zero) passes.
func (c *conn) wait(p *pipe, until time.Time) {
	if p.notify == nil {
		p.notify = make(chan struct{})
	}
	ch := p.notify
	c.l.mu.Unlock()
	defer c.l.mu.Lock()
	if until.IsZero() {
		<-ch
		return
	}
	d := time.Until(until)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// writable reports why the connection cannot write now, if it cannot.
func (c *conn) writable() error {
	switch {
	case c.closed:
		return net.ErrClosed
	case c.up.err != nil:
		return c.up.err
	case c.l.asleep:
		return ErrAsleep
	case expired(c.wdl):
		return os.ErrDeadlineExceeded
	}
	return nil
}

// roomUp waits until the uplink has room and the connection may write,
// and returns the room, or why it cannot write.
func (c *conn) roomUp() (int, error) {
	for {
		if err := c.writable(); err != nil {
			return 0, err
		}
		if room := c.l.up.window - c.up.bytes; room > 0 {
			return room, nil
		}
		c.wait(&c.up, c.wdl)
	}
}

// roomDown waits until the downlink has room, and reports false once the
// connection is closed.
func (c *conn) roomDown() bool {
	for !c.closed && c.down.bytes >= c.l.down.window {
		c.wait(&c.down, time.Time{})
	}
	return !c.closed
}

func expired(deadline time.Time) bool {
	return !deadline.IsZero() && !time.Now().Before(deadline)
}

// flushLater starts the flusher unless it runs.
func (c *conn) flushLater() {
	if !c.flushing {
		c.flushing = true
		c.wg.Add(1)
		go c.flush()
	}
}

// flush writes the uplink's packets to the real connection as they become
// due, and returns when there are none left.
func (c *conn) flush() {
	defer c.wg.Done()
	l := c.l
	var t *time.Timer
	l.mu.Lock()
	for len(c.up.q) > 0 {
		if d := time.Until(c.up.q[0].due); d > 0 {
			l.mu.Unlock()
			if t == nil {
				t = time.NewTimer(d)
			} else {
				t.Reset(d)
			}
			select {
			case <-t.C:
			case <-c.kill:
				l.mu.Lock()
				c.up.q, c.up.bytes = nil, 0
				continue
			}
			l.mu.Lock()
			continue
		}
		pk := c.up.pop()
		l.mu.Unlock()
		err := c.send(pk)
		l.mu.Lock()
		if err != nil {
			c.up.err = err
			if c.stream {
				// The stream is broken: what follows cannot arrive.
				c.up.q, c.up.bytes = nil, 0
			}
		}
	}
	c.flushing = false
	c.up.wake()
	l.mu.Unlock()
	if t != nil {
		t.Stop()
	}
}

// How long Close waits beyond the last uplink packet's arrival for the
// real connection to take it (a peer that does not read), and at most in
// all: a sleeping device's packets would otherwise hold Close until its
// next wake, minutes away (a fleet's shutdown waited for them).
const (
	drainGrace = time.Second
	drainMax   = 5 * time.Second
)

// Close lets the packets the device sent arrive, closes the real
// connection and waits for the connection's goroutines. Reads and writes
// waiting meanwhile return net.ErrClosed.
func (c *conn) Close() error {
	l := c.l
	l.mu.Lock()
	if c.closed {
		l.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	c.up.wake()
	c.down.wake()
	limit := c.up.last.Add(drainGrace)
	if most := time.Now().Add(drainMax); limit.After(most) {
		limit = most
	}
	for c.flushing && time.Now().Before(limit) {
		c.wait(&c.up, limit)
	}
	l.mu.Unlock()

	close(c.kill)
	err := c.close()
	c.wg.Wait()

	l.mu.Lock()
	l.conns = slices.DeleteFunc(l.conns, func(x *conn) bool { return x == c })
	c.up, c.down = pipe{}, pipe{}
	l.mu.Unlock()
	return err
}

// SetDeadline sets both deadlines, as net.Conn's does.
func (c *conn) SetDeadline(t time.Time) error {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	c.rdl, c.wdl = t, t
	c.down.wake()
	c.up.wake()
	return nil
}

// SetReadDeadline sets the deadline of reads, waiting ones included.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	c.rdl = t
	c.down.wake()
	return nil
}

// SetWriteDeadline sets the deadline of writes, which wait only for room
// in the uplink's window.
func (c *conn) SetWriteDeadline(t time.Time) error {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	c.wdl = t
	c.up.wake()
	return nil
}

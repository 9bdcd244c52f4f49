package linkemu

import (
	"bytes"
	"net"
	"os"
	"time"
)

// Conn wraps c, the device's end of a stream connection to the hub (TCP,
// with TLS above the returned net.Conn), in the link. The returned
// connection owns c: it reads c from a goroutine of its own and closes it
// on Close. c's deadlines are left alone; the returned connection's apply
// to its own reads and writes.
//
// Write queues the bytes as segments on the uplink and returns; it blocks
// only while the uplink's window is full, and fails with ErrAsleep while
// the device sleeps. Read returns the bytes that have arrived.
func (l *Link) Conn(c net.Conn) net.Conn {
	s := &streamConn{conn: newConn(l, true), c: c}
	s.send = func(p packet) error {
		_, err := c.Write(p.data)
		return err
	}
	s.close = c.Close
	s.start(s.readLoop)
	return s
}

type streamConn struct {
	*conn
	c net.Conn
}

// readLoop reads the hub's bytes as they come, one segment per read, and
// queues them on the downlink.
func (s *streamConn) readLoop() {
	l := s.l
	buf := make([]byte, s.mss)
	for {
		l.mu.Lock()
		ok := s.roomDown()
		l.mu.Unlock()
		if !ok {
			return
		}
		n, err := s.c.Read(buf)
		now := time.Now()
		l.mu.Lock()
		if n > 0 {
			due := l.segment(&l.down, now, n+s.header)
			s.down.push(packet{due: due, data: bytes.Clone(buf[:n])})
		}
		if err != nil {
			s.down.err = err
			s.down.wake()
		}
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Read returns the bytes that have arrived, waiting for some: none arrive
// while the device sleeps. Once the hub's end is closed and every byte
// read, it returns the real connection's error (io.EOF).
func (s *streamConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if s.closed {
			return 0, net.ErrClosed
		}
		if expired(s.rdl) {
			return 0, os.ErrDeadlineExceeded
		}
		var until time.Time
		if len(s.down.q) > 0 {
			if !l.asleep {
				now := time.Now()
				if due := s.down.q[0].due; due.After(now) {
					until = due
				} else {
					return s.take(b, now), nil
				}
			}
		} else if s.down.err != nil {
			return 0, s.down.err
		}
		if until.IsZero() || (!s.rdl.IsZero() && s.rdl.Before(until)) {
			until = s.rdl
		}
		s.wait(&s.down, until)
	}
}

// take copies into b the bytes of the segments that have arrived by now.
func (s *streamConn) take(b []byte, now time.Time) int {
	n := 0
	for n < len(b) && len(s.down.q) > 0 && !s.down.q[0].due.After(now) {
		head := &s.down.q[0]
		m := copy(b[n:], head.data)
		n += m
		if m < len(head.data) {
			head.data = head.data[m:]
			s.down.bytes -= m
			s.down.wake()
			break
		}
		s.down.pop()
	}
	return n
}

// Write queues b on the uplink in segments of at most MTU−40 bytes. It
// returns once all of b is queued, or with how much was and why not:
// ErrAsleep, net.ErrClosed, a deadline, or the error writing the real
// connection failed with.
func (s *streamConn) Write(b []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(b) == 0 {
		return 0, s.writable()
	}
	n := 0
	for n < len(b) {
		room, err := s.roomUp()
		if err != nil {
			return n, err
		}
		data := bytes.Clone(b[n:min(len(b), n+room)])
		n += len(data)
		now := time.Now()
		for len(data) > 0 {
			m := min(len(data), s.mss)
			due := l.segment(&l.up, now, m+s.header)
			s.up.push(packet{due: due, data: data[:m:m]})
			data = data[m:]
		}
		s.flushLater()
	}
	return n, nil
}

// LocalAddr returns the real connection's local address.
func (s *streamConn) LocalAddr() net.Addr { return s.c.LocalAddr() }

// RemoteAddr returns the real connection's remote address.
func (s *streamConn) RemoteAddr() net.Addr { return s.c.RemoteAddr() }

package netuse

import (
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"syscall"
)

// Meter counts the bytes of one connection (MQTT over TCP or TLS), one DTLS
// session or one plain-UDP endpoint as its adapter reads and writes them.
// Counting is an atomic add; the Accountant takes the counts (Attribute)
// and drains them when it flushes. The zero Meter is ready to use.
type Meter struct {
	up, down atomic.Int64
}

// Up counts n bytes the hub read from the device.
func (m *Meter) Up(n int) { m.up.Add(int64(n)) }

// Down counts n bytes the hub wrote to the device.
func (m *Meter) Down(n int) { m.down.Add(int64(n)) }

// take returns what was counted since the last take and starts again at 0.
func (m *Meter) take() (up, down int64) { return m.up.Swap(0), m.down.Swap(0) }

// Listener wraps l so that every connection it accepts counts its bytes in
// a Meter of its own (MeterOf finds it, under TLS too): put it under
// tls.NewListener to count TLS records, handshakes included, as they are
// on the wire.
func Listener(l net.Listener) net.Listener { return meteredListener{l} }

type meteredListener struct{ net.Listener }

func (l meteredListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &meteredConn{Conn: c, m: new(Meter)}, nil
}

// meteredConn counts what passes through Read and Write. It passes on the
// socket (SyscallConn), which the MQTT broker waits on while a connection
// is idle, and CloseWrite, which it closes with.
type meteredConn struct {
	net.Conn
	m *Meter
}

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.m.Up(n)
	}
	return n, err
}

func (c *meteredConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.m.Down(n)
	}
	return n, err
}

// SyscallConn is the socket's, when the connection has one.
func (c *meteredConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errNoSocket
}

// CloseWrite shuts the write side, when the connection can.
func (c *meteredConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errNoSocket
}

// ReadFrom and WriteTo keep io.Copy on Read and Write, which count (the
// embedded connection's would bypass them).
func (c *meteredConn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{c}, r)
}

func (c *meteredConn) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, struct{ io.Reader }{c})
}

var errNoSocket = &net.OpError{Op: "syscall", Err: syscall.EINVAL}

// MeterOf returns the Meter of a connection Listener accepted (directly or
// under TLS), nil for any other.
func MeterOf(c net.Conn) *Meter {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if mc, ok := c.(*meteredConn); ok {
		return mc.m
	}
	return nil
}

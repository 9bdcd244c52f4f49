package loadgen

import (
	"bufio"
	"net"
	"sync"
)

// bufConn adapts a connection to how paho.golang reads and writes it.
//
// paho.golang reads every packet with several small reads straight from the
// connection (type byte, length, body) and writes every packet as a
// net.Buffers of three or four slices, which a wrapped connection turns into
// as many write calls. Unbuffered, the generator spends most of its CPU in
// system calls and its subscriber falls behind the broker. bufConn reads
// through a bufio.Reader, and collects the writes made between Lock and
// Unlock — paho.golang locks a connection that implements sync.Locker around
// each packet — into one write, so that one packet is one system call.
type bufConn struct {
	net.Conn
	r *bufio.Reader

	mu       sync.Mutex
	batching bool   // inside Lock/Unlock
	pending  []byte // writes collected since Lock
	err      error  // first write error, reported by later writes
}

func newBufConn(c net.Conn) *bufConn {
	return &bufConn{Conn: c, r: bufio.NewReaderSize(c, 16<<10)}
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Lock starts collecting one packet's writes.
func (c *bufConn) Lock() {
	c.mu.Lock()
	c.batching = true
	c.pending = c.pending[:0]
}

// Unlock writes the collected packet.
func (c *bufConn) Unlock() {
	if len(c.pending) > 0 && c.err == nil {
		_, c.err = c.Conn.Write(c.pending)
	}
	if cap(c.pending) > 64<<10 {
		c.pending = nil // do not keep a large payload's buffer per connection
	}
	c.batching = false
	c.mu.Unlock()
}

// Write collects p while locked; otherwise it writes through.
func (c *bufConn) Write(p []byte) (int, error) {
	if !c.batching {
		return c.Conn.Write(p)
	}
	if c.err != nil {
		return 0, c.err
	}
	c.pending = append(c.pending, p...)
	return len(p), nil
}

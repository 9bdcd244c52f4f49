package device

import (
	"net"
	"sync"
)

// packetConn is the connection paho writes MQTT packets to. paho takes the
// connection's lock (sync.Locker) around each packet and writes the
// packet's parts one by one, fixed header, variable header and payload;
// Go's TCP sockets send each write at once (TCP_NODELAY) and TLS makes each
// a record of its own. packetConn gathers the parts written under the lock
// and sends them with one write when paho unlocks: one TLS record and
// one TCP segment per packet instead of three or four, about 180 bytes less
// on the air per PUBLISH (bench/RESULTS.md, air bytes).
//
// Every write must be made under the lock, as paho's are. A failed flush
// closes the connection (paho then sees its reads fail and the session
// ends) and is returned by the next write.
type packetConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
	err error
}

// Lock starts a packet.
func (c *packetConn) Lock() { c.mu.Lock() }

// Unlock sends the packet written since Lock.
func (c *packetConn) Unlock() {
	if len(c.buf) > 0 && c.err == nil {
		if _, err := c.Conn.Write(c.buf); err != nil {
			c.err = err
			_ = c.Conn.Close()
		}
	}
	if cap(c.buf) > 64<<10 {
		c.buf = nil // a large packet's buffer is not kept
	} else {
		c.buf = c.buf[:0]
	}
	c.mu.Unlock()
}

// Write adds p to the packet; the caller holds the lock.
func (c *packetConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

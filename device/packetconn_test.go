package device

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// writes counts the writes that reach a connection.
type writes struct {
	net.Conn
	n      int
	buf    bytes.Buffer
	fail   error
	closed bool
}

func (w *writes) Write(p []byte) (int, error) {
	if w.fail != nil {
		return 0, w.fail
	}
	w.n++
	return w.buf.Write(p)
}

func (w *writes) Close() error { w.closed = true; return nil }

// TestPacketConn: the parts of a packet written under the lock leave in one
// write, in order; a failed write closes the connection and fails the next.
func TestPacketConn(t *testing.T) {
	w := &writes{}
	c := &packetConn{Conn: w}
	for i, parts := range [][]string{{"\x30\x0b", "\x00\x03a/b", "hello"}, {"\x40\x02", "\x00\x01"}} {
		c.Lock()
		for _, p := range parts {
			if _, err := c.Write([]byte(p)); err != nil {
				t.Fatal(err)
			}
		}
		c.Unlock()
		if w.n != i+1 {
			t.Fatalf("packet %d: %d writes, want %d", i, w.n, i+1)
		}
	}
	if want := "\x30\x0b\x00\x03a/bhello\x40\x02\x00\x01"; w.buf.String() != want {
		t.Errorf("sent %q, want %q", w.buf.String(), want)
	}
	w.fail = errors.New("broken pipe")
	c.Lock()
	c.Write([]byte("x"))
	c.Unlock()
	if !w.closed {
		t.Error("a failed write left the connection open")
	}
	c.Lock()
	_, err := c.Write([]byte("y"))
	c.Unlock()
	if err == nil {
		t.Error("a write after a failed one succeeded")
	}
}

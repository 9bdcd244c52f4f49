package linkemu

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestRelay: a relay carries bytes both ways and counts them; cut, it
// closes what it carries and refuses new connections; restored, it
// carries again.
func TestRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }() // echo
		}
	}()
	r, err := NewRelay(func() string { return ln.Addr().String() })
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	echo := func() error {
		c, err := net.DialTimeout("tcp", r.Addr(), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("hello")); err != nil {
			return err
		}
		buf := make([]byte, 5)
		_, err = io.ReadFull(c, buf)
		return err
	}
	if err := echo(); err != nil {
		t.Fatalf("through the relay: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for up, down := r.Bytes(); up != 5 || down != 5; up, down = r.Bytes() {
		if time.Now().After(deadline) {
			t.Fatalf("bytes %d up, %d down, want 5 and 5", up, down)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	r.Cut()
	if !r.IsCut() {
		t.Fatal("IsCut false after Cut")
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("a carried connection was not closed by the cut: %v", err)
	}
	if err := echo(); err == nil {
		t.Fatal("a new connection got through a cut relay")
	}
	r.Restore()
	if err := echo(); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}

package netuse

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"syscall"
	"testing"
	"time"
)

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestListener: a metered connection counts every byte read and written,
// the TLS records and handshake under TLS too, and passes on its socket.
func TestListener(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "tcp"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := Listener(raw)
			var cfg *tls.Config
			if useTLS {
				cfg = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
				ln = tls.NewListener(ln, cfg)
			}
			defer ln.Close()
			// The client counts what it sends and receives on the wire.
			var wire struct{ sent, got int64 }
			read, closing := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(read)
				c, err := net.Dial("tcp", raw.Addr().String())
				if err != nil {
					t.Error(err)
					return
				}
				cc := net.Conn(&countingConn{Conn: c, sent: &wire.sent, got: &wire.got})
				if useTLS {
					cc = tls.Client(cc, &tls.Config{InsecureSkipVerify: true})
				}
				defer func() {
					<-closing // after the server took its counts
					cc.Close()
				}()
				if _, err := cc.Write([]byte("hello, hub")); err != nil {
					t.Error(err)
					return
				}
				buf := make([]byte, 5)
				if _, err := io.ReadFull(cc, buf); err != nil {
					t.Error(err)
				}
				read <- struct{}{}
			}()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			m := MeterOf(c)
			if m == nil {
				t.Fatal("no meter on an accepted connection")
			}
			buf := make([]byte, 10)
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			<-read
			up, down := m.take()
			sent, got := wire.sent, wire.got
			close(closing)
			defer c.Close()
			if useTLS {
				if up != sent || down != got || up <= 10 {
					t.Errorf("counted up %d down %d, the wire carried %d and %d", up, down, sent, got)
				}
			} else if up != 10 || down != 5 {
				t.Errorf("counted up %d down %d, want 10 and 5", up, down)
			}
			if _, ok := MeterOf(c).take(); ok != 0 {
				t.Error("take does not start again at 0")
			}
			if !useTLS {
				if _, ok := c.(syscall.Conn); !ok {
					t.Error("the socket is not passed on")
				}
			}
		})
	}
	if MeterOf(&net.TCPConn{}) != nil {
		t.Error("a meter on a connection Listener did not accept")
	}
}

type countingConn struct {
	net.Conn
	sent, got *int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	*c.got += int64(n)
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	*c.sent += int64(n)
	return n, err
}

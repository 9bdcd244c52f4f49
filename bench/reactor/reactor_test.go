//go:build linux

package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
)

func startReactor(t *testing.T) *Reactor {
	t.Helper()
	r, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Serve() }()
	t.Cleanup(func() {
		r.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return r
}

// TestClients: MQTT 5 and 3.1.1 clients connect, publish at QoS 1 and get
// their PUBACK, and disconnect.
func TestClients(t *testing.T) {
	r := startReactor(t)
	conn, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := paho.NewClient(paho.ClientConfig{ClientID: "v5", Conn: conn})
	if ack, err := c.Connect(ctx, &paho.Connect{ClientID: "v5", KeepAlive: 30, CleanStart: true}); err != nil || ack.ReasonCode != 0 {
		t.Fatalf("MQTT 5 connect: %v %+v", err, ack)
	}
	for i := range 3 {
		if _, err := c.Publish(ctx, &paho.Publish{Topic: "a/b", QoS: 1, Payload: []byte{byte(i)}}); err != nil {
			t.Fatalf("MQTT 5 publish %d: %v", i, err)
		}
	}
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}

	c3 := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + r.Addr().String()).SetClientID("v311").
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false))
	if tok := c3.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT 3.1.1 connect: %v", tok.Error())
	}
	if tok := c3.Publish("a/b", 1, false, "x"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT 3.1.1 publish: %v", tok.Error())
	}
	c3.Disconnect(100)
	if got := r.published.Load(); got != 4 {
		t.Errorf("published %d, want 4", got)
	}
}

// TestBadInputClosesOnlyThatConnection: a connection that breaks the
// protocol is closed; another one goes on.
func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	r := startReactor(t)
	good := rawConnect(t, r, 0)
	for _, bad := range [][]byte{
		{0x30, 0x00},                   // PUBLISH before CONNECT [MQTT-3.1.0-1]
		{0x10, 0xFF, 0xFF, 0xFF, 0xFF}, // Remaining Length of five bytes
		{0x10, 0x02, 0x00, 0x04},       // a CONNECT too short to be one
	} {
		c, err := net.Dial("tcp", r.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(bad)
		expectClosed(t, c, 5*time.Second)
	}
	// A second CONNECT [MQTT-3.1.0-2].
	twice := rawConnect(t, r, 0)
	twice.Write(connectPacket(0))
	expectClosed(t, twice, 5*time.Second)

	good.Write([]byte{0xC0, 0x00}) // PINGREQ
	if b := readN(t, good, 2); b[0] != 0xD0 || b[1] != 0 {
		t.Fatalf("PINGRESP % x", b)
	}
	if got := r.refused.Load(); got != 4 {
		t.Errorf("refused %d, want 4", got)
	}
}

// TestSilentClientIsClosed: a client quiet for one and a half times its
// keep-alive is closed [MQTT-3.1.2-24].
func TestSilentClientIsClosed(t *testing.T) {
	r := startReactor(t)
	c := rawConnect(t, r, 1)
	expectClosed(t, c, 5*time.Second)
}

// connectPacket is an MQTT 3.1.1 CONNECT with the given keep-alive.
func connectPacket(keepAlive uint16) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, byte(keepAlive >> 8), byte(keepAlive), 0, 1, 'x'}
	return append([]byte{0x10, byte(len(body))}, body...)
}

// rawConnect connects, sending the CONNECT in two pieces, and reads the CONNACK.
func rawConnect(t *testing.T, r *Reactor, keepAlive uint16) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := connectPacket(keepAlive)
	c.Write(p[:5])
	time.Sleep(20 * time.Millisecond) // the reactor reads the first piece alone
	c.Write(p[5:])
	if b := readN(t, c, 4); b[0] != 0x20 || b[3] != 0 {
		t.Fatalf("CONNACK % x", b)
	}
	return c
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got := 0; got < n; {
		m, err := c.Read(b[got:])
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		got += m
	}
	return b
}

func expectClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	var b [16]byte
	if n, err := c.Read(b[:]); err == nil {
		t.Fatalf("connection still open; read % x", b[:n])
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", within)
	}
}

// FuzzParse: the header and CONNECT/PUBLISH readers take any bytes without
// panicking, and what they accept is consistent.
func FuzzParse(f *testing.F) {
	f.Add(connectPacket(30))
	f.Add([]byte{0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01})
	f.Add([]byte{0x10, 0xFF, 0xFF, 0xFF, 0x7F})
	f.Add([]byte{0xC0, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		length, hdr, ok := remainingLength(b)
		if ok && hdr != 0 && (hdr < 2 || hdr > 5 || length < 0 || length > 268435455) {
			t.Fatalf("remainingLength(% x) = %d, %d", b, length, hdr)
		}
		if v, _, ok := parseConnect(b); ok && v != 4 && v != 5 {
			t.Fatalf("parseConnect accepted level %d", v)
		}
		publishID(b)
	})
}

package hubtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// recordingConn keeps every byte the client reads and writes.
type recordingConn struct {
	net.Conn
	// packet is held by paho.golang around each packet it writes (as
	// several writes, a net.Buffers) when the connection is a sync.Locker:
	// without it two goroutines publishing at once interleave their
	// packets' pieces, and the broker closes the connection on the mix.
	packet       sync.Mutex
	mu           sync.Mutex
	read, writes bytes.Buffer
}

// Lock and Unlock make recordingConn a sync.Locker for paho.golang.
func (c *recordingConn) Lock()   { c.packet.Lock() }
func (c *recordingConn) Unlock() { c.packet.Unlock() }

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// Write records and writes under one lock, so that the record has the
// bytes in the order they went out even when two goroutines write.
func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.Conn.Write(p)
	c.writes.Write(p[:n])
	return n, err
}

// recordingPump starts a hub, registers a pump under code and connects it
// through a recordingConn.
func recordingPump(t *testing.T, code string) (*paho.Client, *recordingConn, *device) {
	t.Helper()
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, code, "--model", "acme:pump@1.0.0")
	c, conn := connectRecording(t, h, d)
	return c, conn, d
}

// connectRecording connects device d over plain MQTT 5 with its token,
// through a recordingConn; the client disconnects when the test ends.
func connectRecording(t *testing.T, h *Hub, d *device) (*paho.Client, *recordingConn) {
	t.Helper()
	raw, err := net.Dial("tcp", h.MQTT().Addr(mqtt.ListenerTCP))
	if err != nil {
		t.Fatal(err)
	}
	conn := &recordingConn{Conn: raw}
	c := paho.NewClient(paho.ClientConfig{ClientID: d.Code, Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: d.Code, KeepAlive: 30, CleanStart: true,
		Username: d.Code, UsernameFlag: true, Password: []byte(d.token(t)), PasswordFlag: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, conn
}

// pubacks splits what the client read into MQTT packets and returns the
// bodies (variable header and payload) of the PUBACKs.
func (c *recordingConn) pubacks(t *testing.T) [][]byte {
	t.Helper()
	c.mu.Lock()
	b := append([]byte(nil), c.read.Bytes()...)
	c.mu.Unlock()
	return packetsOf(t, b, 4)
}

// publishIDs returns the packet ids of the QoS 1/2 PUBLISHes the client
// wrote, in the order written.
func (c *recordingConn) publishIDs(t *testing.T) []uint16 {
	t.Helper()
	c.mu.Lock()
	b := append([]byte(nil), c.writes.Bytes()...)
	c.mu.Unlock()
	var ids []uint16
	for _, body := range packetsOf(t, b, 3) {
		n := int(body[0])<<8 | int(body[1]) // topic length
		ids = append(ids, uint16(body[2+n])<<8|uint16(body[3+n]))
	}
	return ids
}

// packetsOf splits a byte stream into MQTT packets and returns the bodies
// (variable header and payload) of the complete ones of type typ.
func packetsOf(t *testing.T, b []byte, typ byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		n, mul, i := 0, 1, 1
		for ; i < len(b); i++ {
			n += int(b[i]&0x7f) * mul
			mul *= 128
			if b[i]&0x80 == 0 {
				break
			}
		}
		if i >= len(b) || i+1+n > len(b) {
			// The tail of a packet still arriving (the hub also sends the
			// device its twin delta); everything asked about came before.
			break
		}
		if b[0]>>4 == typ {
			out = append(out, b[i+1:i+1+n])
		}
		b = b[i+1+n:]
	}
	return out
}

// TestPubackWireForm: a stored publish is acknowledged with the shortest
// PUBACK, its packet id alone [MQTT-3.4.2.1] (the broker queues it as four
// bytes, not as a packet), also when the publish carried user properties,
// which an acknowledgement does not repeat (mochi copied them, with reason
// 0x01, which paho-mqtt 1.6.1 rejects; TestMQTTAckProperties); an
// acknowledgement with something to say still says it: a refusal's reason
// code and string [MQTT-3.4.2-1].
func TestPubackWireForm(t *testing.T) {
	c, conn, d := recordingPump(t, "acme:pump-ack")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	publish := func(payload string, props *paho.PublishProperties) *paho.PublishResponse {
		t.Helper()
		r, err := c.Publish(ctx, &paho.Publish{Topic: d.topic("telemetry"), QoS: 1, Payload: []byte(payload), Properties: props})
		if r == nil {
			t.Fatalf("publish %s: %v", payload, err)
		}
		return r
	}
	publish(`{"temperature": 20.5}`, nil)
	publish(`{"temperature": 21.5}`, &paho.PublishProperties{User: paho.UserProperties{{Key: "trace", Value: "t-1"}}})
	if r := publish(`{"temperature": 500}`, nil); r.ReasonCode < 0x80 {
		t.Fatalf("an out-of-range value was acknowledged with 0x%02x", r.ReasonCode)
	}

	acks := conn.pubacks(t)
	if len(acks) != 3 {
		t.Fatalf("%d PUBACKs read, want 3: % x", len(acks), acks)
	}
	if len(acks[0]) != 2 {
		t.Errorf("a plain success PUBACK is % x, want its packet id alone", acks[0])
	}
	if len(acks[1]) != 2 {
		t.Errorf("the PUBACK of a publish with a user property is % x, want its packet id alone", acks[1])
	}
	if len(acks[2]) < 3 || acks[2][2] < 0x80 || !bytes.Contains(acks[2], []byte("temperature")) {
		t.Errorf("a refusal's PUBACK is % x, want a reason code and string", acks[2])
	}
}

// TestPubacksInPublishOrder: a twin report (stored in the metadata database,
// off the reading goroutine) and telemetry (the pipeline's group commit)
// complete in either order, yet the PUBACKs leave in the order the
// PUBLISHes came [MQTT-4.6.0-2].
func TestPubacksInPublishOrder(t *testing.T) {
	c, conn, d := recordingPump(t, "acme:pump-order")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const rounds = 30
	var wg sync.WaitGroup
	for i := range rounds {
		// Each pair is written back to back; the next pair waits for both
		// acknowledgements.
		publish := func(topic, payload string) {
			defer wg.Done()
			if r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil || r.ReasonCode != 0 {
				t.Errorf("publish to %s: %v %+v", topic, err, r)
			}
		}
		wg.Add(2)
		go publish(d.topic("twin/reported"), fmt.Sprintf(`{"speed":%d}`, 1000+i))
		time.Sleep(time.Millisecond / 10)
		go publish(d.topic("telemetry"), fmt.Sprintf(`{"temperature": %d}`, 20+i%10))
		wg.Wait()
	}
	sent := conn.publishIDs(t)
	var acked []uint16
	for _, body := range conn.pubacks(t) {
		acked = append(acked, uint16(body[0])<<8|uint16(body[1]))
	}
	if len(sent) != 2*rounds || fmt.Sprint(acked) != fmt.Sprint(sent) {
		t.Fatalf("PUBLISH ids in the order sent: %v\nPUBACK ids in the order received: %v", sent, acked)
	}
}

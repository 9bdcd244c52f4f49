package hubtest

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// TestMQTTReceiveMaximumExceeded: a client that sends more unacknowledged
// QoS 2 publishes than the Receive Maximum the CONNACK advertised gets
// DISCONNECT 0x93 [MQTT-3.3.4-9], not a bare close (Eclipse paho.mqtt.testing
// test_flow_control2).
func TestMQTTReceiveMaximumExceeded(t *testing.T) {
	h := Start(t, func(c *config.Hub) {
		c.MQTT.Limits.PublishPerDevice, c.MQTT.Limits.PublishPerDeviceBurst = 1e6, 1e6
	})
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	d := newTokenDevice(t, h, "acme:rm-1")
	conn, err := net.Dial("tcp", h.MQTT().Addr(mqtt.ListenerTCP))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	connect := mqttPacket(0x10, mqttString("MQTT"), []byte{5, 0xc2, 0, 30, 0}, mqttString(d.code), mqttString(d.code), mqttString(d.token))
	if _, err := conn.Write(connect); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, body := readPacket(t, r)
	if typ != 0x20 || body[1] != 0 {
		t.Fatalf("CONNACK %x %x", typ, body)
	}
	const receiveMaximum = 1024 // the hub's, in the CONNACK
	topic := mqttString("wanwu/v1/acme/rm-1/telemetry")
	var out bytes.Buffer
	for id := 1; id <= receiveMaximum+200; id++ { // more than the limit: the client keeps sending
		out.Write(mqttPacket(0x34, topic, []byte{byte(id >> 8), byte(id), 0}, []byte(`[{"n":"t","v":1}]`)))
	}
	go conn.Write(out.Bytes()) // never a PUBREL
	pubrecs := 0
	for {
		typ, body := readPacket(t, r)
		switch typ {
		case 0x50:
			pubrecs++
		case 0xe0:
			if len(body) == 0 || body[0] != 0x93 {
				t.Fatalf("DISCONNECT %x, want reason 0x93", body)
			}
			t.Logf("DISCONNECT 0x93 after %d PUBRECs", pubrecs)
			return
		default:
			t.Fatalf("unexpected packet type %#x", typ)
		}
	}
}

// readPacket reads one MQTT packet: its type byte and its body.
func readPacket(t *testing.T, r *bufio.Reader) (byte, []byte) {
	t.Helper()
	typ, err := r.ReadByte()
	if err != nil {
		t.Fatalf("reading a packet: %v (the connection ended without DISCONNECT)", err)
	}
	n, shift := 0, 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			t.Fatalf("reading a packet length: %v", err)
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("reading a packet body: %v", err)
	}
	return typ, body
}

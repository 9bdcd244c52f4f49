package hubtest

// MQTT under faults and attack (issue 14): what a device, an attacker or a
// broken client sees when it sends what it should not. Statements are
// numbered as in mqtt_conformance_test.go.

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// mcDialRawFrom is mcDialRaw from a chosen loopback source address, so a
// test can play two hosts (Linux routes all of 127/8 to the loopback).
func mcDialRawFrom(t *testing.T, addr, local string, v byte) *mcRaw {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: mcWait}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &mcRaw{t: t, conn: conn, r: bufio.NewReader(conn), v: v}
}

// expectDropped reads until the server closes the connection and fails if
// anything arrives first: MQTT 3.1.1 defines DISCONNECT only from client to
// server (§3.14), so a 3.1.1 connection the server ends is just closed.
func (c *mcRaw) expectDropped(within time.Duration) {
	c.t.Helper()
	pk, err := c.read(within)
	if err == nil {
		c.t.Fatalf("got %s (reason 0x%02x) where the connection should close without a packet", packets.PacketNames[pk.FixedHeader.Type], pk.ReasonCode)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open after %v", within)
	}
}

// expectDisconnect reads a DISCONNECT with the reason code, then the close.
func (c *mcRaw) expectDisconnect(code byte) {
	c.t.Helper()
	pk := c.expect(packets.Disconnect)
	if pk.ReasonCode != code {
		c.t.Fatalf("DISCONNECT 0x%02x (%q), want 0x%02x", pk.ReasonCode, pk.Properties.ReasonString, code)
	}
	c.expectDropped(mcWait)
}

// mcMetric is the value of one series on /metrics ("name{labels}" exactly
// as exposed, labels sorted), 0 when absent.
func mcMetric(t *testing.T, h *Hub, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(h.Do("GET", "/metrics", "", nil).Body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// mcMetricRises waits until a series has risen by n from before: the hub
// counts a connection's error when it has finished with the connection,
// just after the client sees it close.
func mcMetricRises(t *testing.T, h *Hub, series string, before, n float64) {
	t.Helper()
	eventually(t, series, func() error {
		if got := mcMetric(t, h, series) - before; got != n {
			return fmt.Errorf("%s rose by %v, want %v", series, got, n)
		}
		return nil
	})
}

// TestMQTTAckProperties: a PUBACK carries its own reason code and none of
// the PUBLISH's properties.
//
//	[MQTT-3.4.2-1] a PUBACK reason code is one of the PUBACK codes (0x01 is not)
//	§3.4.2.2 a PUBACK's User Properties are the sender's, not the publish's echoed
func TestMQTTAckProperties(t *testing.T) {
	h := mcHub(t)
	d := mcPump(t, h, "mc-ackprops")
	other := mcPump(t, h, "mc-ackprops-other")
	c := mcRawDevice(t, h, d, 5, packets.ConnectParams{})
	user := []packets.UserProperty{{Key: "trace", Val: "abc"}, {Key: "site", Val: "north"}}
	for i, tc := range []struct {
		topic, payload string
		qos            byte
		ack            byte
		reason         byte
	}{
		{d.topic("telemetry"), `{"temperature": 1}`, 1, packets.Puback, 0x00},
		{d.topic("status"), `online`, 1, packets.Puback, 0x00},
		{other.topic("telemetry"), `{"temperature": 1}`, 1, packets.Puback, 0x87},
		{d.topic("telemetry"), `{"temperature": 999}`, 1, packets.Puback, 0x99},
		{d.topic("telemetry"), `{"temperature": 2}`, 2, packets.Pubrec, 0x00},
	} {
		id := uint16(10 + i)
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: tc.qos}, PacketID: id,
			TopicName: tc.topic, Payload: []byte(tc.payload), Properties: packets.Properties{User: user}})
		ack := c.expect(tc.ack)
		if ack.PacketID != id || ack.ReasonCode != tc.reason || len(ack.Properties.User) != 0 {
			t.Errorf("QoS %d to %s: %s id %d reason 0x%02x user properties %v, want reason 0x%02x and none",
				tc.qos, tc.topic, packets.PacketNames[tc.ack], ack.PacketID, ack.ReasonCode, ack.Properties.User, tc.reason)
		}
		if tc.ack == packets.Pubrec && tc.reason == 0 {
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: id})
			c.expect(packets.Pubcomp)
		}
	}
}

// TestMQTTSysPublish: a publish to a $SYS topic is refused like any topic
// outside the client's own, with an answer.
//
//	§4.7.2 the server SHOULD prevent clients from using $ topics to exchange messages
//	[MQTT-3.4.2-1] [MQTT-3.5.2-1] a refused QoS 1/2 publish gets PUBACK/PUBREC 0x87
//	(3.1.1) no negative PUBACK: the connection is closed
func TestMQTTSysPublish(t *testing.T) {
	h := mcHub(t)
	d := mcPump(t, h, "mc-sys")
	c := mcRawDevice(t, h, d, 5, packets.ConnectParams{})
	for _, tc := range []struct {
		qos byte
		ack byte
	}{{1, packets.Puback}, {2, packets.Pubrec}} {
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: tc.qos}, PacketID: 7, TopicName: "$SYS/x", Payload: []byte("x")})
		if ack := c.expect(tc.ack); ack.PacketID != 7 || ack.ReasonCode != 0x87 {
			t.Errorf("QoS %d to $SYS/x: %s id %d reason 0x%02x, want 0x87", tc.qos, packets.PacketNames[tc.ack], ack.PacketID, ack.ReasonCode)
		}
	}
	c3 := mcRawDevice(t, h, d, 4, packets.ConnectParams{})
	c3.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7, TopicName: "$SYS/x", Payload: []byte("x")})
	c3.expectDropped(mcWait)
}

// TestMQTT311NoServerDisconnect: whatever ends a 3.1.1 connection, the
// server sends no DISCONNECT, which 3.1.1 defines only from the client
// (paho reports one as a protocol error).
//
//	(3.1.1) §3.14 DISCONNECT is sent from the client to the server
//	(3.1.1) [MQTT-3.3.5-2] a refused publish: positive acknowledgement or close
func TestMQTT311NoServerDisconnect(t *testing.T) {
	h := mcHub(t)
	d := mcPump(t, h, "mc-nodisc")
	other := mcPump(t, h, "mc-nodisc-other")

	t.Run("refused publish", func(t *testing.T) {
		c := mcRawDevice(t, h, d, 4, packets.ConnectParams{})
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 3, TopicName: other.topic("telemetry"), Payload: []byte(`{"temperature": 1}`)})
		c.expectDropped(mcWait)
	})
	t.Run("quarantine", func(t *testing.T) {
		q := mcPump(t, h, "mc-nodisc-q")
		c := mcRawDevice(t, h, q, 4, packets.ConnectParams{})
		h.MustWanwu("ctl", "object", "quarantine", q.Code, "--reason", "test")
		c.expectDropped(mcWait)
	})
	t.Run("session taken over", func(t *testing.T) {
		c := mcRawDevice(t, h, d, 4, packets.ConnectParams{})
		mcRawDevice(t, h, d, 4, packets.ConnectParams{})
		c.expectDropped(mcWait)
	})
}

// TestMQTTPingreqPayload: a PINGREQ has no payload; one with a payload is a
// malformed packet, not a ping.
//
//	§3.12 PINGREQ has no variable header and no payload
//	[MQTT-4.13.1-1] a malformed packet closes the connection (MQTT 5: DISCONNECT 0x81 first)
func TestMQTTPingreqPayload(t *testing.T) {
	h := mcHub(t)
	d := mcPump(t, h, "mc-ping")
	before := mcMetric(t, h, `wanwu_protocol_errors_total{cause="malformed",protocol="mqtt"}`)
	for _, v := range []byte{4, 5} {
		c := mcRawDevice(t, h, d, v, packets.ConnectParams{})
		if _, err := c.conn.Write([]byte{0xc0, 0x01, 0x00}); err != nil {
			t.Fatal(err)
		}
		if v == 5 {
			c.expectDisconnect(0x81)
		} else {
			c.expectDropped(mcWait)
		}
	}
	mcMetricRises(t, h, `wanwu_protocol_errors_total{cause="malformed",protocol="mqtt"}`, before, 2)
}

// TestMQTTTopicAliasMaximum: the CONNACK says how many topic aliases the
// hub accepts, and an alias above it ends the connection.
//
//	[MQTT-3.2.2-17] the server sends Topic Alias Maximum in the CONNACK
//	[MQTT-3.3.2-9] [MQTT-3.3.2-10] an alias above it is a protocol error: DISCONNECT 0x94
func TestMQTTTopicAliasMaximum(t *testing.T) {
	h := mcHub(t)
	d := mcPump(t, h, "mc-tam")
	c := mcDialRaw(t, h.MQTT().Addr(mqtt.ListenerTCP), 5)
	ack := c.connect(packets.ConnectParams{ClientIdentifier: d.Code, Clean: true,
		UsernameFlag: true, Username: []byte(d.Code), PasswordFlag: true, Password: []byte(d.token(t))})
	if ack.ReasonCode != 0 || ack.Properties.TopicAliasMaximum != mqtt.TopicAliasMaximum {
		t.Fatalf("CONNACK 0x%02x Topic Alias Maximum %d, want %d", ack.ReasonCode, ack.Properties.TopicAliasMaximum, mqtt.TopicAliasMaximum)
	}
	publish := func(alias uint16, id uint16) {
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: id, TopicName: d.topic("telemetry"),
			Payload: []byte(`{"temperature": 3}`), Properties: packets.Properties{TopicAlias: alias, TopicAliasFlag: true}})
	}
	publish(mqtt.TopicAliasMaximum, 1)
	if pk := c.expect(packets.Puback); pk.ReasonCode != 0 {
		t.Errorf("alias %d (the maximum): PUBACK 0x%02x", mqtt.TopicAliasMaximum, pk.ReasonCode)
	}
	publish(mqtt.TopicAliasMaximum+1, 2)
	c.expectDisconnect(0x94)
}

// TestMQTTOversized: the CONNACK states the largest packet the hub takes;
// a larger one ends the connection with a reason and a count, and a payload
// within the packet limit but over telemetry.max_payload is refused and
// kept as a dead letter.
//
//	[MQTT-3.2.2-15] [MQTT-3.1.2-24] Maximum Packet Size in the CONNACK; a larger packet is a protocol error
//	[MQTT-4.13.1-1] MQTT 5: DISCONNECT 0x95 Packet too large before closing
func TestMQTTOversized(t *testing.T) {
	const maxPayload = 1024
	h := mcHub(t, func(c *config.Hub) { c.Telemetry.MaxPayload = maxPayload })
	d := mcPump(t, h, "mc-big")
	tooLarge := `wanwu_protocol_errors_total{cause="packet_too_large",protocol="mqtt"}`
	before := mcMetric(t, h, tooLarge)

	c := mcDialRaw(t, h.MQTT().Addr(mqtt.ListenerTCP), 5)
	ack := c.connect(packets.ConnectParams{ClientIdentifier: d.Code, Clean: true,
		UsernameFlag: true, Username: []byte(d.Code), PasswordFlag: true, Password: []byte(d.token(t))})
	limit := ack.Properties.MaximumPacketSize
	if ack.ReasonCode != 0 || limit == 0 {
		t.Fatalf("CONNACK 0x%02x Maximum Packet Size %d, want one", ack.ReasonCode, limit)
	}
	// Over max_payload, well within the packet limit: PUBACK 0x97, dead letter.
	body := `{"label": "` + strings.Repeat("x", maxPayload) + `"}`
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1, TopicName: d.topic("telemetry"), Payload: []byte(body)})
	if pk := c.expect(packets.Puback); pk.ReasonCode != 0x97 {
		t.Errorf("payload over max_payload: PUBACK 0x%02x, want 0x97", pk.ReasonCode)
	}
	var dl struct {
		DeadLetters []struct{ Reason string } `json:"dead_letters"`
	}
	h.MustAdmin(200, "GET", "/api/v1/deadletters?device="+d.Code, nil).JSON(t, &dl)
	if len(dl.DeadLetters) != 1 || dl.DeadLetters[0].Reason != "too_large" {
		t.Errorf("dead letters %+v, want one too_large", dl.DeadLetters)
	}
	// A packet one byte over the advertised limit.
	topic := d.topic("telemetry")
	// type byte, two length bytes, topic, packet id, properties length
	n := int(limit) + 1 - (1 + 2 + 2 + len(topic) + 2 + 1)
	pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 2, TopicName: topic, Payload: []byte(strings.Repeat("x", n))}
	c.send(pub)
	c.expectDisconnect(0x95)

	c3 := mcRawDevice(t, h, d, 4, packets.ConnectParams{})
	pub.Payload = append(pub.Payload, 'x') // no properties length in 3.1.1
	c3.send(pub)
	c3.expectDropped(mcWait)
	mcMetricRises(t, h, tooLarge, before, 2)
}

// TestMQTTGarbageCounted: connections that do not speak MQTT are counted by
// cause on /metrics.
func TestMQTTGarbageCounted(t *testing.T) {
	h := mcHub(t)
	addr := h.MQTT().Addr(mqtt.ListenerTCP)
	for _, tc := range []struct {
		name  string
		bytes []byte
		cause string
	}{
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "malformed"},
		{"length out of range", []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f, 'g'}, "malformed"},
		{"PUBLISH before CONNECT", []byte{0x30, 0x05, 0x00, 0x01, 'a', 'x', 'y'}, "protocol_violation"},
		{"CONNECT too large", append([]byte{0x10, 0xff, 0xff, 0x7f}, make([]byte, 64)...), "packet_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			series := fmt.Sprintf(`wanwu_protocol_errors_total{cause=%q,protocol="mqtt"}`, tc.cause)
			before := mcMetric(t, h, series)
			c := mcDialRaw(t, addr, 4)
			if _, err := c.conn.Write(tc.bytes); err != nil {
				t.Fatal(err)
			}
			c.expectDropped(mcWait)
			mcMetricRises(t, h, series, before, 1)
		})
	}
}

// TestMQTTPreAuthLockout: wrong credentials naming a device, from another
// address, do not keep the device out. Failed attempts are charged to the
// address they come from and to the code's failure budget, which answers
// failures only; successful connects are counted per device.
func TestMQTTPreAuthLockout(t *testing.T) {
	h := Start(t, func(c *config.Hub) { // default per-device limit: 1/s, burst 5
		c.MQTT.Limits.AuthFailuresPerAddr, c.MQTT.Limits.AuthFailuresPerAddrBurst = 0.1, 10
	})
	setupAcme(t, h)
	d := mcPump(t, h, "pump-0001")
	addr := h.MQTT().Addr(mqtt.ListenerTCP)
	connectFrom := func(local, pass string, v byte) (packets.Packet, error) {
		c := mcDialRawFrom(t, addr, local, v)
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
			ClientIdentifier: d.Code, Clean: true, Keepalive: 30,
			UsernameFlag: true, Username: []byte(d.Code), PasswordFlag: true, Password: []byte(pass)}})
		defer c.conn.Close()
		return c.read(mcWait)
	}
	attacker := func(n int) (refused, limited int) {
		for i := 0; i < n; i++ {
			pk, err := connectFrom("127.0.0.2", "x.y.z", 5)
			switch {
			case err != nil:
				t.Fatalf("attacker connect: %v", err)
			case pk.ReasonCode == 0x87:
				refused++
			case pk.ReasonCode == 0x9F:
				limited++
			default:
				t.Fatalf("attacker got CONNACK 0x%02x", pk.ReasonCode)
			}
		}
		return refused, limited
	}
	// The attacker floods the device's code, interleaved with the device's
	// own connects from its address: every one of the device's gets in.
	for round := 0; round < 4; round++ {
		attacker(5)
		if pk, err := connectFrom("127.0.0.1", d.token(t), 5); err != nil || pk.ReasonCode != 0 {
			t.Fatalf("round %d: the device was refused (0x%02x, %v) while another address failed with its code", round, pk.ReasonCode, err)
		}
	}
	// By now the attacker's address has spent its failure budget: it is
	// refused before authentication, and the device still connects.
	if _, limited := attacker(3); limited != 3 {
		t.Errorf("attacker past its address's failure budget: %d of 3 rate limited", limited)
	}
	if pk, err := connectFrom("127.0.0.1", d.token(t), 4); err != nil || pk.ReasonCode != 0 {
		t.Errorf("the device (3.1.1) after the flood: 0x%02x, %v", pk.ReasonCode, err)
	}
	// Failures from many addresses spend the code's failure budget: they are
	// then answered 0x9F, while the device's own credentials still pass.
	limited := 0
	for i := 0; i < 12; i++ {
		pk, err := connectFrom(fmt.Sprintf("127.0.1.%d", i+1), "x.y.z", 5)
		if err == nil && pk.ReasonCode == 0x9F {
			limited++
		}
	}
	if limited == 0 {
		t.Error("12 failures naming one code from 12 addresses: none rate limited")
	}
	time.Sleep(time.Second) // the device's own budget: 1 connect per second
	if pk, err := connectFrom("127.0.0.3", d.token(t), 5); err != nil || pk.ReasonCode != 0 {
		t.Errorf("the device from a new address with its code's failure budget spent: 0x%02x, %v", pk.ReasonCode, err)
	}
	// Successful connects are what the device's own limit counts.
	refused := 0
	for i := 0; i < 8; i++ {
		if pk, err := connectFrom("127.0.0.1", d.token(t), 5); err == nil && pk.ReasonCode == 0x9F {
			refused++
		}
	}
	if refused == 0 {
		t.Error("8 rapid successful connects of one device: none rate limited")
	}
}

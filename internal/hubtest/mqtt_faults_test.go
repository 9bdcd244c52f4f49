package hubtest

// MQTT under faults and attack (issue 14): what a device, an attacker or a
// broken client sees when it sends what it should not. Statements are
// numbered as in mqtt_conformance_test.go.

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

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

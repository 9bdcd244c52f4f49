package sim_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/hubtest"
	"github.com/wanwu-iot/wanwu/internal/linkemu"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
	"github.com/wanwu-iot/wanwu/internal/sim"
)

// BenchmarkAirBytes measures the bytes on the air per reading (IPv4 and
// UDP/TCP headers included, the connection's setup not) for each network
// profile with CoAP over DTLS and SenML CBOR and with MQTT 5 over TLS and
// SenML JSON, side by side: a meter's reading of three values, sent 50 times
// by one device of the SDK through the link emulator to a hub. setup-B is
// what the connection cost before its first reading: the TLS or DTLS
// handshake with the device's certificate, MQTT's CONNECT and SUBSCRIBE.
//
//	go test ./internal/sim -run '^$' -bench AirBytes -benchtime 1x
func BenchmarkAirBytes(b *testing.B) {
	h := hubtest.Start(b)
	sc := `
name: air
classes:
  - {name: coap, kind: water-meter, count: 1, network: ethernet, protocol: coap}
  - {name: mqtt, kind: water-meter, count: 1, network: ethernet, protocol: mqtt}
`
	var ids map[string]*device.Identity
	{
		// Provision the two devices, then stop the fleet: the benchmark
		// drives their identities itself.
		s := start(b, h, sc, func(o *sim.Options) { o.NoEmulation = true })
		ids = s.Identities()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
	const readings = 50
	for _, name := range netprofile.Names() {
		p, _ := netprofile.Lookup(name)
		p.Sleep = netprofile.Sleep{} // awake throughout
		p.Loss = netprofile.Loss{}   // every reading once: the figures compare encodings, not luck
		for _, proto := range []string{"coap", "mqtt"} {
			b.Run(name+"/"+proto, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					link := linkemu.New(p, 1)
					opts := device.Options{Identity: ids["demo:"+proto+"-000"], MemoryBuffer: true, ServerName: "localhost",
						Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
					if proto == "coap" {
						opts.CoAP = "coaps://" + h.CoAP().Addr(coap.ListenerDTLS)
						opts.CoAPAckTimeout = max(2*time.Second, 2*p.RoundTrip())
						opts.ListenPacket = func(context.Context) (net.PacketConn, error) {
							pc, err := net.ListenPacket("udp", "127.0.0.1:0")
							if err != nil {
								return nil, err
							}
							return link.PacketConn(pc), nil
						}
					} else {
						opts.Broker = "mqtts://" + h.MQTT().Addr(mqtt.ListenerTLS)
						opts.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
							c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
							if err != nil {
								return nil, err
							}
							return link.Conn(c), nil
						}
					}
					c, err := device.Connect(context.Background(), opts)
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
					base := time.Now().Add(-time.Hour).Truncate(time.Second)
					reading := func(k int) []device.Record {
						t := base.Add(time.Duration(k) * time.Second)
						return []device.Record{{Name: "volume", Unit: "m3", Time: t, Value: 1234.567 + float64(k)*0.013},
							{Name: "flow", Unit: "l/s", Time: t, Value: 0.021}, {Name: "battery", Unit: "%", Time: t, Value: 87}}
					}
					// The first reading sets the connection up; count the rest.
					if err := c.Publish(ctx, reading(0)...); err != nil {
						b.Fatal(err)
					}
					before := link.Stats()
					for k := 1; k <= readings; k++ {
						if err := c.Publish(ctx, reading(k)...); err != nil {
							b.Fatal(err)
						}
					}
					after := link.Stats()
					cancel()
					perReading := float64(after.Up.Bytes-before.Up.Bytes+after.Down.Bytes-before.Down.Bytes) / readings
					b.ReportMetric(float64(before.Up.Bytes+before.Down.Bytes)-perReading, "setup-B")
					b.ReportMetric(float64(after.Up.Bytes-before.Up.Bytes)/readings, "up-B/reading")
					b.ReportMetric(float64(after.Down.Bytes-before.Down.Bytes)/readings, "down-B/reading")
					b.ReportMetric(float64(after.Up.Packets-before.Up.Packets+after.Down.Packets-before.Down.Packets)/readings, "packets/reading")
				}
			})
		}
	}
}

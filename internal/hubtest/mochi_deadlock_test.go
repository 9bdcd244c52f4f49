package hubtest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// TestQoS1FanInDoesNotDeadlock: many publishers deliver QoS 1 messages to one
// slower QoS 1 subscriber, the path on which unpatched mochi-mqtt v2.7.9 can
// hang for good (a recursive read lock in its in-flight store; see
// third_party/mochi-mqtt/PATCHES.md). The hang is timing dependent: this test
// did not reproduce it against the unpatched code on 2 cores, while the load
// generator at 1,000 clients did within a second; it guards the path, and
// bench/compare.sh is the reproduction.
func TestQoS1FanInDoesNotDeadlock(t *testing.T) {
	h := Start(t, func(c *config.Hub) { c.MQTT.DevListen = "127.0.0.1:0" })
	addr := h.MQTT().Addr(mqtt.ListenerDev)
	dial := func(id string, onMsg func()) *paho.Client {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		cfg := paho.ClientConfig{Conn: conn, OnClientError: func(error) {}}
		if onMsg != nil {
			cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(paho.PublishReceived) (bool, error) { onMsg(); return true, nil }}
		}
		c := paho.NewClient(cfg)
		if _, err := c.Connect(context.Background(), &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
		return c
	}
	var delivered atomic.Int64
	// A subscriber slower than the publishers keeps messages in flight, which
	// is when the broker consults its in-flight store after every PUBACK.
	sub := dial("subscriber", func() {
		delivered.Add(1)
		time.Sleep(20 * time.Microsecond)
	})
	if _, err := sub.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "wanwu/v1/dev/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	const publishers, each = 50, 100
	var wg sync.WaitGroup
	for p := 0; p < publishers; p++ {
		c := dial(fmt.Sprintf("pub-%d", p), nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("wanwu/v1/dev/p%d/telemetry", p), QoS: 1, Payload: []byte("x")})
				cancel()
				if err != nil {
					t.Errorf("publisher %d message %d: %v", p, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, "all messages delivered", func() error {
		if n := delivered.Load(); n != publishers*each {
			return fmt.Errorf("delivered %d of %d", n, publishers*each)
		}
		return nil
	})
}

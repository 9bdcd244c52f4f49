package hubtest

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// TestStartStopUnderLoadLeavesNoGoroutine starts hubs and shuts them down while
// devices stream over MQTT (with a twin and a command subscription), CoAP
// and HTTP: once they are down and the clients gone, no goroutine of
// theirs is left (run it with -race too: .ci/run does).
func TestStartStopUnderLoadLeavesNoGoroutine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several hubs")
	}
	before := runtime.NumGoroutine()
	for round := range 4 {
		func() {
			h := Start(t, func(c *config.Hub) {
				c.MQTT.Limits.PublishPerDevice, c.MQTT.Limits.PublishPerDeviceBurst = 1e6, 1e6
			})
			setupAcme(t, h)
			d := register(t, h, "acme:leak-1", "--model", "acme:pump@1.0.0")
			tok := d.token(t)
			ctx, cancel := context.WithCancel(context.Background())
			var load sync.WaitGroup
			// MQTT: telemetry, and subscriptions to the twin and commands.
			c := mustDialToken5(t, h.MQTT().Addr(mqtt.ListenerTCP), d.Code, tok)
			if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
				{Topic: d.topic("commands/+"), QoS: 1}, {Topic: d.topic("twin/desired"), QoS: 1}}}); err != nil {
				t.Fatal(err)
			}
			load.Add(3)
			go func() {
				defer load.Done()
				for ctx.Err() == nil {
					pctx, pcancel := context.WithTimeout(ctx, time.Second)
					_, err := c.Publish(pctx, &paho.Publish{Topic: d.topic("telemetry"), QoS: 1, Payload: []byte(`{"temperature": 20}`)})
					pcancel()
					if err != nil {
						time.Sleep(10 * time.Millisecond)
					}
				}
			}()
			// CoAP over UDP with the device token.
			cc, err := udp.Dial(h.CoAP().Addr(coap.ListenerUDP))
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				defer load.Done()
				for ctx.Err() == nil {
					rctx, rcancel := context.WithTimeout(ctx, time.Second)
					req, _ := cc.NewPostRequest(rctx, "/t", message.AppJSON, strings.NewReader(`{"temperature": 21}`))
					req.AddQuery("t=" + tok)
					_, _ = cc.Do(req)
					rcancel()
				}
			}()
			// HTTP ingest, twin changes and commands.
			go func() {
				defer load.Done()
				client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
				for i := 0; ctx.Err() == nil; i++ {
					req, _ := http.NewRequest("POST", h.URL+"/api/v1/ingest/"+d.Code+"/telemetry", strings.NewReader(`{"temperature": 22}`))
					req.Header.Set("Authorization", "Bearer "+tok)
					req.Header.Set("Content-Type", "application/json")
					if resp, err := client.Do(req); err == nil {
						resp.Body.Close()
					}
					if i%10 == 0 {
						for _, r := range []*http.Request{
							mustRequest("PATCH", h.URL+"/api/v1/objects/"+d.Code+"/twin/desired", h.AdminToken, `{"speed": 100}`),
							mustRequest("POST", h.URL+"/api/v1/objects/"+d.Code+"/commands", h.AdminToken, `{"action": "stop"}`),
						} {
							if resp, err := client.Do(r); err == nil {
								resp.Body.Close()
							}
						}
					}
				}
			}()
			time.Sleep(300 * time.Millisecond)
			h.Stop() // under load
			cancel()
			load.Wait()
			cc.Close()
			_ = c.Disconnect(&paho.Disconnect{}) // closes its connection
			t.Logf("round %d: hub stopped under load", round)
		}()
	}
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		t.Fatalf("%d goroutines before, %d after four hubs stopped under load:\n%s", before, n, buf.String())
	}
}

func mustRequest(method, url, token, body string) *http.Request {
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Content-Type", "application/json")
	return r
}

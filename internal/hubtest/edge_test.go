package hubtest

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// edgeSetup is a hub with an edge placed behind a cuttable link, and
// devices registered at the hub behind the edge.
type edgeSetup struct {
	hub   *Hub
	proxy *LinkProxy
	edge  *Edge
	devs  []tokenDevice
}

func newEdgeSetup(t *testing.T, devices int) *edgeSetup {
	t.Helper()
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	s := &edgeSetup{hub: h}
	s.proxy = NewLinkProxy(t, h.HTTPSAddr)
	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	for i := range devices {
		s.devs = append(s.devs, newEdgeDevice(t, h, fmt.Sprintf("acme:m%02d", i), "acme:edge-1"))
	}
	s.edge = StartEdge(t, dir, "https://"+s.proxy.Addr())
	return s
}

// newEdgeDevice registers a device behind edge (hub-made key) and signs
// it a token.
func newEdgeDevice(t *testing.T, h *Hub, code, edge string) tokenDevice {
	t.Helper()
	var reg struct {
		PrivateKey string `json:"private_key"`
	}
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": code, "edge": edge}).JSON(t, &reg)
	key, err := keys.ParsePrivateKeyPEM([]byte(reg.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := devtoken.Sign(key, code, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tokenDevice{code, tok}
}

// waitEdgeAdmits waits until the edge's replica has the device (the
// snapshot reached it) and the device can connect.
func (s *edgeSetup) connect(t *testing.T, dev tokenDevice) *paho.Client {
	t.Helper()
	var c *paho.Client
	eventually(t, "the device admitted at the edge", func() error {
		var err error
		c, err = dialToken5(t, s.edge.Listeners()["mqtt/tcp"], dev.code, dev.token, nil)
		return err
	})
	return c
}

// stream publishes seq samples (value seq at base+seq ms) from each device
// at QoS 1 until stop, recording what the edge acknowledged.
type stream struct {
	base  time.Time
	mu    sync.Mutex
	acked map[string]map[int]bool
	wg    sync.WaitGroup
	stop  chan struct{}
	sent  atomic.Int64
}

func startStream(t *testing.T, s *edgeSetup, perDevice int) *stream {
	st := &stream{base: time.Now().Add(-time.Hour).Truncate(time.Second), acked: map[string]map[int]bool{}, stop: make(chan struct{})}
	for _, d := range s.devs {
		c := s.connect(t, d)
		st.acked[d.code] = map[int]bool{}
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			topic := "wanwu/v1/" + d.code[len("acme:"):]
			topic = "wanwu/v1/acme/" + topic[len("wanwu/v1/"):] + "/telemetry"
			for seq := 0; seq < perDevice; seq++ {
				select {
				case <-st.stop:
					return
				default:
				}
				ts := float64(st.base.UnixMilli()+int64(seq)) / 1000
				payload := fmt.Sprintf(`[{"n":"seq","v":%d,"t":%.3f}]`, seq, ts)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
				cancel()
				if err != nil {
					t.Errorf("%s: publish %d: %v", d.code, seq, err)
					return
				}
				st.mu.Lock()
				st.acked[d.code][seq] = true
				st.mu.Unlock()
				st.sent.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return st
}

// TestEdgeForwardsThroughLinkCutsAndHubRestarts: 100 forced cuts of the
// edge↔hub link (every tenth a restart of the hub) while devices stream
// to the edge; the hub ends with exactly every record the edge
// acknowledged.
func TestEdgeForwardsThroughLinkCutsAndHubRestarts(t *testing.T) {
	s := newEdgeSetup(t, 8)
	st := startStream(t, s, 1<<30)
	for i := range 100 {
		time.Sleep(40 * time.Millisecond)
		if i%10 == 9 {
			s.hub.Restart() // a new HTTPS port: the proxy asks at each connection
			continue
		}
		s.proxy.Cut()
		time.Sleep(30 * time.Millisecond)
		s.proxy.Restore()
	}
	close(st.stop)
	st.wg.Wait()
	t.Logf("%d records acknowledged by the edge", st.sent.Load())
	for _, d := range s.devs {
		countStored(t, s.hub, d.code, st.base, st.acked[d.code])
	}
}

package hubtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// TestKillNineTelemetry publishes QoS 1 telemetry to a hub process, kills it
// with SIGKILL mid-stream, restarts it on the same data directory, and
// counts: every acknowledged message is queryable exactly once.
func TestKillNineTelemetry(t *testing.T) {
	began := time.Now()
	dir := t.TempDir()
	// The publisher runs faster than the default per-device rate limit.
	conf := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(conf, []byte("mqtt:\n  limits:\n    publish_per_device: 100000\n    publish_per_device_burst: 100000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startHubProc(t, dir, "--config", conf)
	client := &http.Client{Timeout: 10 * time.Second}
	p.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	var reg struct {
		PrivateKey string `json:"private_key"`
	}
	json.Unmarshal(p.must(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:crash-1"}), &reg)
	var info struct{ MQTT string }
	_, body, _ := apiCall(client, "GET", p.url+"/api/v1/info", "", nil)
	json.Unmarshal(body, &info)
	key, err := keys.ParsePrivateKeyPEM([]byte(reg.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := devtoken.Sign(key, "acme:crash-1", time.Now(), time.Hour)
	c := mustDialToken5(t, info.MQTT, "acme:crash-1", tok)
	// One sample per millisecond, value = sequence number, so each message is one identifiable sample.
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	var mu sync.Mutex
	acked := map[int]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := 0; seq < 8000; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			ts := float64(base.UnixMilli()+int64(seq)) / 1000
			payload := fmt.Sprintf(`[{"n":"seq","v":%d,"t":%.3f}]`, seq, ts)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := c.Publish(ctx, &paho.Publish{Topic: "wanwu/v1/acme/crash-1/telemetry", QoS: 1, Payload: []byte(payload)})
			cancel()
			if err != nil {
				return // the hub is gone
			}
			mu.Lock()
			acked[seq] = true
			mu.Unlock()
		}
	}()
	// A load window, not a timed assertion: kill once a good number is acknowledged.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 2000 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("killing the hub %v after the test began", time.Since(began))
	p.signal(syscall.SIGKILL)
	close(stop)
	_ = c.Disconnect(&paho.Disconnect{}) // closes the connection: the publisher's next publish fails at once
	wg.Wait()
	t.Logf("publisher stopped %v after the test began", time.Since(began))
	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}
	maxSeq := 0
	for s := range acked {
		maxSeq = max(maxSeq, s)
	}

	restarted := time.Now()
	h := StartIn(t, dir)
	t.Logf("restart took %v", time.Since(restarted))
	stored := map[int]int{}
	eventually(t, "acknowledged samples stored after restart", func() error {
		// One count per millisecond window: the window's time gives the sequence number.
		var out struct {
			Series []struct {
				Points []struct {
					Time  time.Time
					Value float64
				}
			}
		}
		start := float64(base.UnixMilli()) / 1000
		end := float64(base.UnixMilli()+int64(maxSeq)+1) / 1000
		r := h.Admin("GET", fmt.Sprintf("/api/v1/telemetry/acme:crash-1/seq?start=%.3f&end=%.3f&step=1ms&agg=count", start, end), nil)
		if r.Status != 200 {
			return fmt.Errorf("status %d: %s", r.Status, r.Body)
		}
		r.JSON(t, &out)
		if len(out.Series) != 1 {
			return fmt.Errorf("no series yet")
		}
		clear(stored)
		for _, pt := range out.Series[0].Points {
			stored[int(pt.Time.Sub(base)/time.Millisecond)] += int(pt.Value)
		}
		for s := range acked {
			if stored[s] == 0 {
				return fmt.Errorf("seq %d acknowledged but not stored (%d of %d stored)", s, len(stored), len(acked))
			}
		}
		return nil
	})
	t.Logf("all acknowledged samples queryable %v after the restart began", time.Since(restarted))
	lost, dup, inflight := 0, 0, 0
	for s, n := range stored {
		switch {
		case n > 1:
			dup++
		case !acked[s]:
			inflight++
		}
	}
	for s := range acked {
		if stored[s] == 0 {
			lost++
		}
	}
	t.Logf("acknowledged %d: ok %d, lost %d, duplicate %d, stored without ack (in flight at the kill) %d", len(acked), len(acked)-lost, lost, dup, inflight)
	if lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicates %d", lost, dup)
	}
}

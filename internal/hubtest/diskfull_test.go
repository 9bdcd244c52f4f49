package hubtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/testfs"
)

// TestDiskFull streams QoS 1 telemetry into a hub whose data directory is a
// small filesystem, fills that filesystem, and frees it again. While it is
// full, device data is refused at once with a reason (MQTT 0x97, HTTP 507
// with Retry-After), /readyz says why and /metrics shows it; once space is
// back, ingest resumes by itself; and every acknowledged (device, sequence)
// is stored exactly once. With the threshold, the hub keeps a reserve for
// its own state (an operator can still register an object); without it,
// JetStream itself meets the full disk and is reopened.
func TestDiskFull(t *testing.T) {
	cases := []struct {
		name    string
		minFree config.ByteSize
		leave   uint64 // free bytes the filler leaves (0: none)
		// register is the status of registering an object while full.
		register int
	}{
		{"threshold keeps a reserve", 24 << 20, 12 << 20, http.StatusCreated},
		{"no threshold, the disk fills up", 0, 0, http.StatusInsufficientStorage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := testfs.Mount(t, 96<<20)
			h := StartIn(t, dir, func(c *config.Hub) {
				c.Storage.MinFree = tc.minFree
				c.MQTT.Limits.PublishPerDevice, c.MQTT.Limits.PublishPerDeviceBurst = 1e6, 1e6
			})
			h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
			dev := newTokenDevice(t, h, "acme:full-1")
			tok := dev.token
			c := mustDialToken5(t, h.MQTT().Addr(mqtt.ListenerTCP), dev.code, tok)
			defer c.Disconnect(&paho.Disconnect{})

			base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
			var mu sync.Mutex
			acked := map[int]bool{}
			var refused []refusal
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := 0; seq < 500_000; seq++ {
					select {
					case <-stop:
						return
					default:
					}
					ts := float64(base.UnixMilli()+int64(seq)) / 1000
					payload := fmt.Sprintf(`[{"n":"seq","v":%d,"t":%.3f}]`, seq, ts)
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					start := time.Now()
					pr, err := c.Publish(ctx, &paho.Publish{Topic: "wanwu/v1/acme/full-1/telemetry", QoS: 1, Payload: []byte(payload)})
					cancel()
					mu.Lock()
					switch {
					case err == nil:
						acked[seq] = true
					case pr != nil:
						r := refusal{code: pr.ReasonCode, took: time.Since(start)}
						if pr.Properties != nil {
							r.reason = pr.Properties.ReasonString
						}
						refused = append(refused, r)
					default:
						mu.Unlock()
						t.Errorf("publish %d: %v", seq, err)
						return
					}
					mu.Unlock()
					if err != nil {
						time.Sleep(20 * time.Millisecond) // a device backs off
					}
				}
			}()
			progress := func() (int, int) {
				mu.Lock()
				defer mu.Unlock()
				return len(acked), len(refused)
			}
			waitFor := func(what string, limit time.Duration, cond func() bool) {
				t.Helper()
				deadline := time.Now().Add(limit)
				for !cond() {
					if time.Now().After(deadline) {
						a, r := progress()
						t.Fatalf("%s: not within %v (%d acknowledged, %d refused)", what, limit, a, r)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			waitFor("first acknowledgements", 10*time.Second, func() bool { a, _ := progress(); return a >= 300 })

			fill := testfs.NewFiller(t, dir)
			fill.FillTo(tc.leave)
			filled := time.Now()
			waitFor("a refusal", 10*time.Second, func() bool { _, r := progress(); return r > 0 })
			t.Logf("first refusal %v after the disk filled", time.Since(filled).Round(time.Millisecond))
			mu.Lock()
			first := refused[0]
			mu.Unlock()
			if first.code != 0x97 || !strings.HasPrefix(first.reason, "storage_full") {
				t.Errorf("refusal: reason code 0x%x %q, want 0x97 storage_full", first.code, first.reason)
			}
			if first.took > 6*time.Second {
				t.Errorf("the refusal took %v: the device waited for an answer that was never coming", first.took)
			}
			r := h.Do("GET", "/readyz", "", nil)
			if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "disk") {
				t.Errorf("/readyz while full: %d %s", r.Status, r.Body)
			}
			if m := string(h.Do("GET", "/metrics", "", nil).Body); !strings.Contains(m, "wanwu_disk_low 1") {
				t.Error("/metrics lacks wanwu_disk_low 1")
			}
			// HTTP ingest says the same, with when to come back.
			resp := postIngest(t, http.DefaultClient, h.URL+"/api/v1/ingest/acme:full-1/telemetry", tok, "application/senml+json", `[{"n":"seq","v":-1}]`)
			if resp.StatusCode != http.StatusInsufficientStorage || resp.Header.Get("Retry-After") == "" {
				t.Errorf("HTTP ingest while full: %d, Retry-After %q; want 507 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			reg2 := h.Admin("POST", "/api/v1/objects", map[string]any{"code": "acme:while-full"})
			if reg2.Status != tc.register || (reg2.Status >= 500 && !strings.Contains(string(reg2.Body), "storage_full")) {
				t.Errorf("registering while full: %d %s, want %d", reg2.Status, reg2.Body, tc.register)
			}

			a0, _ := progress()
			fill.Free()
			freed := time.Now()
			waitFor("acknowledgements after space returned", 20*time.Second, func() bool { a, _ := progress(); return a >= a0+300 })
			t.Logf("ingest resumed %v after space returned", time.Since(freed).Round(time.Millisecond))
			close(stop)
			wg.Wait()
			if r := h.Do("GET", "/readyz", "", nil); r.Status != http.StatusOK {
				t.Errorf("/readyz after space returned: %d %s", r.Status, r.Body)
			}
			// A hub that got over a full disk still writes its own state.
			h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:after-full"})

			mu.Lock()
			defer mu.Unlock()
			countStored(t, h, "acme:full-1", base, acked)
			t.Logf("%d acknowledged, %d refused", len(acked), len(refused))
		})
	}
}

type refusal struct {
	code   byte
	reason string
	took   time.Duration
}

// countStored checks that every acknowledged sequence number (the sample at
// base + seq ms, property "seq") is stored exactly once.
func countStored(t *testing.T, h *Hub, device string, base time.Time, acked map[int]bool) {
	t.Helper()
	maxSeq := 0
	for s := range acked {
		maxSeq = max(maxSeq, s)
	}
	stored := map[int]int{}
	eventually(t, "acknowledged samples stored", func() error {
		clear(stored)
		// At most 10,000 one-millisecond points per query.
		for from := 0; from <= maxSeq; from += 10_000 {
			to := min(from+10_000, maxSeq+1)
			var out struct {
				Series []struct {
					Points []struct {
						Time  time.Time
						Value float64
					}
				}
			}
			start := float64(base.UnixMilli()+int64(from)) / 1000
			end := float64(base.UnixMilli()+int64(to)) / 1000
			r := h.Admin("GET", fmt.Sprintf("/api/v1/telemetry/%s/seq?start=%.3f&end=%.3f&step=1ms&agg=count", device, start, end), nil)
			if r.Status != 200 {
				return fmt.Errorf("status %d: %s", r.Status, r.Body)
			}
			if err := json.Unmarshal(r.Body, &out); err != nil {
				return err
			}
			for _, s := range out.Series {
				for _, pt := range s.Points {
					seq := int(pt.Time.Sub(base) / time.Millisecond)
					if seq >= from && seq < to {
						stored[seq] += int(pt.Value)
					}
				}
			}
		}
		lost := 0
		for s := range acked {
			if stored[s] == 0 {
				lost++
			}
		}
		if lost > 0 {
			return fmt.Errorf("%d of %d acknowledged samples not stored", lost, len(acked))
		}
		return nil
	})
	for s, n := range stored {
		if n > 1 {
			t.Errorf("sequence %d stored %d times", s, n)
		}
	}
}

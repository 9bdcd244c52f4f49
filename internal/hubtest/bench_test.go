package hubtest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/loadgen"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// TestBenchCountsStoredMessages runs `wanwu bench mqtt --count-stored`
// against a hub: no subscriber connects, and every acknowledged message is
// found again in the hub's store, read back through its Prometheus API.
func TestBenchCountsStoredMessages(t *testing.T) {
	h := Start(t)
	before := time.Now()
	out := h.MustWanwu("bench", "mqtt", "--broker", "tcp://"+h.MQTT().Addr(mqtt.ListenerTCP),
		"--provision", "--hub", h.URL, "--data-dir", h.Dir, "--state", filepath.Join(t.TempDir(), "state.json"),
		"--clients", "4", "--messages", "25", "--count-stored", "--drain-quiet", "2s", "--json")
	var res loadgen.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.CountedBy != "store" || res.Acked != 100 || res.Delivered != 100 || res.Lost != 0 || len(res.Errors) != 0 {
		t.Fatalf("counted by %q: acked %d, stored %d, lost %d, errors %v", res.CountedBy, res.Acked, res.Delivered, res.Lost, res.Errors)
	}

	// The store reader sees only its window: the run is there, a window
	// that ends before it holds nothing, and each device has its 25 seqs.
	st := loadgen.NewHubStore(h.URL, h.AdminToken, loadgen.DefaultTenant)
	ctx := context.Background()
	if n, err := st.Count(ctx, before.Add(-time.Minute), time.Now().Add(time.Minute)); err != nil || n != 100 {
		t.Errorf("count over the run: %d, %v", n, err)
	}
	if n, err := st.Count(ctx, before.Add(-time.Hour), before.Add(-time.Minute)); err != nil || n != 0 {
		t.Errorf("count before the run: %d, %v", n, err)
	}
	seqs, err := st.Seqs(ctx, loadgen.DeviceCode(loadgen.DefaultTenant, 3), before.Add(-time.Minute), time.Now().Add(time.Minute))
	// The seq record carries no time of its own, so the store orders it by
	// arrival; a client's in-flight publishes may cross on the wire.
	slices.Sort(seqs)
	if err != nil || !slices.Equal(seqs, seqRange(25)) {
		t.Errorf("seqs of device 3: %v, %v", seqs, err)
	}
}

// seqRange returns 0, 1, ..., n-1.
func seqRange(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// TestBenchQueryable runs `wanwu bench mqtt --queryable-every` against a
// hub: every sampled message is found in the store by its seq, and the
// publish→queryable figure counts them all.
func TestBenchQueryable(t *testing.T) {
	h := Start(t)
	out := h.MustWanwu("bench", "mqtt", "--broker", "tcp://"+h.MQTT().Addr(mqtt.ListenerTCP),
		"--provision", "--hub", h.URL, "--data-dir", h.Dir, "--state", filepath.Join(t.TempDir(), "state.json"),
		"--clients", "4", "--messages", "25", "--rate", "50", "--inflight", "4", "--queryable-every", "5",
		"--subscribe", "", "--json")
	var res loadgen.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Acked != 100 || len(res.Errors) != 0 || res.PublishToQueryable == nil || res.PublishToQueryable.N != 20 {
		t.Fatalf("acked %d, errors %v, publish→queryable %+v; want 100, none, 20 samples", res.Acked, res.Errors, res.PublishToQueryable)
	}
	q := loadgen.HubQueryable(h.URL, h.AdminToken, loadgen.DefaultTenant)
	code := loadgen.DeviceCode(loadgen.DefaultTenant, 2)
	for _, tc := range []struct {
		seq       int
		published time.Time
		want      bool
	}{
		{24, res.Started, true},
		{25, res.Started, false},                      // never sent
		{3, res.Started.Add(time.Minute), false},      // stored before that time
		{0, res.Started.Add(-time.Millisecond), true}, // the first one
	} {
		if ok, err := q(context.Background(), code, tc.seq, tc.published); err != nil || ok != tc.want {
			t.Errorf("seq %d published at %v: %v, %v; want %v", tc.seq, tc.published, ok, err, tc.want)
		}
	}
}

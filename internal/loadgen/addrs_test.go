package loadgen

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

func TestParseAddrs(t *testing.T) {
	got, err := ParseAddrs("127.0.0.254-127.0.1.1, 127.0.2.1,,::1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1", "127.0.2.1", "::1"}
	if !slices.Equal(got, want) {
		t.Errorf("ParseAddrs = %v, want %v", got, want)
	}
	for _, bad := range []string{"127.0.0.9-127.0.0.2", "127.0.0.1-::1", "localhost", "10.0.0.0-10.1.0.0"} {
		if _, err := ParseAddrs(bad); !errors.Is(err, ErrOptions) {
			t.Errorf("ParseAddrs(%q) error %v, want ErrOptions", bad, err)
		}
	}
}

func TestParseProc(t *testing.T) {
	stat := []byte("1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 100 1000000 500 18446744073709551615\n")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3250*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 3.25s", cpu, err)
	}
	rss, err := parseStatusRSS([]byte("Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1536 kB\nThreads:\t4\n"))
	if err != nil || rss != 1536*1024 {
		t.Errorf("parseStatusRSS = %d, %v", rss, err)
	}
	if _, err := parseStatusRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("parseStatusRSS without VmRSS: no error")
	}
}

func TestOptionsDefaultsAndErrors(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Broker != DefaultBroker || o.Protocol != 5 || o.Clients != DefaultClients || o.MessagesPerClient != DefaultMessages ||
		o.Inflight != DefaultInflight || o.PayloadSize != DefaultPayloadSize || o.TopicFor(3) != "wanwu/v1/bench/dev-3/telemetry" {
		t.Errorf("defaults: %+v", o)
	}
	for _, bad := range []Options{
		{Protocol: 6}, {QoS: 3}, {Inflight: -1}, {Rate: -1}, {Broker: "http://x:1"}, {Broker: "127.0.0.1:1883"},
	} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: error %v, want ErrOptions", bad, err)
		}
	}
}

// TestSchedDelayQuantile: the quantile counts only the waits since the
// earlier reading, and answers with the upper bound of its bucket.
func TestSchedDelayQuantile(t *testing.T) {
	buckets := []float64{0, 0.001, 0.01, 0.1, math.Inf(1)}
	prev := schedDelays{counts: []uint64{50, 0, 0, 100}, buckets: buckets}
	cur := schedDelays{counts: []uint64{150, 0, 1, 100}, buckets: buckets}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, time.Millisecond},     // the earlier 100 slow waits do not count
		{0.99, time.Millisecond},    // 99 of 101 are under 1 ms
		{1, 100 * time.Millisecond}, // the one 10-100 ms wait
		{0.995, 100 * time.Millisecond},
	} {
		if got := cur.quantileSince(prev, tc.q); got != tc.want {
			t.Errorf("q %v: %v, want %v", tc.q, got, tc.want)
		}
	}
	last := schedDelays{counts: []uint64{0, 0, 0, 3}, buckets: buckets}
	if got := last.quantileSince(schedDelays{}, 0.99); got != 100*time.Millisecond {
		t.Errorf("in the unbounded bucket: %v, want its lower bound, 100ms", got)
	}
	if got := cur.quantileSince(cur, 0.99); got != 0 {
		t.Errorf("no waits since: %v, want 0", got)
	}
	if got := cur.quantileSince(schedDelays{}, 0.5); got != time.Millisecond {
		t.Errorf("from no reading: %v, want 1ms", got)
	}
	if live := readSchedDelays(); len(live.counts) == 0 || len(live.buckets) != len(live.counts)+1 {
		t.Errorf("the runtime's histogram: %d counts, %d boundaries", len(live.counts), len(live.buckets))
	}
}

package hubtest

// The edge benchmarks of issue 18 (bench/edge.sh, bench/RESULTS.md "Edge
// link"): how soon forwarding resumes after a link cut and after a hub
// restart, how fast a long outage's backlog drains while live data goes on,
// the bytes the link carries per record beside MQTT over TLS, and the
// edge's memory and CPU with many devices. The load is real devices: the
// device SDK (package device) over MQTT, one connection each, sending SenML
// JSON. They run only with WANWU_EDGE_BENCH=1 and print their figures as
// lines that start with "edgebench".

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	wanwudevice "github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/edge"
	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

const envEdgeBench = "WANWU_EDGE_BENCH"

// edgeBench skips a benchmark unless WANWU_EDGE_BENCH=1: they take minutes.
func edgeBench(t *testing.T) {
	t.Helper()
	if os.Getenv(envEdgeBench) != "1" {
		t.Skip("an edge benchmark (bench/edge.sh): set " + envEdgeBench + "=1 to run it")
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

// envDurations reads a list of durations ("5s 30s").
func envDurations(t *testing.T, name, def string) []time.Duration {
	t.Helper()
	var ds []time.Duration
	for f := range strings.FieldsSeq(cmp.Or(os.Getenv(name), def)) {
		d, err := time.ParseDuration(f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ds = append(ds, d)
	}
	return ds
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

// report prints one line of figures for bench/edge.sh.
func report(format string, args ...any) {
	fmt.Printf("edgebench "+format+"\n", args...)
}

// benchEdge is a hub whose API ports survive its restarts (a hub process
// started again on its data directory and configuration), and an edge
// behind a LinkProxy with the link's settings at their defaults.
type benchEdge struct {
	hub   *Hub
	proxy *LinkProxy
	edge  *Edge
	code  string
}

func newBenchEdge(t *testing.T) *benchEdge {
	t.Helper()
	h := Start(t)
	h.Config.HTTP.Listen = strings.TrimPrefix(h.URL, "http://")
	h.Config.HTTP.TLSListen = h.HTTPSAddr()
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	s := &benchEdge{hub: h, code: "acme:edge-1"}
	hubAddr := h.HTTPSAddr()
	s.proxy = NewLinkProxy(t, func() string { return hubAddr })
	dir := t.TempDir()
	RegisterEdge(t, h, s.code, filepath.Join(dir, "identity"))
	s.edge = StartEdge(t, dir, "https://"+s.proxy.Addr(), func(c *config.Hub) {
		c.Edge.RetryMax = config.DefaultEdge().Edge.RetryMax // StartEdge shortens it for tests
	})
	return s
}

// waitReplica waits until the edge's replica registry holds code.
func (s *benchEdge) waitReplica(t *testing.T, code string) {
	t.Helper()
	waitUntil(t, time.Minute, "the devices in the edge's replica", func() bool {
		_, err := s.edge.Registry().Object(context.Background(), code)
		return err == nil
	})
}

// backlog is the edge's telemetry backlog.
func (s *benchEdge) backlog(t *testing.T) forward.Backlog {
	t.Helper()
	st, err := s.edge.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Backlog[forward.Telemetry]
}

func waitUntil(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// importDevices registers devices <tenant>:<prefix><i>, i < n, placed
// behind edge ("" for none), with hub-made keys, through the bulk import.
func importDevices(t *testing.T, h *Hub, tenant, prefix string, n int, edgeCode string) []*wanwudevice.Identity {
	t.Helper()
	codes := make([]string, n)
	for i := range codes {
		codes[i] = fmt.Sprintf("%s:%s%d", tenant, prefix, i)
	}
	return importModelDevices(t, h, codes, "", edgeCode)
}

// fleet is devices running the device SDK over MQTT, each publishing one
// SenML JSON message of several records at a steady interval, with QoS 1
// and one message in flight, as the SDK does.
type fleet struct {
	clients   []*wanwudevice.Client
	connected atomic.Int64
	acked     atomic.Int64 // records the broker acknowledged
	errs      atomic.Int64
	stop      chan struct{}
	wg        sync.WaitGroup
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// connectFleet starts SDK clients for ids against broker; dial, when set,
// opens device i's TCP connection (a source address of its own).
func connectFleet(t *testing.T, ids []*wanwudevice.Identity, broker string, dial func(i int) func(context.Context, string, string) (net.Conn, error)) *fleet {
	t.Helper()
	f := &fleet{}
	f.add(t, ids, broker, dial, 0)
	t.Cleanup(f.close)
	return f
}

// add starts more clients, at most perSecond a second (0: no bound).
func (f *fleet) add(t *testing.T, ids []*wanwudevice.Identity, broker string, dial func(i int) func(context.Context, string, string) (net.Conn, error), perSecond int) {
	t.Helper()
	for _, id := range ids {
		o := wanwudevice.Options{Identity: id, Broker: broker, MemoryBuffer: true, Logger: quiet,
			OnConnect: func() { f.connected.Add(1) }}
		if dial != nil {
			o.Dial = dial(len(f.clients))
		}
		c, err := wanwudevice.Connect(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		f.clients = append(f.clients, c)
		if perSecond > 0 {
			time.Sleep(time.Second / time.Duration(perSecond))
		}
	}
}

// run has every client from first on publish perMsg records every
// interval until halt; the clients start spread over one interval.
func (f *fleet) run(first int, interval time.Duration, perMsg int) {
	if f.stop == nil {
		f.stop = make(chan struct{})
	}
	stop, clients := f.stop, f.clients[first:]
	for i, c := range clients {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			select {
			case <-time.After(interval * time.Duration(i) / time.Duration(len(clients))):
			case <-stop:
				return
			}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			recs := make([]wanwudevice.Record, perMsg)
			for n := 0; ; n++ {
				for j := range recs {
					recs[j] = wanwudevice.Record{Name: "p" + strconv.Itoa(j), Value: float64((n+j)%1000) / 10}
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				err := c.Publish(ctx, recs...)
				cancel()
				if err != nil {
					f.errs.Add(1)
				} else {
					f.acked.Add(int64(perMsg))
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
}

// halt stops publishing and waits for the messages in flight.
func (f *fleet) halt() {
	if f.stop != nil {
		close(f.stop)
		f.wg.Wait()
		f.stop = nil
	}
}

func (f *fleet) close() {
	f.halt()
	for _, c := range f.clients {
		c.Close()
	}
}

// probeClient asks the hub for figures while a benchmark runs; it must not
// fail the test from another goroutine, so it does not use Hub.Do.
var probeClient = &http.Client{Timeout: 2 * time.Second}

// hubMetric sums the samples of a counter on the hub's /metrics whose
// labels contain every one of labels.
func hubMetric(baseURL, name string, labels ...string) (float64, error) {
	resp, err := probeClient.Get(baseURL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, err
		}
		n += v
	}
	return n, sc.Err()
}

// edgeReceived is the hub's count of telemetry device messages edges
// forwarded into its ingest log since the hub started
// (wanwu_edge_received_messages_total): the receiver counts a message once
// it is durable in the ingest log.
func edgeReceived(baseURL string) (float64, error) {
	return hubMetric(baseURL, "wanwu_edge_received_messages_total", `class="telemetry"`)
}

// uplinks is the hub's count of uplinks (POST /api/v1/edge/forward) and the
// seconds it spent answering them.
func uplinks(t *testing.T, baseURL string) (n, seconds float64) {
	t.Helper()
	const route = `route="POST /api/v1/edge/forward"`
	n, err := hubMetric(baseURL, "wanwu_api_requests_total", route)
	if err == nil {
		seconds, err = hubMetric(baseURL, "wanwu_api_request_duration_seconds_sum", route)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n, seconds
}

// newestAfter reports whether the hub's newest value of device code was
// taken after t (GET /api/v1/telemetry/{code}/latest): queryable there.
func newestAfter(baseURL, token, code string, t time.Time) (bool, error) {
	req, _ := http.NewRequest("GET", baseURL+"/api/v1/telemetry/"+code+"/latest", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := probeClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return false, fmt.Errorf("status %d", resp.StatusCode)
	}
	var out struct {
		Values map[string]struct{ Time time.Time }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return false, err
	}
	for _, v := range out.Values {
		if v.Time.After(t) {
			return true, nil
		}
	}
	return false, nil
}

// dialUntil returns when addr first accepts a TCP connection, polling
// every 2 ms: the moment a restarted server's link is back.
func dialUntil(ctx context.Context, addr string) time.Time {
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			at := time.Now()
			c.Close()
			return at
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Time{}
}

// durations summarizes repetitions: median and max, in ms.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 0, 64) }
	var all []string
	for _, d := range ds {
		all = append(all, ms(d))
	}
	return fmt.Sprintf("n=%d median_ms=%s max_ms=%s all_ms=%s", len(s), ms(s[len(s)/2]), ms(s[len(s)-1]), strings.Join(all, ","))
}

// TestEdgeBenchRecovery: 10 devices send 1,000 records/s to the edge; the
// link is cut, or the hub stopped, for each of EDGE_RECOVERY_OUTAGES
// ("5s 30s"), then restored (or the hub started again on its data
// directory and ports), EDGE_REPS times each. Measured from the link's
// return (Restore; the restarted hub's HTTPS port accepting a connection)
// to the hub's receiver counting the first forwarded message ("durable",
// polled every 10 ms), and to a record a device sent during the outage
// being readable from the hub's telemetry API ("queryable").
func TestEdgeBenchRecovery(t *testing.T) {
	edgeBench(t)
	reps := envInt(t, "EDGE_REPS", 5)
	outages := envDurations(t, "EDGE_RECOVERY_OUTAGES", "5s 30s")
	s := newBenchEdge(t)
	ids := importDevices(t, s.hub, "acme", "r", 10, s.code)
	s.waitReplica(t, ids[len(ids)-1].Code)
	f := connectFleet(t, ids, "mqtt://"+s.edge.Listeners()["mqtt/tcp"], nil)
	f.run(0, 100*time.Millisecond, 10)
	waitUntil(t, time.Minute, "live forwarding", func() bool { n, _ := edgeReceived(s.hub.URL); return n > 0 })
	for _, outage := range outages {
		for _, kind := range []string{"cut", "restart"} {
			var connected, durable, queryable, starts []time.Duration
			for range reps {
				time.Sleep(2 * time.Second) // live forwarding between outages
				r := s.recoverOnce(t, kind, outage, ids[0].Code)
				connected = append(connected, r.connected)
				durable = append(durable, r.durable)
				queryable = append(queryable, r.queryable)
				starts = append(starts, r.hubStart)
			}
			report("recovery wanwu kind=%s outage=%v connected %s", kind, outage, durations(connected))
			report("recovery wanwu kind=%s outage=%v durable %s", kind, outage, durations(durable))
			report("recovery wanwu kind=%s outage=%v queryable %s", kind, outage, durations(queryable))
			if kind == "restart" {
				report("recovery wanwu kind=restart outage=%v hub_start %s", outage, durations(starts))
			}
		}
	}
	f.halt()
	report("recovery wanwu load records_acked=%d publish_errors=%d", f.acked.Load(), f.errs.Load())
}

// recovery is one outage's figures, from the link's return: the edge's
// first connection through the proxy after it, the first forwarded record
// durable at the hub, a record sent during the outage queryable there; and
// how long the restarted hub took to start.
type recovery struct{ connected, durable, queryable, hubStart time.Duration }

// recoverOnce cuts the link ("cut") or stops the hub ("restart") for
// outage, restores it, and measures until the hub holds what device dev
// sent during the outage.
func (s *benchEdge) recoverOnce(t *testing.T, kind string, outage time.Duration, dev string) recovery {
	t.Helper()
	baseURL, hubAddr := s.hub.URL, s.hub.HTTPSAddr()
	var before float64
	if kind == "cut" {
		s.proxy.Cut()
	} else {
		s.hub.Stop()
		s.proxy.Restore() // only to take the time of the edge's first connection through it
	}
	out := time.Now()
	time.Sleep(outage)
	if kind == "cut" {
		var err error
		if before, err = edgeReceived(baseURL); err != nil { // in-flight uplinks included
			t.Fatal(err)
		}
	} // a restarted hub counts from 0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	back := make(chan time.Time, 1)
	type result struct{ back, durable, queryable time.Time }
	res := make(chan result, 1)
	go func() {
		var r result
		r.back = <-back
		for ctx.Err() == nil && (r.durable.IsZero() || r.queryable.IsZero()) {
			if r.durable.IsZero() {
				if n, err := edgeReceived(baseURL); err == nil && n > before {
					r.durable = time.Now()
				}
			}
			if r.queryable.IsZero() {
				if ok, err := newestAfter(baseURL, s.hub.AdminToken, dev, out); err == nil && ok {
					r.queryable = time.Now()
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		res <- r
	}()
	var rec recovery
	if kind == "cut" {
		back <- time.Now()
		s.proxy.Restore()
	} else {
		go func() { back <- dialUntil(ctx, hubAddr) }()
		t0 := time.Now()
		s.hub.start()
		rec.hubStart = time.Since(t0)
	}
	r := <-res
	if r.durable.IsZero() || r.queryable.IsZero() {
		t.Fatalf("%s: forwarding did not resume within 2 minutes", kind)
	}
	rec.durable, rec.queryable = r.durable.Sub(r.back), r.queryable.Sub(r.back)
	rec.connected = s.proxy.Relayed().Sub(r.back)
	return rec
}

// TestEdgeBenchDrain: devices send EDGE_RATE records/s (default 5,000: 50
// devices, one message of 10 records every 100 ms each) to the edge; after
// a warm-up the link is cut for EDGE_OUTAGE (default 10 minutes), then
// restored while the devices go on. Reported: the backlog at the return,
// the rate records arrive at the hub while it drains (per second and on
// average), and the time until the backlog is under one second of live
// data (caught up); then, with the devices stopped, whether every record
// the edge acknowledged reached the hub.
func TestEdgeBenchDrain(t *testing.T) {
	edgeBench(t)
	rate := envInt(t, "EDGE_RATE", 5000)
	outage := envDuration(t, "EDGE_OUTAGE", 10*time.Minute)
	const devices, perMsg = 50, 10
	interval := time.Duration(float64(time.Second) * devices * perMsg / float64(rate))
	s := newBenchEdge(t)
	ids := importDevices(t, s.hub, "acme", "d", devices, s.code)
	s.waitReplica(t, ids[len(ids)-1].Code)
	f := connectFleet(t, ids, "mqtt://"+s.edge.Listeners()["mqtt/tcp"], nil)
	baseURL := s.hub.URL
	recv := func() float64 {
		n, err := edgeReceived(baseURL)
		if err != nil {
			t.Fatal(err)
		}
		return n * perMsg
	}
	f.run(0, interval, perMsg)
	time.Sleep(10 * time.Second)
	a0, r0, c0, t0 := f.acked.Load(), recv(), selfCPU(t), time.Now()
	time.Sleep(20 * time.Second)
	a1, r1, c1, t1 := f.acked.Load(), recv(), selfCPU(t), time.Now()
	sec := t1.Sub(t0).Seconds()
	report("drain live produced_rps=%.0f received_rps=%.0f process_cpu_cores=%.2f", float64(a1-a0)/sec, (r1-r0)/sec, (c1-c0)/sec)

	s.proxy.Cut()
	cut, aCut, cCut := time.Now(), f.acked.Load(), selfCPU(t)
	for time.Since(cut) < outage {
		time.Sleep(min(30*time.Second, outage-time.Since(cut)))
		b := s.backlog(t)
		t.Logf("outage %v: produced %.0f records/s, backlog %d records, %d MiB", time.Since(cut).Round(time.Second),
			float64(f.acked.Load()-aCut)/time.Since(cut).Seconds(), b.Records, b.Bytes>>20)
	}
	b := s.backlog(t)
	aBack, before, cBack := f.acked.Load(), recv(), selfCPU(t)
	report("drain outage duration_s=%.0f produced_rps=%.0f process_cpu_cores=%.2f backlog_records=%d backlog_MiB=%.1f oldest_s=%.0f",
		time.Since(cut).Seconds(), float64(aBack-aCut)/time.Since(cut).Seconds(), (cBack-cCut)/time.Since(cut).Seconds(),
		b.Records, float64(b.Bytes)/(1<<20), b.OldestS)

	u0, us0 := uplinks(t, baseURL)
	back := time.Now()
	s.proxy.Restore()
	var first, caught time.Duration
	var peak float64
	prevN, prevT := before, back
	for caught == 0 {
		time.Sleep(100 * time.Millisecond)
		n := recv()
		if first == 0 && n > before {
			first = time.Since(back)
		}
		if now := time.Now(); now.Sub(prevT) >= time.Second {
			peak = max(peak, (n-prevN)/now.Sub(prevT).Seconds())
			prevN, prevT = n, now
		}
		if s.backlog(t).Records < int64(rate) {
			caught = time.Since(back)
		}
		if time.Since(back) > 2*outage+time.Minute {
			t.Fatalf("the backlog did not drain within %v", time.Since(back))
		}
	}
	aCaught, nCaught, cCaught := f.acked.Load(), recv(), selfCPU(t)
	u1, us1 := uplinks(t, baseURL)
	sec = caught.Seconds()
	report("drain restore first_record_ms=%d caught_up_s=%.1f received_rps_avg=%.0f received_rps_peak=%.0f net_drain_rps=%.0f live_produced_rps=%.0f process_cpu_cores=%.2f",
		first.Milliseconds(), sec, (nCaught-before)/sec, peak, float64(b.Records)/sec, float64(aCaught-aBack)/sec, (cCaught-cBack)/sec)
	// Where the time goes: the link sends one uplink at a time, so the
	// drain rate is records per uplink over the round trip, of which the
	// hub's handler is a part.
	report("drain uplinks n=%.0f records_per_uplink=%.0f hub_ms_per_uplink=%.1f round_trip_ms=%.1f hub_share=%.2f",
		u1-u0, (nCaught-before)/(u1-u0), (us1-us0)*1000/(u1-u0), sec*1000/(u1-u0), (us1-us0)/sec)

	f.halt()
	waitUntil(t, 5*time.Minute, "the last records at the hub", func() bool { return recv() >= float64(f.acked.Load()) })
	report("drain total records_acked_by_edge=%d records_received_by_hub=%.0f publish_errors=%d", f.acked.Load(), recv(), f.errs.Load())
}

// selfCPU is the CPU time this process (hub, edge and devices) used, in
// seconds.
func selfCPU(t *testing.T) float64 { return procCPU(t, os.Getpid()) }

// procCPU is a process's utime+stime in seconds (/proc/<pid>/stat).
func procCPU(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// procRSS is a process's resident and peak resident memory in KiB.
func procRSS(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm
}

// TestEdgeBenchLinkBytes: the bytes on the edge→hub link per record it
// forwards, counted at the LinkProxy (TCP payload both ways: TLS records,
// HTTP/2 frames, the uplinks' CBOR), beside the bytes of the same records
// sent by devices straight to the hub over MQTT 5 and TLS, counted at a
// proxy of the same kind in front of the hub's MQTT TLS listener. 10
// devices send one message every 100 ms each, of 1 and of 10 records;
// the edge forwards them live, then as a backlog after a cut.
func TestEdgeBenchLinkBytes(t *testing.T) {
	edgeBench(t)
	window := envDuration(t, "EDGE_BYTES_WINDOW", 30*time.Second)
	const devices = 10
	s := newBenchEdge(t)
	ids := importDevices(t, s.hub, "acme", "b", devices, s.code)
	s.waitReplica(t, ids[len(ids)-1].Code)
	f := connectFleet(t, ids, "mqtt://"+s.edge.Listeners()["mqtt/tcp"], nil)
	baseURL := s.hub.URL
	recv := func() float64 {
		n, err := edgeReceived(baseURL)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Direct: devices not behind the edge, MQTT 5 over TLS with their
	// certificates, through a counting proxy.
	direct := importDevices(t, s.hub, "acme", "m", devices, "")
	tlsAddr := s.hub.MQTT().Addr(mqtt.ListenerTLS)
	mp := NewLinkProxy(t, func() string { return tlsAddr })
	g := connectFleet(t, direct, "mqtts://"+mp.Addr(), nil)
	waitUntil(t, time.Minute, "the direct devices connected", func() bool { return g.connected.Load() == devices })
	time.Sleep(time.Second)
	up, down := mp.Bytes()
	report("bytes mqtt_tls setup_up_B_per_device=%.0f setup_down_B_per_device=%.0f", float64(up)/devices, float64(down)/devices)

	for _, perMsg := range []int{1, 10} {
		// Edge, live.
		f.run(0, 100*time.Millisecond, perMsg)
		time.Sleep(5 * time.Second)
		u0, d0 := s.proxy.Bytes()
		n0 := recv()
		l0, _ := uplinks(t, baseURL)
		time.Sleep(window)
		u1, d1 := s.proxy.Bytes()
		recs := (recv() - n0) * float64(perMsg)
		l1, _ := uplinks(t, baseURL)
		report("bytes edge_live records_per_msg=%d records=%.0f up_B_per_record=%.1f down_B_per_record=%.1f records_per_uplink=%.1f",
			perMsg, recs, float64(u1-u0)/recs, float64(d1-d0)/recs, recs/(l1-l0))
		// Edge, a backlog: what the devices sent during a cut, forwarded
		// when the link returns (its TLS handshake included).
		s.proxy.Cut()
		time.Sleep(window)
		f.halt()
		time.Sleep(time.Second)
		u0, d0 = s.proxy.Bytes()
		n0 = recv()
		l0, _ = uplinks(t, baseURL)
		s.proxy.Restore()
		waitUntil(t, 5*time.Minute, "the backlog drained", func() bool {
			b := s.backlog(t)
			return b.Records == 0 && recv()*float64(perMsg) >= float64(f.acked.Load())
		})
		time.Sleep(time.Second)
		u1, d1 = s.proxy.Bytes()
		recs = (recv() - n0) * float64(perMsg)
		l1, _ = uplinks(t, baseURL)
		report("bytes edge_backlog records_per_msg=%d records=%.0f up_B_per_record=%.1f down_B_per_record=%.1f records_per_uplink=%.1f",
			perMsg, recs, float64(u1-u0)/recs, float64(d1-d0)/recs, recs/(l1-l0))
		f.acked.Store(0)
		// Straight to the hub.
		g.run(0, 100*time.Millisecond, perMsg)
		time.Sleep(5 * time.Second)
		u0, d0 = mp.Bytes()
		a0 := g.acked.Load()
		time.Sleep(window)
		u1, d1 = mp.Bytes()
		recs = float64(g.acked.Load() - a0)
		g.halt()
		report("bytes mqtt_tls records_per_msg=%d records=%.0f up_B_per_record=%.1f down_B_per_record=%.1f",
			perMsg, recs, float64(u1-u0)/recs, float64(d1-d0)/recs)
	}
}

// TestEdgeBenchDevices: an edge in a process of its own (`wanwu edge`:
// $WANWU_BIN, or this test binary acting as it) with many MQTT devices,
// each sending one message of 3 records every EDGE_REPORT_EVERY (5 s);
// the devices connect in steps (EDGE_DEVICE_STEPS, "1000 5000"), each
// from one of 64 loopback source addresses, and the edge's resident
// memory and CPU are read from /proc for EDGE_WINDOW (60 s) at each step.
func TestEdgeBenchDevices(t *testing.T) {
	edgeBench(t)
	every := envDuration(t, "EDGE_REPORT_EVERY", 5*time.Second)
	window := envDuration(t, "EDGE_WINDOW", 60*time.Second)
	var steps []int
	for f := range strings.FieldsSeq(cmp.Or(os.Getenv("EDGE_DEVICE_STEPS"), "1000 5000")) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, n)
	}
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	ids := importDevices(t, h, "acme", "n", slices.Max(steps), "acme:edge-1")
	p, mqttAddr, api, token := startEdgeBinary(t, dir, h.HTTPSURL())
	pid := p.cmd.Process.Pid
	waitUntil(t, 2*time.Minute, "the devices in the edge's replica", func() bool {
		req, _ := http.NewRequest("GET", api+"/api/v1/objects/"+ids[len(ids)-1].Code, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := probeClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	measure := func(devices int, f *fleet) {
		time.Sleep(20 * time.Second)
		c0, a0, t0 := procCPU(t, pid), int64(0), time.Now()
		l0, _ := uplinks(t, h.URL)
		if f != nil {
			a0 = f.acked.Load()
		}
		time.Sleep(window)
		c1, sec := procCPU(t, pid), time.Since(t0).Seconds()
		l1, _ := uplinks(t, h.URL)
		rss, hwm := procRSS(t, pid)
		rate, online := 0.0, int64(0)
		if f != nil {
			rate, online = float64(f.acked.Load()-a0)/sec/3, f.connected.Load()
		}
		report("devices n=%d online=%d msg_per_s=%.0f uplinks_per_s=%.1f edge_rss_MiB=%.1f edge_hwm_MiB=%.1f edge_cpu_cores=%.3f",
			devices, online, rate, (l1-l0)/sec, float64(rss)/1024, float64(hwm)/1024, (c1-c0)/sec)
	}
	measure(0, nil)
	dial := func(i int) func(context.Context, string, string) (net.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%64))}}
		return d.DialContext
	}
	f := &fleet{}
	t.Cleanup(f.close)
	for _, n := range steps {
		from := len(f.clients)
		start := time.Now()
		f.add(t, ids[from:n], "mqtt://"+mqttAddr, dial, 250)
		waitUntil(t, 5*time.Minute, "the devices connected", func() bool { return f.connected.Load() >= int64(n) })
		t.Logf("%d devices connected in %v", n-from, time.Since(start).Round(time.Second))
		f.run(from, every, 3)
		measure(n, f)
	}
}

// startEdgeBinary runs `wanwu edge` ($WANWU_BIN, else this test binary as
// wanwu; serving /debug/pprof on $EDGE_PPROF if set; with the flags in
// $EDGE_ARGS) on dir against hubURL;
// it returns once the edge serves, with its
// MQTT address, API URL and admin token.
func startEdgeBinary(t *testing.T, dir, hubURL string) (p *edgeProc, mqttAddr, api, token string) {
	t.Helper()
	bin, env := os.Getenv("WANWU_BIN"), []string(nil)
	if bin == "" {
		bin, env = os.Args[0], []string{envTestMain + "=1"}
	}
	var extra []string
	if a := os.Getenv("EDGE_PPROF"); a != "" { // to profile the edge while it runs
		extra = []string{"--debug.pprof-listen", a}
	}
	extra = append(extra, strings.Fields(os.Getenv("EDGE_ARGS"))...) // more flags, e.g. --bus.sync 2s
	p = launchEdge(t, bin, env, dir, hubURL, extra...)
	waitUntil(t, time.Minute, "the edge serving", func() bool {
		select {
		case <-p.done:
			t.Fatalf("edge exited: %s", p.stderr.String())
		default:
		}
		b, err := os.ReadFile(filepath.Join(dir, edge.URLFile))
		if err != nil {
			return false
		}
		api = strings.TrimSpace(string(b))
		var info struct{ MQTT string }
		resp, err := probeClient.Get(api + "/api/v1/info")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&info)
		mqttAddr = info.MQTT
		return mqttAddr != ""
	})
	tok, err := os.ReadFile(filepath.Join(dir, edge.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return p, mqttAddr, api, strings.TrimSpace(string(tok))
}

package cli

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
)

// TestConsoleBench measures the console against the demo's load, beside
// the web UI of Prometheus (Debian's prometheus package), the console a
// Prometheus user already has: the bytes a first visit transfers and the
// time to first contentful paint of the fleet and device pages against
// Prometheus's graph page, and the server CPU each open live chart costs
// (a server-sent event stream of the device's values) against a chart
// refreshed every second from Prometheus's query_range, as a dashboard's
// live panel does. It runs only with WANWU_CONSOLE_BENCH=1 (bench/console.sh)
// and prints a table; bench/RESULTS.md has the figures.
func TestConsoleBench(t *testing.T) {
	if os.Getenv("WANWU_CONSOLE_BENCH") != "1" {
		t.Skip("the console benchmark runs with WANWU_CONSOLE_BENCH=1 (bench/console.sh)")
	}
	exe := chromium(t)
	devices := envInt("WANWU_CONSOLE_BENCH_DEVICES", 200)
	streams := envInt("WANWU_CONSOLE_BENCH_STREAMS", 50)
	window := time.Duration(envInt("WANWU_CONSOLE_BENCH_SECONDS", 30)) * time.Second
	d := startDemo(t, "--devices", strconv.Itoa(devices))
	prom := startPrometheus(t)

	// A first browser signs in once, to learn a device's code and make
	// the session cookie; each measurement then runs in a fresh tab with
	// the browser's cache cleared.
	b := newBrowser(t, exe, 1280, 900)
	b.run("sign in", 60*time.Second, chromedp.Navigate(d.signIn), waitText("main h1", reWanwuDemo))
	code := value(b, "the demo's first device", 10*time.Second, chromedp.Text(chromedp.CSS("ul.looklist li a")))
	b.run("warm up the device page", 60*time.Second, chromedp.Navigate(d.base+"/objects/"+url.PathEscape(code)))

	pages := []struct{ name, url string }{
		{"wanwu fleet", d.base + "/"},
		{"wanwu device", d.base + "/objects/" + url.PathEscape(code)},
		{"Prometheus graph", prom.URL + "/graph?g0.expr=" + url.QueryEscape("rate(prometheus_http_requests_total[1m])") + "&g0.tab=0&g0.range_input=1h"},
	}
	const rounds = 5
	results := map[string][]pageLoad{}
	for r := 0; r < rounds; r++ {
		for _, p := range pages {
			results[p.name] = append(results[p.name], loadPage(b, p.url))
		}
	}
	t.Logf("first visit, cache cleared, median of %d, demo of %d devices running:", rounds, devices)
	t.Logf("%-18s %12s %12s %9s %12s", "page", "transferred", "decoded", "requests", "first paint")
	med := map[string]pageLoad{}
	for _, p := range pages {
		m := medianLoad(results[p.name])
		med[p.name] = m
		t.Logf("%-18s %10.1f KiB %10.1f KiB %9d %10.0f ms", p.name, m.Bytes/1024, m.Decoded/1024, m.Requests, m.FCP)
	}
	peer := med["Prometheus graph"]
	for _, n := range []string{"wanwu fleet", "wanwu device"} {
		t.Logf("%s / Prometheus graph: bytes %.2f×, first paint %.2f×", n, med[n].Bytes/peer.Bytes, med[n].FCP/peer.FCP)
	}

	// Server CPU per open live chart: the CPU the process spends over a
	// window with no chart open, then with `streams` open.
	idle := cpuOver(window, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	events := make([]int, streams)
	for i := 0; i < streams; i++ {
		cb := consoletest.New(t, d.base, nil)
		cb.MustSignIn(tokenOf(t, d.signIn), "/")
		wg.Add(1)
		go func() { defer wg.Done(); events[i] = readStream(ctx, cb, "/objects/"+url.PathEscape(code)+"/live") }()
	}
	time.Sleep(3 * time.Second)
	busy := cpuOver(window, nil)
	cancel()
	wg.Wait()
	total := 0
	for _, n := range events {
		total += n
	}
	perStream := (busy - idle).Seconds() / float64(streams) / window.Seconds() * 100
	t.Logf("wanwu: process CPU %.2f s over %s idle, %.2f s with %d live streams (%d events): %.3f%% of a core per open chart",
		idle.Seconds(), window, busy.Seconds(), streams, total, perStream)

	pidle := cpuOver(window, &prom.peerProcess)
	pctx, pcancel := context.WithCancel(context.Background())
	var pwg sync.WaitGroup
	for i := 0; i < streams; i++ {
		pwg.Add(1)
		go func() { defer pwg.Done(); pollRange(pctx, prom.URL) }()
	}
	time.Sleep(3 * time.Second)
	pbusy := cpuOver(window, &prom.peerProcess)
	pcancel()
	pwg.Wait()
	pPerStream := (pbusy - pidle).Seconds() / float64(streams) / window.Seconds() * 100
	t.Logf("Prometheus: process CPU %.2f s idle, %.2f s with %d charts polling query_range every second: %.3f%% of a core per open chart",
		pidle.Seconds(), pbusy.Seconds(), streams, pPerStream)
	if pPerStream > 0 {
		t.Logf("CPU per open live chart, wanwu / Prometheus: %.2f×", perStream/pPerStream)
	}
}

var reWanwuDemo = regexp.MustCompile(`wanwu demo`)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// pageLoad is what the browser's Performance API says of a page load.
type pageLoad struct {
	Bytes    float64 `json:"bytes"`   // transferred: headers and bodies as sent
	Decoded  float64 `json:"decoded"` // bodies after decompression
	Requests int     `json:"requests"`
	FCP      float64 `json:"fcp"` // first contentful paint, ms from navigation start
}

const perfJS = `(() => {
  const n = performance.getEntriesByType('navigation')[0];
  let bytes = n.transferSize, decoded = n.decodedBodySize, requests = 1;
  for (const e of performance.getEntriesByType('resource')) {
    if (e.initiatorType === 'other' && e.name.endsWith('/live')) continue; // the open event stream
    bytes += e.transferSize; decoded += e.decodedBodySize; requests++;
  }
  const p = performance.getEntriesByName('first-contentful-paint')[0];
  return {bytes: bytes, decoded: decoded, requests: requests, fcp: p ? p.startTime : -1};
})()`

// loadPage opens url in b's tab with the browser's cache cleared and
// returns what it cost.
func loadPage(b *browser, u string) pageLoad {
	b.t.Helper()
	b.run("leave the page", 30*time.Second, chromedp.Navigate("about:blank"))
	b.run("open "+u, 60*time.Second,
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, network.ClearBrowserCache, cdp.Empty{})
			return err
		}),
		chromedp.Navigate(u),
		chromedp.Sleep(2*time.Second)) // charts drawn, late requests done
	return value(b, "measure "+u, 10*time.Second, chromedp.Evaluate[pageLoad](perfJS))
}

func medianLoad(ls []pageLoad) pageLoad {
	med := func(f func(pageLoad) float64) float64 {
		v := make([]float64, len(ls))
		for i, l := range ls {
			v[i] = f(l)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return pageLoad{
		Bytes:    med(func(l pageLoad) float64 { return l.Bytes }),
		Decoded:  med(func(l pageLoad) float64 { return l.Decoded }),
		Requests: int(med(func(l pageLoad) float64 { return float64(l.Requests) })),
		FCP:      med(func(l pageLoad) float64 { return l.FCP }),
	}
}

// tokenOf is the token in a sign-in link.
func tokenOf(t *testing.T, link string) string {
	_, tok, ok := strings.Cut(link, "#token=")
	if !ok {
		t.Fatalf("no token in %s", link)
	}
	return tok
}

// readStream reads a console event stream until ctx ends and counts its
// events.
func readStream(ctx context.Context, b *consoletest.Browser, path string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.Base+path, nil)
	if err != nil {
		return 0
	}
	resp, err := b.C.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "event:") {
			n++
		}
	}
	return n
}

// pollRange asks Prometheus for the last 15 minutes of a series every
// second, as a live dashboard panel does.
func pollRange(ctx context.Context, prom string) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		end := time.Now()
		q := url.Values{"query": {"rate(prometheus_http_requests_total[1m])"},
			"start": {strconv.FormatInt(end.Add(-15*time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}, "step": {"5"}}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, prom+"/api/v1/query_range?"+q.Encode(), nil)
		if err == nil {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = bufio.NewReader(resp.Body).WriteTo(discard{})
				resp.Body.Close()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// peerProcess is a peer running as a child process.
type peerProcess struct{ cmd *exec.Cmd }

// cpuOver returns the CPU time (user and system) spent over d by this
// process (p nil) or by the peer.
func cpuOver(d time.Duration, p *peerProcess) time.Duration {
	read := func() time.Duration {
		if p == nil {
			var ru syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			return 0
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	before := read()
	time.Sleep(d)
	return read() - before
}

// startPrometheus runs Debian's prometheus scraping itself every 5 s on
// a free loopback port, or skips.
func startPrometheus(t *testing.T) *promPeer {
	t.Helper()
	exe, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("the peer is Debian's prometheus: apt-get install prometheus")
	}
	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf("global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n", port)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := &promPeer{peerProcess: peerProcess{cmd}, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(p.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				time.Sleep(11 * time.Second) // a few scrapes to draw
				return p
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("prometheus not ready within 30 s")
	return nil
}

type promPeer struct {
	peerProcess
	URL string
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

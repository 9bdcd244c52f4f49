package cli

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	coapudp "github.com/plgd-dev/go-coap/v3/udp"

	"github.com/wanwu-iot/wanwu/internal/loadgen"
)

func parseCoAPFlags(t *testing.T, args ...string) (loadgen.CoAPOptions, error) {
	t.Helper()
	var f coapFlags
	if err := coapFlagSet(&f).Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return f.coapOptions()
}

func TestBenchCoAPFlags(t *testing.T) {
	o, err := parseCoAPFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Confirmable || o.Method != codes.POST || o.Path != "t" || o.Clients != loadgen.DefaultCoAPClients || o.Inflight != 1 || o.Query != nil {
		t.Errorf("defaults: %+v", o)
	}
	o, err = parseCoAPFlags(t, "--non", "--method", "put", "--path", "example_data", "--rate", "5000", "--query", "k=v",
		"--source-addrs", "127.0.1.1-127.0.1.3", "--duration", "3s", "--size", "64", "--timeout", "2s")
	if err != nil {
		t.Fatal(err)
	}
	if o.Confirmable || o.Method != codes.PUT || o.Path != "example_data" || o.Rate != 5000 || len(o.SourceAddrs) != 3 ||
		o.Duration != 3*time.Second || o.RequestsPerClient != 0 || o.PayloadSize != 64 || o.Timeout != 2*time.Second {
		t.Errorf("set: %+v", o)
	}
	if q := o.Query(0); len(q) != 1 || q[0] != "k=v" {
		t.Errorf("query %q", q)
	}
	o, err = parseCoAPFlags(t, "--wanwu-hub", "http://127.0.0.1:1", "--dtls")
	if err != nil || !o.DTLS {
		t.Errorf("--wanwu-hub --dtls: %v %+v", err, o)
	}
	for _, bad := range [][]string{
		{"--con", "--non"},
		{"--clients", "0"},
		{"--requests", "70000"},
		{"--dtls"},
		{"--provision", "--peer-token"},
		{"--method", "GET"},
		{"--inflight", "0"},
		{"--source-addrs", "nonsense"},
	} {
		if _, err := parseCoAPFlags(t, bad...); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPrintCoAP(t *testing.T) {
	var b bytes.Buffer
	printCoAP(&b, &loadgen.CoAPResult{
		Mode: "coap", Target: "127.0.0.1:5683", Transport: "udp", Type: "NON", Method: "POST", Path: "t",
		Clients: 10, Connected: 10, RequestsPerClient: 100, Inflight: 1, PayloadBytes: 100, DatagramBytes: 333,
		Sent: 1000, Answered: 998, OK: 997, Unanswered: 2, Codes: map[string]int64{"2.04": 997, "4.29": 1},
		Window: time.Second, Throughput: 997, TargetPID: 42, TargetCPUSeconds: 0.5, CPUSecondsPerMillion: 501.5,
		Latency: loadgen.Summarize([]time.Duration{time.Millisecond, 2 * time.Millisecond}),
	})
	out := strings.Join(strings.Fields(b.String()), " ") // column widths aside
	for _, want := range []string{"NON POST /t", "10 clients × 100 requests of 100 B (datagram 333 B)", "2.xx 997 997 responses/s",
		"2.04 997, 4.29 1; unanswered 2", "p50 1.00ms", "501.50 CPU-s per million 2.xx", "errors none"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printRoundtrip(&b, &loadgen.RoundtripResult{Devices: 3, Connected: 3, TwinRounds: 2, CommandRounds: 2, TwinOK: 6, CommandOK: 5,
		Interval: 100 * time.Millisecond, Errors: map[string]int64{"command_delivery_timeout": 1}})
	out = strings.Join(strings.Fields(b.String()), " ")
	for _, want := range []string{"3 devices × (2 twin + 2 command rounds), 100ms apart", "twin rounds ok 6", "command_delivery_timeout 1", "no samples"} {
		if !strings.Contains(out, want) {
			t.Errorf("roundtrip output lacks %q:\n%s", want, b.String())
		}
	}
}

// TestBenchCoAPCommand runs `wanwu bench coap` against go-coap's server:
// exit 0 when every request got 2.04, and a JSON result with --json.
func TestBenchCoAPCommand(t *testing.T) {
	l, err := coapnet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	_ = r.Handle("/t", mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
	}))
	s := coapudp.NewServer(options.WithMux(r))
	go func() { _ = s.Serve(l) }()
	defer func() { s.Stop(); _ = l.Close() }()
	target := l.LocalAddr().(*net.UDPAddr).String()

	var out, errb bytes.Buffer
	if code := Main([]string{"bench", "coap", "--target", target, "--clients", "4", "--requests", "20", "--peer-token", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), `"ok": 80`) || !strings.Contains(out.String(), `"2.04": 80`) {
		t.Errorf("result: %s", out.String())
	}
	out.Reset()
	errb.Reset()
	// Nothing at /missing: go-coap answers 4.04, and the command fails.
	if code := Main([]string{"bench", "coap", "--target", target, "--clients", "2", "--requests", "5", "--path", "missing"}, &out, &errb); code == 0 {
		t.Errorf("4.04 answers exited 0: %s", out.String())
	}
	if !strings.Contains(out.String(), "4.04 10") {
		t.Errorf("output: %s", out.String())
	}
}

func TestBenchModes(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"bench", "nosuch"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "coap or roundtrip") {
		t.Errorf("unknown mode: %d %s", code, errb.String())
	}
	errb.Reset()
	if code := Main([]string{"bench", "roundtrip", "--devices", "0"}, &out, &errb); code != 2 {
		t.Errorf("--devices 0: exit %d %s", code, errb.String())
	}
}

package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/loadgen"
)

// benchFlags are the flags of `wanwu bench mqtt` and `wanwu bench idle`.
type benchFlags struct {
	broker, topic, subscribe        string
	username, password              string
	subUsername, subPassword        string
	tenant, sourceAddrs, out, state string
	tlsCA                           string
	tlsInsecure, jsonOut, provision bool
	countStored                     bool
	queryableEvery                  int
	protocol, clients, messages     int
	qos, size, inflight, targetPID  int
	subQoS, subProtocol             int
	rate                            float64
	aligned                         bool
	duration, timeout, hold         time.Duration
	drainQuiet, drainMax            time.Duration
	wanwuHub                        string
	hub                             ctlGlobals
}

func benchFlagSet(mode string, f *benchFlags) *flag.FlagSet {
	fs := newFlagSet("bench " + mode)
	fs.StringVar(&f.broker, "broker", loadgen.DefaultBroker, "MQTT broker: tcp://host:port or ssl://host:port")
	fs.IntVar(&f.protocol, "protocol", loadgen.DefaultProtocol, "MQTT version: 5, or 3 for 3.1.1")
	fs.IntVar(&f.clients, "clients", loadgen.DefaultClients, "simulated devices, one connection each")
	fs.StringVar(&f.tenant, "tenant", loadgen.DefaultTenant, "device codes are <tenant>:dev-<i>; also the client ids")
	fs.StringVar(&f.username, "username", "", "username of every device connection (peers); --provision sets code and device token instead")
	fs.StringVar(&f.password, "password", "", "password of every device connection")
	fs.StringVar(&f.sourceAddrs, "source-addrs", "", "local addresses to bind client sockets to, round-robin: 127.0.0.2-127.0.0.9,127.0.1.1")
	fs.IntVar(&f.targetPID, "target-pid", 0, "PID of the broker process: report its CPU-seconds and resident memory")
	fs.DurationVar(&f.timeout, "timeout", loadgen.DefaultTimeout, "limit on one connect, subscribe or publish round trip")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA certificate (PEM) to verify an ssl:// broker with")
	fs.BoolVar(&f.tlsInsecure, "tls-insecure", false, "do not verify an ssl:// broker's certificate")
	fs.BoolVar(&f.jsonOut, "json", false, "print the result as JSON instead of a table")
	fs.StringVar(&f.out, "out", "", "also write the result as JSON to this file")
	fs.BoolVar(&f.provision, "provision", false, "wanwu target: register the devices at the hub (--hub, --token...) and connect with device tokens")
	fs.StringVar(&f.wanwuHub, "wanwu-hub", "", "shorthand for --provision --hub URL")
	fs.StringVar(&f.state, "state", "", "file caching provisioned device keys between runs (default: <user cache dir>/wanwu/bench-<tenant>.json)")
	ctlGlobalFlags(fs, &f.hub)
	switch mode {
	case "mqtt":
		fs.IntVar(&f.messages, "messages", loadgen.DefaultMessages, "messages per client")
		fs.DurationVar(&f.duration, "duration", 0, "publish for this long instead of --messages")
		fs.Float64Var(&f.rate, "rate", 0, "messages per second per client (0: as fast as the in-flight window allows); client i of N starts i/N of an interval late")
		fs.BoolVar(&f.aligned, "aligned", false, "with --rate: all clients publish at the same instants (bursts of N) instead of spread over the interval")
		fs.IntVar(&f.qos, "qos", 1, "QoS of publishes and of the counting subscription")
		fs.IntVar(&f.size, "size", loadgen.DefaultPayloadSize, "payload bytes (SenML JSON padded to this size)")
		fs.IntVar(&f.inflight, "inflight", loadgen.DefaultInflight, "most unacknowledged publishes per client")
		fs.IntVar(&f.queryableEvery, "queryable-every", 0, "with --provision: poll the hub's store (its Prometheus API) for one acknowledged message in N until it is readable (publish→queryable latency); 0 = off")
		fs.StringVar(&f.topic, "topic", "wanwu/v1/{tenant}/{id}/telemetry", "publish topic; {tenant}, {id}, {code} and {i} are replaced")
		fs.StringVar(&f.subscribe, "subscribe", "wanwu/v1/{tenant}/+/telemetry", "counting subscriber's topic filter ({tenant} replaced); empty: count nothing")
		fs.BoolVar(&f.countStored, "count-stored", false, "with --provision: no subscriber; count deliveries by reading every device's messages back from the hub's store (its Prometheus API) after publishing")
		fs.IntVar(&f.subProtocol, "sub-protocol", 5, "MQTT version of the counting subscriber (5, or 3 for 3.1.1)")
		fs.IntVar(&f.subQoS, "sub-qos", -1, "QoS of the counting subscription (-1: the same as --qos)")
		fs.StringVar(&f.subUsername, "sub-username", "", "counting subscriber's username (with --provision: bench)")
		fs.StringVar(&f.subPassword, "sub-password", "", "counting subscriber's password (with --provision: the API token)")
		fs.DurationVar(&f.drainQuiet, "drain-quiet", loadgen.DefaultDrainQuiet, "after publishing, stop waiting for deliveries once none arrived for this long")
		fs.DurationVar(&f.drainMax, "drain-max", loadgen.DefaultDrainMax, "longest wait for deliveries after publishing")
	case "idle":
		fs.DurationVar(&f.hold, "hold", loadgen.DefaultIdleSettle, "how long to hold the connections before measuring")
	}
	return fs
}

func init() {
	for _, mode := range []string{"mqtt", "idle"} {
		register("bench "+mode, benchFlagSet(mode, &benchFlags{}))
	}
	register("bench coap", coapFlagSet(&coapFlags{}))
	register("bench roundtrip", roundtripFlagSet(&roundtripFlags{}))
}

func benchUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: wanwu bench <mode> [flags]

Modes:
  mqtt   N devices publish M messages each; a subscriber counts deliveries by
         (device, sequence): ok, lost, duplicate (or, with --count-stored, they
         are read back from a wanwu hub's store); latency percentiles; the
         target's CPU-seconds per million messages and memory
  idle   connect N devices, hold them, report the target's memory per connection
  coap   N devices, one UDP socket each, POST SenML CBOR (CON or NON) to a CoAP
         server (wanwu or a peer): responses by code, rate, latency, the
         target's CPU-seconds per million requests and memory
  roundtrip
         M wanwu devices over MQTT answer twin updates and commands issued
         through the API: desired→notified and issued→received latencies

Against any MQTT broker or CoAP server (wanwu or a peer) with the same clients.
Examples:
  wanwu bench mqtt --broker tcp://127.0.0.1:1883 --clients 100 --messages 1000 --qos 1 --target-pid PID
  wanwu bench mqtt --broker tcp://127.0.0.1:1883 --wanwu-hub http://127.0.0.1:8080 --token-file wanwu-data/admin.token
  wanwu bench idle --broker tcp://127.0.0.1:1883 --clients 10000 --source-addrs 127.0.0.2-127.0.0.9 --target-pid PID
  wanwu bench coap --target 127.0.0.1:5683 --provision --hub http://127.0.0.1:8080 --clients 100 --requests 1000 --non
  wanwu bench coap --target 127.0.0.1:15683 --clients 100 --requests 1000 --peer-token --target-pid PID
  wanwu bench roundtrip --broker tcp://127.0.0.1:1883 --hub http://127.0.0.1:8080 --devices 50

Run 'wanwu bench <mode> -h' for a mode's flags.
`)
}

func runBench(e *env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		benchUsage(e.stdout)
		if len(args) == 0 {
			return usagef("missing mode (mqtt, idle, coap or roundtrip)")
		}
		return nil
	}
	mode := args[0]
	switch mode {
	case "coap":
		return runBenchCoAP(e, args[1:])
	case "roundtrip":
		return runBenchRoundtrip(e, args[1:])
	case "mqtt", "idle":
	default:
		return usagef("unknown mode %q (want mqtt, idle, coap or roundtrip; see 'wanwu bench -h')", mode)
	}
	var f benchFlags
	fs := benchFlagSet(mode, &f)
	if err := parse(e, fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if f.wanwuHub != "" {
		f.provision = true
		f.hub.hub = f.wanwuHub
	}

	o := loadgen.Options{
		Broker:            f.broker,
		Protocol:          f.protocol,
		Clients:           f.clients,
		MessagesPerClient: f.messages,
		Duration:          f.duration,
		Rate:              f.rate,
		Aligned:           f.aligned,
		QoS:               f.qos,
		PayloadSize:       f.size,
		Inflight:          f.inflight,
		Tenant:            f.tenant,
		TargetPID:         f.targetPID,
		Timeout:           f.timeout,
		DrainQuiet:        f.drainQuiet,
		DrainMax:          f.drainMax,
		IdleSettle:        f.hold,
		Progress:          func(msg string) { fmt.Fprintf(e.stderr, "bench: %s\n", msg) },
	}
	if mode == "mqtt" {
		if f.clients < 1 || (f.messages < 1 && f.duration <= 0) {
			return usagef("--clients and --messages (or --duration) must be positive")
		}
		tenant := f.tenant
		o.TopicFor = func(i int) string {
			code := loadgen.DeviceCode(tenant, i)
			return strings.NewReplacer("{tenant}", tenant, "{id}", strings.TrimPrefix(code, tenant+":"),
				"{code}", code, "{i}", strconv.Itoa(i)).Replace(f.topic)
		}
		o.SubscribeTopic = strings.ReplaceAll(f.subscribe, "{tenant}", tenant)
		if f.countStored {
			if !f.provision {
				return usagef("--count-stored reads a wanwu hub's store: it needs --provision")
			}
			o.SubscribeTopic = ""
		}
		o.SubscriberUsername, o.SubscriberPassword = f.subUsername, f.subPassword
		o.SubscriberProtocol = f.subProtocol
		if f.subQoS >= 0 {
			q := byte(min(f.subQoS, 255))
			o.SubscriberQoS = &q
		}
	} else if f.clients < 1 {
		return usagef("--clients must be positive")
	}
	if f.sourceAddrs != "" {
		addrs, err := loadgen.ParseAddrs(f.sourceAddrs)
		if err != nil {
			return usagef("--source-addrs: %v", err)
		}
		o.SourceAddrs = addrs
	}
	if strings.HasPrefix(f.broker, "ssl://") || strings.HasPrefix(f.broker, "mqtts://") || strings.HasPrefix(f.broker, "tls://") {
		cfg := &tls.Config{InsecureSkipVerify: f.tlsInsecure}
		if f.tlsCA != "" {
			pem, err := os.ReadFile(f.tlsCA)
			if err != nil {
				return fmt.Errorf("--tls-ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return usagef("--tls-ca %s: no PEM certificate", f.tlsCA)
			}
		}
		o.TLS = cfg
	}
	raiseOpenFileLimit()

	ctx, stop := signal.NotifyContext(e.context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if f.provision {
		if f.username != "" || f.password != "" {
			return usagef("--username/--password do not apply with --provision: devices connect with their code and a device token")
		}
		conn, err := f.hub.connect()
		if err != nil {
			return err
		}
		state := f.state
		if state == "" {
			dir, err := os.UserCacheDir()
			if err != nil {
				dir = os.TempDir()
			}
			state = filepath.Join(dir, "wanwu", "bench-"+f.tenant+".json")
		}
		devs, err := loadgen.Provision(ctx, loadgen.ProvisionOptions{
			Hub: conn.Base, Token: conn.Token, Tenant: f.tenant, N: f.clients, StateFile: state, Progress: o.Progress,
		})
		if err != nil {
			return err
		}
		tokens, err := loadgen.DeviceTokens(devs, time.Now(), devtoken.MaxLifetime)
		if err != nil {
			return err
		}
		o.Credentials = func(i int) (string, string) { return devs[i].Code, tokens[i] }
		if o.SubscriberUsername == "" {
			o.SubscriberUsername = "bench"
		}
		if o.SubscriberPassword == "" {
			o.SubscriberPassword = conn.Token
		}
		if f.queryableEvery > 0 {
			o.QueryableEvery = f.queryableEvery
			o.Queryable = loadgen.HubQueryable(conn.Base, conn.Token, f.tenant)
		}
		if f.countStored {
			o.Store = loadgen.NewHubStore(conn.Base, conn.Token, f.tenant)
		}
	} else if f.username != "" || f.password != "" {
		o.Credentials = func(int) (string, string) { return f.username, f.password }
	}

	var res *loadgen.Result
	var err error
	if mode == "mqtt" {
		res, err = loadgen.Run(ctx, o)
	} else {
		if f.targetPID == 0 {
			return usagef("idle needs --target-pid: it measures the target's memory")
		}
		res, err = loadgen.Idle(ctx, o)
	}
	if res != nil {
		if f.out != "" {
			b, _ := json.MarshalIndent(res, "", "  ")
			if werr := os.WriteFile(f.out, append(b, '\n'), 0o644); werr != nil {
				return fmt.Errorf("--out: %w", werr)
			}
		}
		if f.jsonOut {
			if perr := printJSON(e.stdout, res); perr != nil {
				return perr
			}
		} else {
			printBench(e.stdout, res)
		}
	}
	if err != nil {
		return err
	}
	if res.Lost > 0 {
		return fmt.Errorf("%d acknowledged messages were never delivered", res.Lost)
	}
	return nil
}

// raiseOpenFileLimit lifts the soft limit on open files to the hard one:
// every simulated device is a socket.
func raiseOpenFileLimit() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}

func printBench(w io.Writer, r *loadgen.Result) {
	proto := "5"
	if r.Protocol == 3 {
		proto = "3.1.1"
	}
	fmt.Fprintf(w, "wanwu bench %s: %s, MQTT %s", r.Mode, r.Broker, proto)
	if r.Mode == "mqtt" {
		load := fmt.Sprintf("%d messages", r.MessagesPerClient)
		if r.MessagesPerClient == 0 {
			load = "for " + r.PublishWindow.Round(time.Second).String()
		}
		fmt.Fprintf(w, ", QoS %d, %d clients × %s of %d B, in-flight %d", r.QoS, r.Clients, load, r.PayloadBytes, r.Inflight)
		if r.Rate > 0 {
			fmt.Fprintf(w, ", %.4g msg/s each", r.Rate)
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, a...)...) }
	row("connected", "%d/%d in %s", r.Connected, r.Clients, r.ConnectTime.Round(time.Millisecond))
	if r.Mode == "mqtt" {
		row("sent", "%d", r.Sent)
		row("acked", "%d\t%.0f msg/s over %s", r.Acked, r.Throughput, r.PublishWindow.Round(time.Millisecond))
		if r.CountedBy == "store" {
			row("stored", "%d\tlost %d, stored unacked %d (read back from the hub's store; wait %s)", r.Delivered, r.Lost, r.DeliveredUnacked, r.DrainTime.Round(time.Millisecond))
		} else if r.Counted {
			row("delivered", "%d\tlost %d, duplicates %d, delivered unacked %d (drain %s)", r.Delivered, r.Lost, r.Duplicates, r.DeliveredUnacked, r.DrainTime.Round(time.Millisecond))
		} else {
			row("delivered", "not counted (no --subscribe)")
		}
		if r.QoS > 0 {
			row("publish→ack", "%s", pct(r.PublishToAck))
		}
		if r.CountedBy == "subscriber" {
			row("publish→delivery", "%s", pct(r.PublishToDeliver))
		}
		if r.PublishToQueryable != nil {
			row("publish→queryable", "%s", pct(*r.PublishToQueryable))
		}
	}
	if r.TargetPID != 0 {
		cpu := fmt.Sprintf("%.2f CPU-s", r.TargetCPUSeconds)
		if r.CPUSecondsPerMillion > 0 {
			cpu += fmt.Sprintf(" (%.2f CPU-s per million messages)", r.CPUSecondsPerMillion)
		}
		row(fmt.Sprintf("target %d", r.TargetPID), "%s", cpu)
		row("target RSS", "%s → %s (peak %s)", mib(r.TargetRSSBefore), mib(r.TargetRSSAfter), mib(r.TargetRSSPeak))
		if r.Mode == "idle" && r.Connected > 0 {
			row("RSS per connection", "%.2f KiB", r.RSSPerConnection/1024)
		}
	}
	row("generator", "%.2f CPU-s", r.GeneratorCPUSeconds)
	if r.GeneratorSchedP99 > 0 {
		row("generator scheduling", "p99 %s before a runnable goroutine ran (part of every latency above)", r.GeneratorSchedP99.Round(10*time.Microsecond))
	}
	if len(r.Errors) == 0 {
		row("errors", "none")
	} else {
		kinds := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Errors[k]))
		}
		row("errors", "%s", strings.Join(parts, ", "))
	}
	tw.Flush()
}

func pct(p loadgen.Percentiles) string {
	if p.N == 0 {
		return "no samples"
	}
	d := func(v time.Duration) string { return fmt.Sprintf("%.2fms", float64(v)/float64(time.Millisecond)) }
	return fmt.Sprintf("p50 %s  p99 %s  p99.9 %s  max %s  (n=%d)", d(p.P50), d(p.P99), d(p.P999), d(p.Max), p.N)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// coapFlags are the flags of `wanwu bench coap`.
type coapFlags struct {
	target, method, path, tenant   string
	sourceAddrs, out, state, query string
	wanwuHub                       string
	clients, requests, inflight    int
	size, targetPID, maxRetransmit int
	rate                           float64
	duration, timeout, ackTimeout  time.Duration
	con, non, dtls, provision      bool
	peerToken, jsonOut             bool
	hub                            ctlGlobals
}

func coapFlagSet(f *coapFlags) *flag.FlagSet {
	fs := newFlagSet("bench coap")
	fs.StringVar(&f.target, "target", loadgen.DefaultCoAPTarget, "CoAP server host:port (wanwu: coap.listen, or coap.dtls-listen with --dtls)")
	fs.IntVar(&f.clients, "clients", loadgen.DefaultCoAPClients, "simulated devices, one UDP socket (source endpoint) each")
	fs.IntVar(&f.requests, "requests", loadgen.DefaultCoAPRequests, fmt.Sprintf("requests per device (at most %d: one endpoint's message ids)", loadgen.MaxCoAPRequestsPerClient))
	fs.DurationVar(&f.duration, "duration", 0, "send for this long instead of --requests")
	fs.Float64Var(&f.rate, "rate", 0, "TOTAL requests per second over all devices (0: as fast as the in-flight windows allow)")
	fs.IntVar(&f.inflight, "inflight", loadgen.DefaultCoAPInflight, "most outstanding requests per device (RFC 7252 NSTART is 1)")
	fs.BoolVar(&f.con, "con", false, "confirmable requests, retransmitted until answered (the default)")
	fs.BoolVar(&f.non, "non", false, "non-confirmable requests; responses are counted")
	fs.StringVar(&f.method, "method", "POST", "POST or PUT")
	fs.StringVar(&f.path, "path", loadgen.DefaultCoAPPath, "Uri-Path (wanwu: t for telemetry)")
	fs.IntVar(&f.size, "size", loadgen.DefaultPayloadSize, "payload bytes (SenML CBOR, Content-Format 112, padded to this size)")
	fs.StringVar(&f.tenant, "tenant", loadgen.DefaultTenant, "device codes are <tenant>:dev-<i> (the SenML base name)")
	fs.StringVar(&f.query, "query", "", "a Uri-Query option on every request (peers), e.g. k=v")
	fs.BoolVar(&f.peerToken, "peer-token", false, "peers: send a Uri-Query t=<device token> signed by a throwaway key, so the peer parses datagrams of the size wanwu's do")
	fs.BoolVar(&f.dtls, "dtls", false, "DTLS with each device's PSK (needs --provision)")
	fs.StringVar(&f.sourceAddrs, "source-addrs", "", "local addresses to bind sockets to, round-robin: 127.0.1.1-127.0.1.50")
	fs.IntVar(&f.targetPID, "target-pid", 0, "PID of the server process: report its CPU-seconds and resident memory")
	fs.DurationVar(&f.timeout, "timeout", loadgen.DefaultCoAPTimeout, "a request unanswered this long counts as unanswered (CON: after its retransmissions)")
	fs.DurationVar(&f.ackTimeout, "ack-timeout", loadgen.DefaultCoAPAckTimeout, "CON: first retransmission timeout, doubling (RFC 7252 ACK_TIMEOUT)")
	fs.IntVar(&f.maxRetransmit, "max-retransmit", loadgen.DefaultCoAPMaxRetransmit, "CON: retransmissions (RFC 7252 MAX_RETRANSMIT)")
	fs.BoolVar(&f.provision, "provision", false, "wanwu target: register the devices at the hub (--hub, --token...) and authenticate with device tokens (?t=) or PSKs (--dtls)")
	fs.StringVar(&f.wanwuHub, "wanwu-hub", "", "shorthand for --provision --hub URL")
	fs.StringVar(&f.state, "state", "", "file caching provisioned device keys between runs (default: <user cache dir>/wanwu/bench-<tenant>.json)")
	fs.BoolVar(&f.jsonOut, "json", false, "print the result as JSON instead of a table")
	fs.StringVar(&f.out, "out", "", "also write the result as JSON to this file")
	ctlGlobalFlags(fs, &f.hub)
	return fs
}

// coapOptions checks the flags and turns them into loadgen options
// (without credentials: those need the hub).
func (f *coapFlags) coapOptions() (loadgen.CoAPOptions, error) {
	var o loadgen.CoAPOptions
	if f.wanwuHub != "" {
		f.provision = true
		f.hub.hub = f.wanwuHub
	}
	switch {
	case f.con && f.non:
		return o, usagef("--con and --non exclude each other")
	case f.clients < 1 || (f.requests < 1 && f.duration <= 0):
		return o, usagef("--clients and --requests (or --duration) must be positive")
	case f.requests > loadgen.MaxCoAPRequestsPerClient && f.duration <= 0:
		return o, usagef("--requests %d: one socket has %d message ids; use more --clients", f.requests, loadgen.MaxCoAPRequestsPerClient)
	case f.dtls && !f.provision:
		return o, usagef("--dtls needs --provision (the PSKs come from the hub)")
	case f.provision && (f.peerToken || f.query != ""):
		return o, usagef("--peer-token and --query are for peers; --provision sends each device's own token")
	case f.inflight < 1:
		return o, usagef("--inflight must be positive")
	}
	var method codes.Code
	switch strings.ToUpper(f.method) {
	case "POST":
		method = codes.POST
	case "PUT":
		method = codes.PUT
	default:
		return o, usagef("--method %q (want POST or PUT)", f.method)
	}
	o = loadgen.CoAPOptions{
		Target: f.target, DTLS: f.dtls, Clients: f.clients, RequestsPerClient: f.requests, Duration: f.duration,
		Rate: f.rate, Inflight: f.inflight, Confirmable: !f.non, Method: method, Path: f.path, PayloadSize: f.size,
		Tenant: f.tenant, TargetPID: f.targetPID, Timeout: f.timeout, AckTimeout: f.ackTimeout, MaxRetransmit: f.maxRetransmit,
	}
	if f.duration > 0 {
		o.RequestsPerClient = 0
	}
	if f.query != "" {
		k, v, _ := strings.Cut(f.query, "=")
		q := loadgen.SplitQuery(k, v)
		o.Query = func(int) []string { return q }
	}
	if f.sourceAddrs != "" {
		addrs, err := loadgen.ParseAddrs(f.sourceAddrs)
		if err != nil {
			return o, usagef("--source-addrs: %v", err)
		}
		o.SourceAddrs = addrs
	}
	return o, nil
}

func runBenchCoAP(e *env, args []string) error {
	var f coapFlags
	fs := coapFlagSet(&f)
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	o, err := f.coapOptions()
	if err != nil {
		return err
	}
	o.Progress = func(msg string) { fmt.Fprintf(e.stderr, "bench: %s\n", msg) }
	raiseOpenFileLimit()
	ctx, stop := signal.NotifyContext(e.context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch {
	case f.provision:
		devs, conn, err := benchProvision(ctx, f.hub, f.tenant, f.clients, f.state, "", o.Progress)
		if err != nil {
			return err
		}
		if f.dtls {
			codes := make([]string, len(devs))
			for i, d := range devs {
				codes[i] = d.Code
			}
			keys, err := loadgen.DevicePSKs(ctx, conn.Base, conn.Token, codes)
			if err != nil {
				return err
			}
			o.PSK = func(i int) (string, []byte) { return codes[i], keys[i] }
		} else {
			tokens, err := loadgen.DeviceTokens(devs, time.Now(), devtoken.MaxLifetime)
			if err != nil {
				return err
			}
			o.Query = func(i int) []string { return loadgen.SplitQuery("t", tokens[i]) }
		}
	case f.peerToken:
		q, err := peerTokens(f.tenant, f.clients)
		if err != nil {
			return err
		}
		o.Query = func(i int) []string { return q[i] }
	}

	res, err := loadgen.RunCoAP(ctx, o)
	if res != nil {
		if werr := writeBenchResult(e, f.out, f.jsonOut, res, func(w io.Writer) { printCoAP(w, res) }); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	if res.OK < res.Sent {
		return fmt.Errorf("%d of %d requests were not answered with 2.xx", res.Sent-res.OK, res.Sent)
	}
	return nil
}

// peerTokens signs, with one throwaway P-256 key, a device token per
// device: the same format and size as the tokens wanwu devices send, so a
// peer parses the same datagrams.
func peerTokens(tenant string, n int) ([][]string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	devs := make([]loadgen.Device, n)
	for i := range devs {
		devs[i] = loadgen.Device{Code: loadgen.DeviceCode(tenant, i), Key: k}
	}
	tokens, err := loadgen.DeviceTokens(devs, time.Now(), devtoken.MaxLifetime)
	if err != nil {
		return nil, err
	}
	out := make([][]string, n)
	for i, t := range tokens {
		out[i] = loadgen.SplitQuery("t", t)
	}
	return out, nil
}

// benchProvision registers (or reuses) the bench devices of tenant at the hub.
func benchProvision(ctx context.Context, g ctlGlobals, tenant string, n int, state, model string, progress func(string)) ([]loadgen.Device, *ctlConn, error) {
	conn, err := g.connect()
	if err != nil {
		return nil, nil, err
	}
	if state == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		state = filepath.Join(dir, "wanwu", "bench-"+tenant+".json")
	}
	devs, err := loadgen.Provision(ctx, loadgen.ProvisionOptions{
		Hub: conn.Base, Token: conn.Token, Tenant: tenant, N: n, StateFile: state, Model: model, Progress: progress,
	})
	return devs, conn, err
}

func writeBenchResult(e *env, out string, jsonOut bool, res any, table func(io.Writer)) error {
	if out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	if jsonOut {
		return printJSON(e.stdout, res)
	}
	table(e.stdout)
	return nil
}

func printCoAP(w io.Writer, r *loadgen.CoAPResult) {
	load := fmt.Sprintf("%d requests", r.RequestsPerClient)
	if r.RequestsPerClient == 0 {
		load = "for " + r.Window.Round(time.Second).String()
	}
	fmt.Fprintf(w, "wanwu bench coap: %s %s, %s %s /%s, %d clients × %s of %d B (datagram %d B), in-flight %d",
		r.Transport, r.Target, r.Type, r.Method, r.Path, r.Clients, load, r.PayloadBytes, r.DatagramBytes, r.Inflight)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", %.4g req/s in total", r.Rate)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, a...)...) }
	row("connected", "%d/%d in %s", r.Connected, r.Clients, r.ConnectTime.Round(time.Millisecond))
	row("sent", "%d\tretransmissions %d", r.Sent, r.Retransmissions)
	row("2.xx", "%d\t%.0f responses/s over %s", r.OK, r.Throughput, r.Window.Round(time.Millisecond))
	codes := "none"
	if len(r.Codes) > 0 {
		codes = loadgen.SortedCodes(r.Codes)
	}
	row("answered", "%d\tby code: %s; unanswered %d", r.Answered, codes, r.Unanswered)
	row("latency", "%s", pct(r.Latency))
	if r.TargetPID != 0 {
		cpu := fmt.Sprintf("%.2f CPU-s", r.TargetCPUSeconds)
		if r.CPUSecondsPerMillion > 0 {
			cpu += fmt.Sprintf(" (%.2f CPU-s per million 2.xx)", r.CPUSecondsPerMillion)
		}
		row(fmt.Sprintf("target %d", r.TargetPID), "%s", cpu)
		row("target RSS", "%s → %s (peak %s)", mib(r.TargetRSSBefore), mib(r.TargetRSSAfter), mib(r.TargetRSSPeak))
	}
	row("generator", "%.2f CPU-s (%.2f per million 2.xx)", r.GeneratorCPUSeconds, r.GeneratorCPUPerMillion)
	if len(r.Errors) == 0 {
		row("errors", "none")
	} else {
		row("errors", "%s", loadgen.SortedCodes(r.Errors))
	}
	tw.Flush()
}

// roundtripFlags are the flags of `wanwu bench roundtrip`.
type roundtripFlags struct {
	broker, tenant, state, out, sourceAddrs string
	devices, twinRounds, commandRounds      int
	interval, timeout                       time.Duration
	jsonOut                                 bool
	hub                                     ctlGlobals
}

func roundtripFlagSet(f *roundtripFlags) *flag.FlagSet {
	fs := newFlagSet("bench roundtrip")
	fs.StringVar(&f.broker, "broker", loadgen.DefaultBroker, "the hub's MQTT address: tcp://host:port")
	fs.IntVar(&f.devices, "devices", 50, "devices connected over MQTT 5, answering at once")
	fs.IntVar(&f.twinRounds, "twin-rounds", 20, "desired-state updates per device")
	fs.IntVar(&f.commandRounds, "command-rounds", 20, "commands per device")
	fs.DurationVar(&f.interval, "interval", 100*time.Millisecond, "pause between one device's rounds")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "limit on one round")
	fs.StringVar(&f.tenant, "tenant", "benchrt", "tenant of the round-trip devices (its model is <tenant>:rtdev@"+loadgen.RoundtripModelVersion+")")
	fs.StringVar(&f.state, "state", "", "file caching provisioned device keys between runs (default: <user cache dir>/wanwu/bench-<tenant>.json)")
	fs.StringVar(&f.sourceAddrs, "source-addrs", "", "local addresses to bind client sockets to, round-robin")
	fs.BoolVar(&f.jsonOut, "json", false, "print the result as JSON instead of a table")
	fs.StringVar(&f.out, "out", "", "also write the result as JSON to this file")
	ctlGlobalFlags(fs, &f.hub)
	return fs
}

func runBenchRoundtrip(e *env, args []string) error {
	var f roundtripFlags
	fs := roundtripFlagSet(&f)
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if f.devices < 1 || f.twinRounds < 0 || f.commandRounds < 0 || f.twinRounds+f.commandRounds == 0 {
		return usagef("--devices must be positive, and some --twin-rounds or --command-rounds")
	}
	progress := func(msg string) { fmt.Fprintf(e.stderr, "bench: %s\n", msg) }
	ctx, stop := signal.NotifyContext(e.context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := f.hub.connect()
	if err != nil {
		return err
	}
	if err := loadgen.EnsureModel(ctx, conn.Base, conn.Token, loadgen.RoundtripModel(f.tenant)); err != nil {
		return err
	}
	devs, _, err := benchProvision(ctx, f.hub, f.tenant, f.devices, f.state, loadgen.RoundtripModelRef(f.tenant), progress)
	if err != nil {
		return err
	}
	tokens, err := loadgen.DeviceTokens(devs, time.Now(), devtoken.MaxLifetime)
	if err != nil {
		return err
	}
	o := loadgen.RoundtripOptions{
		Broker: f.broker, Hub: conn.Base, Token: conn.Token, Devices: devs, Tokens: tokens,
		TwinRounds: f.twinRounds, CommandRounds: f.commandRounds, Interval: f.interval, Timeout: f.timeout, Progress: progress,
	}
	if o.TwinRounds == 0 {
		o.TwinRounds = -1 // none, not the default
	}
	if f.sourceAddrs != "" {
		if o.SourceAddrs, err = loadgen.ParseAddrs(f.sourceAddrs); err != nil {
			return usagef("--source-addrs: %v", err)
		}
	}
	res, err := loadgen.Roundtrip(ctx, o)
	if res != nil {
		if werr := writeBenchResult(e, f.out, f.jsonOut, res, func(w io.Writer) { printRoundtrip(w, res) }); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	if want := int64(res.Connected) * int64(f.twinRounds); res.TwinOK < want {
		return fmt.Errorf("%d of %d twin rounds did not complete", want-res.TwinOK, want)
	}
	if want := int64(res.Connected) * int64(f.commandRounds); res.CommandOK < want {
		return fmt.Errorf("%d of %d commands did not succeed", want-res.CommandOK, want)
	}
	return nil
}

func printRoundtrip(w io.Writer, r *loadgen.RoundtripResult) {
	fmt.Fprintf(w, "wanwu bench roundtrip: %s via %s, %d devices × (%d twin + %d command rounds), %s apart\n",
		r.Hub, r.Broker, r.Devices, max(r.TwinRounds, 0), r.CommandRounds, r.Interval)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, a...)...) }
	row("connected", "%d/%d", r.Connected, r.Devices)
	row("twin rounds ok", "%d", r.TwinOK)
	row("desired→notified", "%s", pct(r.TwinNotified))
	row("desired→reported", "%s", pct(r.TwinReported))
	row("desired→settled", "%s", pct(r.TwinSettled))
	row("commands ok", "%d", r.CommandOK)
	row("issued→received", "%s", pct(r.CommandReceived))
	row("issued→result acked", "%s", pct(r.CommandResult))
	row("issued→succeeded", "%s", pct(r.CommandSucceeded))
	row("generator", "%.2f CPU-s", r.GeneratorCPUSeconds)
	if len(r.Errors) == 0 {
		row("errors", "none")
	} else {
		row("errors", "%s", loadgen.SortedCodes(r.Errors))
	}
	tw.Flush()
}

package cli

import (
	"context"
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
	queryableEvery                  int
	protocol, clients, messages     int
	qos, size, inflight, targetPID  int
	subQoS, subProtocol             int
	rate                            float64
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
		fs.Float64Var(&f.rate, "rate", 0, "messages per second per client (0: as fast as the in-flight window allows)")
		fs.IntVar(&f.qos, "qos", 1, "QoS of publishes and of the counting subscription")
		fs.IntVar(&f.size, "size", loadgen.DefaultPayloadSize, "payload bytes (SenML JSON padded to this size)")
		fs.IntVar(&f.inflight, "inflight", loadgen.DefaultInflight, "most unacknowledged publishes per client")
		fs.IntVar(&f.queryableEvery, "queryable-every", 0, "with --provision: poll the hub's query API for one acknowledged message in N until it is readable (publish→queryable latency); 0 = off")
		fs.StringVar(&f.topic, "topic", "wanwu/v1/{tenant}/{id}/telemetry", "publish topic; {tenant}, {id}, {code} and {i} are replaced")
		fs.StringVar(&f.subscribe, "subscribe", "wanwu/v1/{tenant}/+/telemetry", "counting subscriber's topic filter ({tenant} replaced); empty: count nothing")
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
}

func benchUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: wanwu bench <mode> [flags]

Modes:
  mqtt   N devices publish M messages each; a subscriber counts deliveries by
         (device, sequence): ok, lost, duplicate; latency percentiles; the
         target's CPU-seconds per million messages and memory
  idle   connect N devices, hold them, report the target's memory per connection

Against any MQTT broker (wanwu or a peer) with the same real MQTT clients.
Examples:
  wanwu bench mqtt --broker tcp://127.0.0.1:1883 --clients 100 --messages 1000 --qos 1 --target-pid PID
  wanwu bench mqtt --broker tcp://127.0.0.1:1883 --wanwu-hub http://127.0.0.1:8080 --token-file wanwu-data/admin.token
  wanwu bench idle --broker tcp://127.0.0.1:1883 --clients 10000 --source-addrs 127.0.0.2-127.0.0.9 --target-pid PID

Run 'wanwu bench <mode> -h' for a mode's flags.
`)
}

func runBench(e *env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		benchUsage(e.stdout)
		if len(args) == 0 {
			return usagef("missing mode (mqtt or idle)")
		}
		return nil
	}
	mode := args[0]
	if mode != "mqtt" && mode != "idle" {
		return usagef("unknown mode %q (want mqtt or idle; see 'wanwu bench -h')", mode)
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
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
			o.Queryable = loadgen.HubQueryable(conn.Base, conn.Token)
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
		if r.Counted {
			row("delivered", "%d\tlost %d, duplicates %d, delivered unacked %d (drain %s)", r.Delivered, r.Lost, r.Duplicates, r.DeliveredUnacked, r.DrainTime.Round(time.Millisecond))
		} else {
			row("delivered", "not counted (no --subscribe)")
		}
		if r.QoS > 0 {
			row("publish→ack", "%s", pct(r.PublishToAck))
		}
		if r.Counted {
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

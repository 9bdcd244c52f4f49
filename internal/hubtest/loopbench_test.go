package hubtest

// The closed-loop latency benchmark of issue 19 (bench/loops.sh,
// bench/RESULTS.md "Closed loops"): device publish → decision → command
// delivered to the device, measured at the device with one clock, while
// other devices send background telemetry to the same node. Side by side
// with the way most deployments close a loop today: mosquitto and a rule
// client (paho) that subscribes to the telemetry, decides and publishes
// the command, two broker hops. It runs only with WANWU_LOOP_BENCH=1 and
// prints its figures as lines that start with "loopbench".
//
// Both systems run the same two loops over every device of the model, the
// background devices included (their value, 21.5, turns neither on):
//
//	hi: on when temperature > 50, off when temperature <= 50: command cool
//	lo: on when temperature < 0, off when temperature >= 0: command heat
//
// each command's argument level being the temperature that turned it on.
// A probe device alternates values over and under (101, -102, 103, ...):
// every sample turns one loop on (and the other off), so every sample is
// answered by one command, which the probe knows by its level, without a
// repeat and without a clearing sample in between.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	wanwudevice "github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/loadgen"
)

const (
	envLoopBench = "WANWU_LOOP_BENCH"
	// envRuleClient makes the test binary act as the peer's rule client
	// against the broker at its value (TestMain).
	envRuleClient = "WANWU_LOOP_RULE_CLIENT"
)

const loopBenchModel = `{"id":"bench:thermo","version":"1.0.0",
 "properties":{"temperature":{"type":"number","unit":"Cel"},"seq":{"type":"number"}},
 "actions":{"cool":{"input":{"level":{"type":"number"}}},"heat":{"input":{"level":{"type":"number"}}}}}`

// The two loops; on_delay 0, no repeat, a command, no approval.
var loopBenchLoops = []string{`
id: hi
tenant: bench
mode: active
on: {model: bench:thermo}
perceive:
  temp: {property: temperature, fn: last}
decide:
  when: temp > 50.0
  clear: temp <= 50.0
act:
  command: cool
  args: {level: temp}
`, `
id: lo
tenant: bench
mode: active
on: {model: bench:thermo}
perceive:
  temp: {property: temperature, fn: last}
decide:
  when: temp < 0.0
  clear: temp >= 0.0
act:
  command: heat
  args: {level: temp}
`}

// loopBenchOptions are the benchmark's settings (environment variables).
type loopBenchOptions struct {
	systems   []string      // LOOP_SYSTEMS: "peer wanwu", in this order, every round
	rounds    int           // LOOP_ROUNDS
	bgDevices int           // LOOP_BG_DEVICES: background devices
	bgRate    int           // LOOP_BG_RATE: their messages per second, all together
	probes    int           // LOOP_PROBES: measuring devices
	every     time.Duration // LOOP_PROBE_EVERY: a probe's pause between samples
	warmup    time.Duration // LOOP_WARMUP: background only, before the probes start
	window    time.Duration // LOOP_WINDOW: the measured window
	timeout   time.Duration // LOOP_TIMEOUT: a sample with no command by then is missed
	bgAddrs   []string      // source addresses of the background devices
	probeAddr string        // and of the probes
	mosquitto string        // LOOP_MOSQUITTO: the peer's binary
}

func loopBenchSettings(t *testing.T) loopBenchOptions {
	t.Helper()
	o := loopBenchOptions{
		systems:   strings.Fields(cmp.Or(os.Getenv("LOOP_SYSTEMS"), "peer wanwu")),
		rounds:    envInt(t, "LOOP_ROUNDS", 1),
		bgDevices: envInt(t, "LOOP_BG_DEVICES", 200),
		bgRate:    envInt(t, "LOOP_BG_RATE", 10000),
		probes:    envInt(t, "LOOP_PROBES", 10),
		every:     envDuration(t, "LOOP_PROBE_EVERY", 250*time.Millisecond),
		warmup:    envDuration(t, "LOOP_WARMUP", 5*time.Second),
		window:    envDuration(t, "LOOP_WINDOW", 30*time.Second),
		timeout:   envDuration(t, "LOOP_TIMEOUT", 2*time.Second),
		probeAddr: "127.0.2.1",
		mosquitto: cmp.Or(os.Getenv("LOOP_MOSQUITTO"), "mosquitto"),
	}
	var err error
	if o.bgAddrs, err = loadgen.ParseAddrs("127.0.1.1-127.0.1.8"); err != nil {
		t.Fatal(err)
	}
	for _, s := range o.systems {
		if s != "peer" && s != "wanwu" {
			t.Fatalf("LOOP_SYSTEMS: %q is neither peer nor wanwu", s)
		}
	}
	return o
}

// loopSystem is one side of the comparison, running.
type loopSystem struct {
	name   string
	broker string // host:port of the devices' MQTT listener
	// creds gives a device's MQTT username and password ("" for none).
	creds func(code string) (string, string)
	// pids are the server's processes (CPU is sampled in /proc); the
	// first is the broker, loadgen's target.
	pids []int
	note string
	// stages, when set, breaks the answered samples' latency down from
	// the system's own records after a round.
	stages func(t *testing.T, answered []probeSample)
	// metrics, when set, reads the server's own figures (name → value).
	metrics func() map[string]float64
}

// TestLoopBenchLatency measures device publish → command received at the
// device for LOOP_PROBES devices, each sending one sample every
// LOOP_PROBE_EVERY after its last command came, for LOOP_WINDOW, while
// LOOP_BG_DEVICES other devices send LOOP_BG_RATE messages a second in all
// (internal/loadgen, QoS 1, SenML JSON of 100 bytes) to the same node. The
// systems of LOOP_SYSTEMS run one after the other, LOOP_ROUNDS times:
//
//	peer   mosquitto (no persistence, no queue limits, as compare.sh) and a
//	       rule client in a process of its own (this test binary,
//	       paho.golang): it subscribes to every device's telemetry at
//	       QoS 1, decides, and publishes the command at QoS 1
//	wanwu  `wanwu edge` in a process of its own ($WANWU_BIN, else this
//	       test binary), its devices and the two loops defined at a hub
//	       that runs in this process; the edge's engine acts for the
//	       devices behind it, its commands go through its command service
//
// Defaults: 10 probes every 250ms, 200 background devices at 10,000
// messages/s, 5 s of background alone, then a 30-s window. Before each
// round the other system's processes must go quiet (a note says when
// they did not within 30 s). For wanwu the answered samples are also
// split at the edge's own records (evidence and command times) and the
// edge's ingest figures are read from its /metrics.
func TestLoopBenchLatency(t *testing.T) {
	if os.Getenv(envLoopBench) != "1" {
		t.Skip("a loop benchmark (bench/loops.sh): set " + envLoopBench + "=1 to run it")
	}
	o := loopBenchSettings(t)
	systems := map[string]*loopSystem{}
	for _, s := range o.systems {
		if systems[s] != nil {
			continue
		}
		switch s {
		case "peer":
			systems[s] = startLoopPeer(t, o)
		case "wanwu":
			systems[s] = startLoopWanwu(t, o)
		}
	}
	for round := 1; round <= o.rounds; round++ {
		for _, name := range o.systems {
			// The other system's processes go quiet first (the edge may
			// still be forwarding what its round took in): say if not.
			var others []int
			for other, s := range systems {
				if other != name {
					others = append(others, s.pids...)
				}
			}
			if !settle(t, others, 30*time.Second) {
				fmt.Printf("loopbench note system=%s round=%d the other system's processes were still busy after 30s\n", name, round)
			}
			runLoopRound(t, o, systems[name], round)
		}
	}
}

// settle waits until pids together use under 5% of a core over a second,
// at most limit; it reports whether they did.
func settle(t *testing.T, pids []int, limit time.Duration) bool {
	t.Helper()
	cpu := func() float64 {
		n := 0.0
		for _, pid := range pids {
			n += procCPU(t, pid)
		}
		return n
	}
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		c0 := cpu()
		time.Sleep(time.Second)
		if cpu()-c0 < 0.05 {
			return true
		}
	}
	return false
}

// startChild starts a process that is killed when the test ends.
func startChild(t *testing.T, cmd *exec.Cmd) *lockedBuffer {
	t.Helper()
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(cmd.Path), out.String())
		}
	})
	return &out
}

// waitTCP waits until addr accepts a connection.
func waitTCP(t *testing.T, addr string) {
	t.Helper()
	waitUntil(t, 30*time.Second, addr+" accepting", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// startLoopPeer runs mosquitto, configured as bench/compare.sh does, and the
// rule client.
func startLoopPeer(t *testing.T, o loopBenchOptions) *loopSystem {
	t.Helper()
	bin, err := exec.LookPath(o.mosquitto)
	if err != nil {
		t.Fatalf("the peer needs mosquitto (apt-get install mosquitto): %v", err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`listener %s 127.0.0.1
allow_anonymous true
max_connections -1
max_queued_messages 0
max_inflight_messages 0
persistence false
`, addr[strings.LastIndexByte(addr, ':')+1:])), 0o644); err != nil {
		t.Fatal(err)
	}
	mosq := exec.Command(bin, "-c", conf)
	startChild(t, mosq)
	waitTCP(t, addr)
	rc := exec.Command(os.Args[0])
	rc.Env = append(os.Environ(), envRuleClient+"="+addr)
	out := startChild(t, rc)
	waitUntil(t, 30*time.Second, "the rule client subscribed", func() bool { return strings.Contains(out.String(), "subscribed") })
	return &loopSystem{name: "peer", broker: addr, creds: func(string) (string, string) { return "", "" },
		pids: []int{mosq.Process.Pid, rc.Process.Pid}, note: "mosquitto+rule client"}
}

// startLoopWanwu runs a hub in this process with the devices, the model
// and the loops, and `wanwu edge` as a process of its own for them.
func startLoopWanwu(t *testing.T, o loopBenchOptions) *loopSystem {
	t.Helper()
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "bench"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(loopBenchModel))
	dir := t.TempDir()
	const edgeCode = "bench:edge-1"
	RegisterEdge(t, h, edgeCode, filepath.Join(dir, "identity"))
	var codes []string
	for i := range o.bgDevices {
		codes = append(codes, loadgen.DeviceCode("bench", i))
	}
	for i := range o.probes {
		codes = append(codes, probeCode(i))
	}
	ids := importModelDevices(t, h, codes, "bench:thermo@1.0.0", edgeCode)
	tokens := map[string]string{}
	for _, id := range ids {
		tok, err := id.Token(time.Now(), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tokens[id.Code] = tok
	}
	p, mqttAddr, api, token := startEdgeBinary(t, dir, h.HTTPSURL())
	get := func(path string, v any) error {
		req, _ := http.NewRequest("GET", api+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	waitUntil(t, 2*time.Minute, "the devices in the edge's replica", func() bool {
		var obj map[string]any
		return get("/api/v1/objects/"+codes[len(codes)-1], &obj) == nil
	})
	// The loops are defined once the edge has the model: an edge's engine
	// compiles the hub's loops when their bundle arrives, and one that
	// does not compile then (its model not yet in the replica) is left
	// out until the bundle changes.
	for _, l := range loopBenchLoops {
		h.MustAdmin(201, "POST", "/api/v1/loops", l)
	}
	waitUntil(t, time.Minute, "the loops running at the edge", func() bool {
		var out struct {
			Loops []struct {
				Stats struct{ Key string } `json:"stats"`
			} `json:"loops"`
		}
		if get("/api/v1/loops", &out) != nil || len(out.Loops) != len(loopBenchLoops) {
			return false
		}
		for _, l := range out.Loops {
			if l.Stats.Key == "" { // no stats: the engine does not run it
				return false
			}
		}
		return true
	})
	return &loopSystem{name: "wanwu", broker: mqttAddr, creds: func(code string) (string, string) { return code, tokens[code] },
		pids: []int{p.cmd.Process.Pid}, note: "wanwu edge (hub in the generator's process)",
		stages:  func(t *testing.T, answered []probeSample) { wanwuStages(t, get, answered) },
		metrics: func() map[string]float64 { return scrapeMetrics(api) }}
}

// wanwuStages splits each answered sample's latency at the edge's own
// records: the decision's time (the evidence record's at: the engine's
// clock when it took the sample's batch) and the command's creation (the
// command service's clock when its transaction began). Both are
// milliseconds of the same machine's wall clock as the probe's.
func wanwuStages(t *testing.T, get func(string, any) error, answered []probeSample) {
	t.Helper()
	byCode := map[string][]probeSample{}
	for _, a := range answered {
		byCode[a.code] = append(byCode[a.code], a)
	}
	var decide, issue, deliver []time.Duration
	for code, samples := range byCode {
		var evs struct {
			Evidence []struct {
				At     time.Time `json:"at"`
				Kind   string    `json:"kind"`
				Action *struct {
					Args      map[string]float64 `json:"args"`
					CommandID string             `json:"command_id"`
				} `json:"action"`
			} `json:"evidence"`
		}
		var cmds struct {
			Commands []struct {
				ID        string    `json:"id"`
				CreatedAt time.Time `json:"created_at"`
			} `json:"commands"`
		}
		if err := get("/api/v1/evidence?object="+code+"&limit=1000", &evs); err != nil {
			t.Fatal(err)
		}
		if err := get("/api/v1/objects/"+code+"/commands?limit=1000", &cmds); err != nil {
			t.Fatal(err)
		}
		created := map[string]time.Time{}
		for _, c := range cmds.Commands {
			created[c.ID] = c.CreatedAt
		}
		type rec struct {
			at, created time.Time
		}
		byLevel := map[float64]rec{}
		for _, ev := range evs.Evidence {
			if ev.Kind == "action" && ev.Action != nil && ev.Action.CommandID != "" {
				byLevel[ev.Action.Args["level"]] = rec{ev.At, created[ev.Action.CommandID]}
			}
		}
		for _, a := range samples {
			r, ok := byLevel[a.v]
			if !ok || r.created.IsZero() {
				continue
			}
			decide = append(decide, r.at.Sub(a.t0))
			issue = append(issue, r.created.Sub(r.at))
			deliver = append(deliver, a.at.Sub(r.created))
		}
	}
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }
	line := func(name string, ds []time.Duration) string {
		p := loadgen.Summarize(ds)
		return fmt.Sprintf("%s_p50_ms=%s %s_p99_ms=%s", name, ms(p.P50), name, ms(p.P99))
	}
	fmt.Printf("loopbench stages system=wanwu matched=%d %s %s %s\n", len(decide),
		line("publish_to_decision", decide), line("decision_to_command_created", issue), line("command_created_to_received", deliver))
}

// scrapeMetrics reads the unlabelled samples and the consumers' lags from
// a node's /metrics.
func scrapeMetrics(api string) map[string]float64 {
	out := map[string]float64{}
	resp, err := probeClient.Get(api + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Contains(name, "{") && !strings.HasPrefix(name, "wanwu_consumer_lag_batches{") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out
}

func probeCode(i int) string { return "bench:m-" + strconv.Itoa(i) }

// importModelDevices registers codes with model ("" for none) behind edge
// ("" for none), with hub-made keys, through the bulk import, a thousand
// at a time.
func importModelDevices(t *testing.T, h *Hub, codes []string, model, edgeCode string) []*wanwudevice.Identity {
	t.Helper()
	var ids []*wanwudevice.Identity
	for start := 0; start < len(codes); start += 1000 {
		var csv strings.Builder
		csv.WriteString("code,key_alg,model,edge\n")
		for _, c := range codes[start:min(start+1000, len(codes))] {
			fmt.Fprintf(&csv, "%s,p256,%s,%s\n", c, model, edgeCode)
		}
		var out struct {
			Rows []struct {
				Code, Result, Reason string
				Registration         json.RawMessage
			}
		}
		h.MustAdmin(200, "POST", "/api/v1/objects/import", csv.String()).JSON(t, &out)
		for _, r := range out.Rows {
			id, err := wanwudevice.ParseRegistration(r.Registration, nil)
			if err != nil {
				t.Fatalf("%s: %s %s: %v", r.Code, r.Result, r.Reason, err)
			}
			ids = append(ids, id)
		}
	}
	return ids
}

// loopCommand is what a probe reads of a command, from wanwu and from the
// peer's rule client alike.
type loopCommand struct {
	ID     string `json:"id"`
	Action string `json:"action"`
	Args   struct {
		Level float64 `json:"level"`
	} `json:"args"`
}

// loopProbe is a measuring device.
type loopProbe struct {
	code, topic string
	c           *paho.Client
	got         chan probeReceipt
}

type probeReceipt struct {
	at    time.Time
	level float64
}

func dialProbe(ctx context.Context, s *loopSystem, laddr, code string) (*loopProbe, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(laddr)}, Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.broker)
	if err != nil {
		return nil, err
	}
	tenant, id, _ := strings.Cut(code, ":")
	prefix := "wanwu/v1/" + tenant + "/" + id + "/"
	p := &loopProbe{code: code, topic: prefix + "telemetry", got: make(chan probeReceipt, 64)}
	p.c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(r paho.PublishReceived) (bool, error) {
			at := time.Now()
			if strings.HasSuffix(r.Packet.Topic, "/result") {
				return true, nil
			}
			var cmd loopCommand
			if json.Unmarshal(r.Packet.Payload, &cmd) != nil || cmd.ID == "" {
				return true, nil
			}
			select {
			case p.got <- probeReceipt{at: at, level: cmd.Args.Level}:
			default:
			}
			// The device does what it is told and says so, as a device
			// must for wanwu's command service (and does for the peer, to
			// the same cost).
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, _ = p.c.Publish(ctx, &paho.Publish{Topic: prefix + "commands/" + cmd.ID + "/result", QoS: 1,
					Payload: []byte(`{"status":"succeeded","output":{}}`)})
			}()
			return true, nil
		}}})
	user, pass := s.creds(code)
	cp := &paho.Connect{ClientID: code, KeepAlive: 30, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = user, true, []byte(pass), true
	}
	if _, err := p.c.Connect(ctx, cp); err != nil {
		conn.Close()
		return nil, err
	}
	ack, err := p.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: prefix + "commands/+", QoS: 1}}})
	if err != nil {
		return nil, err
	}
	if len(ack.Reasons) != 1 || ack.Reasons[0] > 2 {
		return nil, fmt.Errorf("subscription refused: %v", ack.Reasons)
	}
	return p, nil
}

// probeStats is what the probes measured in one round.
type probeStats struct {
	mu       sync.Mutex
	lat      []time.Duration
	answered []probeSample
	sent     int
	missed   int // no command within the timeout
	stale    int // a command for an earlier sample (after its timeout)
	pubErrs  int
}

// probeSample is one answered sample: the probe, its value, when it was
// published and when its command came.
type probeSample struct {
	code   string
	v      float64
	t0, at time.Time
}

// run has the probe send a sample, wait for its command, and pause, until
// stop; k numbers its samples (odd: over, even: under).
func (p *loopProbe) run(ctx context.Context, o loopBenchOptions, base int, st *probeStats, stop <-chan struct{}) {
	for k := 1; ; k++ {
		select {
		case <-stop:
			return
		default:
		}
		v := float64(base + k)
		if k%2 == 0 {
			v = -v
		}
		payload := fmt.Appendf(nil, `[{"bn":"%s/","n":"temperature","v":%g}]`, p.code, v)
		t0 := time.Now()
		pctx, cancel := context.WithTimeout(ctx, o.timeout)
		_, err := p.c.Publish(pctx, &paho.Publish{Topic: p.topic, QoS: 1, Payload: payload})
		cancel()
		if err != nil {
			st.mu.Lock()
			st.pubErrs++
			st.mu.Unlock()
		}
		timer := time.NewTimer(o.timeout - time.Since(t0))
	wait:
		for {
			select {
			case r := <-p.got:
				st.mu.Lock()
				if r.level == v {
					st.lat = append(st.lat, r.at.Sub(t0))
					st.answered = append(st.answered, probeSample{code: p.code, v: v, t0: t0, at: r.at})
					st.sent++
					st.mu.Unlock()
					break wait
				}
				st.stale++
				st.mu.Unlock()
			case <-timer.C:
				st.mu.Lock()
				st.missed++
				st.sent++
				st.mu.Unlock()
				break wait
			}
		}
		timer.Stop()
		select {
		case <-stop:
			return
		case <-time.After(o.every):
		}
	}
}

// runLoopRound runs the background load and the probes against one system
// and prints its figures.
func runLoopRound(t *testing.T, o loopBenchOptions, s *loopSystem, round int) {
	t.Helper()
	ctx := context.Background()
	load := strings.Join(strings.Fields(readLoadavg())[:3], " ")
	var probes []*loopProbe
	for i := range o.probes {
		p, err := dialProbe(ctx, s, o.probeAddr, probeCode(i))
		if err != nil {
			t.Fatalf("%s: probe %d: %v", s.name, i, err)
		}
		probes = append(probes, p)
	}
	defer func() {
		for _, p := range probes {
			_ = p.c.Disconnect(&paho.Disconnect{})
		}
	}()
	started := make(chan struct{})
	var once sync.Once
	type genOut struct {
		res *loadgen.Result
		err error
	}
	genc := make(chan genOut, 1)
	go func() {
		res, err := loadgen.Run(ctx, loadgen.Options{
			Broker: "tcp://" + s.broker, Clients: o.bgDevices, Duration: o.warmup + o.window + 2*time.Second,
			Rate: float64(o.bgRate) / float64(o.bgDevices), QoS: 1, Tenant: "bench",
			Credentials: func(i int) (string, string) { return s.creds(loadgen.DeviceCode("bench", i)) },
			SourceAddrs: o.bgAddrs, TargetPID: s.pids[0], Timeout: 10 * time.Second,
			Progress: func(msg string) {
				if strings.HasPrefix(msg, "acked") {
					once.Do(func() { close(started) })
				}
			},
		})
		genc <- genOut{res, err}
	}()
	select {
	case <-started:
	case g := <-genc:
		t.Fatalf("%s: the background load ended before it started: %v", s.name, g.err)
	}
	time.Sleep(o.warmup)
	cpu0 := make([]float64, len(s.pids))
	for i, pid := range s.pids {
		cpu0[i] = procCPU(t, pid)
	}
	self0 := procCPU(t, os.Getpid())
	var m0 map[string]float64
	if s.metrics != nil {
		m0 = s.metrics()
	}
	t0 := time.Now()
	st := &probeStats{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the probes' starts over one pause.
			time.Sleep(o.every * time.Duration(i) / time.Duration(len(probes)))
			p.run(ctx, o, 100+1_000_000*(round*len(probes)+i), st, stop)
		}()
	}
	time.Sleep(o.window)
	close(stop)
	wg.Wait()
	sec := time.Since(t0).Seconds()
	var cpu []string
	total := 0.0
	for i, pid := range s.pids {
		c := (procCPU(t, pid) - cpu0[i]) / sec
		total += c
		cpu = append(cpu, strconv.FormatFloat(c, 'f', 2, 64))
	}
	self := (procCPU(t, os.Getpid()) - self0) / sec
	var m1 map[string]float64
	if s.metrics != nil {
		m1 = s.metrics()
	}
	g := <-genc
	if g.err != nil {
		t.Fatalf("%s: background load: %v", s.name, g.err)
	}
	lat := loadgen.Summarize(st.lat)
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }
	report := func(format string, args ...any) { fmt.Printf("loopbench "+format+"\n", args...) }
	report("latency system=%s round=%d probes=%d every=%v samples=%d answered=%d missed=%d stale=%d publish_errors=%d p50_ms=%s p99_ms=%s p999_ms=%s max_ms=%s mean_ms=%s",
		s.name, round, o.probes, o.every, st.sent, lat.N, st.missed, st.stale, st.pubErrs, ms(lat.P50), ms(lat.P99), ms(lat.P999), ms(lat.Max), ms(lat.Mean))
	report("background system=%s round=%d devices=%d connected=%d msg_per_s=%.0f ack_p50_ms=%s ack_p99_ms=%s errors=%v server=%q server_cpu_cores=%s (sum %.2f) generator_process_cpu_cores=%.2f load_before=%q",
		s.name, round, o.bgDevices, g.res.Connected, g.res.Throughput, ms(g.res.PublishToAck.P50), ms(g.res.PublishToAck.P99), g.res.Errors,
		s.note, strings.Join(cpu, "+"), total, self, load)
	if lat.N == 0 {
		t.Fatalf("%s: no probe sample was answered (%d missed)", s.name, st.missed)
	}
	if m1 != nil {
		d := func(name string) float64 { return m1[name] - m0[name] }
		report("node system=%s round=%d ingest_batches_per_s=%.1f messages_per_batch=%.1f batch_flush_mean_ms=%.2f loop_evaluations_per_s=%.0f consumer_lag_batches_at_end=loops:%.0f,forward:%.0f",
			s.name, round, d("wanwu_ingest_flush_seconds_count")/sec, d("wanwu_ingest_batch_messages_sum")/d("wanwu_ingest_batch_messages_count"),
			1000*d("wanwu_ingest_flush_seconds_sum")/d("wanwu_ingest_flush_seconds_count"), d("wanwu_loop_evaluations_total")/sec,
			m1[`wanwu_consumer_lag_batches{consumer="loops"}`], m1[`wanwu_consumer_lag_batches{consumer="forward"}`])
	}
	if s.stages != nil {
		s.stages(t, st.answered)
	}
}

func readLoadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "? ? ?"
	}
	return string(b)
}

// ruleClient is the peer's rule engine: one MQTT connection that
// subscribes to every device's telemetry, decides per device as the two
// loops do (on at the threshold, off at the other side of it, a command
// when a decision turns on), and publishes the command to the device.
type ruleClient struct {
	c    *paho.Client
	mu   sync.Mutex
	on   map[string]*[2]bool // device → hi, lo
	next atomic.Int64
}

// runRuleClient runs the rule client against broker until it is killed.
func runRuleClient(broker string) int {
	ctx := context.Background()
	conn, err := net.Dial("tcp", broker)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rc := &ruleClient{on: map[string]*[2]bool{}}
	rc.c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(r paho.PublishReceived) (bool, error) {
			rc.handle(r.Packet.Topic, r.Packet.Payload)
			return true, nil
		}}})
	if _, err := rc.c.Connect(ctx, &paho.Connect{ClientID: "rule-client", KeepAlive: 30, CleanStart: true,
		Properties: &paho.ConnectProperties{ReceiveMaximum: ptr(uint16(65535))}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := rc.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "wanwu/v1/+/+/telemetry", QoS: 1}}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("subscribed")
	<-rc.c.Done()
	return 0
}

func ptr[T any](v T) *T { return &v }

// handle decides on one telemetry message (SenML JSON).
func (rc *ruleClient) handle(topic string, payload []byte) {
	parts := strings.Split(topic, "/") // wanwu/v1/<tenant>/<id>/telemetry
	if len(parts) != 5 {
		return
	}
	var recs []struct {
		N string   `json:"n"`
		V *float64 `json:"v"`
	}
	if json.Unmarshal(payload, &recs) != nil {
		return
	}
	dev := parts[2] + ":" + parts[3]
	for _, r := range recs {
		if r.N != "temperature" || r.V == nil {
			continue
		}
		v := *r.V
		rc.mu.Lock()
		s := rc.on[dev]
		if s == nil {
			s = &[2]bool{}
			rc.on[dev] = s
		}
		var fire []string
		// hi: on when > 50, off when <= 50; lo: on when < 0, off when >= 0.
		if !s[0] && v > 50 {
			s[0] = true
			fire = append(fire, "cool")
		} else if s[0] && v <= 50 {
			s[0] = false
		}
		if !s[1] && v < 0 {
			s[1] = true
			fire = append(fire, "heat")
		} else if s[1] && v >= 0 {
			s[1] = false
		}
		rc.mu.Unlock()
		for _, action := range fire {
			id := "r-" + strconv.FormatInt(rc.next.Add(1), 10)
			body, _ := json.Marshal(map[string]any{"id": id, "action": action, "args": map[string]float64{"level": v},
				"expires_at": time.Now().Add(24 * time.Hour).UTC()})
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := rc.c.Publish(ctx, &paho.Publish{Topic: "wanwu/v1/" + parts[2] + "/" + parts[3] + "/commands/" + id, QoS: 1, Payload: body}); err != nil {
					fmt.Fprintln(os.Stderr, "command not published:", err)
				}
			}()
		}
	}
}

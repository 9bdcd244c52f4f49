package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/hub"
	"github.com/wanwu-iot/wanwu/internal/hubclient"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/scenario"
	"github.com/wanwu-iot/wanwu/internal/sim"
)

// DemoDataDir is where `wanwu demo` keeps its hub's data unless told
// otherwise; a second run reuses it.
const DemoDataDir = "wanwu-demo"

// demoFlags are the hub's flags plus the fleet's.
func demoFlags(f *simFlags) func(cfg *config.Hub, configFile *string, printConfig *bool) *flag.FlagSet {
	return func(cfg *config.Hub, configFile *string, printConfig *bool) *flag.FlagSet {
		fs := hubFlags(cfg, configFile, printConfig)
		fs.Init("wanwu demo", flag.ContinueOnError)
		f.bind(fs)
		fs.BoolVar(&f.noOperator, "no-operator", false, "the demo's operator does not answer approvals and alarms: leave them to you, in the console or with ctl")
		fs.DurationVar(&f.learnAt, "learn-at", 90*time.Second, "when the demo's operator runs the learning loop: windows captured and labelled, a dataset built, the spindle model trained on it and staged by its gates, a bad version rolled back (0: never)")
		return fs
	}
}

func demoDefaults() config.Hub {
	c := config.DefaultHub()
	c.DataDir = DemoDataDir
	c.HTTP.TLSListen = "127.0.0.1:8443" // the edge's link
	c.Log.Level = "info"
	c.ML.RolloutEvery = config.Duration(time.Second) // the rollouts move while you watch
	c.ML.CaptureAfter = config.Duration(5 * time.Second)
	return c
}

func init() {
	register("demo", demoFlags(&simFlags{})(new(config.Hub), new(string), new(bool)))
}

// runDemo is the main job in one command: a hub on embedded defaults, the
// scenario's models and devices registered, a mixed fleet on every network
// profile, a live status, and the commands to explore further.
func runDemo(e *env, args []string) error {
	var f simFlags
	cfg, printConfig, err := loadConfig(e, args, demoDefaults, demoFlags(&f))
	if err != nil {
		return err
	}
	if printConfig {
		return printConfigYAML(e, cfg)
	}
	sc, sources, profiles, err := f.read()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	// The hub's log goes to a file: the terminal shows the fleet.
	logPath := filepath.Join(cfg.DataDir, "demo.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := newLogger(&env{stdout: logFile, stderr: logFile}, cfg.Log.Level, cfg.Log.Format)

	ctx, stop := signal.NotifyContext(e.context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(e.stdout, "wanwu demo: starting a hub in %s (log: %s) …\n", cfg.DataDir, logPath)
	h := hub.New(hub.Options{Config: cfg, Logger: log, Version: currentBuild().Version})
	if err := h.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(e.stderr, "wanwu demo: hub shutdown: %v\n", err)
		}
	}()
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, hub.AdminTokenFile))
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	token := strings.TrimSpace(string(tok))
	mqttAddr, coapAddr := h.MQTT().Addr(mqtt.ListenerTLS), coapAddr(h, coap.ListenerDTLS)
	if mqttAddr == "" || coapAddr == "" {
		return usagef("the demo needs MQTT over TLS and CoAP over DTLS (--mqtt.tls-listen, --coap.dtls-listen)")
	}
	hc := hubclient.New(h.URL(), token)
	de, route, err := startDemoEdge(ctx, cfg, h, hc, sc, log)
	if err != nil {
		return err
	}
	if de != nil {
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := de.shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintf(e.stderr, "wanwu demo: edge shutdown: %v\n", err)
			}
		}()
		fmt.Fprintf(e.stdout, "  an edge node, %s, serves the plant (%s); its link to the hub goes through a relay the demo pulls now and then\n", route.Code, edgeClasses(sc))
	}
	s, err := sim.New(sim.Options{Hub: h.URL(), Token: token, MQTT: "mqtts://" + mqttAddr, CoAP: "coaps://" + coapAddr,
		Scenario: sc, Seed: f.seed, StateFile: filepath.Join(cfg.DataDir, "sim-identities.json"),
		NoEmulation: f.noEmulation, Sources: sources, Profiles: profiles, Logger: log.With("component", "sim"),
		Progress: func(line string) { fmt.Fprintln(e.stdout, "  "+line) }, Edge: route})
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	// The anomaly model before the loops: the shadow loop spindle-anomaly
	// scores with it.
	modelLine, err := trainDemoModel(ctx, hc, sc)
	if err != nil {
		return err
	}
	if modelLine != "" {
		fmt.Fprintln(e.stdout, "  "+modelLine)
	}
	loopKeys, err := defineDemoLoops(ctx, hc, sc)
	if err != nil {
		return err
	}
	if len(loopKeys) > 0 {
		fmt.Fprintf(e.stdout, "  closed loops defined: %s\n", strings.Join(loopKeys, ", "))
	}
	var status demoStatus
	h.Console().ShowGlance(demoGlance(sc, de, &status, time.Now()))
	printDemoTour(e, h, cfg.DataDir, token, sc, de)
	octx, ocancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	var local *hubclient.Client
	if de != nil {
		local = de.client()
	}
	go func() { defer wg.Done(); operate(octx, hc, local, sc, !f.noOperator, log) }()
	var learner *demoLearner
	if f.learnAt > 0 && modelLine != "" {
		wg.Add(1)
		learner = &demoLearner{hc: hc, sc: sc, log: log}
		go func() { defer wg.Done(); learner.learn(octx, f.learnAt) }()
	}
	more := func(_ context.Context, now time.Time) string {
		// Its own deadline: the last status comes after the run's end.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		lines := ""
		if de != nil {
			de.tick(now, log)
			lines = de.line(ctx, now)
		}
		return lines + loopLines(ctx, hc, sc.Tenant) + learner.text()
	}
	err = watch(ctx, e, s, &f, func(ctx context.Context) any { return hubView(ctx, hc, sc, de) }, more, status.set)
	ocancel()
	wg.Wait()
	return err
}

// printDemoTour says what runs and how to look at it.
// edgeClasses names the scenario's classes behind the edge.
func edgeClasses(sc *scenario.Scenario) string {
	var names []string
	for _, c := range sc.Classes {
		if c.Edge {
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ", ")
}

func printDemoTour(e *env, h *hub.Hub, dataDir, token string, sc *scenario.Scenario, de *demoEdge) {
	dd := ""
	if dataDir != config.DefaultHub().DataDir {
		dd = " --data-dir " + shellQuote(dataDir)
	}
	prog := invocation(os.Args[0])
	first := func(kind string) string {
		for _, c := range sc.Classes {
			if c.Kind == kind {
				return sc.Tenant + ":" + c.DeviceID(0)
			}
		}
		return sc.Tenant + ":" + sc.Classes[0].DeviceID(0)
	}
	cnc := first("cnc")
	fmt.Fprintf(e.stdout, `
The hub runs at %s; Prometheus API for Grafana: %[1]s/prometheus
Console: open %[1]s/signin?next=/demo#token=%[11]s in a browser (a sign-in link with the admin token in %[8]s)
MQTT (TLS) %s, CoAP (DTLS) %s. Explore in another terminal, in this directory:
  %[4]s ctl presence list --tenant %[5]s%[6]s
  %[4]s ctl object show %[7]s%[6]s
  %[4]s ctl telemetry latest %[7]s%[6]s
  %[4]s ctl command list %[7]s%[6]s
  %[4]s ctl command list %[10]s%[6]s          (a sleeping meter's command waits)
  %[4]s ctl network usage%[6]s                 (bytes per network today, against the budgets)
  %[4]s ctl object bytes %[10]s%[6]s
  curl -s -H "Authorization: Bearer $(cat %[8]s)" '%[1]s/prometheus/api/v1/query?query=count+by+(__name__)({tenant="%[5]s"})'
Stop with Ctrl-C; running the demo again reuses %[9]s.
`, h.URL(), h.MQTT().Addr(mqtt.ListenerTLS), coapAddr(h, coap.ListenerDTLS), prog, sc.Tenant, dd, cnc,
		filepath.Join(dataDir, hub.AdminTokenFile), dataDir, first(scenario.KindWaterMeter), token)
	if de != nil {
		fmt.Fprintf(e.stdout, `The edge %[1]s serves the plant at %[2]s (its data in %[3]s):
  %[4]s ctl edge show %[1]s%[5]s          (its link, backlog per class, what the hub holds)
  touch %[6]s                 (pull its link to the hub; rm to restore)
`, de.edge.Code(), de.edge.URL(), de.dir, prog, dd, de.cutFile)
	}
	fmt.Fprintf(e.stdout, `Closed loops run at the hub and at the edge (their definitions: examples/loops):
  %[1]s ctl loop list%[2]s
  %[1]s ctl loop evidence %[3]s:chatter-feed%[2]s     (--id N explains one decision)
  %[1]s ctl loop approvals%[2]s                (the chillers' setpoint shifts wait for a person: ctl loop approve N)
  %[1]s ctl alarm list%[2]s
  %[1]s ctl loop compare %[3]s:chatter-feed-early %[3]s:chatter-feed%[2]s   (a shadow loop beside the active one)
  %[1]s ctl ml show spindle-normal%[2]s          (the spindles' anomaly model, trained at the start)
  %[1]s ctl loop evidence %[3]s:spindle-anomaly%[2]s   (the shadow loop that scores with it: the model's scores per decision)
`, prog, dd, sc.Tenant)
	fmt.Fprintln(e.stdout)
}

// hubView is what the hub itself says at the end of a demo, per class:
// its devices online (presence) and those whose data is queryable (series
// in the TSDB, through the Prometheus API a dashboard would use).
func hubView(ctx context.Context, hc *hubclient.Client, sc *scenario.Scenario, de *demoEdge) any {
	type classView struct {
		Network   string `json:"network"`
		Devices   int    `json:"devices"`
		Online    int    `json:"online"`
		Queryable int    `json:"queryable"`
	}
	out := map[string]*classView{}
	for _, c := range sc.Classes {
		out[c.Name] = &classView{Network: c.Network, Devices: c.Count}
	}
	online := true
	var pres struct {
		Presence []struct {
			Code   string `json:"code"`
			Online bool   `json:"online"`
		} `json:"presence"`
	}
	if b, _, err := hc.Do(ctx, "GET", "/api/v1/presence?online=true&limit=1000&tenant="+url.QueryEscape(sc.Tenant), nil, ""); err == nil {
		_ = json.Unmarshal(b, &pres)
	}
	if de != nil {
		// The edge's devices are online at the edge, not at the hub.
		if states, err := de.edge.Presence().List(ctx, presence.Filter{Tenant: sc.Tenant, Online: &online, Limit: 1000}); err == nil {
			for _, st := range states {
				pres.Presence = append(pres.Presence, struct {
					Code   string `json:"code"`
					Online bool   `json:"online"`
				}{st.Code, st.Online})
			}
		}
	}
	for _, p := range pres.Presence {
		_, local, _ := strings.Cut(p.Code, ":")
		if i := strings.LastIndex(local, "-"); i > 0 && p.Online {
			if v := out[local[:i]]; v != nil {
				v.Online++
			}
		}
	}
	for _, c := range sc.Classes {
		q := fmt.Sprintf(`count(count by (device) (last_over_time({tenant=%q, device=~%q}[1h])))`, sc.Tenant, regexp.QuoteMeta(sc.Tenant+":"+c.Name+"-")+"[0-9]+")
		var res struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if b, _, err := hc.Do(ctx, "GET", "/prometheus/api/v1/query?query="+url.QueryEscape(q), nil, ""); err == nil {
			_ = json.Unmarshal(b, &res)
		}
		if len(res.Data.Result) == 1 {
			if v, ok := res.Data.Result[0].Value[1].(string); ok {
				fmt.Sscan(v, &out[c.Name].Queryable)
			}
		}
	}
	view := map[string]any{"classes": out}
	loops, alarms := demoLoops(ctx, hc, sc.Tenant)
	view["loops"], view["alarms"] = loops, alarms
	view["models"] = demoModels(ctx, hc, sc.Tenant)
	view["rollouts"] = demoRollouts(ctx, hc, sc.Tenant)
	if de != nil {
		if st, err := de.edge.Status(ctx); err == nil {
			view["edge"] = st
		}
	}
	return view
}

// operate plays the operator: a few minutes into the demo it changes what
// the fleet does, through the hub's API, so that commands and twins show
// (lower a chattering spindle's feed, move a chiller's setpoint, close a
// leaking meter's valve: the meter asleep, the command waits for it).
// Steps marked edge go to the edge's own API, as the plant's operator acts
// with the hub away; the others go to the hub (for devices behind the edge
// they go down its link).
func operate(ctx context.Context, hc, edgeClient *hubclient.Client, sc *scenario.Scenario, answer bool, log *slog.Logger) {
	steps := operatorSteps(sc, answer)
	for _, st := range steps {
		select {
		case <-time.After(time.Until(st.at)):
		case <-ctx.Done():
			return
		}
		c := hc
		if st.edge {
			if edgeClient == nil {
				continue
			}
			c = edgeClient
		}
		var err error
		if st.do != nil {
			err = st.do(ctx, c, sc.Tenant)
		} else {
			_, _, err = c.Do(ctx, st.method, st.path, strings.NewReader(st.body), "application/json")
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("demo operator step failed", "step", st.what, "err", err)
		}
	}
}

type operatorStep struct {
	at                 time.Time
	what               string
	method, path, body string
	edge               bool // issued on the edge's own API (the plant's operator)
	// do, when set, is the step (it reads before it acts).
	do func(ctx context.Context, c *hubclient.Client, tenant string) error
}

// operatorSteps are the demo operator's actions, by the kinds the scenario
// has: a chiller setpoint (desired state), a lower feed on each CNC line's
// first spindle (a command, which lowers chatter), a water meter's valve
// (a command that waits for the sleeping meter), a raw vibration capture;
// then, when answer is set, what the closed loops ask of a person:
// approvals and alarms.
func operatorSteps(sc *scenario.Scenario, answer bool) []operatorStep {
	start := time.Now()
	var steps []operatorStep
	add := func(after time.Duration, what, method, code, path, body string) {
		steps = append(steps, operatorStep{at: start.Add(after), what: what, method: method,
			path: "/api/v1/objects/" + url.PathEscape(code) + path, body: body})
	}
	command := func(after time.Duration, code, action, args string) {
		add(after, action+" "+code, "POST", code, "/commands", fmt.Sprintf(`{"action":%q,"args":%s}`, action, args))
	}
	byKind := map[string][]*scenario.Class{}
	for i := range sc.Classes {
		c := &sc.Classes[i]
		byKind[c.Kind] = append(byKind[c.Kind], c)
	}
	code := func(c *scenario.Class, i int) string { return sc.Tenant + ":" + c.DeviceID(i%c.Count) }
	for _, c := range byKind[scenario.KindChiller] {
		add(15*time.Second, "setpoint "+code(c, 0), "PATCH", code(c, 0), "/twin/desired", `{"setpoint":5.5}`)
	}
	for _, c := range byKind[scenario.KindCNC] {
		command(20*time.Second, code(c, 0), "setFeedRate", `{"feedRate":70}`)
	}
	for _, c := range byKind[scenario.KindWaterMeter] {
		command(25*time.Second, code(c, 0), "closeValve", `{}`)
		break
	}
	for _, c := range byKind[scenario.KindCNC] {
		command(40*time.Second, code(c, 1), "captureRaw", `{}`)
		break
	}
	// During the demo's first outage of the edge's link, the plant's
	// operator lowers a spindle's feed on the edge itself.
	for _, c := range byKind[scenario.KindCNC] {
		if c.Edge {
			steps = append(steps, operatorStep{at: start.Add(demoOutageFirst + 10*time.Second), what: "setFeedRate at the edge",
				method: "POST", path: "/api/v1/objects/" + url.PathEscape(code(c, 2)) + "/commands",
				body: `{"action":"setFeedRate","args":{"feedRate":55}}`, edge: true})
			break
		}
	}
	if !answer {
		return steps
	}
	// The loops act on feeds and setpoints from here on; the operator
	// answers what they ask of people: approvals (one rejected, one left
	// to expire now and then) and alarms (acknowledged, a bearing alarm
	// shelved while the part is on order).
	dyn := func(at time.Duration, what string, do func(ctx context.Context, c *hubclient.Client, tenant string) error) {
		steps = append(steps, operatorStep{at: start.Add(at), what: what, do: do})
	}
	for i := 0; i < 40; i++ { // an hour of it
		at := 75*time.Second + time.Duration(i)*90*time.Second
		if i%4 == 2 {
			dyn(at, "reject an approval", approveOldest(false, "demo operator: floor 3 is already warm"))
		} else {
			dyn(at, "approve an approval", approveOldest(true, "demo operator: fine at peak tariff"))
		}
		dyn(at+45*time.Second, "acknowledge an alarm", alarmStep("", "demo operator: seen"))
	}
	dyn(4*time.Minute, "shelve a bearing alarm", alarmStep("bearing-wear", "bearing ordered, fitted at the next shift change"))
	return steps
}

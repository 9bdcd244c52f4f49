package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wanwu-iot/wanwu/internal/loadgen"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
	"github.com/wanwu-iot/wanwu/internal/scenario"
	"github.com/wanwu-iot/wanwu/internal/sim"
)

// simFlags are what `wanwu sim` and `wanwu demo` share.
type simFlags struct {
	claim       bool
	scenario    string
	profiles    string
	seed        int64
	devices     int
	noEmulation bool
	sources     string
	duration    time.Duration
	summary     string
	// noOperator (demo only) leaves approvals and alarms to the people
	// at the console.
	noOperator bool
	// learnAt (demo only) is when the operator runs the learning loop.
	learnAt time.Duration
}

func (f *simFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.scenario, "scenario", "demo", "a built-in scenario ("+strings.Join(scenario.Builtins(), ", ")+") or a scenario file (YAML)")
	fs.StringVar(&f.profiles, "profiles", "", "a file of link profiles (YAML) that change the built-in ones' figures for the emulated links")
	fs.Int64Var(&f.seed, "seed", 0, "seed of the physics and the links (default: the scenario's); the same seed gives the same values")
	fs.IntVar(&f.devices, "devices", 0, "scale the scenario's classes to about this many devices in all (default: as the scenario says)")
	fs.BoolVar(&f.noEmulation, "no-emulation", false, "connect without the link profiles (loopback speed, no sleep)")
	fs.StringVar(&f.sources, "source-addrs", "", "local addresses to connect from, round-robin: 127.0.1.1-127.0.1.254 (default on a loopback hub)")
	fs.DurationVar(&f.duration, "duration", 0, "stop by itself after this long (default: run until Ctrl-C)")
	fs.StringVar(&f.summary, "summary", "", "write a JSON summary of the counts to this file when stopping")
}

// load reads the scenario and scales it.
func (f *simFlags) load() (*scenario.Scenario, error) {
	var sc *scenario.Scenario
	var err error
	if b, rerr := os.ReadFile(f.scenario); rerr == nil {
		if sc, err = scenario.Parse(b); err != nil {
			return nil, fmt.Errorf("scenario %s: %w", f.scenario, err)
		}
	} else if sc, err = scenario.Builtin(f.scenario); err != nil {
		return nil, usagef("--scenario %s: neither a file nor a built-in scenario (%s)", f.scenario, strings.Join(scenario.Builtins(), ", "))
	}
	if f.devices > 0 {
		scale(sc, f.devices)
	}
	return sc, nil
}

// scale sets the classes' counts in proportion, to about n in all.
func scale(sc *scenario.Scenario, n int) {
	total := 0
	for _, c := range sc.Classes {
		total += c.Count
	}
	if total == 0 {
		return
	}
	for i := range sc.Classes {
		sc.Classes[i].Count = max(1, int(math.Round(float64(sc.Classes[i].Count)*float64(n)/float64(total))))
	}
}

// read reads what the flags say of the fleet: the scenario, the source
// addresses, the profiles.
func (f *simFlags) read() (*scenario.Scenario, []string, []netprofile.Profile, error) {
	sc, err := f.load()
	if err != nil {
		return nil, nil, nil, err
	}
	sources, err := f.sourceList()
	if err != nil {
		return nil, nil, nil, usagef("--source-addrs: %v", err)
	}
	profiles, err := f.profileList()
	if err != nil {
		return nil, nil, nil, err
	}
	return sc, sources, profiles, nil
}

// profileList reads --profiles.
func (f *simFlags) profileList() ([]netprofile.Profile, error) {
	if f.profiles == "" {
		return nil, nil
	}
	b, err := os.ReadFile(f.profiles)
	if err != nil {
		return nil, err
	}
	ps, err := netprofile.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("profiles %s: %w", f.profiles, err)
	}
	return ps, nil
}

func (f *simFlags) sourceList() ([]string, error) {
	if f.sources == "" {
		return nil, nil
	}
	return loadgen.ParseAddrs(f.sources)
}

// simEdge are the flags that place the scenario's edge classes behind an
// edge node.
type simEdge struct {
	code, mqtt, coap string
}

func simFlagSet(f *simFlags, g *ctlGlobals, mqttURL, coapURL, state *string, se *simEdge) *flag.FlagSet {
	fs := newFlagSet("sim")
	fs.StringVar(&se.code, "edge", "", "an edge node's code: the scenario's edge classes are placed behind it and connect to it (--edge-mqtt, --edge-coap)")
	fs.StringVar(&se.mqtt, "edge-mqtt", "", "with --edge: the edge's MQTT endpoint, mqtt://host:port (device tokens)")
	fs.StringVar(&se.coap, "edge-coap", "", "with --edge: the edge's CoAP endpoint, coap://host:port (device tokens)")
	f.bind(fs)
	ctlGlobalFlags(fs, g)
	fs.StringVar(mqttURL, "mqtt", "", "the hub's MQTT over TLS endpoint (default mqtts://<hub host>:8883)")
	fs.StringVar(coapURL, "coap", "", "the hub's CoAP over DTLS endpoint (default coaps://<hub host>:5684)")
	fs.BoolVar(&f.claim, "claim", false, "devices claim their identities with a claim token per class (zero-touch, limited per source address) instead of the bulk import")
	fs.StringVar(state, "state", "wanwu-sim.json", "file caching the devices' identities between runs (holds private keys; mode 0600)")
	return fs
}

func init() {
	register("sim", simFlagSet(&simFlags{}, &ctlGlobals{}, new(string), new(string), new(string), new(simEdge)))
}

func runSim(e *env, args []string) error {
	var f simFlags
	var g ctlGlobals
	var mqttURL, coapURL, state string
	var se simEdge
	fs := simFlagSet(&f, &g, &mqttURL, &coapURL, &state, &se)
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	sc, sources, profiles, err := f.read()
	if err != nil {
		return err
	}
	c, err := g.connect()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(e.context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var route *sim.EdgeRoute
	if se.code != "" {
		if se.mqtt == "" && se.coap == "" {
			return usagef("--edge needs the edge's endpoints: --edge-mqtt mqtt://host:port and/or --edge-coap coap://host:port")
		}
		route = &sim.EdgeRoute{Code: se.code, MQTT: se.mqtt, CoAP: se.coap}
	}
	s, err := sim.New(sim.Options{Hub: c.Base, Token: c.Token, MQTT: mqttURL, CoAP: coapURL, Scenario: sc, Seed: f.seed,
		StateFile: state, Claim: f.claim, NoEmulation: f.noEmulation, Sources: sources, Profiles: profiles,
		Progress: func(line string) { fmt.Fprintln(e.stderr, line) }, Edge: route})
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wanwu sim: %d devices of scenario %s against %s (seed %d). Stop with Ctrl-C.\n", s.Stats().Devices, sc.Name, c.Base, s.Stats().Seed)
	return watch(ctx, e, s, &f, nil, nil, nil)
}

// watch shows the fleet's status until ctx ends or the duration passes,
// stops the fleet and writes the summary. extra, if set, adds to the
// summary before the fleet stops (the demo's checks of the hub).
func watch(ctx context.Context, e *env, s *sim.Sim, f *simFlags, extra func(ctx context.Context) any, more func(ctx context.Context, now time.Time) string, shown func(block string, at time.Time)) error {
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	tty := isTerminal(e.stdout)
	every := time.Second
	if !tty {
		every = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	prev, prevAt := s.Stats(), time.Now()
	lines := 0
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		cur, now := s.Stats(), time.Now()
		if done && now.Sub(prevAt) < time.Second {
			break // just shown
		}
		block := statusBlock(prev, cur, now.Sub(prevAt))
		if more != nil {
			block += more(ctx, now)
		}
		if shown != nil {
			shown(block, now)
		}
		if tty {
			if lines > 0 {
				fmt.Fprintf(e.stdout, "\x1b[%dA\x1b[J", lines)
			}
			fmt.Fprint(e.stdout, block)
			lines = strings.Count(block, "\n")
		} else {
			fmt.Fprint(e.stdout, block)
		}
		prev, prevAt = cur, now
	}
	summary := map[string]any{}
	if extra != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		summary["hub"] = extra(cctx)
		cancel()
	}
	final := s.Stats() // before the devices go offline
	summary["sim"] = final
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "stopped after %s: %d messages acknowledged, %d refused, %d commands carried out",
		final.Uptime.Round(time.Second), final.Messages, final.Refused, final.Commands)
	if f.summary != "" {
		fmt.Fprintf(e.stdout, "; summary in %s", f.summary)
	}
	fmt.Fprintln(e.stdout)
	if f.summary != "" {
		b, _ := json.MarshalIndent(summary, "", "  ")
		if err := os.MkdirAll(filepath.Dir(f.summary), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f.summary, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("summary: %w", err)
		}
	}
	return nil
}

// statusBlock is the fleet at a glance: one line in all, one per network.
func statusBlock(prev, cur sim.Stats, dt time.Duration) string {
	var b strings.Builder
	rate := 0.0
	if dt > 0 {
		rate = float64(cur.Messages-prev.Messages) / dt.Seconds()
	}
	fmt.Fprintf(&b, "%s  %d/%d devices online  %.0f msg/s  %d messages  %d refused  %d commands\n",
		time.Duration(cur.Uptime.Seconds())*time.Second, cur.Online, cur.Devices, rate, cur.Messages, cur.Refused, cur.Commands)
	for _, n := range cur.Networks {
		fmt.Fprintf(&b, "  %-10s %5d/%-5d online  %8d msgs  %6d refused  %5d cmds  up %9s  down %9s  %8.4f CNY\n",
			n.Network, n.Online, n.Devices, n.Messages, n.Refused, n.Commands, byteSize(n.BytesUp), byteSize(n.BytesDown), n.CostCNY)
	}
	for _, c := range cur.Classes {
		if c.Online < int64(c.Devices) && (c.Refused > 0 || c.Failures > 0) && c.LastErr != "" {
			fmt.Fprintf(&b, "  ! %s: %d/%d online; last problem: %s\n", c.Class, c.Online, c.Devices, short(c.LastErr, 100))
		}
	}
	return b.String()
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/hub"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

func init() {
	var c config.Hub
	var s string
	var b bool
	register("hub", hubFlags(&c, &s, &b))
}

// hubFlags binds the hub's flags to cfg; names mirror the YAML keys.
func hubFlags(cfg *config.Hub, configFile *string, printConfig *bool) *flag.FlagSet {
	fs := newFlagSet("hub")
	fs.StringVar(configFile, "config", "", "YAML configuration file (defaults < file < flags)")
	fs.BoolVar(printConfig, "print-config", false, "print the effective configuration as YAML and exit")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory (database, CA, keys, JetStream, admin token)")
	fs.StringVar(&cfg.HTTP.Listen, "http.listen", cfg.HTTP.Listen, "HTTP API address (port 0 picks a free port)")
	fs.StringVar(&cfg.HTTP.TLSListen, "http.tls-listen", cfg.HTTP.TLSListen, "HTTPS API address (server certificate from the hub CA; devices may use client certificates)")
	fs.StringVar(&cfg.MQTT.Listen, "mqtt.listen", cfg.MQTT.Listen, `plain MQTT address ("" = off)`)
	fs.StringVar(&cfg.MQTT.TLSListen, "mqtt.tls-listen", cfg.MQTT.TLSListen, `MQTT over TLS address ("" = off)`)
	fs.StringVar(&cfg.MQTT.DevListen, "mqtt.dev-listen", cfg.MQTT.DevListen, "ANONYMOUS development MQTT listener, limited to mqtt.dev_acl (default off)")
	fs.StringVar(&cfg.CoAP.DTLSListen, "coap.dtls-listen", cfg.CoAP.DTLSListen, `CoAP over DTLS (UDP) address ("" = off)`)
	fs.StringVar(&cfg.CoAP.Listen, "coap.listen", cfg.CoAP.Listen, `plain CoAP (UDP) address for development; requests carry a device token (default off)`)
	fs.Func("tls-hosts", "comma-separated names and addresses in the hub's TLS server certificate, replacing the list (default localhost,127.0.0.1,::1)", func(s string) error {
		cfg.TLSHosts = splitList(s)
		return nil
	})
	fs.StringVar(&cfg.Bus.Listen, "bus.listen", cfg.Bus.Listen, "expose the embedded NATS server on host:port (default: in-process only)")
	fs.StringVar(&cfg.Bus.Sync, "bus.sync", cfg.Bus.Sync, `JetStream fsync policy: "always" or an interval such as 2s (risks acknowledged data on power loss)`)
	fs.Func("identity.cert-validity", "lifetime of issued device certificates (default 8760h)", func(s string) error {
		d, err := time.ParseDuration(s)
		cfg.Identity.CertValidity = config.Duration(d)
		return err
	})
	fs.Func("identity.rotation-overlap", "how long a rotated-out key keeps working (default 168h)", func(s string) error {
		d, err := time.ParseDuration(s)
		cfg.Identity.RotationOverlap = config.Duration(d)
		return err
	})
	fs.Func("storage.min-free", "refuse device data when the data directory's filesystem has less free space than this, e.g. 256MiB; 0 = off (default 256MiB)", func(s string) error {
		v, err := config.ParseByteSize(s)
		cfg.Storage.MinFree = v
		return err
	})
	fs.StringVar(&cfg.Debug.PprofListen, "debug.pprof-listen", cfg.Debug.PprofListen, `serve /debug/pprof on this address, e.g. 127.0.0.1:6060 ("" = off)`)
	fs.StringVar(&cfg.Log.Level, "log.level", cfg.Log.Level, "log level: debug, info, warn, error")
	fs.StringVar(&cfg.Log.Format, "log.format", cfg.Log.Format, "log format: text or json")
	return fs
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// loadHubConfig applies defaults, then the file, then the flags that were set.
func loadHubConfig(e *env, args []string) (config.Hub, bool, error) {
	return loadConfig(e, args, config.DefaultHub, hubFlags)
}

// loadConfig is loadHubConfig for a command with its own defaults and flag
// set (the demo's: the hub's flags and more).
func loadConfig(e *env, args []string, defaults func() config.Hub, flags func(*config.Hub, *string, *bool) *flag.FlagSet) (config.Hub, bool, error) {
	var configFile string
	var printConfig bool
	// First pass: find --config without letting defaults override the file.
	probe := defaults()
	if err := parse(e, flags(&probe, &configFile, &printConfig), args); err != nil {
		return config.Hub{}, false, err
	}
	cfg := defaults()
	if configFile != "" {
		if err := cfg.LoadFile(configFile); err != nil {
			return config.Hub{}, false, err
		}
	}
	// Second pass on top of the file: only flags given on the command line change it.
	fs := flags(&cfg, new(string), new(bool))
	if err := parse(e, fs, args); err != nil {
		return config.Hub{}, false, err
	}
	if fs.NArg() > 0 {
		return config.Hub{}, false, usagef("unexpected arguments %q", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return config.Hub{}, false, err
	}
	return cfg, printConfig, nil
}

func newLogger(e *env, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(e.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(e.stderr, opts))
}

// printConfigYAML prints the effective configuration (--print-config).
func printConfigYAML(e *env, cfg config.Hub) error {
	out, err := cfg.YAML()
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(out)
	return err
}

func runHub(e *env, args []string) error {
	cfg, printConfig, err := loadHubConfig(e, args)
	if err != nil {
		return err
	}
	if printConfig {
		return printConfigYAML(e, cfg)
	}
	log := newLogger(e, cfg.Log.Level, cfg.Log.Format)
	ctx, stop := signal.NotifyContext(e.context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h := hub.New(hub.Options{Config: cfg, Logger: log, Version: currentBuild().Version})
	if err := h.Start(ctx); err != nil {
		return err
	}
	printTour(e, h, cfg.DataDir)
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// printTour shows a new user what to do next, with commands that work as printed.
func printTour(e *env, h *hub.Hub, dataDir string) {
	url := h.URL()
	abs, _ := filepath.Abs(dataDir)
	finds := "'wanwu ctl' run in this directory finds it there"
	if !isDefaultDataDir(dataDir) {
		finds = "'wanwu ctl ... --data-dir " + shellQuote(dataDir) + "' finds it there"
	}
	fmt.Fprintf(e.stdout, `
wanwu hub is running at %s (data in %s).
The admin token is in %s; %s.
MQTT: %s (plain), %s (TLS); CoAP: %s (DTLS), %s (plain UDP)
Prometheus API for Grafana: %[1]s/prometheus

Quick tour, in another terminal in this directory:
`, url, abs, filepath.Join(abs, hub.AdminTokenFile), finds, orOff(h.MQTT().Addr(mqtt.ListenerTCP)), orOff(h.MQTT().Addr(mqtt.ListenerTLS)),
		orOff(coapAddr(h, coap.ListenerDTLS)), orOff(coapAddr(h, coap.ListenerUDP)))
	for _, l := range tourCommands(invocation(os.Args[0]), dataDir) {
		fmt.Fprintf(e.stdout, "  %s\n", l)
	}
	if _, err := os.Stat(tourModel); err != nil {
		fmt.Fprintf(e.stdout, "(%s is in the wanwu source repository.)\n", tourModel)
	}
	fmt.Fprint(e.stdout, `
Then send telemetry as the device, set its twin and send it commands: see the
README's quick tour.
Stop with Ctrl-C.
`)
}

// tourModel is the thing model the quick tour registers.
const tourModel = "examples/pump.model.json"

// tourCommands are the first steps of the quick tour, as prog (how this
// binary was started) runs them against the hub on dataDir. ctl and verify
// take their flags after the command words, so --data-dir goes last.
func tourCommands(prog, dataDir string) []string {
	dd := ""
	if !isDefaultDataDir(dataDir) {
		dd = " --data-dir " + shellQuote(dataDir)
	}
	return []string{
		prog + " ctl tenant create acme" + dd,
		prog + " ctl model register " + tourModel + dd,
		prog + " ctl object register acme:pump-0001 --model acme:pump@1.0.0 --path plant-1/line-3 --out pump-0001" + dd,
		prog + " ctl resolve acme:pump-0001" + dd,
		prog + " verify credential pump-0001/credential.jwt" + dd,
		prog + " ctl audit head --out head.txt" + dd,
		prog + " verify log --head head.txt" + dd,
	}
}

// isDefaultDataDir says whether ctl and verify find dir without --data-dir.
func isDefaultDataDir(dir string) bool {
	abs, _ := filepath.Abs(dir)
	def, _ := filepath.Abs(config.DefaultHub().DataDir)
	return abs == def
}

// invocation is how to run this binary again from the same directory:
// "go run ./cmd/wanwu" when go run built it (into a go-build directory, in
// the temporary directory or the build cache), else the path it was started
// by (./wanwu, or wanwu found on $PATH).
func invocation(arg0 string) string {
	if arg0 == "" || strings.Contains(filepath.ToSlash(arg0), "/go-build") {
		return "go run ./cmd/wanwu"
	}
	return shellQuote(arg0)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@%+=,", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func coapAddr(h *hub.Hub, listener string) string {
	if h.CoAP() == nil {
		return ""
	}
	return h.CoAP().Addr(listener)
}

func orOff(addr string) string {
	if addr == "" {
		return "off"
	}
	return addr
}

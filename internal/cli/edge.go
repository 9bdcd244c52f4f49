package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/edge"
)

// edgeProvision are the edge's flags that are not configuration: how it
// gets its identity the first time.
type edgeProvision struct {
	claim, id, hubCA string
}

func init() {
	var c config.Hub
	var s string
	var b bool
	register("edge", edgeFlags(&c, &s, &b, new(edgeProvision)))
}

// edgeFlags binds the edge's flags to cfg; names mirror the YAML keys.
// Flags of the hub's own (the CA, identity lifetimes, HTTPS, the DTLS and
// MQTT TLS listeners) are not the edge's, and wanwu edge refuses them.
func edgeFlags(cfg *config.Hub, configFile *string, printConfig *bool, p *edgeProvision) *flag.FlagSet {
	fs := newFlagSet("edge")
	fs.StringVar(configFile, "config", "", "YAML configuration file (defaults < file < flags)")
	fs.BoolVar(printConfig, "print-config", false, "print the effective configuration as YAML and exit")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory (identity, replica registry, JetStream with the outboxes, local stores)")
	fs.StringVar(&cfg.Edge.Hub, "hub", cfg.Edge.Hub, "the hub's HTTPS API URL, e.g. https://hub.example:8443 (the link is TLS with the edge's certificate)")
	fs.StringVar(&cfg.Edge.Identity, "identity", cfg.Edge.Identity, "the edge's identity directory (default <data-dir>/identity)")
	fs.StringVar(&p.claim, "claim", "", "claim token to get the edge's identity on first start (ctl claim create --kind edge)")
	fs.StringVar(&p.id, "id", "", "with --claim: the local part of the edge's code to ask for")
	fs.StringVar(&p.hubCA, "hub-ca", "", "with --claim: the hub CA's certificate (the hub's ca.crt), to trust its HTTPS listener")
	fs.StringVar(&cfg.HTTP.Listen, "http.listen", cfg.HTTP.Listen, "the edge's own API address (local queries, twins, commands)")
	fs.StringVar(&cfg.MQTT.Listen, "mqtt.listen", cfg.MQTT.Listen, `MQTT address for local devices, with device tokens ("" = off)`)
	fs.StringVar(&cfg.CoAP.Listen, "coap.listen", cfg.CoAP.Listen, `CoAP (UDP) address for local devices, with device tokens ("" = off)`)
	fs.StringVar(&cfg.Bus.Sync, "bus.sync", cfg.Bus.Sync, `JetStream fsync policy: "always" or an interval such as 2s (risks acknowledged data on power loss)`)
	fs.Func("storage.min-free", "refuse device data when the data directory's filesystem has less free space than this (default 256MiB)", func(s string) error {
		v, err := config.ParseByteSize(s)
		cfg.Storage.MinFree = v
		return err
	})
	for _, q := range []struct {
		name string
		v    *config.ByteSize
		help string
	}{
		{"alarm", &cfg.Edge.Quota.Alarm, "alarms; full: devices' alarms refused until the hub takes some"},
		{"control", &cfg.Edge.Quota.Control, "events, results, gap records; full: refused until the hub takes some"},
		{"telemetry", &cfg.Edge.Quota.Telemetry, "values; full: the oldest downsampled into per-minute rollups"},
		{"bulk", &cfg.Edge.Quota.Bulk, "raw captures; full: the oldest dropped"},
	} {
		fs.Func("edge.quota."+q.name, fmt.Sprintf("outbox quota of class %s (default %s): %s", q.name, q.v.String(), q.help), func(s string) error {
			v, err := config.ParseByteSize(s)
			*q.v = v
			return err
		})
	}
	fs.StringVar(&cfg.Debug.PprofListen, "debug.pprof-listen", cfg.Debug.PprofListen, `serve /debug/pprof on this address ("" = off)`)
	fs.StringVar(&cfg.Log.Level, "log.level", cfg.Log.Level, "log level: debug, info, warn, error")
	fs.StringVar(&cfg.Log.Format, "log.format", cfg.Log.Format, "log format: text or json")
	return fs
}

func runEdge(e *env, args []string) error {
	var p edgeProvision
	cfg, printConfig, err := loadConfig(e, args, config.DefaultEdge, func(c *config.Hub, f *string, b *bool) *flag.FlagSet {
		return edgeFlags(c, f, b, &p)
	})
	if err != nil {
		return err
	}
	if printConfig {
		return printConfigYAML(e, cfg)
	}
	if cfg.Edge.Hub == "" {
		return usagef("wanwu edge needs --hub URL (or edge.hub in the file): the hub's HTTPS API")
	}
	log := newLogger(e, cfg.Log.Level, cfg.Log.Format)
	ctx, stop := signal.NotifyContext(e.context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := edge.Provision(ctx, edge.ProvisionOptions{
		Dir: edge.IdentityPath(cfg), Hub: cfg.Edge.Hub, CAFile: p.hubCA, ClaimToken: p.claim, ID: p.id,
	}); err != nil {
		return err
	}
	n := edge.New(edge.Options{Config: cfg, Logger: log, Version: currentBuild().Version})
	if err := n.Start(ctx); err != nil {
		return err
	}
	abs, _ := filepath.Abs(cfg.DataDir)
	l := n.Listeners()
	fmt.Fprintf(e.stdout, `
wanwu edge %s is running beside its machines, forwarding to %s.
Its API is at %s (data in %s; token in %s).
Local devices: MQTT %s, CoAP %s, with their device tokens.
Status: curl -H "Authorization: Bearer $(cat %s)" %s/api/v1/edge/status
Stop with Ctrl-C.
`, n.Code(), cfg.Edge.Hub, n.URL(), abs, filepath.Join(abs, edge.AdminTokenFile), orOff(l["mqtt/tcp"]), orOff(l["coap/udp"]),
		filepath.Join(abs, edge.AdminTokenFile), n.URL())
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// Package hub assembles the hub role from the components every role shares
// (internal/node: the data directory, the telemetry side, the adapters, the
// HTTP servers) and the hub's own: the metadata database, the CA and
// signing key, the audit log and its forwarder, the embedded bus, the
// identity registry, the twin and command services and the HTTP API,
// started and shut down as one component.
//
// The data directory holds everything the hub needs to restart where it
// stopped:
//
//	wanwu.db        SQLite metadata and the audit log (WAL, synchronous=FULL)
//	ca.key, ca.crt  the device CA (key mode 0600)
//	signing.key     Ed25519 key signing credentials and tree heads (0600)
//	signing.pub     its public key, for offline verification
//	admin.token     the first admin token (0600), written once
//	hub.url         the API base URL of the running hub, for `wanwu ctl`
//	nats/           JetStream storage
//	tsdb/           the time-series store (Prometheus TSDB)
//	events.db       events and non-numeric values
//	server.key/.crt the TLS server certificate of the MQTT, HTTPS and DTLS listeners
//	psk.key         the secret device PSKs (CoAP over DTLS) derive from (0600)
//
// wanwu.db also holds device_bytes, the bytes every device exchanged with
// the hub per UTC day (package netuse).
//
//	LOCK            held while a hub runs on the directory
package hub

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/capture"
	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/console"
	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/loop"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/netuse"
	"github.com/wanwu-iot/wanwu/internal/node"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/protoerr"
	"github.com/wanwu-iot/wanwu/internal/psk"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/rollout"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/twin"
	"github.com/wanwu-iot/wanwu/internal/webhook"
)

// File names inside the data directory.
const (
	DBFile         = "wanwu.db"
	SigningKeyFile = "signing.key"
	SigningPubFile = "signing.pub"
	AdminTokenFile = "admin.token"
	URLFile        = "hub.url"
	natsDir        = "nats"
)

// AuditOrigin is the checkpoint origin line of a deployment's audit log.
func AuditOrigin(deploymentID string) string { return "wanwu.hub/" + deploymentID }

// Options configure a hub.
type Options struct {
	Config  config.Hub
	Logger  *slog.Logger
	Version string
	// Now is the clock used by the registry (tests move it).
	Now func() time.Time
}

// Hub is the running hub role.
type Hub struct {
	opts Options
	log  *slog.Logger

	dir     *node.DataDir
	db      *store.DB
	ca      *ca.CA
	signer  ed25519.PrivateKey
	audit   *audit.Log
	bus     *bus.Bus
	reg     *registry.Registry
	metrics *prometheus.Registry
	tel     *node.Telemetry
	// adapters are the protocol endpoints; the hub treats them alike
	// (start, identity and twin changes, listeners, shutdown).
	adapters *node.Adapters
	twins    *twin.Service
	commands *command.Service
	psk      *psk.Deriver
	tlsConf  *tls.Config
	http     *node.HTTP
	// console is the web console the HTTP servers serve at /; its Run
	// samples message rates and sweeps sessions.
	console  *console.Console
	deployID string
	unsub    func()
	unsubTwn func()

	// protoErrs counts malformed device traffic for every protocol
	// adapter (wanwu_protocol_errors_total{protocol, cause}).
	protoErrs *protoerr.Recorder

	presence *presence.Service
	webhooks *webhook.Service
	// loops run the closed loops of the objects not behind an edge;
	// alarms are theirs and the edges' (loops.go).
	loops    *loop.Engine
	alarms   *alarm.Service
	alarmPub atomic.Pointer[mqtt.Server]
	loopPipe atomic.Pointer[pipeline.Pipeline]

	// mlModels is the model registry (ml.go).
	mlModels *mlreg.Registry
	mlScorer *mlreg.Scorer // the loops' model scores (ml.go)
	// rollouts stage model versions at the hub and the edges (ml.go).
	rollouts   *rollout.Store
	rolloutCtl *rollout.Controller
	// datasets hold captured windows, labels and dataset versions;
	// capturer takes windows (datasets.go).
	datasets *dataset.Store
	capturer atomic.Pointer[capture.Capturer]
	// edgeFigures: each edge's last report of its models' figures (by
	// edge code, []mlreg.VersionFigures).
	edgeFigures sync.Map

	// usage counts devices' bytes per day; reach says whether a PSM
	// device is awake (networks.go).
	usage *netuse.Accountant
	reach *netuse.Reachability
	// edges takes what edge nodes forward; members says which devices
	// are behind which edge (edges.go).
	edges   *forward.Receiver
	members edgeMembers
	// auditTick wakes edges waiting for a newer identity snapshot;
	// snapSent is what was last sent to each edge.
	auditTick broadcast
	snapMu    sync.Mutex
	snapSent  map[string]sentSnapshot
	// downlinks queue commands for devices behind each edge.
	downMu    sync.Mutex
	downlinks map[string]*edgeDownlink
	// The forwarders of the database's device events to their streams.
	commandEvents, presenceEvents *eventForwarder

	auditPending chan struct{} // wakes the audit forwarder
	cancel       context.CancelFunc
	wg           sync.WaitGroup

	mu      sync.Mutex
	started bool
	stopped bool
}

// New returns a hub that has not started.
func New(opts Options) *Hub {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Hub{opts: opts, log: opts.Logger, auditPending: make(chan struct{}, 1)}
}

// Start opens the data directory and starts every component. On error,
// whatever started is shut down again.
func (h *Hub) Start(ctx context.Context) (err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started {
		return errors.New("hub: already started")
	}
	h.started = true
	cfg := h.opts.Config
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("hub: config: %w", err)
	}
	defer func() {
		if err != nil {
			h.closeAll(context.Background())
		}
	}()
	dir := cfg.DataDir
	h.metrics = prometheus.NewRegistry()
	h.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if h.dir, err = node.OpenDataDir(node.DataDirOptions{
		Path: dir, Role: "hub", MinFree: uint64(cfg.Storage.MinFree), Logger: h.log, Metrics: h.metrics,
	}); err != nil {
		return err
	}
	if h.db, err = store.Open(ctx, filepath.Join(dir, DBFile), store.Options{}); err != nil {
		return err
	}
	if h.deployID, err = h.db.EnsureMeta(ctx, "deployment_id", node.RandomID); err != nil {
		return err
	}
	var created bool
	if h.ca, created, err = ca.LoadOrCreate(dir, h.deployID); err != nil {
		return fmt.Errorf("hub: CA: %w", err)
	}
	if created {
		h.log.Info("created device CA", "cert", filepath.Join(dir, "ca.crt"))
	}
	if h.signer, _, err = keys.LoadOrCreateEd25519(filepath.Join(dir, SigningKeyFile)); err != nil {
		return fmt.Errorf("hub: signing key: %w", err)
	}
	pubPEM, err := keys.MarshalPublicKeyPEM(h.signer.Public())
	if err != nil {
		return fmt.Errorf("hub: signing key: %w", err)
	}
	if err := node.WriteFileAtomic(filepath.Join(dir, SigningPubFile), pubPEM, 0o644); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if h.audit, err = audit.Open(ctx, h.db.W, h.signer, AuditOrigin(h.deployID)); err != nil {
		return fmt.Errorf("hub: audit log: %w", err)
	}
	if h.bus, err = bus.Start(ctx, bus.Options{
		StoreDir: filepath.Join(dir, natsDir), Listen: cfg.Bus.Listen, Sync: cfg.Bus.Sync,
		IngestMaxAge: time.Duration(cfg.Bus.IngestMaxAge), IngestMaxBytes: int64(cfg.Bus.IngestMaxBytes),
		Logger: h.log, ServerName: "wanwu-hub-" + h.deployID[:8],
		OnNoSpace:      func(err error) { h.dir.Disk.Report("jetstream", err) },
		SpaceAvailable: h.dir.Disk.Available,
	}); err != nil {
		return err
	}
	if h.reg, err = registry.New(registry.Options{
		DB: h.db, CA: h.ca, Signer: h.signer, Audit: h.audit, DeploymentID: h.deployID,
		CertValidity:    time.Duration(cfg.Identity.CertValidity),
		RotationOverlap: time.Duration(cfg.Identity.RotationOverlap),
		TokenSkew:       time.Duration(cfg.Identity.TokenSkew),
		Now:             h.opts.Now,
		OnCommit:        func([]audit.Entry) { h.wakeAuditForwarder() },
	}); err != nil {
		return err
	}
	h.members = edgeMembers{reg: h.reg, now: h.opts.Now}
	if err := h.ensureAdminToken(ctx); err != nil {
		return err
	}
	if err := h.openML(ctx); err != nil {
		return err
	}
	if h.protoErrs, err = protoerr.New(protoerr.Options{Metrics: h.metrics, Logger: h.log.With("component", "protocol")}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	h.commandEvents = newEventForwarder("command", h.bus.CommandEvents(), h.commandEventsAfter)
	h.presenceEvents = newEventForwarder("presence", h.bus.PresenceEvents(), h.presenceEventsAfter)
	if err := h.startTelemetry(ctx); err != nil {
		return err
	}
	if err := h.startHTTP(); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.goTracked(func() { h.console.Run(runCtx) })
	h.goTracked(func() { h.forwardAudit(runCtx) })
	h.goTracked(func() { h.retireKeys(runCtx) })
	h.goTracked(func() { h.forward(runCtx, h.commandEvents) })
	h.goTracked(func() { h.forward(runCtx, h.presenceEvents) })
	h.goTracked(func() {
		t := time.NewTicker(edgeAttachTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				h.expireEdgeAttachments()
			}
		}
	})
	h.wakeAuditForwarder()
	if err := node.WriteFileAtomic(filepath.Join(dir, URLFile), []byte(h.URL()+"\n"), 0o644); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	h.log.Info("hub started", "api", h.URL(), "data_dir", dir, "deployment", h.deployID, "bus", orNone(h.bus.ClientURL()), "sync", cfg.Bus.Sync)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "in-process only"
	}
	return s
}

func (h *Hub) goTracked(fn func()) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		fn()
	}()
}

// Ready reports whether the hub serves requests.
func (h *Hub) Ready() error {
	if h.bus == nil || h.db == nil {
		return errors.New("hub: not started")
	}
	if err := h.bus.Ready(); err != nil {
		return err
	}
	if err := h.dir.Disk.Ready(); err != nil {
		return fmt.Errorf("hub: data dir %s: %w", h.opts.Config.DataDir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.db.R.PingContext(ctx); err != nil {
		return fmt.Errorf("hub: database: %w", err)
	}
	return nil
}

// URL is the API base URL.
func (h *Hub) URL() string {
	if h.http == nil {
		return ""
	}
	return h.http.URL()
}

// Console is the hub's web console (nil before Start).
func (h *Hub) Console() *console.Console { return h.console }

// Registry exposes the identity service to in-process callers (adapters, tests).
func (h *Hub) Registry() *registry.Registry { return h.reg }

// Audit exposes the audit log.
func (h *Hub) Audit() *audit.Log { return h.audit }

// Bus exposes the embedded bus.
func (h *Hub) Bus() *bus.Bus { return h.bus }

// MQTT exposes the MQTT endpoint (for its listener addresses).
func (h *Hub) MQTT() *mqtt.Server {
	m, _ := h.adapters.Get("mqtt").(*mqtt.Server)
	return m
}

// CoAP exposes the CoAP endpoint (for its listener addresses); nil when no
// CoAP listener is configured.
func (h *Hub) CoAP() *coap.Server {
	c, _ := h.adapters.Get("coap").(*coap.Server)
	return c
}

// HTTPSURL is the HTTPS API base URL, "" when not configured.
func (h *Hub) HTTPSURL() string {
	if h.http == nil {
		return ""
	}
	return h.http.TLSURL()
}

// CA exposes the device CA.
func (h *Hub) CA() *ca.CA { return h.ca }

// DeploymentID is the hub's stable id, created on first start.
func (h *Hub) DeploymentID() string { return h.deployID }

// Shutdown stops accepting requests, waits for in-flight ones, stops every
// goroutine and closes the bus and database. It is safe to call twice.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped || !h.started {
		return nil
	}
	h.stopped = true
	return h.closeAll(ctx)
}

func (h *Hub) closeAll(ctx context.Context) error {
	var errs []error
	if h.console != nil {
		h.console.Close() // its live streams, which the HTTP shutdown would wait for
	}
	if h.http != nil {
		errs = append(errs, h.http.Shutdown(ctx))
	}
	if h.unsub != nil {
		h.unsub()
	}
	if h.unsubTwn != nil {
		h.unsubTwn()
	}
	// Devices first, so nothing new arrives; then the pipeline flushes what
	// it holds and the stores close.
	if h.adapters != nil {
		errs = append(errs, h.adapters.Shutdown(ctx))
	}
	if h.commands != nil {
		errs = append(errs, h.commands.Shutdown(ctx))
	}
	if h.usage != nil { // after the adapters (their last bytes), before the event store
		errs = append(errs, h.usage.Shutdown(ctx))
	}
	if c := h.capturer.Load(); c != nil { // before the store it reads
		errs = append(errs, c.Shutdown(ctx))
	}
	if h.tel != nil {
		errs = append(errs, h.tel.Shutdown(ctx))
	}
	if h.loops != nil { // after the pipeline, whose consumer it is
		errs = append(errs, h.loops.Shutdown(ctx))
	}
	if h.rolloutCtl != nil {
		errs = append(errs, h.rolloutCtl.Shutdown(ctx))
	}
	if h.mlScorer != nil { // after the loops, which score with it
		errs = append(errs, h.mlScorer.Close())
	}
	if h.presence != nil { // after the adapters: their sessions' ends are written
		errs = append(errs, h.presence.Shutdown(ctx))
	}
	if h.webhooks != nil {
		errs = append(errs, h.webhooks.Shutdown(ctx))
	}
	if h.cancel != nil {
		h.cancel()
	}
	h.wg.Wait()
	if h.bus != nil {
		errs = append(errs, h.bus.Shutdown(ctx))
	}
	if h.db != nil {
		errs = append(errs, h.db.Close())
	}
	if h.dir != nil {
		_ = os.Remove(filepath.Join(h.opts.Config.DataDir, URLFile))
		errs = append(errs, h.dir.Close())
	}
	return errors.Join(errs...)
}

// Package edge assembles the edge role: the node that runs beside machines
// on a gateway, serves local devices over MQTT, CoAP and HTTP with the same
// components as the hub (data directory, bus, telemetry side, twins,
// commands, adapters, API), keeps working with the hub unreachable, and
// forwards what it accepted to the hub by priority class, exactly once.
//
// Identity: the edge is an object of kind edge at the hub. Its identity
// (key, client certificate, the hub CA) is claimed with a claim token or
// placed in its identity directory. Local devices authenticate against a
// replica of the hub's registry, filled from the hub's signed identity
// snapshots (package snapshot), so that they keep connecting across
// outages and edge reboots, and a device revoked at the hub is refused
// once the change reaches the edge.
//
// Loops: the hub's loops for the objects behind the edge run here from
// the last signed bundle taken (loops.go), and score with the model
// versions they name, which the edge takes from the hub and stores in its
// database only once they verify with the hub's signing key (ml.go).
//
// The data directory:
//
//	identity/        the edge's key (0600), certificate, the hub CA, its credential
//	hub-signing.pub  the hub's signing key: verifies identity snapshots
//	wanwu.db         the replica registry, twins, commands, presence, the model
//	                 versions taken from the hub (with its signatures), the local audit log
//	signing.key      signs the local audit log's checkpoints (0600)
//	admin.token      the first token of the edge's own API (0600)
//	nats/            JetStream: the ingest log and the outboxes (FWD_ALARM, ...)
//	tsdb/, events.db the local stores
//	ingest.cursor, forward.cursor   where the stores and the forwarder are
//	forward.epoch    names the outboxes' sequences at the hub
//	loops.cursor     where the loop engine is in the ingest log
//	loops.bundle, loops.bundle.sig   the hub's latest loop bundle and its signature
//	LOCK             held while an edge runs on the directory
package edge

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/api"
	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/capture"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/console"
	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/loop"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/node"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/protoerr"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/rollout"
	"github.com/wanwu-iot/wanwu/internal/southbound"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// Files in the data directory.
const (
	DBFile         = "wanwu.db"
	IdentityDir    = "identity"
	SigningKeyFile = "signing.key"
	AdminTokenFile = "admin.token"
	EpochFile      = "forward.epoch"
	URLFile        = "edge.url"
	forwardCursor  = "forward.cursor"
)

// Options configure an edge.
type Options struct {
	// Config is the node's configuration (config.DefaultEdge and a file);
	// Config.Edge names the hub.
	Config  config.Hub
	Logger  *slog.Logger
	Version string
	Now     func() time.Time
}

// Edge is the running edge role.
type Edge struct {
	opts Options
	log  *slog.Logger

	dir    *node.DataDir
	id     *device.Identity
	hubURL string
	// hubKey is the hub's signing key once known (syncWithHub learns it).
	hubKey   atomic.Pointer[ed25519.PublicKey]
	client   *http.Client
	db       *store.DB
	audit    *audit.Log
	bus      *bus.Bus
	reg      *registry.Registry
	metrics  *prometheus.Registry
	presence *presence.Service
	twins    *twin.Service
	commands *command.Service
	boxes    *forward.Outboxes
	tel      *node.Telemetry
	adapters *node.Adapters
	link     *forward.Link
	http     *node.HTTP
	// console is the web console at / of the edge's API; its Run samples
	// message rates and sweeps sessions.
	console  *console.Console
	syncM    *syncMetrics
	unsubTwn func()
	// The loops the hub gives this edge, their alarms (loops.go).
	loops       *loop.Engine
	alarms      *alarm.Service
	loopPipe    atomic.Pointer[pipeline.Pipeline]
	loopsDigest string // of the bundle the engine has; syncLoops's only
	// The models the loops score with, taken from the hub (ml.go).
	mlModels *mlreg.Registry
	mlScorer *mlreg.Scorer
	// rollouts: the hub's plans staging model versions here (ml.go).
	rollouts   *rollout.Store
	rolloutCtl *rollout.Controller
	// datasets keep the windows captured here, whole; capturer takes
	// them and sends them up redacted (ml.go).
	datasets *dataset.Store
	capturer atomic.Pointer[capture.Capturer]
	mlDigest string // of the hub's model list taken; syncML's only
	// models caches the thing models by "id@version" (modelByKey).
	models sync.Map

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	started bool
	stopped bool
}

// New returns an edge that has not started.
func New(opts Options) *Edge {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Edge{opts: opts, log: opts.Logger}
}

// IdentityPath is the identity directory the configuration names.
func IdentityPath(cfg config.Hub) string {
	if cfg.Edge.Identity != "" {
		return cfg.Edge.Identity
	}
	return filepath.Join(cfg.DataDir, IdentityDir)
}

// Start opens the data directory and starts every component; the edge's
// identity must be provisioned (Provision). On error, whatever started is
// shut down again.
func (e *Edge) Start(ctx context.Context) (err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return errors.New("edge: already started")
	}
	e.started = true
	cfg := e.opts.Config
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("edge: config: %w", err)
	}
	if cfg.Edge.Hub == "" {
		return errors.New("edge: no hub: set edge.hub (--hub URL), the hub's HTTPS API")
	}
	e.hubURL = strings.TrimRight(cfg.Edge.Hub, "/")
	defer func() {
		if err != nil {
			e.closeAll(context.Background())
		}
	}()
	dir := cfg.DataDir
	e.metrics = prometheus.NewRegistry()
	e.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if e.dir, err = node.OpenDataDir(node.DataDirOptions{
		Path: dir, Role: "edge", MinFree: uint64(cfg.Storage.MinFree), Logger: e.log, Metrics: e.metrics,
	}); err != nil {
		return err
	}
	if e.id, err = device.LoadIdentity(IdentityPath(cfg)); err != nil {
		return fmt.Errorf("edge: identity: %w (claim one with --claim TOKEN)", err)
	}
	if e.client, err = LinkClient(e.id); err != nil {
		return err
	}
	if e.db, err = store.Open(ctx, filepath.Join(dir, DBFile), store.Options{}); err != nil {
		return err
	}
	signer, _, err := keys.LoadOrCreateEd25519(filepath.Join(dir, SigningKeyFile))
	if err != nil {
		return fmt.Errorf("edge: signing key: %w", err)
	}
	if e.audit, err = audit.Open(ctx, e.db.W, signer, "wanwu.edge/"+e.id.Code); err != nil {
		return fmt.Errorf("edge: audit log: %w", err)
	}
	if e.syncM, err = newSyncMetrics(e.metrics); err != nil {
		return err
	}
	if e.reg, err = registry.New(registry.Options{
		DB: e.db, Audit: e.audit, Replica: true, Logger: e.log.With("component", "registry"), Now: e.opts.Now,
		OnSnapshot: func(a registry.SnapshotApplied) {
			if e.adapters != nil {
				for _, code := range a.Disconnect() {
					e.adapters.DisconnectDevice(code)
				}
				e.assignSouthbound(context.Background())
			}
			if e.loops != nil {
				// A loop whose model had no object here may have some now.
				e.loops.Reload()
			}
		},
	}); err != nil {
		return err
	}
	if err := e.ensureAdminToken(ctx); err != nil {
		return err
	}
	if e.bus, err = bus.Start(ctx, bus.Options{
		StoreDir: filepath.Join(dir, "nats"), Sync: cfg.Bus.Sync, Listen: cfg.Bus.Listen,
		IngestMaxAge: time.Duration(cfg.Bus.IngestMaxAge), IngestMaxBytes: int64(cfg.Bus.IngestMaxBytes),
		Logger: e.log, ServerName: "wanwu-edge",
		OnNoSpace:      func(err error) { e.dir.Disk.Report("jetstream", err) },
		SpaceAvailable: e.dir.Disk.Available,
	}); err != nil {
		return err
	}
	if err := e.startDevices(ctx); err != nil {
		return err
	}
	epoch, err := e.loadEpoch()
	if err != nil {
		return err
	}
	if e.link, err = forward.NewLink(forward.LinkOptions{
		Hub: e.hubURL, Client: e.client, Outboxes: e.boxes, Epoch: epoch, NewEpoch: e.newEpoch,
		Status: e.statusJSON, RetryMax: time.Duration(cfg.Edge.RetryMax), Logger: e.log, Metrics: e.metrics,
	}); err != nil {
		return err
	}
	if err := e.startHTTP(); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.link.Start()
	e.wg.Add(6)
	go func() {
		defer e.wg.Done()
		e.console.Run(runCtx)
	}()
	go func() {
		defer e.wg.Done()
		e.syncWithHub(runCtx)
	}()
	go func() {
		defer e.wg.Done()
		e.syncLoops(runCtx)
	}()
	go func() {
		defer e.wg.Done()
		e.syncML(runCtx)
	}()
	go func() {
		defer e.wg.Done()
		e.reportML(runCtx)
	}()
	go func() {
		defer e.wg.Done()
		e.pollCommands(runCtx)
	}()
	if err := node.WriteFileAtomic(filepath.Join(dir, URLFile), []byte(e.URL()+"\n"), 0o644); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.log.Info("edge started", "code", e.id.Code, "hub", e.hubURL, "api", e.URL(), "data_dir", dir, "epoch", epoch)
	return nil
}

// syncWithHub learns the hub's signing key once (retrying while the hub is
// away: a new edge must reach it once), then keeps the identities in step.
func (e *Edge) syncWithHub(ctx context.Context) {
	wait := 100 * time.Millisecond
	for e.hubKeyNow() == nil {
		k, err := hubKey(ctx, e.opts.Config.DataDir, e.client, e.hubURL)
		if err == nil {
			e.hubKey.Store(&k)
			break
		}
		e.log.Debug("the hub's signing key is not known yet; will retry", "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
	e.syncIdentities(ctx)
}

// hubKeyNow is the hub's signing key, nil while it is not known.
func (e *Edge) hubKeyNow() ed25519.PublicKey {
	if k := e.hubKey.Load(); k != nil {
		return *k
	}
	return nil
}

// startDevices opens presence, twins and commands, the telemetry side with
// the outboxes, and the adapters.
func (e *Edge) startDevices(ctx context.Context) error {
	cfg := e.opts.Config
	var err error
	if e.presence, err = presence.Open(ctx, presence.Options{
		DB: e.db, Now: e.opts.Now, Logger: e.log, Metrics: e.metrics, Idle: time.Duration(cfg.CoAP.SessionIdle),
	}); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if e.twins, err = twin.Open(ctx, twin.Options{
		DB: e.db, Audit: e.audit, Model: e.modelOf(twin.ErrNotFound), Now: e.opts.Now,
		Limits:   twin.Limits{MaxDocBytes: cfg.Twins.MaxDocBytes},
		OnChange: e.twinChanged,
	}); err != nil {
		return fmt.Errorf("edge: twins: %w", err)
	}
	if e.commands, err = command.Open(ctx, command.Options{
		DB: e.db, Audit: e.audit, Model: e.modelOf(command.ErrNotFound), Now: e.opts.Now,
		Logger:     e.log.With("component", "commands"),
		DefaultTTL: time.Duration(cfg.Commands.DefaultTTL), AckTimeout: time.Duration(cfg.Commands.AckTimeout),
		MaxAttempts: cfg.Commands.MaxAttempts, OnEvent: e.commandEvent,
	}); err != nil {
		return fmt.Errorf("edge: commands: %w", err)
	}
	q := cfg.Edge.Quota
	if e.boxes, err = forward.OpenOutboxes(ctx, forward.OutboxOptions{
		Bus: e.bus, Edge: e.id.Code, Tenant: tenantOf(e.id.Code), Models: e.modelByKey, Key: e.id.Key,
		Quota:  [forward.NumClasses]int64{int64(q.Alarm), int64(q.Control), int64(q.Telemetry), int64(q.Bulk)},
		Logger: e.log, Metrics: e.metrics, Now: e.opts.Now, Shared: cfg.Edge.Share,
	}); err != nil {
		return err
	}
	if err := e.openLoops(ctx); err != nil {
		return err
	}
	if e.tel, err = node.StartTelemetry(ctx, node.TelemetryOptions{
		Dir: cfg.DataDir, Config: cfg.Telemetry, Bus: e.bus, Disk: e.dir.Disk,
		Logger: e.log, Metrics: e.metrics, Now: e.opts.Now, Presence: e.presence,
		Consumers: []node.Consumer{
			{Consumer: e.boxes, Name: "forward", CursorFile: forwardCursor},
			{Consumer: e.loops, Name: "loops", CursorFile: LoopsCursor},
		},
		Admit: e.boxes.Admit,
	}); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.loopPipe.Store(e.tel.Pipeline)
	if err := e.startCapture(ctx); err != nil {
		return err
	}
	e.presence.Start()
	if err := e.commands.Start(ctx); err != nil {
		return err
	}
	protoErrs, err := protoerr.New(protoerr.Options{Metrics: e.metrics, Logger: e.log.With("component", "protocol")})
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if e.adapters, err = node.BuildAdapters(node.AdapterConfig{
		MQTT: cfg.MQTT, CoAP: cfg.CoAP, MaxPayload: cfg.Telemetry.MaxPayload, Southbound: len(cfg.Edge.Southbound) > 0,
	}, node.AdapterDeps{
		Registry: e.reg, Intake: e.tel.Intake, Twins: e.twins, Commands: e.commands, Presence: e.presence,
		Logger: e.log, Metrics: e.metrics, ProtocolErrors: protoErrs,
	}); err != nil {
		return err
	}
	if err := e.adapters.Start(ctx); err != nil {
		return err
	}
	e.assignSouthbound(ctx)
	return nil
}

// assignSouthbound gives the field-bus drivers the configured devices the
// replica registry holds, active, with a register map: at start and after
// every snapshot (a device placed behind the edge, revoked, its model
// changed).
func (e *Edge) assignSouthbound(ctx context.Context) {
	drivers := e.adapters.Drivers()
	if len(drivers) == 0 {
		return
	}
	var devs []southbound.Device
	for _, sd := range e.opts.Config.Edge.Southbound {
		o, err := e.reg.Object(ctx, sd.Code)
		if err != nil {
			e.log.Info("a southbound device is not behind this edge (yet): not polled", "device", sd.Code, "err", err)
			continue
		}
		if o.Status != registry.StatusActive {
			e.log.Info("a southbound device is not active: not polled", "device", sd.Code, "status", o.Status)
			continue
		}
		m, err := e.reg.ModelOf(ctx, o)
		if err != nil || m == nil || m.Mapping == nil || m.Mapping.Modbus == nil {
			e.log.Warn("a southbound device's thing model maps no registers (mapping.modbus): not polled", "device", sd.Code, "err", err)
			continue
		}
		unit := sd.Unit
		if unit == 0 {
			unit = 1
		}
		devs = append(devs, southbound.Device{Code: o.Code, Tenant: o.Tenant, Model: m, URL: sd.URL, UnitID: unit, Timeout: time.Duration(sd.Timeout)})
	}
	if err := southbound.Assign(drivers, devs); err != nil {
		e.log.Warn("some southbound devices were not assigned to a driver", "err", err)
	}
}

func tenantOf(code string) string {
	t, _, _ := strings.Cut(code, ":")
	return t
}

// modelOf returns a device's thing model for the twin and command
// services, with notFound wrapped around an unknown device.
func (e *Edge) modelOf(notFound error) func(ctx context.Context, code string) (*thingmodel.Model, error) {
	return func(ctx context.Context, code string) (*thingmodel.Model, error) {
		o, err := e.reg.Object(ctx, code)
		if errors.Is(err, registry.ErrNotFound) {
			return nil, fmt.Errorf("%w: %v", notFound, err)
		}
		if err != nil {
			return nil, err
		}
		return e.reg.ModelOf(ctx, o)
	}
}

// modelByKey is the outboxes' model lookup ("id@version").
func (e *Edge) modelByKey(key string) *thingmodel.Model {
	if m, ok := e.models.Load(key); ok {
		return m.(*thingmodel.Model)
	}
	id, version, ok := strings.Cut(key, "@")
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := e.reg.Model(ctx, id, version)
	if err != nil {
		return nil
	}
	// A model version's content never changes: it is kept once read (the
	// forwarder asks for every message; reading and parsing it each time
	// was a quarter of the edge's CPU at 10,000 msg/s).
	e.models.Store(key, m)
	return m
}

// ensureAdminToken creates the first token of the edge's own API.
func (e *Edge) ensureAdminToken(ctx context.Context) error {
	n, err := e.reg.TokenCount(ctx)
	if err != nil || n > 0 {
		return err
	}
	_, secret, err := e.reg.CreateToken(ctx, "system", "admin", auth.Admin, "")
	if err != nil {
		return fmt.Errorf("edge: first admin token: %w", err)
	}
	path := filepath.Join(e.opts.Config.DataDir, AdminTokenFile)
	if err := node.WriteFileAtomic(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.log.Info("created the edge API's first admin token", "file", path)
	return nil
}

// loadEpoch reads the outboxes' epoch, making one for a new data directory.
func (e *Edge) loadEpoch() (string, error) {
	b, err := os.ReadFile(filepath.Join(e.opts.Config.DataDir, EpochFile))
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("edge: %w", err)
	}
	return e.newEpoch()
}

func (e *Edge) newEpoch() (string, error) {
	epoch := node.RandomID()
	if err := node.WriteFileAtomic(filepath.Join(e.opts.Config.DataDir, EpochFile), []byte(epoch+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("edge: %w", err)
	}
	return epoch, nil
}

// LinkClient is the HTTP client of the link to the hub: TLS with the edge's
// certificate, the hub CA as the only trust anchor, HTTP/2 with pings so
// that a dead connection is noticed without waiting for TCP.
func LinkClient(id *device.Identity) (*http.Client, error) {
	tc, err := id.TLSConfig("")
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	tc.NextProtos = []string{"h2", "http/1.1"}
	tr := &http.Transport{
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: 5 * time.Second, PingTimeout: 5 * time.Second},
	}
	return &http.Client{Transport: tr}, nil
}

// Status is what the edge says of itself (to the hub, on its API).
type Status struct {
	Code          string             `json:"code"`
	Version       string             `json:"version,omitempty"`
	Link          forward.LinkStatus `json:"link"`
	Backlog       []forward.Backlog  `json:"backlog"`
	DevicesOnline int                `json:"devices_online"`
	Snapshot      uint64             `json:"snapshot_version"`
	At            time.Time          `json:"at"`
}

// Status reports the edge's state.
func (e *Edge) Status(ctx context.Context) (Status, error) {
	s := Status{Code: e.id.Code, Version: e.opts.Version, At: e.opts.Now().UTC()}
	if e.link != nil {
		s.Link = e.link.Status()
	}
	var err error
	if s.Backlog, err = e.boxes.Backlogs(ctx); err != nil {
		return s, err
	}
	if s.Snapshot, err = e.reg.AppliedSnapshotVersion(ctx); err != nil {
		return s, err
	}
	s.DevicesOnline = e.presence.OnlineCount()
	return s, nil
}

func (e *Edge) statusJSON(ctx context.Context) []byte {
	s, err := e.Status(ctx)
	if err != nil {
		return nil
	}
	b, _ := json.Marshal(s)
	return b
}

// startHTTP serves the edge's own API (local queries, twins, commands).
func (e *Edge) startHTTP() error {
	cfg := e.opts.Config
	listeners := e.adapters.Listeners()
	con, err := console.New(console.Options{
		Audit: e.audit, Registry: e.reg, Presence: e.presence, Gatherer: e.metrics, Metrics: e.metrics,
		Logger: e.log.With("component", "console"), Role: "edge", Code: e.id.Code, Version: e.opts.Version,
		SessionLifetime: time.Duration(cfg.Console.SessionLifetime), SecureCookies: cfg.Console.SecureCookies,
		LiveEvery: time.Duration(cfg.Console.LiveEvery), MaxLiveStreams: cfg.Console.MaxLiveStreams,
	})
	if err != nil {
		return err
	}
	e.console = con
	handler, err := api.New(api.Options{
		Registry: e.reg, Audit: e.audit, Logger: e.log.With("component", "api"), Console: con,
		Metrics: e.metrics, Gatherer: e.metrics, Ready: e.Ready,
		TSDB: e.tel.TSDB, Events: e.tel.Events, Pipeline: e.tel.Pipeline, Intake: e.tel.Intake,
		Twins: e.twins, Commands: e.commands, Presence: e.presence, EdgeStatus: func(ctx context.Context) (any, error) { return e.Status(ctx) },
		Loops: e.loops, Alarms: e.alarms,
		Info: api.Info{
			Version: e.opts.Version, Role: "edge", Code: e.id.Code,
			MQTT: listeners["mqtt/tcp"], CoAP: listeners["coap/udp"],
		},
	})
	if err != nil {
		return err
	}
	con.UseAPI(handler)
	e.http, err = node.StartHTTP(node.HTTPOptions{Config: cfg.HTTP, Handler: handler, PprofListen: cfg.Debug.PprofListen, Logger: e.log})
	return err
}

// Ready reports whether the edge serves devices.
func (e *Edge) Ready() error {
	if e.bus == nil || e.db == nil {
		return errors.New("edge: not started")
	}
	if err := e.bus.Ready(); err != nil {
		return err
	}
	return e.dir.Disk.Ready()
}

// URL is the edge API's base URL.
func (e *Edge) URL() string {
	if e.http == nil {
		return ""
	}
	return e.http.URL()
}

// Code is the edge's code.
func (e *Edge) Code() string { return e.id.Code }

// Listeners are the adapters' bound addresses ("mqtt/tcp", "coap/udp").
func (e *Edge) Listeners() map[string]string { return e.adapters.Listeners() }

// Presence is the presence of the edge's local devices.
func (e *Edge) Presence() *presence.Service { return e.presence }

// Registry is the replica registry (tests).
func (e *Edge) Registry() *registry.Registry { return e.reg }

// Shutdown stops the link and the devices' side, lets the forwarder append
// what was accepted, and closes the stores; safe to call twice.
func (e *Edge) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped || !e.started {
		return nil
	}
	e.stopped = true
	return e.closeAll(ctx)
}

func (e *Edge) closeAll(ctx context.Context) error {
	var errs []error
	if e.console != nil {
		e.console.Close() // its live streams, which the HTTP shutdown would wait for
	}
	if e.http != nil {
		errs = append(errs, e.http.Shutdown(ctx))
	}
	if e.cancel != nil {
		e.cancel()
	}
	if e.link != nil {
		errs = append(errs, e.link.Shutdown(ctx))
	}
	e.wg.Wait()
	if e.adapters != nil {
		errs = append(errs, e.adapters.Shutdown(ctx))
	}
	if e.commands != nil {
		errs = append(errs, e.commands.Shutdown(ctx))
	}
	if c := e.capturer.Load(); c != nil { // before the store it reads
		errs = append(errs, c.Shutdown(ctx))
	}
	if e.tel != nil {
		errs = append(errs, e.tel.Shutdown(ctx))
	}
	if e.loops != nil { // after the pipeline, whose consumer it is
		errs = append(errs, e.loops.Shutdown(ctx))
	}
	if e.rolloutCtl != nil {
		errs = append(errs, e.rolloutCtl.Shutdown(ctx))
	}
	if e.mlScorer != nil { // after the loops, which score with it
		errs = append(errs, e.mlScorer.Close())
	}
	if e.presence != nil {
		errs = append(errs, e.presence.Shutdown(ctx))
	}
	if e.bus != nil {
		errs = append(errs, e.bus.Shutdown(ctx))
	}
	if e.db != nil {
		errs = append(errs, e.db.Close())
	}
	if e.dir != nil {
		_ = os.Remove(filepath.Join(e.opts.Config.DataDir, URLFile))
		errs = append(errs, e.dir.Close())
	}
	if tr, ok := e.client.Transport.(*http.Transport); ok && e.client != nil {
		tr.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// Package hub assembles the hub role: the data directory, the metadata
// database, the CA and signing key, the audit log, the embedded bus, the
// identity registry and the HTTP API, started and shut down as one component.
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
//	LOCK            held while a hub runs on the directory
package hub

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/time/rate"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/api"
	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/diskguard"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/protoerr"
	"github.com/wanwu-iot/wanwu/internal/psk"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// File names inside the data directory.
const (
	DBFile         = "wanwu.db"
	SigningKeyFile = "signing.key"
	SigningPubFile = "signing.pub"
	AdminTokenFile = "admin.token"
	URLFile        = "hub.url"
	lockFile       = "LOCK"
	natsDir        = "nats"
	tsdbDir        = "tsdb"
	eventsFile     = "events.db"
	// ingestCursor says up to which ingest batch the stores are durable.
	ingestCursor = "ingest.cursor"
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

	lock    *os.File
	disk    *diskguard.Guard
	db      *store.DB
	ca      *ca.CA
	signer  ed25519.PrivateKey
	audit   *audit.Log
	bus     *bus.Bus
	reg     *registry.Registry
	metrics *prometheus.Registry
	tsdb    *tsdb.Store
	events  *eventstore.Store
	pipe    *pipeline.Pipeline
	decoder *ingest.Decoder
	mqtt    *mqtt.Server
	// adapters are the protocol endpoints, MQTT first; the hub treats them
	// alike (start, identity and twin changes, listeners, shutdown).
	adapters []adapter.Adapter
	twins    *twin.Service
	commands *command.Service
	coap     *coap.Server
	psk      *psk.Deriver
	tlsConf  *tls.Config
	http     *http.Server
	https    *http.Server
	pprof    *http.Server
	listener net.Listener
	tlsLn    net.Listener
	deployID string
	unsub    func()
	unsubTwn func()

	// protoErrs counts malformed device traffic for every protocol
	// adapter (wanwu_protocol_errors_total{protocol, cause}).
	protoErrs *protoerr.Recorder

	commandEventsPending chan struct{} // wakes the command-event forwarder

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
	return &Hub{opts: opts, log: opts.Logger, auditPending: make(chan struct{}, 1), commandEventsPending: make(chan struct{}, 1)}
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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("hub: data dir: %w", err)
	}
	if h.lock, err = lockDir(dir); err != nil {
		return err
	}
	h.metrics = prometheus.NewRegistry()
	h.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if h.disk, err = diskguard.New(diskguard.Options{
		Dir: dir, MinFree: uint64(cfg.Storage.MinFree), Logger: h.log, Metrics: h.metrics,
	}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	h.disk.Start()
	if h.db, err = store.Open(ctx, filepath.Join(dir, DBFile), store.Options{}); err != nil {
		return err
	}
	if h.deployID, err = h.db.EnsureMeta(ctx, "deployment_id", randomID); err != nil {
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
	if err := writeFileAtomic(filepath.Join(dir, SigningPubFile), pubPEM, 0o644); err != nil {
		return err
	}
	if h.audit, err = audit.Open(ctx, h.db.W, h.signer, AuditOrigin(h.deployID)); err != nil {
		return fmt.Errorf("hub: audit log: %w", err)
	}
	if h.bus, err = bus.Start(ctx, bus.Options{
		StoreDir: filepath.Join(dir, natsDir), Listen: cfg.Bus.Listen, Sync: cfg.Bus.Sync,
		IngestMaxAge: time.Duration(cfg.Bus.IngestMaxAge), IngestMaxBytes: int64(cfg.Bus.IngestMaxBytes),
		Logger: h.log, ServerName: "wanwu-hub-" + h.deployID[:8],
		OnNoSpace:      func(err error) { h.disk.Report("jetstream", err) },
		SpaceAvailable: h.disk.Available,
	}); err != nil {
		return err
	}
	if h.reg, err = registry.New(registry.Options{
		DB: h.db, CA: h.ca, Signer: h.signer, Audit: h.audit, DeploymentID: h.deployID,
		CertValidity:    time.Duration(cfg.Identity.CertValidity),
		RotationOverlap: time.Duration(cfg.Identity.RotationOverlap),
		Now:             h.opts.Now,
		OnCommit:        func([]audit.Entry) { h.wakeAuditForwarder() },
	}); err != nil {
		return err
	}
	if err := h.ensureAdminToken(ctx); err != nil {
		return err
	}
	if h.protoErrs, err = protoerr.New(protoerr.Options{Metrics: h.metrics, Logger: h.log.With("component", "protocol")}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := h.startTelemetry(ctx); err != nil {
		return err
	}
	if err := h.startHTTP(); err != nil {
		return err
	}
	if err := h.startPprof(); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.goTracked(func() { h.forwardAudit(runCtx) })
	h.goTracked(func() { h.retireKeys(runCtx) })
	h.goTracked(func() { h.forwardCommandEvents(runCtx) })
	h.wakeAuditForwarder()
	if err := writeFileAtomic(filepath.Join(dir, URLFile), []byte(h.URL()+"\n"), 0o644); err != nil {
		return err
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

// startTelemetry opens the stores and the pipeline and starts the MQTT endpoint.
func (h *Hub) startTelemetry(ctx context.Context) error {
	cfg := h.opts.Config
	var err error
	if h.tsdb, err = tsdb.Open(tsdb.Options{
		Dir: filepath.Join(cfg.DataDir, tsdbDir), OutOfOrderWindow: time.Duration(cfg.Telemetry.OutOfOrderWindow),
		Retention: time.Duration(cfg.Telemetry.Retention), Logger: h.log.With("component", "tsdb"), Registerer: h.metrics,
	}); err != nil {
		return fmt.Errorf("hub: tsdb: %w", err)
	}
	if h.events, err = eventstore.Open(ctx, filepath.Join(cfg.DataDir, eventsFile)); err != nil {
		return err
	}
	h.decoder = ingest.NewDecoder(ingest.Options{
		MaxPayload: cfg.Telemetry.MaxPayload, FutureSkew: time.Duration(cfg.Telemetry.FutureSkew),
		MaxAge: time.Duration(cfg.Telemetry.OutOfOrderWindow), Now: h.opts.Now,
	})
	if h.pipe, err = pipeline.New(pipeline.Options{
		Bus: h.bus, TSDB: h.tsdb, Events: h.events, Logger: h.log, Metrics: h.metrics,
		CursorFile: filepath.Join(cfg.DataDir, ingestCursor),
		Admit:      h.disk.Admit,
		OnNoSpace:  func(store string, err error) { h.disk.Report(store, err) },
	}); err != nil {
		return err
	}
	if err := h.pipe.Start(ctx); err != nil {
		return err
	}
	if err := h.startTwinsAndCommands(ctx); err != nil {
		return err
	}
	if cfg.MQTT.TLSListen != "" || cfg.HTTP.TLSListen != "" {
		if h.tlsConf, err = serverTLS(cfg.DataDir, h.ca, cfg.TLSHosts); err != nil {
			return err
		}
	}
	if h.mqtt, err = mqtt.New(mqtt.Options{
		Listen: cfg.MQTT.Listen, TLSListen: cfg.MQTT.TLSListen, TLS: h.tlsConf,
		DevListen: cfg.MQTT.DevListen, DevACL: cfg.MQTT.DevACL,
		Registry: h.reg, Pipeline: h.pipe, Decoder: h.decoder, Twins: h.twins, Commands: h.commands,
		Logger: h.log, Metrics: h.metrics, ProtocolErrors: h.protoErrs,
		MaxPacket: uint32(cfg.Telemetry.MaxPayload) + 1024, MaxInflight: uint16(cfg.MQTT.MaxInflight), MaxQueued: cfg.MQTT.MaxQueued,
		Limits: mqtt.Limits{
			ConnectPerDevice: rate.Limit(cfg.MQTT.Limits.ConnectPerDevice), ConnectPerDeviceBurst: cfg.MQTT.Limits.ConnectPerDeviceBurst,
			ConnectPerAddr: rate.Limit(cfg.MQTT.Limits.ConnectPerAddr), ConnectPerAddrBurst: cfg.MQTT.Limits.ConnectPerAddrBurst,
			PublishPerDevice: rate.Limit(cfg.MQTT.Limits.PublishPerDevice), PublishPerDeviceBurst: cfg.MQTT.Limits.PublishPerDeviceBurst,
			AuthFailuresPerAddr: rate.Limit(cfg.MQTT.Limits.AuthFailuresPerAddr), AuthFailuresPerAddrBurst: cfg.MQTT.Limits.AuthFailuresPerAddrBurst,
			AuthFailuresPerDevice: rate.Limit(cfg.MQTT.Limits.AuthFailuresPerDevice), AuthFailuresPerDeviceBurst: cfg.MQTT.Limits.AuthFailuresPerDeviceBurst,
		},
	}); err != nil {
		return err
	}
	h.adapters = append(h.adapters, h.mqtt)
	if err := h.newCoAP(); err != nil {
		return err
	}
	if h.coap != nil {
		h.adapters = append(h.adapters, h.coap)
	}
	for _, a := range h.adapters {
		if err := a.Start(ctx); err != nil {
			return fmt.Errorf("hub: %s: %w", a.Name(), err)
		}
	}
	if h.unsubTwn, err = h.followTwinAnnouncements(); err != nil {
		return err
	}
	// Identity changes reach connected devices: a revoked or quarantined
	// device, or one whose key was revoked, is disconnected and must pass
	// admission again.
	h.unsub, err = h.bus.SubscribeAudit(func(kind string, entry []byte) {
		switch kind {
		case registry.KindObjectRevoked, registry.KindObjectQuarantined, registry.KindKeyRevoked, registry.KindKeyRotated:
			if e, err := audit.DecodeLeaf(entry); err == nil {
				for _, a := range h.adapters {
					a.DisconnectDevice(e.Subject)
				}
			}
		}
	})
	return err
}

func (h *Hub) startHTTP() error {
	cfg := h.opts.Config
	pubPEM, _ := keys.MarshalPublicKeyPEM(h.signer.Public())
	did, _ := keys.DID(h.signer.Public())
	var pskFunc func(context.Context, string) ([]byte, error)
	if h.psk != nil {
		pskFunc = h.devicePSK
	}
	listeners := map[string]string{} // "<adapter>/<listener>"
	for _, a := range h.adapters {
		for name, addr := range a.Listeners() {
			listeners[a.Name()+"/"+name] = addr
		}
	}
	handler, err := api.New(api.Options{
		Registry: h.reg, Audit: h.audit, CA: h.ca, Logger: h.log.With("component", "api"),
		Metrics: h.metrics, Gatherer: h.metrics, Ready: h.Ready,
		TSDB: h.tsdb, Events: h.events, Pipeline: h.pipe, Decoder: h.decoder,
		Twins: h.twins, Commands: h.commands, PSK: pskFunc,
		IngestPerDevice: rate.Limit(cfg.MQTT.Limits.PublishPerDevice), IngestPerDeviceBurst: cfg.MQTT.Limits.PublishPerDeviceBurst,
		IngestPerAddr: rate.Limit(cfg.MQTT.Limits.ConnectPerAddr * 10), IngestPerAddrBurst: cfg.MQTT.Limits.ConnectPerAddrBurst * 10,
		ImportMaxRows: cfg.Identity.ImportMaxRows,
		Info: api.Info{
			Version: h.opts.Version, DeploymentID: h.deployID, SigningDID: did, SigningKeyPEM: string(pubPEM),
			AuditOrigin: AuditOrigin(h.deployID), AuditVerifierKey: h.audit.VerifierKey(),
			MQTT: listeners["mqtt/"+mqtt.ListenerTCP], MQTTTLS: listeners["mqtt/"+mqtt.ListenerTLS], HTTPS: h.opts.Config.HTTP.TLSListen,
			CoAP: listeners["coap/"+coap.ListenerUDP], CoAPDTLS: listeners["coap/"+coap.ListenerDTLS],
		},
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", h.opts.Config.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("hub: http listen: %w", err)
	}
	h.listener = ln
	h.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	h.goTracked(func() {
		if err := h.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("http server stopped", "err", err)
		}
	})
	if addr := h.opts.Config.HTTP.TLSListen; addr != "" {
		tln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("hub: https listen: %w", err)
		}
		h.tlsLn = tln
		h.https = &http.Server{
			Handler: handler, TLSConfig: h.tlsConf, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
			IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: h.http.ErrorLog,
		}
		h.goTracked(func() {
			if err := h.https.ServeTLS(tln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				h.log.Error("https server stopped", "err", err)
			}
		})
	}
	return nil
}

// startPprof serves Go's profiler on its own listener when configured, so
// it never shares the API's address or authentication.
func (h *Hub) startPprof() error {
	addr := h.opts.Config.Debug.PprofListen
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("hub: pprof listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	h.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	h.log.Warn("serving /debug/pprof", "addr", ln.Addr().String())
	h.goTracked(func() {
		if err := h.pprof.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("pprof server stopped", "err", err)
		}
	})
	return nil
}

// ensureAdminToken creates the first admin token on a fresh data directory
// and writes it, never logged, to a 0600 file.
func (h *Hub) ensureAdminToken(ctx context.Context) error {
	n, err := h.reg.TokenCount(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, secret, err := h.reg.CreateToken(ctx, "system", "admin", auth.Admin, "")
	if err != nil {
		return fmt.Errorf("hub: first admin token: %w", err)
	}
	path := filepath.Join(h.opts.Config.DataDir, AdminTokenFile)
	if err := writeFileAtomic(path, []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	h.log.Info("created the first admin token", "file", path)
	return nil
}

func (h *Hub) goTracked(fn func()) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		fn()
	}()
}

func (h *Hub) wakeAuditForwarder() {
	select {
	case h.auditPending <- struct{}{}:
	default:
	}
}

// auditCheckpointEvery bounds how often the hub signs a checkpoint of its
// audit log while entries keep arriving.
const auditCheckpointEvery = 10 * time.Second

// forwardAudit publishes committed audit entries to the bus in log order.
// It starts from what the stream already holds, so entries committed just
// before a crash are published after the restart; message ids make a
// repeated publish harmless.
//
// It also signs checkpoints of the log and stores them in audit_heads: at
// start, at most every auditCheckpointEvery while the log grows, and at
// shutdown. 'wanwu verify log' without a saved head relies on them; only the
// entries after the last checkpoint (those of a crash) are left unsigned.
func (h *Hub) forwardAudit(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	sign := time.NewTimer(time.Hour)
	defer sign.Stop()
	var signed uint64
	var signedAt time.Time
	checkpoint := func(ctx context.Context, now bool) {
		size, err := h.audit.Size(ctx)
		if err != nil || size == signed {
			return
		}
		if wait := auditCheckpointEvery - time.Since(signedAt); wait > 0 && !now {
			sign.Reset(wait)
			return
		}
		head, err := h.audit.Head(ctx)
		if err != nil {
			h.log.Error("signing an audit checkpoint failed", "size", size, "err", err)
			return
		}
		signed, signedAt = head.Size, time.Now()
	}
	for {
		if err := h.publishPendingAudit(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("audit forwarding to the bus failed; retrying", "err", err)
			retry.Reset(time.Second)
		}
		checkpoint(ctx, false)
		select {
		case <-ctx.Done():
			// The database closes after this returns: sign what the hub
			// logged since the last checkpoint.
			final, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			checkpoint(final, true)
			cancel()
			return
		case <-h.auditPending:
		case <-retry.C:
		case <-sign.C:
		}
	}
}

func (h *Hub) publishPendingAudit(ctx context.Context) error {
	published, err := h.bus.AuditPublished(ctx)
	if err != nil {
		return err
	}
	size, err := h.audit.Size(ctx)
	if err != nil {
		return err
	}
	for published < size {
		to := min(size, published+1000)
		entries, err := h.audit.Entries(ctx, published, to)
		if err != nil {
			return err
		}
		leaves, err := h.audit.LeafBytes(ctx, published, to)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if err := h.bus.PublishAudit(ctx, e.Index, e.Kind, leaves[i]); err != nil {
				return err
			}
		}
		published = to
	}
	return nil
}

// retireKeys revokes rotated-out keys when their overlap ends.
func (h *Hub) retireKeys(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if n, err := h.reg.RetireDue(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("retiring rotated keys failed", "err", err)
		} else if n > 0 {
			h.log.Info("revoked rotated-out keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ready reports whether the hub serves requests.
func (h *Hub) Ready() error {
	if h.bus == nil || h.db == nil {
		return errors.New("hub: not started")
	}
	if err := h.bus.Ready(); err != nil {
		return err
	}
	if err := h.disk.Ready(); err != nil {
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
	if h.listener == nil {
		return ""
	}
	return "http://" + h.listener.Addr().String()
}

// Registry exposes the identity service to in-process callers (adapters, tests).
func (h *Hub) Registry() *registry.Registry { return h.reg }

// Audit exposes the audit log.
func (h *Hub) Audit() *audit.Log { return h.audit }

// Bus exposes the embedded bus.
func (h *Hub) Bus() *bus.Bus { return h.bus }

// MQTT exposes the MQTT endpoint (for its listener addresses).
func (h *Hub) MQTT() *mqtt.Server { return h.mqtt }

// CoAP exposes the CoAP endpoint (for its listener addresses); nil when no
// CoAP listener is configured.
func (h *Hub) CoAP() *coap.Server { return h.coap }

// HTTPSURL is the HTTPS API base URL, "" when not configured.
func (h *Hub) HTTPSURL() string {
	if h.tlsLn == nil {
		return ""
	}
	return "https://" + h.tlsLn.Addr().String()
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
	if h.http != nil {
		errs = append(errs, h.http.Shutdown(ctx))
	} else if h.listener != nil {
		errs = append(errs, h.listener.Close())
	}
	if h.https != nil {
		errs = append(errs, h.https.Shutdown(ctx))
	} else if h.tlsLn != nil {
		errs = append(errs, h.tlsLn.Close())
	}
	if h.pprof != nil {
		errs = append(errs, h.pprof.Close())
	}
	if h.unsub != nil {
		h.unsub()
	}
	if h.unsubTwn != nil {
		h.unsubTwn()
	}
	// Devices first, so nothing new arrives; then the pipeline flushes what
	// it holds and the stores close.
	for _, a := range h.adapters {
		errs = append(errs, a.Shutdown(ctx))
	}
	if h.commands != nil {
		errs = append(errs, h.commands.Shutdown(ctx))
	}
	if h.pipe != nil {
		errs = append(errs, h.pipe.Shutdown(ctx))
	}
	if h.tsdb != nil {
		errs = append(errs, h.tsdb.Close())
	}
	if h.events != nil {
		errs = append(errs, h.events.Close())
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
	if h.disk != nil {
		h.disk.Shutdown()
	}
	if h.lock != nil {
		_ = os.Remove(filepath.Join(h.opts.Config.DataDir, URLFile))
		errs = append(errs, h.lock.Close())
	}
	return errors.Join(errs...)
}

// lockDir takes an exclusive lock so two hubs never share a data directory.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("hub: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("hub: data dir %s is in use by another hub: %w", dir, err)
	}
	return f, nil
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("hub: crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// writeFileAtomic writes through a temporary file and a rename, so a crash
// leaves the old or the new content, never a torn file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("hub: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("hub: write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("hub: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("hub: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("hub: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("hub: write %s: %w", path, err)
	}
	return nil
}

// The protocol endpoints are adapters.
var (
	_ adapter.Adapter = (*mqtt.Server)(nil)
	_ adapter.Adapter = (*coap.Server)(nil)
)

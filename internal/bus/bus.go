// Package bus runs the embedded NATS server with JetStream and is the only
// place that knows subject and stream names.
//
// By default the server opens no port: the hub talks to it in-process. A
// listen address exposes it (for an external client or, later, edge leaf
// nodes). JetStream syncs every write to disk before acknowledging it
// (sync "always") unless the operator chooses an interval and accepts that a
// power loss may drop up to that interval of acknowledged writes; JetStream's
// own default of two minutes lost acknowledged writes in Jepsen's NATS 2.12.1
// analysis.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream and subject names. Nothing outside this package spells them.
const (
	auditStream  = "AUDIT"
	auditSubject = "wanwu.audit"
	// auditIndexHeader carries the audit log index of a published entry.
	auditIndexHeader = "Wanwu-Audit-Index"

	// ingestStream holds accepted device data as batches (group commit: one
	// JetStream message, one fsync, many device messages).
	ingestStream  = "INGEST"
	ingestSubject = "wanwu.ingest"
	// deadStream holds rejected device messages with their reasons, per device.
	deadStream  = "DEADLETTER"
	deadSubject = "wanwu.deadletter"
	// commandStream holds the life-cycle events of device commands
	// (issued, delivered, succeeded, ...), per device, for integrations that
	// follow them; the commands themselves live in the metadata database.
	commandStream  = "COMMANDS"
	commandSubject = "wanwu.command"
	// presenceStream holds devices' session starts and ends (connected,
	// disconnected with the reason), per device, for integrations; the
	// states and events live in the metadata database.
	presenceStream  = "PRESENCE"
	presenceSubject = "wanwu.presence"
	// twinSubject announces twin changes to the adapters holding the
	// device's connection. Core NATS, not a stream: the twin is durable in
	// the metadata database and a device that misses an announcement gets
	// its delta when it next connects.
	twinSubject = "wanwu.twin"
)

// Sync policies.
const (
	SyncAlways = "always"
)

// Options configure the embedded server.
type Options struct {
	// StoreDir holds JetStream's files.
	StoreDir string
	// Listen is host:port for NATS clients; "" opens no port.
	Listen string
	// Sync is "always" (fsync before every acknowledgement, the default) or a
	// Go duration such as "2s" (fsync at that interval: faster, and a power
	// loss may lose up to that much acknowledged data).
	Sync   string
	Logger *slog.Logger
	// ServerName names the node (hub or edge id).
	ServerName string
	// IngestMaxAge is how long accepted data stays in the INGEST stream
	// (default 72h): the window for the pipeline's consumers to read it
	// back, and for edges.
	IngestMaxAge time.Duration
	// IngestMaxBytes bounds the INGEST stream's size (0: no bound but the
	// disk's); the oldest batches go first.
	IngestMaxBytes int64
	// DeadLetterMaxAge is how long rejected messages stay inspectable (default 30 days).
	DeadLetterMaxAge time.Duration
	// CommandEventMaxAge is how long command events stay in their stream (default 30 days).
	CommandEventMaxAge time.Duration
	// PresenceEventMaxAge is how long presence events stay in their stream (default 30 days).
	PresenceEventMaxAge time.Duration
	// OnNoSpace is told when a JetStream write failed for lack of disk
	// space (optional; the hub's disk guard). It must not block.
	OnNoSpace func(err error)
	// SpaceAvailable says whether the disk has room again, so that
	// JetStream, whose streams stop writing after such a failure, may be
	// reopened (optional; nil: reopen at the next check).
	SpaceAvailable func() bool
}

// ErrStoreFailed is returned by publishes while a JetStream stream is
// failing its writes (a full disk), until the bus reopened JetStream.
var ErrStoreFailed = errors.New("bus: JetStream failed a write (no space left on device); it is reopened once space returns")

// ParseSync validates a sync policy; interval is 0 for "always".
func ParseSync(s string) (interval time.Duration, err error) {
	if s == "" || s == SyncAlways {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("bus: sync %q: want %q or a positive duration like 2s", s, SyncAlways)
	}
	return d, nil
}

// Bus is the running server with an in-process client connection.
type Bus struct {
	opts Options
	ns   *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	// ingest is the INGEST stream's handle, looked up once.
	ingest jetstream.Stream
	// The event streams that copy the metadata database's events.
	commandEvents, presenceEvents *Events
	// jsConfig is JetStream's configuration as it started, for reopening.
	jsConfig server.JetStreamConfig

	// failCtx is cancelled when JetStream fails a write: publishes waiting
	// for an acknowledgement that will not come give up at once. A new one
	// replaces it once JetStream is reopened.
	failMu     sync.Mutex
	failCtx    context.Context
	failCancel context.CancelFunc
	failed     bool
	failErr    string // the server's words, for Ready and the log
	failWake   chan struct{}
	cancel     context.CancelFunc
	watcher    sync.WaitGroup

	mu     sync.Mutex
	closed bool
}

// Start starts the server and connects to it.
func Start(ctx context.Context, opts Options) (*Bus, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("bus: StoreDir is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	interval, err := ParseSync(opts.Sync)
	if err != nil {
		return nil, err
	}
	so := &server.Options{
		ServerName: opts.ServerName,
		JetStream:  true,
		StoreDir:   filepath.Clean(opts.StoreDir),
		NoSigs:     true,
		DontListen: opts.Listen == "",
		// Without a set limit JetStream caps its storage at the free space
		// it finds at start, and refuses writes beyond it even after the
		// disk was cleaned up: free space is the disk guard's to watch.
		JetStreamMaxStore: server.JetStreamMaxStoreDefault,
	}
	if interval == 0 {
		so.SyncAlways = true
	} else {
		so.SyncInterval = interval
	}
	if opts.Listen != "" {
		host, port, err := net.SplitHostPort(opts.Listen)
		if err != nil {
			return nil, fmt.Errorf("bus: listen %q: %w", opts.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("bus: listen port %q: %w", port, err)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		so.Host, so.Port = host, p
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("bus: new server: %w", err)
	}
	b := &Bus{opts: opts, ns: ns, failWake: make(chan struct{}, 1)}
	b.failCtx, b.failCancel = context.WithCancel(context.Background())
	ns.SetLoggerV2(&natsLogger{l: opts.Logger.With("component", "nats"), writeFailed: b.writeFailed}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("bus: embedded NATS server did not become ready in 30s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("wanwu-internal"))
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("bus: connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		ns.Shutdown()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	b.nc, b.js = nc, js
	if c := ns.JetStreamConfig(); c != nil {
		b.jsConfig = *c
	}
	b.jsConfig.StoreDir = so.StoreDir
	if b.ingest, err = b.ensureStreams(ctx); err != nil {
		b.Shutdown(context.Background())
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.watcher.Add(1)
	go func() {
		defer b.watcher.Done()
		b.watchWrites(runCtx)
	}()
	return b, nil
}

// writeFailed records that JetStream failed a write; the server's log line
// (or a publish's error) says so. A stream that failed a write keeps failing
// until it is reopened, and publishes to it get no answer: they are released
// at once, and the watcher reopens JetStream once the disk has room.
func (b *Bus) writeFailed(text string) {
	b.failMu.Lock()
	first := !b.failed
	if first {
		b.failed, b.failErr = true, text
		b.failCancel()
	}
	b.failMu.Unlock()
	if first {
		b.opts.Logger.Error("JetStream failed a write; refusing publishes until it is reopened", "store", "jetstream", "err", text)
		if b.opts.OnNoSpace != nil {
			b.opts.OnNoSpace(fmt.Errorf("%w: %s", ErrStoreFailed, text))
		}
	}
	select {
	case b.failWake <- struct{}{}:
	default:
	}
}

// failure returns ErrStoreFailed while JetStream is failing its writes.
func (b *Bus) failure() error {
	b.failMu.Lock()
	defer b.failMu.Unlock()
	if b.failed {
		return ErrStoreFailed
	}
	return nil
}

// onFailure calls fn (in a goroutine of its own) when JetStream fails a
// write, unless stop was called first.
func (b *Bus) onFailure(fn func()) (stop func() bool) {
	b.failMu.Lock()
	ctx := b.failCtx
	b.failMu.Unlock()
	return context.AfterFunc(ctx, fn)
}

// publishFailed looks at a failed publish: a refusal for lack of space, or
// no answer at all, which is how a stream that failed a write answers; the
// server's health report says which.
func (b *Bus) publishFailed(err error) {
	if b.failure() != nil {
		return
	}
	if strings.Contains(err.Error(), "no space left") || strings.Contains(err.Error(), "insufficient") {
		b.writeFailed(err.Error())
		return
	}
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
		return
	}
	if h := b.ns.Healthz(&server.HealthzOptions{Details: true}); h != nil {
		for _, e := range h.Errors {
			if strings.Contains(e.Error, "write error") {
				b.writeFailed(e.Error)
				return
			}
		}
	}
}

// watchWrites reopens JetStream after a failed write, once the disk has
// room again: its streams are read back from their files, which hold
// everything acknowledged before the failure.
func (b *Bus) watchWrites(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.failWake:
		}
		if b.failure() == nil {
			continue
		}
		if b.opts.SpaceAvailable != nil && !b.opts.SpaceAvailable() {
			continue
		}
		if err := b.reopenJetStream(ctx); err != nil {
			if ctx.Err() == nil {
				b.opts.Logger.Warn("reopening JetStream failed; retrying", "err", err)
			}
			continue
		}
		b.failMu.Lock()
		b.failed, b.failErr = false, ""
		b.failCtx, b.failCancel = context.WithCancel(context.Background())
		b.failMu.Unlock()
		b.opts.Logger.Info("JetStream reopened after a failed write; publishes are accepted again", "store", "jetstream")
	}
}

// reopenJetStream restarts JetStream inside the running server with the
// configuration it started with, and checks that every stream is back and
// writable.
func (b *Bus) reopenJetStream(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("bus: shut down")
	}
	if b.ns.JetStreamEnabled() {
		if err := b.ns.ShutdownJetStream(); err != nil {
			return fmt.Errorf("bus: stopping JetStream: %w", err)
		}
	}
	cfg := b.jsConfig
	if err := b.ns.EnableJetStream(&cfg); err != nil {
		return fmt.Errorf("bus: starting JetStream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := b.ensureStreams(ctx); err != nil {
		return err
	}
	if h := b.ns.Healthz(&server.HealthzOptions{Details: true}); h != nil && len(h.Errors) > 0 {
		return fmt.Errorf("bus: JetStream unhealthy after reopening: %s", h.Errors[0].Error)
	}
	return nil
}

// derivedPersistMode is the persistence of the streams that copy what the
// metadata database already holds durably (AUDIT, COMMANDS): JetStream writes
// them without an fsync per message, which under a burst of commands was
// four fsyncs per command, competing with the database's. A crash may lose
// their newest messages: the audit forwarder republishes from the log, and
// command events stay in the database (the API reads them there).
const derivedPersistMode = jetstream.AsyncPersistMode

// ensureStream creates a stream or updates its configuration. An existing
// stream keeps its persist mode, which JetStream cannot change: a data
// directory from before derivedPersistMode keeps fsyncing those streams.
func (b *Bus) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := b.js.Stream(ctx, cfg.Name)
	switch {
	case err == nil:
		if old := s.CachedInfo().Config.PersistMode; old != cfg.PersistMode {
			b.opts.Logger.Info("stream keeps its persist mode; a new data directory gets the other",
				"stream", cfg.Name, "persist_mode", old, "new", cfg.PersistMode)
			cfg.PersistMode = old
		}
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, err
	}
	return b.js.CreateOrUpdateStream(ctx, cfg)
}

// ingestMaxBytes is JetStream's form of IngestMaxBytes: -1 for no bound.
func ingestMaxBytes(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// ensureStreams creates or updates every stream and returns INGEST's handle.
func (b *Bus) ensureStreams(ctx context.Context) (jetstream.Stream, error) {
	if b.opts.IngestMaxAge <= 0 {
		b.opts.IngestMaxAge = 72 * time.Hour
	}
	if b.opts.DeadLetterMaxAge <= 0 {
		b.opts.DeadLetterMaxAge = 30 * 24 * time.Hour
	}
	ingest, err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        ingestStream,
		Description: "accepted device messages, in batches",
		Subjects:    []string{ingestSubject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      b.opts.IngestMaxAge,
		MaxBytes:    ingestMaxBytes(b.opts.IngestMaxBytes),
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", ingestStream, err)
	}
	if _, err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:              deadStream,
		Description:       "rejected device messages with their reasons",
		Subjects:          []string{deadSubject + ".>"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		MaxAge:            b.opts.DeadLetterMaxAge,
		MaxMsgsPerSubject: 1000,
	}); err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", deadStream, err)
	}
	if b.opts.CommandEventMaxAge <= 0 {
		b.opts.CommandEventMaxAge = 30 * 24 * time.Hour
	}
	if b.opts.PresenceEventMaxAge <= 0 {
		b.opts.PresenceEventMaxAge = 30 * 24 * time.Hour
	}
	b.commandEvents = &Events{b: b, stream: commandStream, subject: commandSubject, maxAge: b.opts.CommandEventMaxAge}
	b.presenceEvents = &Events{b: b, stream: presenceStream, subject: presenceSubject, maxAge: b.opts.PresenceEventMaxAge}
	for _, e := range []struct {
		ev   *Events
		desc string
	}{
		{b.commandEvents, "device command life-cycle events, per device"},
		{b.presenceEvents, "device session starts and ends, per device"},
	} {
		if _, err := b.ensureStream(ctx, jetstream.StreamConfig{
			Name:        e.ev.stream,
			Description: e.desc,
			Subjects:    []string{e.ev.subject + ".>"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      e.ev.maxAge,
			Duplicates:  time.Hour,
			PersistMode: derivedPersistMode,
		}); err != nil {
			return nil, fmt.Errorf("bus: stream %s: %w", e.ev.stream, err)
		}
	}
	_, err = b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        auditStream,
		Description: "audit log entries, in log order, for subscribers that react to identity changes",
		Subjects:    []string{auditSubject + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  time.Hour,
		PersistMode: derivedPersistMode,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", auditStream, err)
	}
	return ingest, nil
}

// ClientURL is the address of the NATS listener, "" when none is open.
func (b *Bus) ClientURL() string {
	if b.opts.Listen == "" {
		return ""
	}
	return b.ns.ClientURL()
}

// Ready reports whether the server and JetStream are up.
func (b *Bus) Ready() error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return errors.New("bus: shut down")
	}
	if !b.ns.Running() || !b.ns.JetStreamEnabled() {
		return errors.New("bus: NATS or JetStream not running")
	}
	if !b.nc.IsConnected() {
		return errors.New("bus: internal connection down")
	}
	b.failMu.Lock()
	defer b.failMu.Unlock()
	if b.failed {
		return fmt.Errorf("%w (%s)", ErrStoreFailed, b.failErr)
	}
	return nil
}

// publish publishes msg to JetStream and waits for its acknowledgement,
// failing at once while JetStream is failing its writes (a stream that
// failed a write does not answer at all).
func (b *Bus) publish(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if err := b.failure(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := b.onFailure(func() { cancel(ErrStoreFailed) })
	defer stop()
	ack, err := b.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrStoreFailed) {
			return nil, ErrStoreFailed
		}
		b.publishFailed(err)
		if b.failure() != nil {
			return nil, fmt.Errorf("%w: %w", ErrStoreFailed, err)
		}
		return nil, err
	}
	return ack, nil
}

// PublishAudit publishes one audit entry (its JSON) under its kind and waits
// for JetStream's acknowledgement. The log index doubles as the message id,
// so republishing after a crash does not duplicate.
func (b *Bus) PublishAudit(ctx context.Context, index uint64, kind string, entry []byte) error {
	subj := auditSubject + "." + subjectToken(kind)
	msg := nats.NewMsg(subj)
	msg.Data = entry
	msg.Header.Set(auditIndexHeader, strconv.FormatUint(index, 10))
	if _, err := b.publish(ctx, msg, jetstream.WithMsgID("audit-"+strconv.FormatUint(index, 10))); err != nil {
		return fmt.Errorf("bus: publish audit %d: %w", index, err)
	}
	return nil
}

// AuditPublished returns how many audit entries the stream holds, counted as
// the index of its last message plus one (0 when empty).
func (b *Bus) AuditPublished(ctx context.Context) (uint64, error) {
	s, err := b.js.Stream(ctx, auditStream)
	if err != nil {
		return 0, fmt.Errorf("bus: %w", err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, auditSubject+".>")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("bus: last audit message: %w", err)
	}
	idx, err := strconv.ParseUint(msg.Header.Get(auditIndexHeader), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bus: last audit message has no index: %w", err)
	}
	return idx + 1, nil
}

// SubscribeAudit delivers audit entries published from now on (kind, JSON).
func (b *Bus) SubscribeAudit(fn func(kind string, entry []byte)) (func(), error) {
	sub, err := b.nc.Subscribe(auditSubject+".>", func(m *nats.Msg) {
		fn(strings.ReplaceAll(strings.TrimPrefix(m.Subject, auditSubject+"."), "_", "."), m.Data)
	})
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// PublishIngest stores one batch of accepted device messages and returns its
// stream sequence once JetStream has acknowledged it (durable per the sync
// policy). The batch id is the message id, so a retry after a lost
// acknowledgement is not stored twice: it gets the first copy's sequence.
func (b *Bus) PublishIngest(ctx context.Context, batchID string, batch []byte) (uint64, error) {
	msg := nats.NewMsg(ingestSubject)
	msg.Data = batch
	ack, err := b.publish(ctx, msg, jetstream.WithMsgID(batchID))
	if err != nil {
		return 0, fmt.Errorf("bus: publish ingest batch: %w", err)
	}
	return ack.Sequence, nil
}

// PublishDeadLetter stores a rejected device message under its device.
func (b *Bus) PublishDeadLetter(ctx context.Context, tenant, id string, record []byte) error {
	msg := nats.NewMsg(deadLetterSubject(tenant, id))
	msg.Data = record
	if _, err := b.publish(ctx, msg); err != nil {
		return fmt.Errorf("bus: publish dead letter: %w", err)
	}
	return nil
}

func deadLetterSubject(tenant, id string) string { return deviceSubject(deadSubject, tenant, id) }

// deviceSubject is prefix.<tenant>.<id>; code grammar keeps both tokens
// free of dots and wildcards, and "_" stands for an unknown part.
func deviceSubject(prefix, tenant, id string) string {
	if tenant == "" {
		tenant = "_"
	}
	if id == "" {
		id = "_"
	}
	return prefix + "." + tenant + "." + id
}

// DeadLetters returns up to limit of the newest dead letters, oldest first,
// of one device (tenant and id set), one tenant (id "") or all (both "").
func (b *Bus) DeadLetters(ctx context.Context, tenant, id string, limit int) ([][]byte, error) {
	filter := deadSubject + ".>"
	switch {
	case tenant != "" && id != "":
		filter = deadLetterSubject(tenant, id)
	case tenant != "":
		filter = deadSubject + "." + tenant + ".*"
	}
	s, err := b.js.Stream(ctx, deadStream)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	// Find where the last limit messages of the filter start, then read forward.
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("bus: dead letters: %w", err)
	}
	var total uint64
	for _, n := range info.State.Subjects {
		total += n
	}
	if total == 0 {
		return nil, nil
	}
	skip := uint64(0)
	if total > uint64(limit) {
		skip = total - uint64(limit)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("bus: dead letters: %w", err)
	}
	var out [][]byte
	for seen := uint64(0); seen < total; {
		batch, err := c.Fetch(int(min(total-seen, 500)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("bus: dead letters: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if seen >= skip {
				out = append(out, m.Data())
			}
			seen++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("bus: dead letters: %w", err)
		}
		if got == 0 {
			break
		}
	}
	return out, nil
}

// Events is a stream of device life-cycle events that copies, for
// integrations, what the metadata database holds durably: command events
// and presence events. Each event is JSON with a "seq" member, the
// database's sequence, which a forwarder resumes after.
type Events struct {
	b               *Bus
	stream, subject string
	maxAge          time.Duration
}

// CommandEvents is the stream of command life-cycle events.
func (b *Bus) CommandEvents() *Events { return b.commandEvents }

// PresenceEvents is the stream of device session starts and ends.
func (b *Bus) PresenceEvents() *Events { return b.presenceEvents }

// Publish stores one event (its JSON) under the device. eventID
// deduplicates a republish after a crash.
func (e *Events) Publish(ctx context.Context, tenant, id, eventID string, event []byte) error {
	msg := nats.NewMsg(deviceSubject(e.subject, tenant, id))
	msg.Data = event
	if _, err := e.b.publish(ctx, msg, jetstream.WithMsgID(eventID)); err != nil {
		return fmt.Errorf("bus: publish to %s: %w", e.stream, err)
	}
	return nil
}

// LastSeq returns the "seq" of the newest event the stream holds (0 when
// it holds none): a forwarder publishes the events after it, so that none
// committed before a crash, or lost with the stream's newest unsynced
// writes, is missed.
func (e *Events) LastSeq(ctx context.Context) (uint64, error) {
	s, err := e.b.js.Stream(ctx, e.stream)
	if err != nil {
		return 0, fmt.Errorf("bus: %w", err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, e.subject+".>")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("bus: last event of %s: %w", e.stream, err)
	}
	var ev struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		return 0, fmt.Errorf("bus: last event of %s: %w", e.stream, err)
	}
	return ev.Seq, nil
}

// ReadAll calls fn with every event the stream holds, in order.
func (e *Events) ReadAll(ctx context.Context, fn func(event []byte) error) error {
	s, err := e.b.js.Stream(ctx, e.stream)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return err
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("bus: %s: %w", e.stream, err)
	}
	for seen := uint64(0); seen < info.State.Msgs; {
		batch, err := c.Fetch(int(min(info.State.Msgs-seen, 500)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("bus: %s: %w", e.stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			seen++
			if err := fn(m.Data()); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("bus: %s: %w", e.stream, err)
		}
		if got == 0 {
			break
		}
	}
	return nil
}

// MaxAge is how long the stream keeps events.
func (e *Events) MaxAge() time.Duration { return e.maxAge }

// Subscribe delivers events published from now on, of one tenant or
// (tenant "") of all.
func (e *Events) Subscribe(tenant string, fn func(event []byte)) (func(), error) {
	filter := e.subject + ".>"
	if tenant != "" {
		filter = e.subject + "." + tenant + ".*"
	}
	sub, err := e.b.nc.Subscribe(filter, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// AnnounceTwin tells every adapter that the device's twin changed (data is
// the announcement's JSON). It does not wait: announcements are hints, the
// twin itself is durable elsewhere.
func (b *Bus) AnnounceTwin(tenant, id string, data []byte) error {
	if err := b.nc.Publish(deviceSubject(twinSubject, tenant, id), data); err != nil {
		return fmt.Errorf("bus: announce twin: %w", err)
	}
	return nil
}

// SubscribeTwinAnnouncements delivers twin announcements with the device's
// tenant and id.
func (b *Bus) SubscribeTwinAnnouncements(fn func(tenant, id string, data []byte)) (func(), error) {
	sub, err := b.nc.Subscribe(twinSubject+".*.*", func(m *nats.Msg) {
		rest := strings.TrimPrefix(m.Subject, twinSubject+".")
		tenant, id, _ := strings.Cut(rest, ".")
		fn(tenant, id, m.Data)
	})
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// ReadIngest calls fn with the ingest batches from sequence from through to
// (0: the last one stored when it was called), in order, and returns the
// sequence it read through: to, or the last, when it read all there was;
// from-1 when there was nothing to read; on an error, the last batch fn
// accepted. Batches the stream no longer holds (expired under IngestMaxAge
// or IngestMaxBytes) are reported to lost, a range at a time, before the
// batches after them. The batch given to fn is valid only during the call.
// The pipeline's consumers use it to catch up with batches they did not
// take from the batchers: after a restart, or when they fell behind.
func (b *Bus) ReadIngest(ctx context.Context, from, to uint64, lost func(from, to uint64), fn func(seq uint64, batch []byte) error) (uint64, error) {
	from = max(from, 1)
	reached := from - 1
	info, err := b.ingest.Info(ctx)
	if err != nil {
		return reached, fmt.Errorf("bus: stream %s: %w", ingestStream, err)
	}
	last := info.State.LastSeq
	if to != 0 && to < last {
		last = to
	}
	if last < from {
		return reached, nil
	}
	if from < info.State.FirstSeq {
		if info.State.FirstSeq > last {
			lost(from, last) // all expired
			return last, nil
		}
		lost(from, info.State.FirstSeq-1)
		from = info.State.FirstSeq
		reached = from - 1
	}
	c, err := b.ingest.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return reached, fmt.Errorf("bus: reading stream %s: %w", ingestStream, err)
	}
	defer func() {
		// Each fetch replaced the consumer with a new one (and removed the
		// one before); the last would linger until InactiveThreshold.
		if info := c.CachedInfo(); info != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = b.js.DeleteConsumer(ctx, ingestStream, info.Name)
			cancel()
		}
	}()
	for reached < last {
		batch, err := c.Fetch(min(readIngestFetch, int(last-reached)), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return reached, fmt.Errorf("bus: reading stream %s: %w", ingestStream, err)
		}
		n := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return reached, fmt.Errorf("bus: reading stream %s: %w", ingestStream, err)
			}
			seq := md.Sequence.Stream
			if seq > last {
				lost(reached+1, last) // the ones between expired
				return last, nil
			}
			if seq <= reached {
				continue
			}
			if seq > reached+1 {
				lost(reached+1, seq-1) // expired while being read
			}
			if err := fn(seq, m.Data()); err != nil {
				return reached, err
			}
			reached = seq
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return reached, fmt.Errorf("bus: reading stream %s: %w", ingestStream, err)
		}
		if n == 0 {
			if err := ctx.Err(); err != nil {
				return reached, err
			}
			return reached, fmt.Errorf("bus: reading stream %s: nothing came after sequence %d, want up to %d", ingestStream, reached, last)
		}
	}
	return reached, nil
}

// readIngestFetch is how many batches ReadIngest asks for at a time.
const readIngestFetch = 256

// DropIngestConsumer removes the durable ingest consumer name, which hubs
// before the pipeline kept its own cursor used to feed the stores, and
// reports its acknowledgement floor; ok is false when there was none.
func (b *Bus) DropIngestConsumer(ctx context.Context, name string) (floor uint64, ok bool, err error) {
	c, err := b.js.Consumer(ctx, ingestStream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("bus: consumer %s: %w", name, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("bus: consumer %s: %w", name, err)
	}
	if err := b.js.DeleteConsumer(ctx, ingestStream, name); err != nil {
		return 0, false, fmt.Errorf("bus: consumer %s: %w", name, err)
	}
	return info.AckFloor.Stream, true, nil
}

// subjectToken keeps an audit kind ("object.registered") one subject token.
func subjectToken(kind string) string { return strings.ReplaceAll(kind, ".", "_") }

// Shutdown drains the client and stops the server; JetStream flushes its files.
func (b *Bus) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	if b.cancel != nil {
		b.cancel()
		b.watcher.Wait()
	}
	if b.nc != nil {
		// Drain lets subscriptions finish the messages they hold, and
		// closes the connection when done; only when ctx ends first is it
		// closed under them.
		if err := b.nc.Drain(); err != nil {
			b.nc.Close()
		}
		for !b.nc.IsClosed() {
			select {
			case <-ctx.Done():
				b.nc.Close()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	done := make(chan struct{})
	go func() {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("bus: shutdown: %w", ctx.Err())
	}
}

// natsLogger routes the server's log lines to slog, and tells the bus of
// failed writes, which the server reports only in its log (its health
// report says so too, but is not pushed).
type natsLogger struct {
	l           *slog.Logger
	writeFailed func(text string)
}

func (n *natsLogger) Noticef(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n *natsLogger) Warnf(f string, v ...any)   { n.l.Warn(fmt.Sprintf(f, v...)) }
func (n *natsLogger) Fatalf(f string, v ...any)  { n.l.Error(fmt.Sprintf(f, v...)) }
func (n *natsLogger) Errorf(f string, v ...any) {
	text := fmt.Sprintf(f, v...)
	n.l.Error(text)
	if strings.Contains(text, "critical write error") || strings.Contains(text, "no space left") {
		// Never synchronously: the server may hold its locks here.
		n.writeFailed(text)
	}
}
func (n *natsLogger) Debugf(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n *natsLogger) Tracef(f string, v ...any) {}

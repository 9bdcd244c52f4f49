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
	// (default 72h): the window for the stores to read it back, and for edges.
	IngestMaxAge time.Duration
	// DeadLetterMaxAge is how long rejected messages stay inspectable (default 30 days).
	DeadLetterMaxAge time.Duration
	// CommandEventMaxAge is how long command events stay in their stream (default 30 days).
	CommandEventMaxAge time.Duration
}

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
	ns.SetLoggerV2(&natsLogger{l: opts.Logger.With("component", "nats")}, false, false, false)
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
	b := &Bus{opts: opts, ns: ns, nc: nc, js: js}
	if err := b.ensureStreams(ctx); err != nil {
		b.Shutdown(context.Background())
		return nil, err
	}
	return b, nil
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

func (b *Bus) ensureStreams(ctx context.Context) error {
	if b.opts.IngestMaxAge <= 0 {
		b.opts.IngestMaxAge = 72 * time.Hour
	}
	if b.opts.DeadLetterMaxAge <= 0 {
		b.opts.DeadLetterMaxAge = 30 * 24 * time.Hour
	}
	var err error
	if b.ingest, err = b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        ingestStream,
		Description: "accepted device messages, in batches",
		Subjects:    []string{ingestSubject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      b.opts.IngestMaxAge,
		Duplicates:  2 * time.Minute,
	}); err != nil {
		return fmt.Errorf("bus: stream %s: %w", ingestStream, err)
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
		return fmt.Errorf("bus: stream %s: %w", deadStream, err)
	}
	if b.opts.CommandEventMaxAge <= 0 {
		b.opts.CommandEventMaxAge = 30 * 24 * time.Hour
	}
	if _, err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        commandStream,
		Description: "device command life-cycle events, per device",
		Subjects:    []string{commandSubject + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      b.opts.CommandEventMaxAge,
		Duplicates:  time.Hour,
		PersistMode: derivedPersistMode,
	}); err != nil {
		return fmt.Errorf("bus: stream %s: %w", commandStream, err)
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
		return fmt.Errorf("bus: stream %s: %w", auditStream, err)
	}
	return nil
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
	return nil
}

// PublishAudit publishes one audit entry (its JSON) under its kind and waits
// for JetStream's acknowledgement. The log index doubles as the message id,
// so republishing after a crash does not duplicate.
func (b *Bus) PublishAudit(ctx context.Context, index uint64, kind string, entry []byte) error {
	subj := auditSubject + "." + subjectToken(kind)
	msg := nats.NewMsg(subj)
	msg.Data = entry
	msg.Header.Set(auditIndexHeader, strconv.FormatUint(index, 10))
	if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID("audit-"+strconv.FormatUint(index, 10))); err != nil {
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
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(batchID))
	if err != nil {
		return 0, fmt.Errorf("bus: publish ingest batch: %w", err)
	}
	return ack.Sequence, nil
}

// PublishDeadLetter stores a rejected device message under its device.
func (b *Bus) PublishDeadLetter(ctx context.Context, tenant, id string, record []byte) error {
	if _, err := b.js.Publish(ctx, deadLetterSubject(tenant, id), record); err != nil {
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

// PublishCommandEvent stores one command event (its JSON) under the
// device. eventID deduplicates a republish after a crash.
func (b *Bus) PublishCommandEvent(ctx context.Context, tenant, id, eventID string, event []byte) error {
	if _, err := b.js.Publish(ctx, deviceSubject(commandSubject, tenant, id), event, jetstream.WithMsgID(eventID)); err != nil {
		return fmt.Errorf("bus: publish command event: %w", err)
	}
	return nil
}

// SubscribeCommandEvents delivers command events published from now on, of
// one tenant or (tenant "") of all.
func (b *Bus) SubscribeCommandEvents(tenant string, fn func(event []byte)) (func(), error) {
	filter := commandSubject + ".>"
	if tenant != "" {
		filter = commandSubject + "." + tenant + ".*"
	}
	sub, err := b.nc.Subscribe(filter, func(m *nats.Msg) { fn(m.Data) })
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
// sequence it read through: to, or the last, when it read all there was
// (batches the stream no longer holds, older than IngestMaxAge, are
// skipped); from-1 when there was nothing to read; on an error, the last
// batch fn accepted. The batch given to fn is valid only during the call.
// The stores use it to catch up with batches they did not take from the
// pipeline: after a restart, or when they fell behind.
func (b *Bus) ReadIngest(ctx context.Context, from, to uint64, fn func(seq uint64, batch []byte) error) (uint64, error) {
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
			return last, nil // all expired
		}
		from = info.State.FirstSeq
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
				return last, nil // the ones between expired
			}
			if seq <= reached {
				continue
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
	if b.nc != nil {
		_ = b.nc.Drain()
		b.nc.Close()
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

// natsLogger routes the server's log lines to slog.
type natsLogger struct{ l *slog.Logger }

func (n *natsLogger) Noticef(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n *natsLogger) Warnf(f string, v ...any)   { n.l.Warn(fmt.Sprintf(f, v...)) }
func (n *natsLogger) Fatalf(f string, v ...any)  { n.l.Error(fmt.Sprintf(f, v...)) }
func (n *natsLogger) Errorf(f string, v ...any)  { n.l.Error(fmt.Sprintf(f, v...)) }
func (n *natsLogger) Debugf(f string, v ...any)  { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n *natsLogger) Tracef(f string, v ...any)  {}

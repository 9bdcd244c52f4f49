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

func (b *Bus) ensureStreams(ctx context.Context) error {
	_, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        auditStream,
		Description: "audit log entries, in log order, for subscribers that react to identity changes",
		Subjects:    []string{auditSubject + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  time.Hour,
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

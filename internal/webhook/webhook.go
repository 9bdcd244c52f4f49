// Package webhook delivers device events, command life-cycle events and
// presence changes to integrations over HTTPS, signed with a secret per
// webhook, at least once.
//
// Nothing is delivered straight from where it happens. Each source first
// puts one row per matching webhook into an outbox table (webhook_outbox in
// wanwu.db), in the transaction that also moves that source's cursor: the
// event store's events (what the stores took from the ingest log), and the
// command and presence event tables, each read after a cursor kept in
// webhook_cursors. Reading the stores rather than adding a consumer of the
// ingest log keeps the log's hand-offs (per batch, for every consumer) off
// the ingest path. Deliverers then POST the outbox rows, delete those a
// receiver accepted (2xx), and retry the others with exponential backoff
// (an attempt leases its row for a minute, so that no two run at once and
// one cut short by a crash is made again);
// after Options.MaxAttempts a row stays in the outbox as failed, listed by
// the API and ctl and retried on request. A hub killed at any point loses
// nothing: a row not yet delivered is delivered after the restart, and a
// source read again finds its rows already there (event ids are unique per
// webhook), so a receiver may see a delivery twice but never misses one.
//
// A delivery is a POST of JSON {"id","type","time","tenant","device","data"}
// with the headers Wanwu-Event-Id, Wanwu-Event-Type and Wanwu-Signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>' with the webhook's
// secret>", so that a receiver can check who sent it and refuse replays.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// Event types a webhook subscribes to.
const (
	TypeEvent    = "event"    // device events, as ingested
	TypeCommand  = "command"  // command life-cycle events (issued, delivered, succeeded, ...)
	TypePresence = "presence" // device sessions started and ended
)

// Types are every event type, in the order they are documented.
var Types = []string{TypeEvent, TypeCommand, TypePresence}

// Errors the API maps to statuses.
var (
	ErrInvalid  = errors.New("webhook: invalid")
	ErrNotFound = errors.New("webhook: no such webhook")
)

// Webhook is a receiver of events.
type Webhook struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	URL         string    `json:"url"`
	Types       []string  `json:"types"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	// Secret signs deliveries; it is returned once, when created.
	Secret string `json:"secret,omitempty"`
	secret string
}

// Delivery is an outbox row: pending, or failed after every attempt.
type Delivery struct {
	ID        int64           `json:"id"`
	Webhook   string          `json:"webhook"`
	EventID   string          `json:"event_id"`
	Type      string          `json:"type"`
	Status    string          `json:"status"` // pending, failed
	Attempts  int             `json:"attempts"`
	LastError string          `json:"last_error,omitempty"`
	LastAt    time.Time       `json:"last_attempt,omitempty"`
	NextAt    time.Time       `json:"next_attempt,omitempty"`
	Body      json.RawMessage `json:"body"`
}

// Options configure a Service.
type Options struct {
	DB       *store.DB
	Audit    *audit.Log
	OnAudit  func() // told after an audited change committed
	Commands *command.Service
	Presence *presence.Service
	Events   *eventstore.Store
	Logger   *slog.Logger
	Metrics  prometheus.Registerer
	Now      func() time.Time
	// Client posts deliveries; default a client with a 10 s timeout.
	Client *http.Client
	// MaxAttempts is how many times a delivery is tried before it is kept
	// as failed; default 10 (about 17 minutes of backoff).
	MaxAttempts int
	// Backoff is the wait after the first failed attempt, doubled after
	// each next one up to MaxBackoff; defaults 2 s and 5 min.
	Backoff, MaxBackoff time.Duration
	// Workers bounds concurrent deliveries; default 8.
	Workers int
	// Poll is how often the command and presence tables and the outbox
	// are looked at when nothing woke the service; default 1 s.
	Poll time.Duration
}

// Service keeps webhooks and delivers to them.
type Service struct {
	o   Options
	db  *store.DB
	log *slog.Logger

	mu    sync.RWMutex
	hooks []Webhook // with their secrets

	wakeSources, wakeDeliver chan struct{}
	cancel                   context.CancelFunc
	wg                       sync.WaitGroup

	delivered *prometheus.CounterVec
	pending   prometheus.GaugeFunc
	queued    *prometheus.CounterVec
}

var migrations = []store.Migration{{
	Name: "webhooks, their outbox and source cursors",
	Statements: []string{
		`CREATE TABLE webhooks (
			id          TEXT PRIMARY KEY,
			tenant      TEXT NOT NULL,
			url         TEXT NOT NULL,
			types       TEXT NOT NULL,
			secret      TEXT NOT NULL,
			description TEXT NOT NULL DEFAULT '',
			created_at  INTEGER NOT NULL
		)`,
		`CREATE TABLE webhook_outbox (
			id         INTEGER PRIMARY KEY,
			webhook    TEXT NOT NULL,
			event_id   TEXT NOT NULL,
			type       TEXT NOT NULL,
			body       BLOB NOT NULL,
			status     TEXT NOT NULL DEFAULT 'pending',
			attempts   INTEGER NOT NULL DEFAULT 0,
			next_at    INTEGER NOT NULL,
			last_at    INTEGER NOT NULL DEFAULT 0,
			last_error TEXT NOT NULL DEFAULT '',
			UNIQUE (webhook, event_id)
		)`,
		`CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_at)`,
		`CREATE TABLE webhook_cursors (
			source TEXT PRIMARY KEY,
			seq    INTEGER NOT NULL
		)`,
	},
}}

// Open migrates the tables and loads the webhooks.
func Open(ctx context.Context, o Options) (*Service, error) {
	if o.DB == nil || o.Audit == nil {
		return nil, errors.New("webhook: DB and Audit are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.Backoff <= 0 {
		o.Backoff = 2 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if err := o.DB.Migrate(ctx, "webhook", migrations); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	s := &Service{
		o: o, db: o.DB, log: o.Logger.With("component", "webhook"),
		wakeSources: make(chan struct{}, 1), wakeDeliver: make(chan struct{}, 1),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_webhook_attempts_total", Help: "Webhook delivery attempts, by result: ok, retry (failed, tried again later), failed (given up).",
		}, []string{"result"}),
		queued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_webhook_queued_total", Help: "Deliveries put into the webhook outbox, by event type.",
		}, []string{"type"}),
	}
	s.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wanwu_webhook_outbox", Help: "Deliveries in the webhook outbox, pending or failed.",
	}, func() float64 {
		var n int64
		_ = s.db.R.QueryRow(`SELECT count(*) FROM webhook_outbox`).Scan(&n)
		return float64(n)
	})
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{s.delivered, s.queued, s.pending} {
			if err := o.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("webhook: metrics: %w", err)
			}
		}
	}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	for _, src := range Types {
		if err := s.initCursor(ctx, src); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// initCursor starts a source's cursor at its newest event the first time:
// webhooks get what happens after they exist, not the history.
func (s *Service) initCursor(ctx context.Context, source string) error {
	var seq int64
	err := s.db.R.QueryRowContext(ctx, `SELECT seq FROM webhook_cursors WHERE source = ?`, source).Scan(&seq)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("webhook: cursor %s: %w", source, err)
	}
	newest, err := s.newest(ctx, source)
	if err != nil {
		return fmt.Errorf("webhook: cursor %s: %w", source, err)
	}
	_, err = s.db.W.ExecContext(ctx, `INSERT INTO webhook_cursors (source, seq) VALUES (?, ?) ON CONFLICT (source) DO NOTHING`, source, int64(newest))
	return err
}

// newest is the sequence of a source's newest event (0: none, or no such
// source in this process).
func (s *Service) newest(ctx context.Context, source string) (uint64, error) {
	switch {
	case source == TypeCommand && s.o.Commands != nil:
		return s.o.Commands.LastEventSeq(ctx)
	case source == TypePresence && s.o.Presence != nil:
		return s.o.Presence.LastEventSeq(ctx)
	case source == TypeEvent && s.o.Events != nil:
		n, err := s.o.Events.LastSeq(ctx)
		return uint64(n), err
	}
	return 0, nil
}

func (s *Service) load(ctx context.Context) error {
	rows, err := s.db.R.QueryContext(ctx, `SELECT id, tenant, url, types, secret, description, created_at FROM webhooks ORDER BY id`)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer rows.Close()
	var hooks []Webhook
	for rows.Next() {
		var w Webhook
		var types string
		var created int64
		if err := rows.Scan(&w.ID, &w.Tenant, &w.URL, &types, &w.secret, &w.Description, &created); err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
		w.Types, w.CreatedAt = strings.Split(types, ","), time.UnixMilli(created).UTC()
		hooks = append(hooks, w)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	s.mu.Lock()
	s.hooks = hooks
	s.mu.Unlock()
	return nil
}

// Start starts the source readers and the deliverers.
func (s *Service) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.readSources(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.deliverLoop(ctx)
	}()
}

// Shutdown stops reading and delivering; an attempt in flight is
// abandoned and made again after the restart.
func (s *Service) Shutdown(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("webhook: shutdown: %w", ctx.Err())
	}
}

// Wake tells the service that command or presence events were committed;
// it never blocks.
func (s *Service) Wake() {
	if s == nil {
		return
	}
	select {
	case s.wakeSources <- struct{}{}:
	default:
	}
}

func (s *Service) wakeDeliverers() {
	select {
	case s.wakeDeliver <- struct{}{}:
	default:
	}
}

// Create registers a webhook and returns it with its secret, shown once.
// Only https URLs are taken, but for loopback hosts (a receiver on the same
// machine).
func (s *Service) Create(ctx context.Context, actor string, w Webhook) (Webhook, error) {
	if w.Tenant == "" {
		return Webhook{}, fmt.Errorf("%w: tenant: required", ErrInvalid)
	}
	if err := checkURL(w.URL); err != nil {
		return Webhook{}, err
	}
	if len(w.Types) == 0 {
		w.Types = slices.Clone(Types)
	}
	for _, t := range w.Types {
		if !slices.Contains(Types, t) {
			return Webhook{}, fmt.Errorf("%w: types: %q is not one of %s", ErrInvalid, t, strings.Join(Types, ", "))
		}
	}
	slices.Sort(w.Types)
	w.Types = slices.Compact(w.Types)
	if len(w.Description) > 200 {
		return Webhook{}, fmt.Errorf("%w: description: longer than 200 characters", ErrInvalid)
	}
	w.ID = "wh-" + randomHex(8)
	w.secret = "whsec_" + randomHex(24)
	w.CreatedAt = s.o.Now().UTC().Truncate(time.Millisecond)
	data, _ := json.Marshal(map[string]any{"url": w.URL, "types": w.Types})
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhooks (id, tenant, url, types, secret, description, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			w.ID, w.Tenant, w.URL, strings.Join(w.Types, ","), w.secret, w.Description, w.CreatedAt.UnixMilli()); err != nil {
			return err
		}
		_, err := s.o.Audit.AppendTx(ctx, tx, audit.Entry{Time: w.CreatedAt, Actor: actor, Tenant: w.Tenant, Kind: "webhook.created", Subject: w.ID, Data: data})
		return err
	})
	if err != nil {
		return Webhook{}, fmt.Errorf("webhook: create: %w", err)
	}
	s.afterAudit()
	if err := s.load(ctx); err != nil {
		return Webhook{}, err
	}
	w.Secret = w.secret
	return w, nil
}

func (s *Service) afterAudit() {
	if s.o.OnAudit != nil {
		s.o.OnAudit()
	}
}

// checkURL takes https URLs, and http ones for loopback hosts only.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: url: %q is not an absolute URL", ErrInvalid, raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
		return fmt.Errorf("%w: url: must be https (http only for loopback receivers)", ErrInvalid)
	}
	return fmt.Errorf("%w: url: scheme %q; must be https", ErrInvalid, u.Scheme)
}

// Get returns a webhook without its secret.
func (s *Service) Get(id string) (Webhook, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, w := range s.hooks {
		if w.ID == id {
			return w, nil
		}
	}
	return Webhook{}, ErrNotFound
}

// List returns a tenant's webhooks (all for ""), without secrets.
func (s *Service) List(tenant string) []Webhook {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []Webhook{}
	for _, w := range s.hooks {
		if tenant == "" || w.Tenant == tenant {
			out = append(out, w)
		}
	}
	return out
}

// Delete removes a webhook and its outbox.
func (s *Service) Delete(ctx context.Context, actor, id string) error {
	w, err := s.Get(id)
	if err != nil {
		return err
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ?`, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_outbox WHERE webhook = ?`, id); err != nil {
			return err
		}
		_, err := s.o.Audit.AppendTx(ctx, tx, audit.Entry{Time: s.o.Now().UTC(), Actor: actor, Tenant: w.Tenant, Kind: "webhook.deleted", Subject: id})
		return err
	})
	if err != nil {
		return fmt.Errorf("webhook: delete: %w", err)
	}
	s.afterAudit()
	return s.load(ctx)
}

// Deliveries lists a webhook's outbox: status "failed" (the dead letters),
// "pending", or "" for both; oldest first.
func (s *Service) Deliveries(ctx context.Context, id, status string, limit int) ([]Delivery, error) {
	q := `SELECT id, webhook, event_id, type, status, attempts, last_error, last_at, next_at, body FROM webhook_outbox WHERE webhook = ?`
	args := []any{id}
	if status != "" {
		q += ` AND status = ?`
		args = append(args, status)
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, min(max(limit, 1), 1000))
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("webhook: deliveries: %w", err)
	}
	defer rows.Close()
	out := []Delivery{}
	for rows.Next() {
		var d Delivery
		var last, next int64
		var body []byte
		if err := rows.Scan(&d.ID, &d.Webhook, &d.EventID, &d.Type, &d.Status, &d.Attempts, &d.LastError, &last, &next, &body); err != nil {
			return nil, fmt.Errorf("webhook: deliveries: %w", err)
		}
		if last > 0 {
			d.LastAt = time.UnixMilli(last).UTC()
		}
		if d.Status == "pending" {
			d.NextAt = time.UnixMilli(next).UTC()
		}
		d.Body = body
		out = append(out, d)
	}
	return out, rows.Err()
}

// Retry puts a webhook's failed deliveries back into the outbox, due now,
// and says how many.
func (s *Service) Retry(ctx context.Context, id string) (int, error) {
	res, err := s.db.W.ExecContext(ctx, `UPDATE webhook_outbox SET status = 'pending', attempts = 0, next_at = ? WHERE webhook = ? AND status = 'failed'`,
		s.o.Now().UnixMilli(), id)
	if err != nil {
		return 0, fmt.Errorf("webhook: retry: %w", err)
	}
	n, _ := res.RowsAffected()
	s.wakeDeliverers()
	return int(n), nil
}

// item is one event for the outbox.
type item struct {
	id, typ, tenant, device string
	time                    time.Time
	data                    json.RawMessage
}

// enqueue puts the rows of the matching webhooks into the outbox, in tx.
func (s *Service) enqueue(ctx context.Context, tx *sql.Tx, items []item) (int, error) {
	s.mu.RLock()
	hooks := s.hooks
	s.mu.RUnlock()
	now := s.o.Now().UnixMilli()
	n := 0
	for _, it := range items {
		for _, w := range hooks {
			if w.Tenant != it.tenant || !slices.Contains(w.Types, it.typ) || it.time.Before(w.CreatedAt) {
				continue
			}
			body, err := json.Marshal(map[string]any{
				"id": it.id, "type": it.typ, "time": it.time, "tenant": it.tenant, "device": it.device, "data": it.data,
			})
			if err != nil {
				return n, err
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO webhook_outbox (webhook, event_id, type, body, next_at) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (webhook, event_id) DO NOTHING`, w.ID, it.id, it.typ, body, now)
			if err != nil {
				return n, err
			}
			if k, _ := res.RowsAffected(); k > 0 {
				n++
				s.queued.WithLabelValues(it.typ).Inc()
			}
		}
	}
	return n, nil
}

// readSources moves device, command and presence events into the outbox.
func (s *Service) readSources(ctx context.Context) {
	t := time.NewTicker(s.o.Poll)
	defer t.Stop()
	for {
		for _, src := range Types {
			if err := s.readSource(ctx, src); err != nil && ctx.Err() == nil {
				s.log.Warn("webhook source not read; retrying", "source", src, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wakeSources:
		case <-t.C:
		}
	}
}

func (s *Service) readSource(ctx context.Context, source string) error {
	for {
		var cursor int64
		if err := s.db.R.QueryRowContext(ctx, `SELECT seq FROM webhook_cursors WHERE source = ?`, source).Scan(&cursor); err != nil {
			return err
		}
		items, last, err := s.after(ctx, source, uint64(cursor))
		if err != nil {
			return err
		}
		if len(items) == 0 && last == uint64(cursor) {
			// A store emptied by retention numbers its events from 1
			// again: a cursor past its newest event follows it back.
			if newest, err := s.newest(ctx, source); err != nil || newest >= last {
				return err
			}
			last = 0
		}
		var n int
		err = s.db.Tx(ctx, func(tx *sql.Tx) error {
			var err error
			if n, err = s.enqueue(ctx, tx, items); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `UPDATE webhook_cursors SET seq = ? WHERE source = ?`, int64(last), source)
			return err
		})
		if err != nil {
			return err
		}
		if n > 0 {
			s.wakeDeliverers()
		}
	}
}

// after reads a source's events after its cursor: the items and the
// newest sequence read.
func (s *Service) after(ctx context.Context, source string, cursor uint64) ([]item, uint64, error) {
	last := cursor
	var items []item
	switch source {
	case TypeEvent:
		if s.o.Events == nil {
			return nil, last, nil
		}
		evs, err := s.o.Events.EventsAfter(ctx, int64(cursor), 500)
		if err != nil {
			return nil, last, err
		}
		for _, e := range evs {
			t := time.UnixMilli(e.Time).UTC()
			data := map[string]any{"name": e.Name, "time": t, "received": time.UnixMilli(e.Received).UTC()}
			if len(e.Data) > 0 {
				data["data"] = json.RawMessage(e.Data)
			}
			b, err := json.Marshal(data)
			if err != nil {
				return nil, last, err
			}
			// The id is the event's identity in the store (device, name,
			// time, data): the same event has the same id, always.
			h := sha256.New()
			fmt.Fprintf(h, "%s\x00%s\x00%d\x00", e.Device, e.Name, e.Time)
			h.Write(e.Data)
			items = append(items, item{id: "event-" + hex.EncodeToString(h.Sum(nil)[:16]), typ: TypeEvent,
				tenant: e.Tenant, device: e.Device, time: t, data: b})
			last = uint64(e.Seq)
		}
	case TypeCommand:
		if s.o.Commands == nil {
			return nil, last, nil
		}
		evs, err := s.o.Commands.EventsAfter(ctx, cursor, time.Time{}, 500)
		if err != nil {
			return nil, last, err
		}
		return itemsOf(evs, last, TypeCommand, func(e command.Event) (string, string, string, time.Time, uint64) {
			return fmt.Sprintf("command-%s-%d", e.Command.ID, e.Seq), e.Command.Tenant, e.Command.Code, e.Time, e.Seq
		})
	case TypePresence:
		if s.o.Presence == nil {
			return nil, last, nil
		}
		evs, err := s.o.Presence.EventsAfter(ctx, cursor, time.Time{}, 500)
		if err != nil {
			return nil, last, err
		}
		return itemsOf(evs, last, TypePresence, func(e presence.Event) (string, string, string, time.Time, uint64) {
			return fmt.Sprintf("presence-%d", e.Seq), e.Tenant, e.Code, e.Time, e.Seq
		})
	}
	return items, last, nil
}

// itemsOf turns a table's events into outbox items, their JSON as the
// data; describe names each event (id, tenant, device, time, sequence).
func itemsOf[E any](evs []E, last uint64, typ string, describe func(E) (id, tenant, device string, t time.Time, seq uint64)) ([]item, uint64, error) {
	out := make([]item, 0, len(evs))
	for _, e := range evs {
		data, err := json.Marshal(e)
		if err != nil {
			return nil, last, err
		}
		id, tenant, device, t, seq := describe(e)
		out = append(out, item{id: id, typ: typ, tenant: tenant, device: device, time: t, data: data})
		last = seq
	}
	return out, last, nil
}

// deliverLoop delivers what is due, at most Workers at a time.
func (s *Service) deliverLoop(ctx context.Context) {
	sem := make(chan struct{}, s.o.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(s.o.Poll)
	defer t.Stop()
	for {
		due, err := s.due(ctx, 4*s.o.Workers)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("webhook outbox not read; retrying", "err", err)
		}
		for _, d := range due {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			// The list may be older than an attempt that just ended:
			// only a row still due is taken, and taking it leases it.
			if !s.lease(ctx, d.ID) {
				<-sem
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s.attempt(ctx, d)
				s.wakeDeliverers()
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wakeDeliver:
		case <-t.C:
		}
	}
}

// leaseTime is how long a delivery being attempted is not due again: an
// attempt the process did not finish (a crash) is made again after it.
const leaseTime = time.Minute

// lease takes a delivery that is still due for one attempt.
func (s *Service) lease(ctx context.Context, id int64) bool {
	now := s.o.Now()
	res, err := s.db.W.ExecContext(ctx, `UPDATE webhook_outbox SET next_at = ? WHERE id = ? AND status = 'pending' AND next_at <= ?`,
		now.Add(leaseTime).UnixMilli(), id, now.UnixMilli())
	if err != nil {
		return false
	}
	n, _ := res.RowsAffected()
	return n == 1
}

// due lists pending deliveries whose time has come.
func (s *Service) due(ctx context.Context, limit int) ([]Delivery, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT id, webhook, event_id, type, attempts, body FROM webhook_outbox
		WHERE status = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?`, s.o.Now().UnixMilli(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		var body []byte
		if err := rows.Scan(&d.ID, &d.Webhook, &d.EventID, &d.Type, &d.Attempts, &body); err != nil {
			return nil, err
		}
		d.Body = body
		out = append(out, d)
	}
	return out, rows.Err()
}

// attempt posts one delivery and records the outcome.
func (s *Service) attempt(ctx context.Context, d Delivery) {
	w, err := s.Get(d.Webhook)
	if err != nil {
		return // deleted meanwhile, with its outbox
	}
	now := s.o.Now()
	err = s.post(ctx, w, d, now)
	if ctx.Err() != nil {
		return // shutting down: tried again after the restart
	}
	if err == nil {
		if _, err := s.db.W.ExecContext(context.WithoutCancel(ctx), `DELETE FROM webhook_outbox WHERE id = ?`, d.ID); err != nil {
			s.log.Warn("delivered webhook not removed from the outbox; it will be delivered again", "webhook", w.ID, "err", err)
		}
		s.delivered.WithLabelValues("ok").Inc()
		return
	}
	attempts := d.Attempts + 1
	status, next := "pending", now.Add(s.backoff(attempts))
	result := "retry"
	if attempts >= s.o.MaxAttempts {
		status, result = "failed", "failed"
		s.log.Warn("webhook delivery failed after every attempt; kept in its failed list", "webhook", w.ID, "event", d.EventID, "attempts", attempts, "err", err)
	}
	s.delivered.WithLabelValues(result).Inc()
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300]
	}
	if _, err := s.db.W.ExecContext(context.WithoutCancel(ctx), `UPDATE webhook_outbox SET attempts = ?, status = ?, next_at = ?, last_at = ?, last_error = ? WHERE id = ?`,
		attempts, status, next.UnixMilli(), now.UnixMilli(), msg, d.ID); err != nil {
		s.log.Warn("webhook attempt not recorded", "webhook", w.ID, "err", err)
	}
}

func (s *Service) backoff(attempts int) time.Duration {
	d := s.o.Backoff
	for i := 1; i < attempts && d < s.o.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.o.MaxBackoff)
}

// post sends one delivery, signed; a 2xx answer is success.
func (s *Service) post(ctx context.Context, w Webhook, d Delivery, now time.Time) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(d.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wanwu-webhook/1")
	req.Header.Set("Wanwu-Event-Id", d.EventID)
	req.Header.Set("Wanwu-Event-Type", d.Type)
	req.Header.Set("Wanwu-Signature", Sign(w.secret, now, d.Body))
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

// Sign returns the Wanwu-Signature header of body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a Wanwu-Signature header against body and the secret, and
// that it was made within tolerance of now: what a receiver does.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("webhook: signature header malformed")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook: signature too old or from the future")
	}
	want := Sign(secret, time.Unix(sec, 0), body)
	if !hmac.Equal([]byte(want), []byte("t="+ts+",v1="+sig)) {
		return errors.New("webhook: signature does not match")
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("webhook: crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b)
}

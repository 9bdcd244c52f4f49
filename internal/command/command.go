package command

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Errors returned by the service; API handlers map them to HTTP statuses
// (404, 409, 400, 409).
var (
	// ErrNotFound: no such command (or it belongs to another device), or,
	// from Options.Model, no such device.
	ErrNotFound = errors.New("command: not found")
	// ErrIDConflict: a client reused a command id for a different device,
	// action or arguments.
	ErrIDConflict = errors.New("command: id reused with different content")
	// ErrInvalid: the request is malformed: unknown action or bad arguments
	// (also matching thingmodel.ErrUnknownAction / ErrInvalidArgs), a device
	// without a thing model, a bad id, TTL, result timeout or result.
	ErrInvalid = errors.New("command: invalid")
	// ErrFinished: the command already reached a final status.
	ErrFinished = errors.New("command: already finished")
)

// Status is where a command is in its life cycle (see the package doc).
type Status string

// Statuses. Queued and Delivered are open; the others are final.
const (
	Queued    Status = "queued"    // waiting for, or being offered to, its device
	Delivered Status = "delivered" // the transport confirmed it; waiting for the result
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Expired   Status = "expired"   // its TTL passed before it was delivered
	TimedOut  Status = "timed_out" // no result within ResultTimeout of delivery
	Canceled  Status = "canceled"
)

// Final reports whether s is a final status.
func (s Status) Final() bool { return s != Queued && s != Delivered }

// Valid reports whether s is one of the statuses above.
func (s Status) Valid() bool {
	switch s {
	case Queued, Delivered, Succeeded, Failed, Expired, TimedOut, Canceled:
		return true
	}
	return false
}

// Event kinds.
const (
	EventIssued     = "issued"
	EventSent       = "sent"      // handed to a Sink for the first time
	EventRetry      = "retry"     // handed to a Sink again (no confirmation, or a new session)
	EventDelivered  = "delivered" // the transport confirmed delivery
	EventSucceeded  = "succeeded"
	EventFailed     = "failed" // a failure result, or undeliverable after MaxAttempts
	EventExpired    = "expired"
	EventTimedOut   = "timed_out"
	EventCanceled   = "canceled"
	EventLateResult = "late_result" // a result for a finished command; Data holds it
)

// Reasons the service itself sets.
const (
	ReasonUndeliverable = "undeliverable"
	ReasonExpired       = "expired before delivery"
	ReasonTimedOut      = "no result within the result timeout"
	ReasonCanceled      = "canceled"
)

// Defaults and limits.
const (
	DefaultTTL           = 24 * time.Hour
	MaxTTL               = 30 * 24 * time.Hour
	DefaultResultTimeout = 60 * time.Second
	MaxResultTimeout     = 7 * 24 * time.Hour
	DefaultAckTimeout    = 20 * time.Second
	DefaultRetryBackoff  = 2 * time.Second
	DefaultMaxBackoff    = 5 * time.Minute
	DefaultMaxAttempts   = 5
	MaxIDLen             = 64
	MaxArgsBytes         = 64 << 10 // compact JSON of a command's arguments
	MaxResultBytes       = 64 << 10 // a device's result payload (DecodeResult)
	MaxReasonLen         = 1024
	DefaultListLimit     = 100
	MaxListLimit         = 1000
	// maxLateResults bounds the late_result events kept per command, so a
	// device repeating a stale result cannot grow the table.
	maxLateResults = 8
)

// Command is one action issued to one device.
type Command struct {
	ID     string          `json:"id"`
	Code   string          `json:"code"`
	Tenant string          `json:"tenant"`
	Action string          `json:"action"`
	Args   json.RawMessage `json:"args"` // a JSON object, canonical (sorted keys)
	// Seq orders the commands of one device: delivery follows it.
	Seq      int64           `json:"seq"`
	Status   Status          `json:"status"`
	Attempts int             `json:"attempts"` // times handed to a Sink
	Reason   string          `json:"reason,omitempty"`
	Output   json.RawMessage `json:"output,omitempty"`
	Actor    string          `json:"actor"` // who issued it
	// CreatedAt is when it was issued; ExpiresAt when it expires if still queued.
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// DeliveredAt is set once the transport confirmed delivery (or a result
	// arrived), DoneAt once the status is final.
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	DoneAt      *time.Time `json:"done_at,omitempty"`
	// ExpectedDeliveryAt is set on a queued command whose device sleeps
	// now (Options.Reach): when the device is expected to be reachable
	// again, its next uplink. Get, List and Issue fill it in; it is not
	// stored.
	ExpectedDeliveryAt *time.Time `json:"expected_delivery_at,omitempty"`
	// ResultTimeout is how long after delivery a result may take; JSON
	// carries it as result_timeout_s (seconds).
	ResultTimeout time.Duration `json:"-"`
}

type commandJSON struct {
	*commandAlias
	ResultTimeoutS float64 `json:"result_timeout_s"`
}

type commandAlias Command

// MarshalJSON writes ResultTimeout as result_timeout_s.
func (c *Command) MarshalJSON() ([]byte, error) {
	return json.Marshal(commandJSON{commandAlias: (*commandAlias)(c), ResultTimeoutS: c.ResultTimeout.Seconds()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *Command) UnmarshalJSON(b []byte) error {
	v := commandJSON{commandAlias: (*commandAlias)(c)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	c.ResultTimeout = time.Duration(v.ResultTimeoutS * float64(time.Second))
	return nil
}

// IssueRequest asks for an action on a device.
type IssueRequest struct {
	Code   string
	Action string
	// Args are the action's input as a JSON object; nil or null means {}.
	Args json.RawMessage
	// ID is the client's idempotency key ([A-Za-z0-9_-], 1–64 bytes); ""
	// generates one. Reissuing an id with the same device, action and
	// arguments returns the existing command.
	ID string
	// TTL bounds how long the command may wait for delivery (0:
	// Options.DefaultTTL, at most MaxTTL).
	TTL time.Duration
	// ResultTimeout bounds the wait for a result after delivery (0:
	// DefaultResultTimeout, at most MaxResultTimeout).
	ResultTimeout time.Duration
}

// Event is one step in a command's history. Command is the command as it
// was right after the step.
type Event struct {
	Seq     uint64          `json:"seq"` // increases with every event of the service
	Time    time.Time       `json:"time"`
	Kind    string          `json:"kind"`
	Command Command         `json:"command"`
	Data    json.RawMessage `json:"data,omitempty"` // late_result: the result the device sent
}

// Sink delivers commands to one connected device. Deliver hands the command
// to the transport and returns without waiting for the device; the adapter
// calls Service.Delivered when the transport confirms (MQTT PUBACK, CoAP
// ACK). An error counts as an unconfirmed attempt.
type Sink interface {
	Deliver(c *Command) error
}

// Options configure a Service.
type Options struct {
	DB      *store.DB
	Audit   *audit.Log
	OnAudit func() // after a commit that appended audit entries
	// Model returns the device's thing model: (nil, nil) when the device has
	// none, an error wrapping ErrNotFound (or the registry's) for an unknown
	// device.
	Model  func(ctx context.Context, code string) (*thingmodel.Model, error)
	Now    func() time.Time
	Logger *slog.Logger
	// OnEvent receives every event after its commit, in Seq order, never
	// under a lock of the service; it must not block for long.
	OnEvent func(Event)
	// DefaultTTL is the TTL of a command issued without one (default
	// DefaultTTL, at most MaxTTL).
	DefaultTTL time.Duration
	// AckTimeout is how long the service waits for the transport to confirm
	// a delivery before it redelivers (default 20s).
	AckTimeout time.Duration
	// RetryBackoff and MaxBackoff shape the extra wait before each
	// redelivery: RetryBackoff·2^(n-1) after the n-th attempt, at most
	// MaxBackoff, with jitter taking it down to half (defaults 2s, 5m).
	RetryBackoff, MaxBackoff time.Duration
	// MaxAttempts bounds deliveries of one command (default 5); when the last
	// is not confirmed within AckTimeout the command fails "undeliverable".
	MaxAttempts int
	// After wakes the timer goroutine; default time.After. Tests pass a fake
	// clock's; state always follows Now.
	After func(d time.Duration) <-chan time.Time
	// Reach, when set, says whether a device can be reached now (asleep
	// false) or when it is expected to be (next; zero: not known). A
	// device that is asleep gets no delivery attempt: its commands stay
	// queued, no attempt counts, none fails as undeliverable for it, and
	// Wake sends them when it is back. An error counts as reachable.
	Reach func(ctx context.Context, code string) (asleep bool, next time.Time, err error)
}

// Service is the durable command queue.
type Service struct {
	opts Options
	db   *store.DB
	log  *slog.Logger

	emu      sync.Mutex // guards evq and draining
	evq      []Event
	draining bool

	mu      sync.Mutex // guards sinks, held, kicks, started, closed
	sinks   map[string]*attachment
	held    map[string]bool // devices whose commands wait while they sleep
	kicks   []string
	kickSet map[string]bool
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	kickc   chan struct{}
	wake    chan struct{}

	smu sync.Mutex // one sweep at a time
}

// attachment is one Sink of one device session.
type attachment struct {
	sink   Sink
	sentID string // the command handed to this sink last
}

// migrations are the package's schema steps in the metadata database,
// oldest first (store.Migrate); append, never edit a released step.
var migrations = []store.Migration{
	{
		// Releases before schema versions ran these statements at every open;
		// being IF NOT EXISTS, they adopt such a database as it is.
		Name:       "commands and their events",
		Statements: schemaV1,
	},
}

var schemaV1 = []string{
	`CREATE TABLE IF NOT EXISTS commands (
		id                TEXT PRIMARY KEY,
		code              TEXT NOT NULL,
		tenant            TEXT NOT NULL,
		seq               INTEGER NOT NULL,
		action            TEXT NOT NULL,
		args              BLOB NOT NULL,
		status            TEXT NOT NULL,
		attempts          INTEGER NOT NULL DEFAULT 0,
		reason            TEXT NOT NULL DEFAULT '',
		output            BLOB,
		actor             TEXT NOT NULL,
		created_at        INTEGER NOT NULL,
		expires_at        INTEGER NOT NULL,
		result_timeout_ms INTEGER NOT NULL,
		delivered_at      INTEGER NOT NULL DEFAULT 0,
		done_at           INTEGER NOT NULL DEFAULT 0,
		next_at           INTEGER NOT NULL DEFAULT 0,
		due_at            INTEGER NOT NULL DEFAULT 0,
		UNIQUE (code, seq)
	)`,
	`CREATE INDEX IF NOT EXISTS commands_queued ON commands(code, seq) WHERE status = 'queued'`,
	`CREATE INDEX IF NOT EXISTS commands_due ON commands(due_at) WHERE status IN ('queued', 'delivered')`,
	`CREATE INDEX IF NOT EXISTS commands_by_time ON commands(created_at)`,
	`CREATE TABLE IF NOT EXISTS command_events (
		seq          INTEGER PRIMARY KEY AUTOINCREMENT,
		command_id   TEXT NOT NULL REFERENCES commands(id),
		kind         TEXT NOT NULL,
		time         INTEGER NOT NULL,
		status       TEXT NOT NULL,
		attempts     INTEGER NOT NULL,
		reason       TEXT NOT NULL DEFAULT '',
		output       BLOB,
		delivered_at INTEGER NOT NULL DEFAULT 0,
		done_at      INTEGER NOT NULL DEFAULT 0,
		data         BLOB
	)`,
	`CREATE INDEX IF NOT EXISTS command_events_by_command ON command_events(command_id, seq)`,
}

// Open checks the options, brings the tables to their schema version and returns the
// service; Start runs its delivery and timer goroutines.
func Open(ctx context.Context, o Options) (*Service, error) {
	if o.DB == nil || o.Audit == nil || o.Model == nil {
		return nil, errors.New("command: DB, Audit and Model are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.DefaultTTL <= 0 || o.DefaultTTL > MaxTTL {
		o.DefaultTTL = DefaultTTL
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.RetryBackoff {
		o.MaxBackoff = o.RetryBackoff
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if err := o.DB.Migrate(ctx, "command", migrations); err != nil {
		return nil, fmt.Errorf("command: %w", err)
	}
	return &Service{
		opts:    o,
		db:      o.DB,
		log:     o.Logger.With("component", "command"),
		sinks:   make(map[string]*attachment),
		held:    make(map[string]bool),
		kickSet: make(map[string]bool),
		kickc:   make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
	}, nil
}

func (s *Service) now() time.Time { return s.opts.Now().UTC().Truncate(time.Millisecond) }

// Issue validates r against the device's thing model and queues the command.
// A reissued id with the same device, action and arguments returns the
// existing command with created false; with different content ErrIDConflict.
func (s *Service) Issue(ctx context.Context, actor string, r IssueRequest) (*Command, bool, error) {
	if actor == "" {
		return nil, false, errors.New("command: issuing needs an actor")
	}
	dev, err := code.Parse(r.Code)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if r.ID != "" {
		if err := ValidID(r.ID); err != nil {
			return nil, false, err
		}
	}
	ttl, err := bounded("ttl", r.TTL, s.opts.DefaultTTL, MaxTTL)
	if err != nil {
		return nil, false, err
	}
	rt, err := bounded("result timeout", r.ResultTimeout, DefaultResultTimeout, MaxResultTimeout)
	if err != nil {
		return nil, false, err
	}
	args, decoded, err := canonicalObject(r.Args, MaxArgsBytes)
	if err != nil {
		return nil, false, fmt.Errorf("%w: args: %w", ErrInvalid, err)
	}
	m, err := s.opts.Model(ctx, r.Code)
	if err != nil {
		return nil, false, fmt.Errorf("command: model of %s: %w", r.Code, err)
	}
	if m == nil {
		return nil, false, fmt.Errorf("%w: device %s has no thing model", ErrInvalid, r.Code)
	}
	if err := m.ValidateArgs(r.Action, decoded); err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	id := r.ID
	if id == "" {
		id = newID()
	}
	var out *Command
	created := false
	err = s.write(ctx, actor, func(c *change) error {
		old, err := c.get(id)
		if err == nil {
			if old.Code != r.Code || old.Action != r.Action || !bytes.Equal(old.Args, args) {
				return fmt.Errorf("%w: %s", ErrIDConflict, id)
			}
			out = &old.Command
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		var seq int64
		if err := c.tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM commands WHERE code = ?`, r.Code).Scan(&seq); err != nil {
			return fmt.Errorf("command: sequence: %w", err)
		}
		cmd := &row{Command: Command{
			ID: id, Code: r.Code, Tenant: dev.Namespace, Action: r.Action, Args: args, Seq: seq,
			Status: Queued, Actor: actor, CreatedAt: c.now, ExpiresAt: c.now.Add(ttl), ResultTimeout: rt,
		}}
		if _, err := c.tx.ExecContext(ctx, `INSERT INTO commands (id, code, tenant, seq, action, args, status, actor,
			created_at, expires_at, result_timeout_ms, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			cmd.ID, cmd.Code, cmd.Tenant, cmd.Seq, cmd.Action, []byte(cmd.Args), string(cmd.Status), actor,
			ms(cmd.CreatedAt), ms(cmd.ExpiresAt), rt.Milliseconds(), cmd.dueAt()); err != nil {
			return fmt.Errorf("command: insert: %w", err)
		}
		data := map[string]any{"id": id, "action": r.Action, "seq": seq, "expires_at": cmd.ExpiresAt}
		if len(args) <= 1024 {
			data["args"] = json.RawMessage(args)
		} else {
			sum := sha256.Sum256(args)
			data["args_sha256"] = hex.EncodeToString(sum[:])
		}
		if err := c.audit("command.issued", cmd.Tenant, cmd.Code, data); err != nil {
			return err
		}
		if err := c.event(EventIssued, cmd, nil); err != nil {
			return err
		}
		out, created = &cmd.Command, true
		// An attached device gets it (or an older one) in this commit.
		return c.offer(cmd.Code)
	})
	if err != nil {
		return nil, false, err
	}
	s.expect(ctx, []*Command{out})
	return out, created, nil
}

// Get returns one command.
func (s *Service) Get(ctx context.Context, id string) (*Command, error) {
	r, err := getRow(ctx, s.db.R, id)
	if err != nil {
		return nil, err
	}
	s.expect(ctx, []*Command{&r.Command})
	return &r.Command, nil
}

// expect sets ExpectedDeliveryAt on the queued commands whose devices
// sleep now, asking Reach once per device.
func (s *Service) expect(ctx context.Context, cmds []*Command) {
	if s.opts.Reach == nil {
		return
	}
	next := map[string]*time.Time{}
	for _, c := range cmds {
		if c.Status != Queued {
			continue
		}
		t, ok := next[c.Code]
		if !ok {
			asleep, at, err := s.opts.Reach(ctx, c.Code)
			if err != nil {
				s.log.Warn("device reachability not known", "device", c.Code, "err", err)
			}
			if err == nil && asleep && !at.IsZero() {
				at = at.UTC().Truncate(time.Millisecond)
				t = &at
			}
			next[c.Code] = t
		}
		c.ExpectedDeliveryAt = t
	}
}

// List returns a device's commands, newest first, optionally only those in
// one status; code "" lists every device's. limit ≤ 0 means
// DefaultListLimit; it is capped at MaxListLimit.
func (s *Service) List(ctx context.Context, dev string, status Status, limit int) ([]*Command, error) {
	if status != "" && !status.Valid() {
		return nil, fmt.Errorf("%w: unknown status %q", ErrInvalid, status)
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	q := `SELECT ` + columns + ` FROM commands WHERE 1 = 1`
	var args []any
	if dev != "" {
		q += ` AND code = ?`
		args = append(args, dev)
	}
	if status != "" {
		q += ` AND status = ?`
		args = append(args, string(status))
	}
	if dev != "" {
		q += ` ORDER BY seq DESC`
	} else {
		q += ` ORDER BY created_at DESC, rowid DESC`
	}
	q += ` LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("command: list: %w", err)
	}
	defer rows.Close()
	out := []*Command{}
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, &r.Command)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("command: list: %w", err)
	}
	s.expect(ctx, out)
	return out, nil
}

// Events returns a command's history, oldest first.
func (s *Service) Events(ctx context.Context, id string) ([]Event, error) {
	base, err := getRow(ctx, s.db.R, id)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+eventColumns+` FROM command_events WHERE command_id = ? ORDER BY seq`, id)
	if err != nil {
		return nil, fmt.Errorf("command: events: %w", err)
	}
	return scanEvents(rows, func(string) (*row, error) { return base, nil })
}

// EventsAfter returns up to limit events of every command with a Seq above
// after and a time not before since, in Seq order: what a forwarder that
// published through after still has to publish.
func (s *Service) EventsAfter(ctx context.Context, after uint64, since time.Time, limit int) ([]Event, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+eventColumns+` FROM command_events
		WHERE seq > ? AND time >= ? ORDER BY seq LIMIT ?`, int64(after), ms(since), limit)
	if err != nil {
		return nil, fmt.Errorf("command: events: %w", err)
	}
	bases := map[string]*row{}
	return scanEvents(rows, func(id string) (*row, error) {
		if b, ok := bases[id]; ok {
			return b, nil
		}
		b, err := getRow(ctx, s.db.R, id)
		if err != nil {
			return nil, err
		}
		bases[id] = b
		return b, nil
	})
}

// LastEventSeq is the sequence of the newest command event (0: none).
func (s *Service) LastEventSeq(ctx context.Context) (uint64, error) {
	var seq sql.NullInt64
	if err := s.db.R.QueryRowContext(ctx, `SELECT max(seq) FROM command_events`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("command: events: %w", err)
	}
	return uint64(seq.Int64), nil
}

// eventColumns are the command_events columns scanEvents reads.
const eventColumns = `seq, command_id, kind, time, status, attempts, reason, output, delivered_at, done_at, data`

// scanEvents reads events; base gives the command each belongs to, whose
// state the event's own columns then overlay.
func scanEvents(rows *sql.Rows, base func(id string) (*row, error)) ([]Event, error) {
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var (
			e                  Event
			id                 string
			t, delivered, done int64
			status             string
			output, data       []byte
			seq                int64
			attempts           int
			reason             string
		)
		if err := rows.Scan(&seq, &id, &e.Kind, &t, &status, &attempts, &reason, &output, &delivered, &done, &data); err != nil {
			return nil, fmt.Errorf("command: events: %w", err)
		}
		b, err := base(id)
		if err != nil {
			return nil, err
		}
		e.Seq, e.Time = uint64(seq), fromMS(t)
		e.Command = b.Command
		e.Command.Status, e.Command.Attempts, e.Command.Reason = Status(status), attempts, reason
		e.Command.Output = rawOrNil(output)
		e.Command.DeliveredAt, e.Command.DoneAt = optTime(delivered), optTime(done)
		e.Data = rawOrNil(data)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("command: events: %w", err)
	}
	return out, nil
}

// Cancel ends a queued or delivered command; a finished one gives ErrFinished.
func (s *Service) Cancel(ctx context.Context, actor, id string) (*Command, error) {
	if actor == "" {
		return nil, errors.New("command: canceling needs an actor")
	}
	var out *Command
	err := s.write(ctx, actor, func(c *change) error {
		r, err := c.get(id)
		if err != nil {
			return err
		}
		if r.Status.Final() {
			return fmt.Errorf("%w: %s is %s", ErrFinished, id, r.Status)
		}
		prev := r.Status
		r.finish(Canceled, ReasonCanceled, nil, c.now)
		if err := c.update(r); err != nil {
			return err
		}
		if err := c.audit("command.canceled", r.Tenant, r.Code, map[string]any{"id": id, "action": r.Action, "was": prev}); err != nil {
			return err
		}
		if err := c.event(EventCanceled, r, nil); err != nil {
			return err
		}
		c.kick(r.Code)
		out = &r.Command
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CancelAll cancels every command of a device that has not finished (its
// identity ended: decommissioned or deleted), each with its event and
// audit entry, and says how many.
func (s *Service) CancelAll(ctx context.Context, actor, dev string) (int, error) {
	n := 0
	for _, st := range []Status{Queued, Delivered} {
		for {
			cmds, err := s.List(ctx, dev, st, 500)
			if err != nil {
				return n, err
			}
			canceled := 0
			for _, c := range cmds {
				if _, err := s.Cancel(ctx, actor, c.ID); err != nil && !errors.Is(err, ErrFinished) {
					return n, err
				} else if err == nil {
					canceled++
				}
			}
			n += canceled
			if len(cmds) < 500 || canceled == 0 {
				break
			}
		}
	}
	return n, nil
}

// ValidID checks a client-chosen command id.
func ValidID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: id must be 1 to %d bytes", ErrInvalid, MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-') {
			return fmt.Errorf("%w: id: byte %d is not one of [A-Za-z0-9_-]", ErrInvalid, i)
		}
	}
	return nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func bounded(name string, d, def, limit time.Duration) (time.Duration, error) {
	switch {
	case d == 0:
		return def, nil
	case d < 0 || d > limit:
		return 0, fmt.Errorf("%w: %s %v is not within (0, %v]", ErrInvalid, name, d, limit)
	case d < time.Millisecond:
		return 0, fmt.Errorf("%w: %s %v is below 1ms", ErrInvalid, name, d)
	}
	return d, nil
}

// canonicalObject checks that raw is one JSON object (nil or null: {}) of at
// most limit bytes and returns it with sorted keys and no insignificant
// space, numbers kept as written, plus its decoded form for validation.
func canonicalObject(raw json.RawMessage, limit int) (json.RawMessage, map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage(`{}`), map[string]any{}, nil
	}
	if len(raw) > limit {
		return nil, nil, fmt.Errorf("%d bytes, more than %d", len(raw), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, nil, errors.New("more than one JSON value")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, nil, errors.New("must be a JSON object")
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, nil, err
	}
	if len(out) > limit {
		return nil, nil, fmt.Errorf("%d bytes, more than %d", len(out), limit)
	}
	return out, obj, nil
}

// ---- storage ----

const columns = `id, code, tenant, seq, action, args, status, attempts, reason, output, actor,
	created_at, expires_at, result_timeout_ms, delivered_at, done_at, next_at`

// row is a command with the delivery bookkeeping that stays internal.
type row struct {
	Command
	// nextAt (ms) is set while a handed-out command awaits the transport's
	// confirmation: when to redeliver (or give up after the last attempt).
	// 0 with Attempts > 0 means a redelivery is due at the next chance.
	nextAt int64
}

type scanner interface{ Scan(dest ...any) error }

func scanRow(sc scanner) (*row, error) {
	var (
		r                                       row
		args, output                            []byte
		status                                  string
		created, expires, rtMS, delivered, done int64
	)
	err := sc.Scan(&r.ID, &r.Code, &r.Tenant, &r.Seq, &r.Action, &args, &status, &r.Attempts, &r.Reason,
		&output, &r.Actor, &created, &expires, &rtMS, &delivered, &done, &r.nextAt)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		return nil, fmt.Errorf("command: read: %w", err)
	}
	r.Args, r.Output, r.Status = json.RawMessage(args), rawOrNil(output), Status(status)
	r.CreatedAt, r.ExpiresAt = fromMS(created), fromMS(expires)
	r.ResultTimeout = time.Duration(rtMS) * time.Millisecond
	r.DeliveredAt, r.DoneAt = optTime(delivered), optTime(done)
	return &r, nil
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getRow(ctx context.Context, q queryRower, id string) (*row, error) {
	r, err := scanRow(q.QueryRowContext(ctx, `SELECT `+columns+` FROM commands WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return r, err
}

// dueAt is when the timer must look at the command next (ms; 0: never).
func (r *row) dueAt() int64 {
	switch r.Status {
	case Queued:
		d := ms(r.ExpiresAt)
		if r.nextAt > 0 && r.nextAt < d {
			d = r.nextAt
		}
		return d
	case Delivered:
		return ms(*r.DeliveredAt) + r.ResultTimeout.Milliseconds()
	}
	return 0
}

func (r *row) finish(st Status, reason string, output json.RawMessage, now time.Time) {
	r.Status, r.Reason, r.Output, r.nextAt = st, reason, output, 0
	t := now
	r.DoneAt = &t
}

func (r *row) markDelivered(now time.Time) {
	if r.DeliveredAt == nil {
		t := now
		r.DeliveredAt = &t
	}
	r.Status, r.nextAt = Delivered, 0
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func optTime(v int64) *time.Time {
	if v == 0 {
		return nil
	}
	t := fromMS(v)
	return &t
}

func optMS(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return ms(*t)
}

func rawOrNil(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

func blobOrNil(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}

// ---- write transactions ----

// change is one write transaction with the events and audit entries it makes.
type change struct {
	s       *Service
	ctx     context.Context
	tx      *sql.Tx
	actor   string
	now     time.Time
	events  []Event
	audited bool
	kicks   []string
	sends   []offered // attempts to hand over after the commit
	// err is returned by write after a successful commit (a late result is
	// recorded and still refused).
	err error
}

// write runs fn in a transaction; after the commit it hands the events to
// OnEvent (in commit order), calls OnAudit and schedules deliveries.
// Concurrent writes share a commit (store.SharedTx): under 50 devices'
// command rounds, one commit each was 1,500 fsyncs a second, and commands
// waited in line for them.
func (s *Service) write(ctx context.Context, actor string, fn func(c *change) error) error {
	var c *change
	err := s.db.SharedTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		c = &change{s: s, ctx: ctx, tx: tx, actor: actor, now: s.now()}
		return fn(c)
	}, func() {
		if len(c.events) > 0 {
			s.emu.Lock()
			s.evq = append(s.evq, c.events...)
			s.emu.Unlock()
		}
	})
	if err != nil {
		return err
	}
	if c.audited && s.opts.OnAudit != nil {
		s.opts.OnAudit()
	}
	s.drain()
	s.handOver(c.sends)
	for _, k := range c.kicks {
		s.kick(k)
	}
	if len(c.events) > 0 {
		s.wakeTimer()
	}
	return c.err
}

// drain hands queued events to OnEvent; one caller at a time does it, so
// they leave in order.
func (s *Service) drain() {
	s.emu.Lock()
	if s.draining {
		s.emu.Unlock()
		return
	}
	s.draining = true
	for len(s.evq) > 0 {
		q := s.evq
		s.evq = nil
		s.emu.Unlock()
		if s.opts.OnEvent != nil {
			for _, e := range q {
				s.opts.OnEvent(e)
			}
		}
		s.emu.Lock()
	}
	s.draining = false
	s.emu.Unlock()
}

func (c *change) get(id string) (*row, error) { return getRow(c.ctx, c.tx, id) }

func (c *change) update(r *row) error {
	_, err := c.tx.ExecContext(c.ctx, `UPDATE commands SET status = ?, attempts = ?, reason = ?, output = ?,
		delivered_at = ?, done_at = ?, next_at = ?, due_at = ? WHERE id = ?`,
		string(r.Status), r.Attempts, r.Reason, blobOrNil(r.Output), optMS(r.DeliveredAt), optMS(r.DoneAt),
		r.nextAt, r.dueAt(), r.ID)
	if err != nil {
		return fmt.Errorf("command: update %s: %w", r.ID, err)
	}
	return nil
}

// event records a step of r's history (r as it is now).
func (c *change) event(kind string, r *row, data json.RawMessage) error {
	res, err := c.tx.ExecContext(c.ctx, `INSERT INTO command_events (command_id, kind, time, status, attempts,
		reason, output, delivered_at, done_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, kind, ms(c.now), string(r.Status), r.Attempts, r.Reason, blobOrNil(r.Output),
		optMS(r.DeliveredAt), optMS(r.DoneAt), blobOrNil(data))
	if err != nil {
		return fmt.Errorf("command: record %s event: %w", kind, err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("command: record %s event: %w", kind, err)
	}
	snap := r.Command
	c.events = append(c.events, Event{Seq: uint64(seq), Time: c.now, Kind: kind, Command: snap, Data: data})
	return nil
}

func (c *change) audit(kind, tenant, subject string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("command: audit data: %w", err)
	}
	e := audit.Entry{Time: c.now, Actor: c.actor, Tenant: tenant, Kind: kind, Subject: subject, Data: raw}
	if _, err := c.s.opts.Audit.AppendTx(c.ctx, c.tx, e); err != nil {
		return fmt.Errorf("command: audit %s: %w", kind, err)
	}
	c.audited = true
	return nil
}

// kick asks, after the commit, for the device's next command to be offered.
func (c *change) kick(code string) { c.kicks = append(c.kicks, code) }

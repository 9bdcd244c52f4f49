package alarm

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// Errors returned by the service; API handlers map them to HTTP statuses
// (404, 400, 409).
var (
	// ErrNotFound: no alarm has the id (or the source, object and name).
	ErrNotFound = errors.New("alarm: no such alarm")
	// ErrInvalid: a request field is malformed or out of range; the error
	// is a *FieldError that names the field.
	ErrInvalid = errors.New("alarm: invalid request")
	// ErrConflict: the alarm belongs to another node: Raise and Clear of an
	// alarm imported from an edge, or an Import over an alarm raised here.
	ErrConflict = errors.New("alarm: alarm belongs to another node")
)

// FieldError is an ErrInvalid that names the offending field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return "alarm: " + e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Severity is an alarm's priority. Severities are ordered: low < medium <
// high < critical.
type Severity string

// Severities, lowest first.
const (
	Low      Severity = "low"
	Medium   Severity = "medium"
	High     Severity = "high"
	Critical Severity = "critical"
)

// Severities lists every severity, lowest first.
var Severities = []Severity{Low, Medium, High, Critical}

// ParseSeverity returns the severity named s, or an ErrInvalid naming the
// field "severity".
func ParseSeverity(s string) (Severity, error) {
	if r := Severity(s).Rank(); r > 0 {
		return Severity(s), nil
	}
	return "", invalid("severity", "%q is not one of low, medium, high, critical", truncate(s))
}

// Rank orders severities: 1 (low) to 4 (critical); 0 for an unknown one.
func (s Severity) Rank() int {
	switch s {
	case Low:
		return 1
	case Medium:
		return 2
	case High:
		return 3
	case Critical:
		return 4
	}
	return 0
}

// State is an alarm's ISA-18.2 state: whether its condition is active, and
// whether an operator acknowledged its latest activation.
type State string

// States (see the package documentation for the transitions).
const (
	UnackActive  State = "unack_active"  // active, not acknowledged: a new alarm
	AckActive    State = "ack_active"    // active, acknowledged
	UnackCleared State = "unack_cleared" // returned to normal before it was acknowledged
	Cleared      State = "cleared"       // normal: cleared and acknowledged
)

// States lists every state in the order of the lifecycle.
var States = []State{UnackActive, AckActive, UnackCleared, Cleared}

// stateOf is the state of an alarm with the condition active or not,
// acknowledged or not.
func stateOf(active, acked bool) State {
	switch {
	case active && !acked:
		return UnackActive
	case active:
		return AckActive
	case !acked:
		return UnackCleared
	}
	return Cleared
}

// flags is the inverse of stateOf; ok is false for an unknown state.
func (s State) flags() (active, acked, ok bool) {
	switch s {
	case UnackActive:
		return true, false, true
	case AckActive:
		return true, true, true
	case UnackCleared:
		return false, false, true
	case Cleared:
		return false, true, true
	}
	return false, false, false
}

// Alarm is one alarm: an abnormal condition of an object, detected by a
// source (a closed loop), with its ISA-18.2 state.
type Alarm struct {
	// ID is derived from (Source, Object, Name) (see ID), so raising the
	// same condition again finds the same alarm.
	ID     string `json:"id"`
	Tenant string `json:"tenant"` // the namespace of Object's code
	Object string `json:"object"` // the object's code
	// Source is who raises and clears the alarm, e.g. "loop:chatter-feed".
	Source string `json:"source"`
	// Name is the alarm's name within the source.
	Name     string   `json:"name"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	State    State    `json:"state"`
	Active   bool     `json:"active"` // the condition holds (State is *_active)
	Acked    bool     `json:"acked"`  // the latest activation was acknowledged
	// Shelved is set while an operator has shelved the alarm.
	Shelved *Shelve `json:"shelved,omitempty"`
	// Suppressed says why notifications are suppressed now ("chattering"),
	// "" when they are not.
	Suppressed string `json:"suppressed,omitempty"`
	// Origin is "" for an alarm raised on this node, otherwise the code of
	// the edge it was imported from (Import).
	Origin string `json:"origin,omitempty"`
	// OriginVersion is the edge's Version of an imported alarm as last
	// imported; 0 for an alarm raised here.
	OriginVersion int64      `json:"origin_version,omitempty"`
	RaisedAt      time.Time  `json:"raised_at"` // the latest activation
	UpdatedAt     time.Time  `json:"updated_at"`
	ClearedAt     *time.Time `json:"cleared_at,omitempty"` // set while the condition is not active
	AckedAt       *time.Time `json:"acked_at,omitempty"`   // set while the latest activation is acknowledged
	AckedBy       string     `json:"acked_by,omitempty"`
	AckNote       string     `json:"ack_note,omitempty"`
	// Count is the number of activations so far.
	Count int `json:"count"`
	// Version increases with every change of the alarm on this node.
	Version int64 `json:"version"`
	// Data is the raiser's context (feature values, thresholds): a compact
	// JSON object of at most MaxDataBytes, or nil.
	Data json.RawMessage `json:"data,omitempty"`
}

// Shelve says who shelved an alarm, why, and until when.
type Shelve struct {
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	Until  time.Time `json:"until"`
}

// Silenced reports whether notifications of the alarm are withheld: it is
// shelved or suppressed. Its events are recorded all the same.
func (a *Alarm) Silenced() bool { return a.Shelved != nil || a.Suppressed != "" }

// NeedsAttention reports whether the alarm belongs in the operator's
// "needs attention" view: not shelved, and active or not yet acknowledged.
func (a *Alarm) NeedsAttention() bool { return a.Shelved == nil && a.State != Cleared }

// Event kinds.
const (
	KindRaised       = "raised"        // a new activation (Count grew)
	KindUpdated      = "updated"       // severity, message or data of an active alarm changed, no new activation
	KindCleared      = "cleared"       // the condition returned to normal
	KindAcked        = "acked"         // an operator acknowledged the activation
	KindShelved      = "shelved"       // an operator shelved the alarm (or changed the shelving)
	KindUnshelved    = "unshelved"     // an operator unshelved it, or the shelving expired (Actor "system")
	KindSuppressed   = "suppressed"    // notifications suppressed (chattering)
	KindUnsuppressed = "unsuppressed"  // the suppression ended
	KindFloodStarted = "flood_started" // a tenant's alarm rate reached Flood.Count per Flood.Window
	KindFloodEnded   = "flood_ended"   // it fell below again
)

// Event is one recorded change. Alarm is the alarm as it was after the
// operation that produced the event (an operation that produces several
// events, such as an activation that starts chattering, gives each the same
// snapshot). Flood events carry only Alarm.Tenant.
type Event struct {
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Kind  string    `json:"kind"`
	Alarm Alarm     `json:"alarm"`
	// Actor is who caused the event: the source for raised, updated and
	// cleared; the operator for acked, shelved and unshelved; "system" for
	// what Sweep does and for flood events.
	Actor string `json:"actor,omitempty"`
}

// IsID reports whether s is an alarm's id (24 lowercase hex digits), as
// opposed to a note in its place such as "would raise chatter".
func IsID(s string) bool {
	if len(s) != 24 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Detail says what an event changed: the severity and message (cut to
// maxMessage bytes, at a rune) for raised and updated, the note for
// acked, the expiry and reason for shelved, the reason for suppressed.
func (ev Event) Detail(maxMessage int) string {
	a := ev.Alarm
	switch ev.Kind {
	case KindRaised, KindUpdated:
		msg := a.Message
		if len(msg) > maxMessage {
			n := maxMessage
			for n > 0 && !utf8.RuneStart(msg[n]) {
				n--
			}
			msg = msg[:n] + "…"
		}
		return string(a.Severity) + ": " + msg
	case KindAcked:
		return a.AckNote
	case KindShelved:
		if a.Shelved != nil {
			return "until " + a.Shelved.Until.UTC().Format("2006-01-02 15:04:05 UTC") + ": " + a.Shelved.Reason
		}
	case KindSuppressed:
		return a.Suppressed
	}
	return ""
}

// ChatterPolicy defines chattering: an alarm activated Count times within
// Window is suppressed ("chattering") until it has had no activation for
// Quiet. A negative Count turns detection off.
type ChatterPolicy struct {
	Count         int
	Window, Quiet time.Duration
}

// FloodPolicy defines an alarm flood: Count or more annunciated (neither
// shelved nor suppressed) activations of one tenant's alarms within Window.
// A negative Count turns detection off.
type FloodPolicy struct {
	Count  int
	Window time.Duration
}

// Defaults of the policies. ISA-18.2 calls more than 10 alarms per 10
// minutes per operator a flood.
const (
	DefaultChatterCount  = 5
	DefaultChatterWindow = 10 * time.Minute
	DefaultChatterQuiet  = 10 * time.Minute
	DefaultFloodCount    = 10
	DefaultFloodWindow   = 10 * time.Minute
)

// Limits.
const (
	MaxShelve       = 7 * 24 * time.Hour // the longest an alarm may be shelved
	MaxMessageBytes = 1024               // Alarm.Message, ack notes, shelve reasons
	MaxDataBytes    = 8192               // Alarm.Data as compact JSON
	MaxActorBytes   = 256                // the actor of Ack, Shelve and Unshelve
	// MaxHistory is how many events are kept per alarm (and flood events
	// per tenant); older ones are deleted as new ones come.
	MaxHistory = 200
	// MaxList bounds List, History and EventsAfter; a limit ≤ 0 or above
	// it means MaxList.
	MaxList = 1000
)

// Options configure a Service.
type Options struct {
	DB *store.DB
	// Audit receives "alarm.ack", "alarm.shelve" and "alarm.unshelve"
	// entries (subject: the alarm's id) in the transaction of the change.
	Audit *audit.Log
	// OnAudit, when set, is called after a commit that appended an audit entry.
	OnAudit func()
	// Now is the clock (tests move it).
	Now    func() time.Time
	Logger *slog.Logger
	// OnEvent, when set, receives every event after its commit, in Seq
	// order, never under a lock of this package. It runs in the goroutine
	// of a writer, not necessarily the one that made the change (while one
	// writer delivers, the events of others queue behind), so it must not
	// block long. If it panics, the event it panicked on is lost and the
	// panic goes on to that writer.
	OnEvent func(Event)
	// Chatter and Flood: zero fields take the defaults.
	Chatter ChatterPolicy
	Flood   FloodPolicy
	// Registerer, when set, gets the service's metrics.
	Registerer prometheus.Registerer
}

// Service keeps alarms.
type Service struct {
	opts Options
	db   *store.DB
	log  *slog.Logger
	m    *metrics

	floodMu  sync.Mutex
	flooding map[string]bool // tenant → a flood is on

	dispatch dispatcher
}

// migrations are the package's schema steps in the metadata database,
// oldest first (store.Migrate); append, never edit a released step.
var migrations = []store.Migration{{Name: "alarms and alarm events", Statements: schemaV1}}

// schemaV1: times are Unix ms, 0 for none. alarms.state holds the ISA-18.2
// state (Active and Acked follow from it); sev_rank orders severities;
// activations is a JSON array of the latest activation times (chattering).
// alarm_events.alarm is the Alarm snapshot as JSON; alarm_id is "" for flood
// events; notify marks raised events of alarms neither shelved nor
// suppressed (what counts towards a flood).
var schemaV1 = []string{
	`CREATE TABLE alarms (
		id             TEXT PRIMARY KEY,
		tenant         TEXT NOT NULL,
		object         TEXT NOT NULL,
		source         TEXT NOT NULL,
		name           TEXT NOT NULL,
		severity       TEXT NOT NULL,
		sev_rank       INTEGER NOT NULL,
		message        TEXT NOT NULL DEFAULT '',
		state          TEXT NOT NULL,
		shelved_by     TEXT NOT NULL DEFAULT '',
		shelved_reason TEXT NOT NULL DEFAULT '',
		shelved_until  INTEGER NOT NULL DEFAULT 0,
		suppressed     TEXT NOT NULL DEFAULT '',
		origin         TEXT NOT NULL DEFAULT '',
		origin_version INTEGER NOT NULL DEFAULT 0,
		raised_at      INTEGER NOT NULL,
		updated_at     INTEGER NOT NULL,
		cleared_at     INTEGER NOT NULL DEFAULT 0,
		acked_at       INTEGER NOT NULL DEFAULT 0,
		acked_by       TEXT NOT NULL DEFAULT '',
		ack_note       TEXT NOT NULL DEFAULT '',
		count          INTEGER NOT NULL,
		version        INTEGER NOT NULL,
		data           TEXT NOT NULL DEFAULT '',
		activations    TEXT NOT NULL DEFAULT '[]',
		UNIQUE (source, object, name)
	)`,
	`CREATE INDEX alarms_by_tenant ON alarms(tenant, sev_rank, raised_at)`,
	`CREATE INDEX alarms_by_object ON alarms(object)`,
	`CREATE TABLE alarm_events (
		seq      INTEGER PRIMARY KEY AUTOINCREMENT,
		alarm_id TEXT NOT NULL,
		tenant   TEXT NOT NULL,
		time     INTEGER NOT NULL,
		kind     TEXT NOT NULL,
		actor    TEXT NOT NULL DEFAULT '',
		notify   INTEGER NOT NULL DEFAULT 0,
		alarm    TEXT NOT NULL
	)`,
	`CREATE INDEX alarm_events_by_alarm ON alarm_events(alarm_id, seq)`,
	`CREATE INDEX alarm_events_by_kind ON alarm_events(tenant, kind, time)`,
}

// Open checks the options, brings the alarm tables to their schema version,
// loads which tenants are in a flood, and returns the service.
func Open(ctx context.Context, o Options) (*Service, error) {
	if o.DB == nil || o.Audit == nil {
		return nil, errors.New("alarm: DB and Audit are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &o.Chatter
	if c.Count == 0 {
		c.Count = DefaultChatterCount
	}
	if c.Window == 0 {
		c.Window = DefaultChatterWindow
	}
	if c.Quiet == 0 {
		c.Quiet = DefaultChatterQuiet
	}
	if c.Count == 1 || c.Count > MaxHistory || c.Window < 0 || c.Quiet < 0 {
		return nil, fmt.Errorf("alarm: chatter policy %+v: Count must be 2 to %d (or negative: off), Window and Quiet positive", *c, MaxHistory)
	}
	f := &o.Flood
	if f.Count == 0 {
		f.Count = DefaultFloodCount
	}
	if f.Window == 0 {
		f.Window = DefaultFloodWindow
	}
	// A flood is counted from the kept raised events: at most MaxHistory
	// per alarm, so a Count above it could be missed by one alarm alone.
	if f.Count > MaxHistory || f.Window < 0 {
		return nil, fmt.Errorf("alarm: flood policy %+v: Count must be 1 to %d (or negative: off), Window positive", *f, MaxHistory)
	}
	if err := o.DB.Migrate(ctx, "alarm", migrations); err != nil {
		return nil, fmt.Errorf("alarm: %w", err)
	}
	flooding, err := floodStates(ctx, o.DB.R)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(o.Registerer, o.DB.R, o.Now)
	if err != nil {
		return nil, err
	}
	return &Service{opts: o, db: o.DB, log: o.Logger.With("component", "alarm"), m: m, flooding: flooding}, nil
}

func (s *Service) now() time.Time { return s.opts.Now().UTC().Truncate(time.Millisecond) }

// Flooding reports whether the tenant's alarms are in a flood now.
func (s *Service) Flooding(tenant string) bool {
	s.floodMu.Lock()
	defer s.floodMu.Unlock()
	return s.flooding[tenant]
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// floodStates reads which tenants are in a flood: those whose latest flood
// event is flood_started.
func floodStates(ctx context.Context, q querier) (map[string]bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT tenant, kind FROM alarm_events WHERE alarm_id = '' ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("alarm: read floods: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var tenant, kind string
		if err := rows.Scan(&tenant, &kind); err != nil {
			return nil, fmt.Errorf("alarm: read floods: %w", err)
		}
		if kind == KindFloodStarted {
			out[tenant] = true
		} else {
			delete(out, tenant)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alarm: read floods: %w", err)
	}
	return out, nil
}

// Package presence keeps every device's online/offline state and last-seen
// time, from the sessions the protocol adapters open and close and from the
// traffic they accept, and records each session's start and end with its
// reason.
//
// A device is online while it holds a session on a connection-oriented
// protocol (MQTT), or while connectionless traffic (HTTP, CoAP) keeps
// arriving: such a device goes offline, reason "idle", once Options.Idle
// passes without any. Adapters report in memory and never wait for the
// database (Connected, Disconnected, Seen are called on their hot paths);
// the service writes the states and events every Options.FlushEvery in one
// transaction, and tells Options.OnEvent so that a forwarder publishes the
// events (in order, by their sequence) for integrations. A process that
// stops, cleanly or not, leaves devices it saw online; the next start ends
// those sessions with reason "restart", since no session outlives its hub.
//
// Every session start and accepted message is an uplink. For devices whose
// link sleeps between uplinks (PSM), an uplink that comes more than
// Options.WakeGap after the one before it is a wake: Uplinks tells the
// latest uplink and the one before the latest wake (their distance is the
// device's reporting interval), and Options.OnWake hears of every wake, so
// that what waited for the device goes out while it is awake.
package presence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/store"
)

// Reasons a session ended.
const (
	ReasonClean         = "clean"             // the device ended it (MQTT DISCONNECT)
	ReasonKeepAlive     = "keepalive_timeout" // nothing within the keep-alive
	ReasonNetwork       = "network"           // the connection broke (reset, EOF)
	ReasonRevoked       = "revoked"           // its identity changed: revoked, quarantined, a key revoked or rotated
	ReasonRateLimited   = "rate_limited"      // over a rate limit
	ReasonTakenOver     = "taken_over"        // a new connection with the same identity replaced it
	ReasonProtocolError = "protocol_error"    // malformed or forbidden traffic
	ReasonRefused       = "refused"           // the hub could not take its data (full disk, store unavailable)
	ReasonShutdown      = "shutdown"          // the hub stopped
	ReasonIdle          = "idle"              // connectionless: no traffic within Options.Idle
	ReasonRestart       = "restart"           // the hub restarted while the device was online
)

// Event kinds.
const (
	Connected    = "connected"
	Disconnected = "disconnected"
)

// State is a device's presence.
type State struct {
	Code   string `json:"code"`
	Tenant string `json:"tenant"`
	Online bool   `json:"online"`
	// Protocols are those it is online over now.
	Protocols []string `json:"protocols,omitempty"`
	// Since is when it last went online or offline.
	Since time.Time `json:"since"`
	// LastSeen is its last session start or accepted message.
	LastSeen time.Time `json:"last_seen"`
	// LastReason is why its last session ended ("" if none ended yet).
	LastReason string `json:"last_reason,omitempty"`
	// Remote is the address of its last connection, when the protocol
	// has one.
	Remote string `json:"remote,omitempty"`
}

// Event is a session's start or end.
type Event struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Code     string    `json:"code"`
	Tenant   string    `json:"tenant"`
	Kind     string    `json:"kind"` // Connected, Disconnected
	Protocol string    `json:"protocol"`
	Reason   string    `json:"reason,omitempty"` // for Disconnected
	Remote   string    `json:"remote,omitempty"`
	// Online is the device's state after the event: a device with
	// sessions on two protocols stays online when one ends.
	Online bool `json:"online"`
}

// Options configure a Service.
type Options struct {
	DB      *store.DB
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// Idle is how long a device seen only by connectionless traffic stays
	// online without more; default 5 minutes (CoAP's session idle).
	Idle time.Duration
	// FlushEvery is how often states and events are written; default 1 s.
	FlushEvery time.Duration
	// KeepEvents is how long events are kept; default 30 days.
	KeepEvents time.Duration
	// OnEvent is told, without blocking, that events were committed.
	OnEvent func()
	// WakeGap: an uplink more than this after the device's previous one
	// is a wake (0: wakes are not tracked). OnWake, when set, is told of
	// each, on the adapter's goroutine and under no lock: it must not block.
	WakeGap time.Duration
	OnWake  func(code string)
}

// Defaults for Options.
const (
	DefaultIdle       = 5 * time.Minute
	DefaultFlushEvery = time.Second
	DefaultKeepEvents = 30 * 24 * time.Hour
)

// connectionless protocols have no sessions: traffic is presence. An
// entry keeps the last traffic of each in a slot of its own.
var connectionless = [...]string{"http", "coap"}

// slot is a connectionless protocol's index in entry.traffic, -1 for one
// with sessions.
func slot(protocol string) int {
	for i, p := range connectionless {
		if p == protocol {
			return i
		}
	}
	return -1
}

// Service is the presence of every device.
type Service struct {
	o   Options
	db  *store.DB
	log *slog.Logger

	// mu guards the map and each entry's fields but the atomics; fast
	// holds the same entries for Seen, which looks a device up and stores
	// its times without a lock: accepting a message touches only its
	// device's entry, never a line every core shares.
	mu      sync.RWMutex
	devices map[string]*entry
	fast    sync.Map // code → *entry
	pending []Event  // not yet written
	dirty   map[string]bool

	online *prometheus.GaugeVec   // devices online, by tenant and protocol
	ended  *prometheus.CounterVec // sessions ended, by protocol and reason

	cancel context.CancelFunc
	done   chan struct{}
}

// entry is a device's state in memory.
type entry struct {
	tenant   string
	sessions map[string]int // open sessions by protocol
	// traffic is the last connectionless traffic by slot, ms; 0: none
	// within Idle. Seen moves a time on with a compare-and-swap, so that
	// an expiry in between sends it to the locked path.
	traffic [len(connectionless)]atomic.Int64
	seen    atomic.Int64 // last seen, ms
	prev    atomic.Int64 // the uplink before the latest wake, ms; 0: none known
	written int64        // seen as last written
	since   time.Time
	reason  string
	remote  string
	online  bool
	counted []string // the protocols the online gauges count it under
}

func (e *entry) protocols() []string {
	var out []string
	for p, n := range e.sessions {
		if n > 0 {
			out = append(out, p)
		}
	}
	for i, p := range connectionless {
		if e.traffic[i].Load() != 0 && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

var migrations = []store.Migration{{
	Name: "presence states and events",
	Statements: []string{
		`CREATE TABLE presence (
			code        TEXT PRIMARY KEY,
			tenant      TEXT NOT NULL,
			online      INTEGER NOT NULL,
			protocols   TEXT NOT NULL DEFAULT '',
			since       INTEGER NOT NULL,
			last_seen   INTEGER NOT NULL,
			last_reason TEXT NOT NULL DEFAULT '',
			remote      TEXT NOT NULL DEFAULT ''
		)`,
		`CREATE INDEX presence_tenant ON presence (tenant, online)`,
		`CREATE TABLE presence_events (
			seq      INTEGER PRIMARY KEY,
			time     INTEGER NOT NULL,
			code     TEXT NOT NULL,
			tenant   TEXT NOT NULL,
			kind     TEXT NOT NULL,
			protocol TEXT NOT NULL,
			reason   TEXT NOT NULL DEFAULT '',
			remote   TEXT NOT NULL DEFAULT '',
			online   INTEGER NOT NULL
		)`,
		`CREATE INDEX presence_events_code ON presence_events (code, seq)`,
		`CREATE INDEX presence_events_tenant ON presence_events (tenant, seq)`,
	},
}}

// Open migrates the presence tables and ends the sessions a previous run
// left open (reason "restart").
func Open(ctx context.Context, o Options) (*Service, error) {
	if o.DB == nil {
		return nil, errors.New("presence: DB is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Idle <= 0 {
		o.Idle = DefaultIdle
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultFlushEvery
	}
	if o.KeepEvents <= 0 {
		o.KeepEvents = DefaultKeepEvents
	}
	if err := o.DB.Migrate(ctx, "presence", migrations); err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	s := &Service{
		o: o, db: o.DB, log: o.Logger.With("component", "presence"),
		devices: map[string]*entry{}, dirty: map[string]bool{},
		online: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wanwu_devices_online", Help: "Devices online, by tenant and by the protocol they are online over.",
		}, []string{"tenant", "protocol"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_device_sessions_ended_total", Help: "Device sessions ended, by protocol and reason.",
		}, []string{"protocol", "reason"}),
	}
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{s.online, s.ended} {
			if err := o.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("presence: metrics: %w", err)
			}
		}
	}
	if err := s.endStale(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// endStale ends, with reason "restart", the sessions of devices that the
// database says are online: none survived the previous run.
func (s *Service) endStale(ctx context.Context) error {
	rows, err := s.db.R.QueryContext(ctx, `SELECT code, tenant, protocols, remote, last_seen FROM presence WHERE online = 1`)
	if err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	defer rows.Close()
	now := s.o.Now()
	for rows.Next() {
		var code, tenant, protocols, remote string
		var seen int64
		if err := rows.Scan(&code, &tenant, &protocols, &remote, &seen); err != nil {
			return fmt.Errorf("presence: %w", err)
		}
		e := s.entry(code, tenant)
		e.since, e.reason, e.remote = now, ReasonRestart, remote
		e.seen.Store(seen)
		s.dirty[code] = true
		for _, p := range strings.Split(protocols, ",") {
			if p != "" {
				s.pending = append(s.pending, Event{Time: now, Code: code, Tenant: tenant, Kind: Disconnected, Protocol: p, Reason: ReasonRestart})
				s.ended.WithLabelValues(p, ReasonRestart).Inc()
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	rows.Close()
	return s.flush(ctx)
}

// Start starts the goroutine that writes states and events and ends idle
// connectionless presence.
func (s *Service) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.o.FlushEvery)
		defer t.Stop()
		prune := time.NewTicker(time.Hour)
		defer prune.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.expireIdle()
				if err := s.flush(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("presence not written; retrying", "err", err)
				}
			case <-prune.C:
				if err := s.prune(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("old presence events not pruned", "err", err)
				}
			}
		}
	}()
}

// Shutdown writes what is pending and stops. Sessions still open stay
// online in the database: the next start ends them ("restart"); a hub that
// shuts down cleanly has ended them first through its adapters.
func (s *Service) Shutdown(ctx context.Context) error {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	return s.flush(ctx)
}

// Connected records a session a device opened over protocol.
func (s *Service) Connected(code, tenant, protocol, remote string) {
	now := s.o.Now()
	s.mu.Lock()
	e := s.entry(code, tenant)
	e.sessions[protocol]++
	woke := s.touch(e, now.UnixMilli())
	e.remote = remote
	s.pending = append(s.pending, Event{Time: now, Code: code, Tenant: tenant, Kind: Connected, Protocol: protocol, Remote: remote, Online: true})
	s.changed(code, e, now)
	s.mu.Unlock()
	s.woke(code, woke)
}

// touch records an uplink at t (ms) and reports whether it is a wake.
func (s *Service) touch(e *entry, t int64) bool {
	old := e.seen.Swap(t)
	if s.o.WakeGap <= 0 || t-old <= s.o.WakeGap.Milliseconds() {
		return false
	}
	e.prev.Store(old)
	return true
}

// woke tells OnWake of a wake.
func (s *Service) woke(code string, woke bool) {
	if woke && s.o.OnWake != nil {
		s.o.OnWake(code)
	}
}

// Disconnected records the end of a session Connected recorded, and why.
func (s *Service) Disconnected(code, tenant, protocol, reason string) {
	now := s.o.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entry(code, tenant)
	if e.sessions[protocol] == 0 {
		return // its start was not recorded (a refused connection)
	}
	e.sessions[protocol]--
	e.reason = reason
	s.ended.WithLabelValues(protocol, reason).Inc()
	s.changed(code, e, now)
	s.pending = append(s.pending, Event{Time: now, Code: code, Tenant: tenant, Kind: Disconnected, Protocol: protocol, Reason: reason, Online: e.online})
}

// Seen records traffic a device sent over protocol (a message accepted):
// its last-seen time and, for connectionless protocols, its presence. For
// a device already present it takes no lock.
func (s *Service) Seen(code, tenant, protocol string) {
	now := s.o.Now()
	t := now.UnixMilli()
	i := slot(protocol)
	if v, ok := s.fast.Load(code); ok {
		e := v.(*entry)
		if i < 0 {
			s.woke(code, s.touch(e, t))
			return
		}
		if last := e.traffic[i].Load(); last != 0 && e.traffic[i].CompareAndSwap(last, t) {
			s.woke(code, s.touch(e, t))
			return
		}
	}
	s.mu.Lock()
	e := s.entry(code, tenant)
	woke := s.touch(e, t)
	s.dirty[code] = true
	switch {
	case i < 0:
	case e.traffic[i].Load() != 0:
		e.traffic[i].Store(t)
	default:
		e.traffic[i].Store(t)
		s.pending = append(s.pending, Event{Time: now, Code: code, Tenant: tenant, Kind: Connected, Protocol: protocol, Online: true})
		s.changed(code, e, now)
	}
	s.mu.Unlock()
	s.woke(code, woke)
}

// Uplinks returns when a device's latest uplink came and when the uplink
// before its latest wake came (zero when not known: wakes are tracked
// from the hub's start). A device this run has not heard from has its
// last-seen time from the database.
func (s *Service) Uplinks(ctx context.Context, code string) (last, prev time.Time, err error) {
	if v, ok := s.fast.Load(code); ok {
		e := v.(*entry)
		return fromMS(e.seen.Load()), fromMS(e.prev.Load()), nil
	}
	var seen int64
	err = s.db.R.QueryRowContext(ctx, `SELECT last_seen FROM presence WHERE code = ?`, code).Scan(&seen)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("presence: %w", err)
	}
	return fromMS(seen), time.Time{}, nil
}

// OnlineCount is how many devices are online now.
func (s *Service) OnlineCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.devices {
		if e.online {
			n++
		}
	}
	return n
}

// OnlineByTenant is how many devices are online now in each tenant that
// has any, from memory, like OnlineCount: a device online over two
// protocols counts once (the wanwu_devices_online gauge counts it per
// protocol).
func (s *Service) OnlineByTenant() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string]int{}
	for _, e := range s.devices {
		if e.online {
			out[e.tenant]++
		}
	}
	return out
}

// expireIdle ends connectionless presence without traffic for Idle.
func (s *Service) expireIdle() {
	now := s.o.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for code, e := range s.devices {
		for i, p := range connectionless {
			last := e.traffic[i].Load()
			if last == 0 || now.Sub(time.UnixMilli(last)) < s.o.Idle || !e.traffic[i].CompareAndSwap(last, 0) {
				continue // present, recent, or just seen again
			}
			e.reason = ReasonIdle
			s.ended.WithLabelValues(p, ReasonIdle).Inc()
			s.changed(code, e, now)
			s.pending = append(s.pending, Event{Time: now, Code: code, Tenant: e.tenant, Kind: Disconnected, Protocol: p, Reason: ReasonIdle, Online: e.online})
		}
	}
}

func (s *Service) entry(code, tenant string) *entry {
	e := s.devices[code]
	if e == nil {
		e = &entry{tenant: tenant}
		s.devices[code] = e
	}
	if e.sessions == nil {
		e.sessions = map[string]int{}
		s.fast.Store(code, e)
	}
	return e
}

// changed recomputes a device's online state after its sessions or
// traffic changed, and moves it between the online gauges.
func (s *Service) changed(code string, e *entry, now time.Time) {
	s.dirty[code] = true
	for p, n := range e.sessions {
		if n == 0 {
			delete(e.sessions, p)
		}
	}
	online := len(e.sessions) > 0
	for i := range e.traffic {
		online = online || e.traffic[i].Load() != 0
	}
	if online != e.online {
		e.online, e.since = online, now
	}
	protocols := e.protocols()
	for _, p := range e.counted {
		if !slices.Contains(protocols, p) {
			s.online.WithLabelValues(e.tenant, p).Dec()
		}
	}
	for _, p := range protocols {
		if !slices.Contains(e.counted, p) {
			s.online.WithLabelValues(e.tenant, p).Inc()
		}
	}
	e.counted = protocols
}

// flush writes the changed states and pending events in one transaction.
func (s *Service) flush(ctx context.Context) error {
	s.mu.Lock()
	for code, e := range s.devices {
		if e.seen.Load() != e.written {
			s.dirty[code] = true
		}
	}
	if len(s.dirty) == 0 && len(s.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	type row struct {
		code string
		st   State
	}
	rows := make([]row, 0, len(s.dirty))
	for code := range s.dirty {
		e := s.devices[code]
		seen := e.seen.Load()
		e.written = seen
		rows = append(rows, row{code, State{
			Tenant: e.tenant, Online: e.online, Protocols: e.protocols(), Since: e.since,
			LastSeen: fromMS(seen), LastReason: e.reason, Remote: e.remote,
		}})
	}
	events := s.pending
	s.dirty, s.pending = map[string]bool{}, nil
	s.mu.Unlock()
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, r := range rows {
			if _, err := tx.ExecContext(ctx, `INSERT INTO presence (code, tenant, online, protocols, since, last_seen, last_reason, remote)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (code) DO UPDATE SET tenant = excluded.tenant, online = excluded.online, protocols = excluded.protocols,
					since = excluded.since, last_seen = excluded.last_seen, last_reason = excluded.last_reason, remote = excluded.remote`,
				r.code, r.st.Tenant, r.st.Online, strings.Join(r.st.Protocols, ","), ms(r.st.Since), ms(r.st.LastSeen), r.st.LastReason, r.st.Remote); err != nil {
				return err
			}
		}
		for _, e := range events {
			if _, err := tx.ExecContext(ctx, `INSERT INTO presence_events (time, code, tenant, kind, protocol, reason, remote, online)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, ms(e.Time), e.Code, e.Tenant, e.Kind, e.Protocol, e.Reason, e.Remote, e.Online); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Keep them for the next flush: a state newer than these rows
		// marked its device dirty again, and events stay in order.
		s.mu.Lock()
		for _, r := range rows {
			s.dirty[r.code] = true
		}
		s.pending = append(events, s.pending...)
		s.mu.Unlock()
		return fmt.Errorf("presence: write: %w", err)
	}
	if len(events) > 0 && s.o.OnEvent != nil {
		s.o.OnEvent()
	}
	return nil
}

// prune deletes events older than KeepEvents.
func (s *Service) prune(ctx context.Context) error {
	_, err := s.db.W.ExecContext(ctx, `DELETE FROM presence_events WHERE time < ?`, ms(s.o.Now().Add(-s.o.KeepEvents)))
	return err
}

// Get returns a device's presence; a device never seen is offline, with
// zero times.
func (s *Service) Get(ctx context.Context, code string) (State, error) {
	states, err := s.queryStates(ctx, `SELECT `+stateColumns+` FROM presence WHERE code = ?`, code)
	if err != nil {
		return State{}, err
	}
	st := State{Code: code}
	if len(states) == 1 {
		st = states[0]
	}
	s.fresh(code, &st)
	return st, nil
}

// stateColumns are the presence columns queryStates reads.
const stateColumns = `code, tenant, online, protocols, since, last_seen, last_reason, remote`

// queryStates runs a query of stateColumns.
func (s *Service) queryStates(ctx context.Context, q string, args ...any) ([]State, error) {
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	defer rows.Close()
	var out []State
	for rows.Next() {
		var st State
		var protocols string
		var since, seen int64
		if err := rows.Scan(&st.Code, &st.Tenant, &st.Online, &protocols, &since, &seen, &st.LastReason, &st.Remote); err != nil {
			return nil, fmt.Errorf("presence: %w", err)
		}
		st.Since, st.LastSeen = fromMS(since), fromMS(seen)
		if protocols != "" {
			st.Protocols = strings.Split(protocols, ",")
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	return out, nil
}

// fresh overlays what memory holds that the last flush did not write yet.
func (s *Service) fresh(code string, st *State) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.devices[code]
	if e == nil || e.sessions == nil {
		return
	}
	st.Code, st.Tenant, st.Online, st.Protocols, st.Since = code, e.tenant, e.online, e.protocols(), e.since
	st.LastSeen, st.LastReason, st.Remote = fromMS(e.seen.Load()), e.reason, e.remote
}

// Filter selects states or events; zero fields select all.
type Filter struct {
	Tenant string
	Device string    // events only
	Online *bool     // states only
	Since  time.Time // events only
	Limit  int       // default 100, at most 1000
}

func (f Filter) limit() int {
	if f.Limit <= 0 {
		return 100
	}
	return min(f.Limit, 1000)
}

// List returns device states, by code.
func (s *Service) List(ctx context.Context, f Filter) ([]State, error) {
	q := `SELECT ` + stateColumns + ` FROM presence WHERE 1 = 1`
	var args []any
	if f.Tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, f.Tenant)
	}
	if f.Online != nil {
		q += ` AND online = ?`
		args = append(args, *f.Online)
	}
	q += ` ORDER BY code LIMIT ?`
	args = append(args, f.limit())
	states, err := s.queryStates(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out := []State{}
	for _, st := range states {
		s.fresh(st.Code, &st)
		if f.Online != nil && st.Online != *f.Online {
			continue // changed since the last flush
		}
		out = append(out, st)
	}
	return out, nil
}

// Events returns the newest events the filter selects, oldest first.
func (s *Service) Events(ctx context.Context, f Filter) ([]Event, error) {
	q := `SELECT seq, time, code, tenant, kind, protocol, reason, remote, online FROM presence_events WHERE time >= ?`
	args := []any{ms(f.Since)}
	if f.Tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, f.Tenant)
	}
	if f.Device != "" {
		q += ` AND code = ?`
		args = append(args, f.Device)
	}
	q += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, f.limit())
	out, err := s.query(ctx, q, args...)
	slices.Reverse(out)
	return out, err
}

// LastEventSeq is the sequence of the newest event written (0: none).
func (s *Service) LastEventSeq(ctx context.Context) (uint64, error) {
	var seq sql.NullInt64
	if err := s.db.R.QueryRowContext(ctx, `SELECT max(seq) FROM presence_events`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("presence: %w", err)
	}
	return uint64(seq.Int64), nil
}

// EventsAfter returns up to limit events after sequence after and not
// older than since, in order: the forwarder's read.
func (s *Service) EventsAfter(ctx context.Context, after uint64, since time.Time, limit int) ([]Event, error) {
	return s.query(ctx, `SELECT seq, time, code, tenant, kind, protocol, reason, remote, online FROM presence_events
		WHERE seq > ? AND time >= ? ORDER BY seq LIMIT ?`, int64(after), ms(since), limit)
}

func (s *Service) query(ctx context.Context, q string, args ...any) ([]Event, error) {
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("presence: events: %w", err)
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var e Event
		var seq, t int64
		if err := rows.Scan(&seq, &t, &e.Code, &e.Tenant, &e.Kind, &e.Protocol, &e.Reason, &e.Remote, &e.Online); err != nil {
			return nil, fmt.Errorf("presence: events: %w", err)
		}
		e.Seq, e.Time = uint64(seq), fromMS(t)
		out = append(out, e)
	}
	return out, rows.Err()
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

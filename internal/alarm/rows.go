package alarm

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// row is an alarm as stored: the Alarm plus the chattering bookkeeping.
type row struct {
	Alarm
	// shelf is the stored shelving even when it has expired (Alarm.Shelved
	// is nil then): Sweep records the expiry.
	shelf *Shelve
	// activations are the latest activation times, oldest first, at most
	// Chatter.Count of them.
	activations []int64
}

const selectAlarm = `SELECT id, tenant, object, source, name, severity, message, state,
	shelved_by, shelved_reason, shelved_until, suppressed, origin, origin_version,
	raised_at, updated_at, cleared_at, acked_at, acked_by, ack_note, count, version, data, activations
	FROM alarms`

type scanner interface{ Scan(dest ...any) error }

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func msPtr(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := msTime(ms)
	return &t
}

func ptrMs(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.UnixMilli()
}

// scanRow reads one alarm; a shelving that ended by now is left out of
// Alarm.Shelved.
func scanRow(r scanner, now time.Time) (*row, error) {
	var (
		a                                          row
		shelvedBy, shelvedReason, data, acts       string
		shelvedUntil, raised, updated, clrd, acked int64
	)
	err := r.Scan(&a.ID, &a.Tenant, &a.Object, &a.Source, &a.Name, &a.Severity, &a.Message, &a.State,
		&shelvedBy, &shelvedReason, &shelvedUntil, &a.Suppressed, &a.Origin, &a.OriginVersion,
		&raised, &updated, &clrd, &acked, &a.AckedBy, &a.AckNote, &a.Count, &a.Version, &data, &acts)
	if err != nil {
		return nil, err
	}
	a.Active, a.Acked, _ = a.State.flags()
	if shelvedUntil != 0 {
		a.shelf = &Shelve{By: shelvedBy, Reason: shelvedReason, Until: msTime(shelvedUntil)}
		if a.shelf.Until.After(now) {
			sh := *a.shelf
			a.Shelved = &sh
		}
	}
	a.RaisedAt, a.UpdatedAt = msTime(raised), msTime(updated)
	a.ClearedAt, a.AckedAt = msPtr(clrd), msPtr(acked)
	if data != "" {
		a.Data = json.RawMessage(data)
	}
	if err := json.Unmarshal([]byte(acts), &a.activations); err != nil {
		return nil, fmt.Errorf("alarm: %s: stored activations: %w", a.ID, err)
	}
	return &a, nil
}

// load reads one alarm; ErrNotFound (wrapped, naming the id) when absent.
func load(ctx context.Context, q querier, id string, now time.Time) (*row, error) {
	a, err := scanRow(q.QueryRowContext(ctx, selectAlarm+` WHERE id = ?`, id), now)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: id %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("alarm: read %s: %w", id, err)
	}
	return a, nil
}

// loadMany reads the alarms a query selects (a WHERE clause and its args).
func loadMany(ctx context.Context, q querier, now time.Time, where string, args ...any) ([]*row, error) {
	rows, err := q.QueryContext(ctx, selectAlarm+" "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("alarm: list: %w", err)
	}
	defer rows.Close()
	var out []*row
	for rows.Next() {
		a, err := scanRow(rows, now)
		if err != nil {
			return nil, fmt.Errorf("alarm: list: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alarm: list: %w", err)
	}
	return out, nil
}

// save writes the whole row; the stored shelving is a.Shelved (an expired
// one that a.Shelved no longer shows is kept while a.shelf still has it).
func save(ctx context.Context, tx *sql.Tx, a *row) error {
	acts, err := json.Marshal(a.activations)
	if err != nil {
		return fmt.Errorf("alarm: encode %s: %w", a.ID, err)
	}
	if a.activations == nil {
		acts = []byte("[]")
	}
	shelf := a.Shelved
	if shelf == nil {
		shelf = a.shelf
	}
	var by, reason string
	var until int64
	if shelf != nil {
		by, reason, until = shelf.By, shelf.Reason, shelf.Until.UnixMilli()
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO alarms (id, tenant, object, source, name, severity, sev_rank,
			message, state, shelved_by, shelved_reason, shelved_until, suppressed, origin, origin_version,
			raised_at, updated_at, cleared_at, acked_at, acked_by, ack_note, count, version, data, activations)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET severity = excluded.severity, sev_rank = excluded.sev_rank,
			message = excluded.message, state = excluded.state, shelved_by = excluded.shelved_by,
			shelved_reason = excluded.shelved_reason, shelved_until = excluded.shelved_until,
			suppressed = excluded.suppressed, origin = excluded.origin, origin_version = excluded.origin_version,
			raised_at = excluded.raised_at, updated_at = excluded.updated_at, cleared_at = excluded.cleared_at,
			acked_at = excluded.acked_at, acked_by = excluded.acked_by, ack_note = excluded.ack_note,
			count = excluded.count, version = excluded.version, data = excluded.data,
			activations = excluded.activations`,
		a.ID, a.Tenant, a.Object, a.Source, a.Name, string(a.Severity), a.Severity.Rank(),
		a.Message, string(a.State), by, reason, until, a.Suppressed, a.Origin, a.OriginVersion,
		a.RaisedAt.UnixMilli(), a.UpdatedAt.UnixMilli(), ptrMs(a.ClearedAt), ptrMs(a.AckedAt),
		a.AckedBy, a.AckNote, a.Count, a.Version, string(a.Data), string(acts))
	if err != nil {
		return fmt.Errorf("alarm: write %s: %w", a.ID, err)
	}
	return nil
}

// snapshot returns a deep copy of the alarm, as events and callers get it.
func (a *Alarm) snapshot() Alarm {
	c := *a
	if a.Shelved != nil {
		sh := *a.Shelved
		c.Shelved = &sh
	}
	if a.ClearedAt != nil {
		t := *a.ClearedAt
		c.ClearedAt = &t
	}
	if a.AckedAt != nil {
		t := *a.AckedAt
		c.AckedAt = &t
	}
	if a.Data != nil {
		c.Data = append(json.RawMessage(nil), a.Data...)
	}
	return c
}

// Get returns an alarm by id.
func (s *Service) Get(ctx context.Context, id string) (*Alarm, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	a, err := load(ctx, s.db.R, id, s.now())
	if err != nil {
		return nil, err
	}
	return &a.Alarm, nil
}

// Filter selects alarms for List; zero fields select everything.
type Filter struct {
	Tenant, Object, Source string
	States                 []State  // any of these states
	MinSeverity            Severity // this severity or a higher one
	Shelved                *bool    // shelved now, or not
	// Attention selects the "needs attention" view: not shelved, and
	// active or not yet acknowledged (Alarm.NeedsAttention).
	Attention bool
	Limit     int // at most this many; ≤ 0 or above MaxList: MaxList
}

// List returns the alarms that match f, highest severity first, then the
// latest activation first.
func (s *Service) List(ctx context.Context, f Filter) ([]*Alarm, error) {
	now := s.now()
	var (
		conds []string
		args  []any
	)
	for _, c := range []struct{ col, v string }{{"tenant", f.Tenant}, {"object", f.Object}, {"source", f.Source}} {
		if c.v != "" {
			conds = append(conds, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	if len(f.States) > 0 {
		ph := make([]string, len(f.States))
		for i, st := range f.States {
			if _, _, ok := st.flags(); !ok {
				return nil, invalid("states", "%q is not an ISA-18.2 state", truncate(string(st)))
			}
			ph[i] = "?"
			args = append(args, string(st))
		}
		conds = append(conds, "state IN ("+strings.Join(ph, ", ")+")")
	}
	if f.MinSeverity != "" {
		if _, err := ParseSeverity(string(f.MinSeverity)); err != nil {
			return nil, err
		}
		conds = append(conds, "sev_rank >= ?")
		args = append(args, f.MinSeverity.Rank())
	}
	if f.Shelved != nil {
		if *f.Shelved {
			conds = append(conds, "shelved_until > ?")
		} else {
			conds = append(conds, "shelved_until <= ?")
		}
		args = append(args, now.UnixMilli())
	}
	if f.Attention {
		conds = append(conds, "shelved_until <= ?", "state != ?")
		args = append(args, now.UnixMilli(), string(Cleared))
	}
	where := ""
	if len(conds) > 0 {
		where = "WHERE " + strings.Join(conds, " AND ")
	}
	where += " ORDER BY sev_rank DESC, raised_at DESC, id LIMIT ?"
	args = append(args, limit(f.Limit))
	rows, err := loadMany(ctx, s.db.R, now, where, args...)
	if err != nil {
		return nil, err
	}
	out := make([]*Alarm, len(rows))
	for i, r := range rows {
		out[i] = &r.Alarm
	}
	return out, nil
}

func limit(n int) int {
	if n <= 0 || n > MaxList {
		return MaxList
	}
	return n
}

// insertEvent stores an event and returns its sequence number, then trims
// the alarm's (or, for flood events, the tenant's) history to MaxHistory.
func insertEvent(ctx context.Context, tx *sql.Tx, e *Event, notify bool) error {
	snap, err := json.Marshal(e.Alarm)
	if err != nil {
		return fmt.Errorf("alarm: encode event: %w", err)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO alarm_events (alarm_id, tenant, time, kind, actor, notify, alarm)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, e.Alarm.ID, e.Alarm.Tenant, e.Time.UnixMilli(), e.Kind, e.Actor, notify, string(snap))
	if err != nil {
		return fmt.Errorf("alarm: record %s event: %w", e.Kind, err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("alarm: record %s event: %w", e.Kind, err)
	}
	e.Seq = uint64(seq)
	_, err = tx.ExecContext(ctx, `DELETE FROM alarm_events WHERE alarm_id = ?1 AND tenant = ?2 AND seq <=
		(SELECT seq FROM alarm_events WHERE alarm_id = ?1 AND tenant = ?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3)`,
		e.Alarm.ID, e.Alarm.Tenant, MaxHistory)
	if err != nil {
		return fmt.Errorf("alarm: trim history: %w", err)
	}
	return nil
}

const selectEvent = `SELECT seq, time, kind, actor, alarm FROM alarm_events`

func scanEvents(rows *sql.Rows) ([]Event, error) {
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var (
			e    Event
			seq  int64
			ms   int64
			snap string
		)
		if err := rows.Scan(&seq, &ms, &e.Kind, &e.Actor, &snap); err != nil {
			return nil, fmt.Errorf("alarm: events: %w", err)
		}
		if err := json.Unmarshal([]byte(snap), &e.Alarm); err != nil {
			return nil, fmt.Errorf("alarm: event %d: stored alarm: %w", seq, err)
		}
		e.Seq, e.Time = uint64(seq), msTime(ms)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alarm: events: %w", err)
	}
	return out, nil
}

// History returns an alarm's latest events (at most limit, and at most
// MaxHistory are kept), oldest first. An unknown id is ErrNotFound.
func (s *Service) History(ctx context.Context, id string, limitN int) ([]Event, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT * FROM (`+selectEvent+` WHERE alarm_id = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`,
		id, limit(limitN))
	if err != nil {
		return nil, fmt.Errorf("alarm: history %s: %w", id, err)
	}
	return scanEvents(rows)
}

// EventsAfter returns the events with Seq above after, oldest first, at
// most limit: the feed a consumer follows from its last Seq. Events trimmed
// from a long history are not returned.
func (s *Service) EventsAfter(ctx context.Context, after uint64, limitN int) ([]Event, error) {
	if after > 1<<63-1 {
		return []Event{}, nil
	}
	rows, err := s.db.R.QueryContext(ctx, selectEvent+` WHERE seq > ? ORDER BY seq LIMIT ?`, int64(after), limit(limitN))
	if err != nil {
		return nil, fmt.Errorf("alarm: events: %w", err)
	}
	return scanEvents(rows)
}

// Package eventstore keeps what the time-series store cannot: device events
// with their JSON data, and non-numeric property values (strings, enums as
// their names, opaque data). It is a SQLite file beside the TSDB, written in
// batches by the ingest consumer and idempotent under redelivery: a row is
// keyed by device, name, time and content, so replaying a batch adds nothing.
package eventstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/store"
)

// Event is one device event.
type Event struct {
	Tenant   string `json:"tenant"`
	Device   string `json:"device"`
	Name     string `json:"name"`
	Time     int64  `json:"time"` // ms since epoch
	Data     []byte `json:"data,omitempty"`
	Received int64  `json:"received"`
	// Seq is the event's row in the store, increasing as events are
	// written (EventsAfter follows it).
	Seq int64 `json:"-"`
}

// Value is one non-numeric property value.
type Value struct {
	Tenant   string `json:"tenant"`
	Device   string `json:"device"`
	Property string `json:"property"`
	Time     int64  `json:"time"`
	Kind     string `json:"kind"` // "string" or "data" (base64 in JSON)
	Text     string `json:"value"`
}

// Store is the events and values database.
type Store struct{ db *store.DB }

// migrations are events.db's schema steps, oldest first (store.Migrate);
// append, never edit a released step.
var migrations = []store.Migration{
	{
		// Releases before schema versions ran these statements at every open;
		// being IF NOT EXISTS, they adopt such a database as it is.
		Name:       "events and text values",
		Statements: schemaV1,
	},
}

var schemaV1 = []string{
	`CREATE TABLE IF NOT EXISTS events (
		tenant   TEXT NOT NULL,
		device   TEXT NOT NULL,
		name     TEXT NOT NULL,
		time     INTEGER NOT NULL,
		data     BLOB NOT NULL,
		received INTEGER NOT NULL,
		UNIQUE (device, name, time, data)
	)`,
	`CREATE INDEX IF NOT EXISTS events_by_tenant_time ON events(tenant, time)`,
	`CREATE TABLE IF NOT EXISTS text_values (
		tenant   TEXT NOT NULL,
		device   TEXT NOT NULL,
		property TEXT NOT NULL,
		time     INTEGER NOT NULL,
		kind     TEXT NOT NULL,
		value    TEXT NOT NULL,
		PRIMARY KEY (device, property, time)
	)`,
}

// Open opens or creates the database at path.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := store.OpenFile(ctx, path, store.Options{})
	if err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	if err := db.Migrate(ctx, "eventstore", migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Write stores events and values in one transaction; rows already stored are skipped.
func (s *Store) Write(ctx context.Context, events []Event, values []Value) error {
	if len(events) == 0 && len(values) == 0 {
		return nil
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if len(events) > 0 {
			st, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO events(tenant, device, name, time, data, received) VALUES (?,?,?,?,?,?)`)
			if err != nil {
				return fmt.Errorf("eventstore: %w", err)
			}
			defer st.Close()
			for _, e := range events {
				data := e.Data
				if data == nil {
					data = []byte{}
				}
				if _, err := st.ExecContext(ctx, e.Tenant, e.Device, e.Name, e.Time, data, e.Received); err != nil {
					return fmt.Errorf("eventstore: insert event: %w", err)
				}
			}
		}
		if len(values) > 0 {
			st, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO text_values(tenant, device, property, time, kind, value) VALUES (?,?,?,?,?,?)`)
			if err != nil {
				return fmt.Errorf("eventstore: %w", err)
			}
			defer st.Close()
			for _, v := range values {
				if _, err := st.ExecContext(ctx, v.Tenant, v.Device, v.Property, v.Time, v.Kind, v.Text); err != nil {
					return fmt.Errorf("eventstore: insert value: %w", err)
				}
			}
		}
		return nil
	})
}

// EventFilter selects events.
type EventFilter struct {
	Tenant  string // "" = all tenants
	Devices []string
	Name    string
	Start   time.Time
	End     time.Time
	Limit   int // default 100, at most 10000
}

// Events returns events in time order (newest last).
func (s *Store) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 10000)
	var where []string
	var args []any
	if f.Tenant != "" {
		where, args = append(where, "tenant = ?"), append(args, f.Tenant)
	}
	if len(f.Devices) > 0 {
		where = append(where, "device IN ("+strings.Repeat("?,", len(f.Devices)-1)+"?)")
		for _, d := range f.Devices {
			args = append(args, d)
		}
	}
	if f.Name != "" {
		where, args = append(where, "name = ?"), append(args, f.Name)
	}
	if !f.Start.IsZero() {
		where, args = append(where, "time >= ?"), append(args, f.Start.UnixMilli())
	}
	if !f.End.IsZero() {
		where, args = append(where, "time <= ?"), append(args, f.End.UnixMilli())
	}
	q := `SELECT rowid, tenant, device, name, time, data, received FROM events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	// The newest Limit rows, returned oldest first.
	q = `SELECT * FROM (` + q + ` ORDER BY time DESC LIMIT ?) ORDER BY time`
	args = append(args, f.Limit)
	return s.queryEvents(ctx, q, args...)
}

// queryEvents runs a query of events' rowid and columns.
func (s *Store) queryEvents(ctx context.Context, q string, args ...any) ([]Event, error) {
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("eventstore: events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.Seq, &e.Tenant, &e.Device, &e.Name, &e.Time, &e.Data, &e.Received); err != nil {
			return nil, fmt.Errorf("eventstore: events: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// EventsAfter returns up to limit events written after the one with
// sequence after, in the order they were written: a reader that follows
// the store (webhooks) keeps the last Seq it took. The sequence is the
// row id, so it starts again at 1 only when retention emptied the table;
// LastSeq tells a reader that its cursor is ahead of the store.
func (s *Store) EventsAfter(ctx context.Context, after int64, limit int) ([]Event, error) {
	return s.queryEvents(ctx, `SELECT rowid, tenant, device, name, time, data, received FROM events
		WHERE rowid > ? ORDER BY rowid LIMIT ?`, after, min(max(limit, 1), 10000))
}

// LastSeq is the sequence of the newest event written (0: none).
func (s *Store) LastSeq(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	if err := s.db.R.QueryRowContext(ctx, `SELECT max(rowid) FROM events`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("eventstore: %w", err)
	}
	return seq.Int64, nil
}

// Latest returns the newest value of each non-numeric property of a device.
func (s *Store) Latest(ctx context.Context, device string) ([]Value, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT v.tenant, v.device, v.property, v.time, v.kind, v.value FROM text_values v
		JOIN (SELECT property, MAX(time) AS t FROM text_values WHERE device = ? GROUP BY property) m
		ON v.property = m.property AND v.time = m.t WHERE v.device = ? ORDER BY v.property`, device, device)
	if err != nil {
		return nil, fmt.Errorf("eventstore: latest: %w", err)
	}
	defer rows.Close()
	var out []Value
	for rows.Next() {
		var v Value
		if err := rows.Scan(&v.Tenant, &v.Device, &v.Property, &v.Time, &v.Kind, &v.Text); err != nil {
			return nil, fmt.Errorf("eventstore: latest: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Range returns the values of one property of a device between start and end, oldest first.
func (s *Store) Range(ctx context.Context, device, property string, start, end time.Time, limit int) ([]Value, error) {
	if limit <= 0 || limit > 11000 {
		limit = 11000
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT tenant, device, property, time, kind, value FROM text_values
		WHERE device = ? AND property = ? AND time >= ? AND time <= ? ORDER BY time LIMIT ?`,
		device, property, start.UnixMilli(), end.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("eventstore: range: %w", err)
	}
	defer rows.Close()
	var out []Value
	for rows.Next() {
		var v Value
		if err := rows.Scan(&v.Tenant, &v.Device, &v.Property, &v.Time, &v.Kind, &v.Text); err != nil {
			return nil, fmt.Errorf("eventstore: range: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

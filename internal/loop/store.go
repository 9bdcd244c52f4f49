package loop

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/guard"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// ErrNotFound is returned for a loop, evidence record or bypass that does
// not exist (or is not the caller's tenant's).
var ErrNotFound = errors.New("not found")

// ErrConflict is returned for a change that does not apply in the current
// state: approving a decided action, a vote given twice.
var ErrConflict = errors.New("conflict")

var migrations = []store.Migration{{
	Name: "loops",
	Statements: []string{
		`CREATE TABLE loops (
			key        TEXT PRIMARY KEY,   -- tenant:id
			tenant     TEXT NOT NULL,
			version    INTEGER NOT NULL,   -- current
			mode       TEXT NOT NULL,
			updated_at INTEGER NOT NULL
		)`,
		`CREATE TABLE loop_versions (
			key        TEXT NOT NULL,
			version    INTEGER NOT NULL,
			def        TEXT NOT NULL,      -- canonical JSON
			digest     TEXT NOT NULL,
			actor      TEXT NOT NULL,
			created_at INTEGER NOT NULL,
			PRIMARY KEY (key, version)
		)`,
		`CREATE TABLE loop_kills (
			scope  TEXT NOT NULL,         -- loop, site
			target TEXT NOT NULL,         -- loop key, or tenant:site
			tenant TEXT NOT NULL,
			reason TEXT NOT NULL,
			actor  TEXT NOT NULL,
			at     INTEGER NOT NULL,
			PRIMARY KEY (scope, target)
		)`,
		`CREATE TABLE loop_bypasses (
			id           INTEGER PRIMARY KEY,
			key          TEXT NOT NULL,
			tenant       TEXT NOT NULL,
			object       TEXT NOT NULL,   -- '' = every object of the loop
			guard        TEXT NOT NULL,
			reason       TEXT NOT NULL,
			requested_by TEXT NOT NULL,
			votes        TEXT NOT NULL DEFAULT '[]',
			state        TEXT NOT NULL,   -- pending, active, rejected, expired, ended
			duration_ms  INTEGER NOT NULL,
			created_at   INTEGER NOT NULL,
			until        INTEGER NOT NULL -- 0 until approved
		)`,
		`CREATE TABLE loop_evidence (
			id          INTEGER PRIMARY KEY,
			key         TEXT NOT NULL,
			version     INTEGER NOT NULL,
			tenant      TEXT NOT NULL,
			object      TEXT NOT NULL,
			at          INTEGER NOT NULL,
			kind        TEXT NOT NULL,    -- action, alarm, clear, error
			mode        TEXT NOT NULL,
			state       TEXT NOT NULL,
			record      TEXT NOT NULL,    -- the Evidence as JSON
			origin      TEXT NOT NULL DEFAULT '',
			origin_id   INTEGER NOT NULL DEFAULT 0,
			updated_at  INTEGER NOT NULL
		)`,
		`CREATE INDEX loop_evidence_by_loop ON loop_evidence(key, id)`,
		`CREATE INDEX loop_evidence_by_object ON loop_evidence(object, id)`,
		`CREATE INDEX loop_evidence_open ON loop_evidence(state) WHERE state IN ('awaiting_approval','sent','verifying')`,
		`CREATE UNIQUE INDEX loop_evidence_origin ON loop_evidence(origin, origin_id) WHERE origin != ''`,
	},
}}

// Store keeps loop definitions, kill switches, bypasses and evidence in
// the node's metadata database; every change an operator makes is audited
// in its transaction.
type Store struct {
	db      *store.DB
	audit   *audit.Log
	onAudit func()
	now     func() time.Time
}

// OpenStore migrates the tables and returns the store.
func OpenStore(ctx context.Context, db *store.DB, log *audit.Log, onAudit func(), now func() time.Time) (*Store, error) {
	if db == nil || log == nil {
		return nil, errors.New("loop: DB and Audit are required")
	}
	if now == nil {
		now = time.Now
	}
	if err := db.Migrate(ctx, "loop", migrations); err != nil {
		return nil, fmt.Errorf("loop: %w", err)
	}
	return &Store{db: db, audit: log, onAudit: onAudit, now: now}, nil
}

func (s *Store) tx(ctx context.Context, audited bool, fn func(tx *sql.Tx) error) error {
	if err := s.db.Tx(ctx, fn); err != nil {
		return err
	}
	if audited && s.onAudit != nil {
		s.onAudit()
	}
	return nil
}

func (s *Store) appendAudit(ctx context.Context, tx *sql.Tx, actor, tenant, kind, subject string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	_, err = s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Tenant: tenant, Kind: kind, Subject: subject, Data: b})
	return err
}

// Key is a loop's reference: tenant:id.
func Key(tenant, id string) string { return tenant + ":" + id }

// SplitKey returns a key's tenant and id.
func SplitKey(key string) (tenant, id string, ok bool) {
	return strings.Cut(key, ":")
}

// Info is a loop's current state.
type Info struct {
	Key       string      `json:"key"`
	Tenant    string      `json:"tenant"`
	Version   int         `json:"version"`
	Mode      Mode        `json:"mode"`
	Killed    string      `json:"killed,omitempty"` // the kill switch's reason when engaged
	UpdatedAt time.Time   `json:"updated_at"`
	Def       *Definition `json:"definition"`
	Digest    string      `json:"digest"`
}

// Version is one stored version of a loop.
type Version struct {
	Version   int         `json:"version"`
	Digest    string      `json:"digest"`
	Actor     string      `json:"actor"`
	CreatedAt time.Time   `json:"created_at"`
	Def       *Definition `json:"definition"`
}

// Put stores d as the loop's next version (d.Tenant set); a definition
// identical to the current version stores nothing and returns false.
func (s *Store) Put(ctx context.Context, actor string, d *Definition, digest string) (*Info, bool, error) {
	key := Key(d.Tenant, d.ID)
	now := s.now().UTC().Truncate(time.Millisecond)
	changed := false
	err := s.tx(ctx, true, func(tx *sql.Tx) error {
		var cur int
		var curDigest string
		err := tx.QueryRowContext(ctx, `SELECT l.version, v.digest FROM loops l JOIN loop_versions v ON v.key = l.key AND v.version = l.version WHERE l.key = ?`, key).Scan(&cur, &curDigest)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if curDigest == digest {
			return nil
		}
		changed = true
		d.Version = cur + 1
		def, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO loop_versions(key, version, def, digest, actor, created_at) VALUES (?,?,?,?,?,?)`, key, d.Version, string(def), digest, actor, now.UnixMilli()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO loops(key, tenant, version, mode, updated_at) VALUES (?,?,?,?,?)
			ON CONFLICT(key) DO UPDATE SET version = excluded.version, mode = excluded.mode, updated_at = excluded.updated_at`, key, d.Tenant, d.Version, string(d.Mode), now.UnixMilli()); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, actor, d.Tenant, "loop.defined", key, map[string]any{"version": d.Version, "previous": cur, "digest": digest, "mode": d.Mode, "placement": d.Placement})
	})
	if err != nil {
		return nil, false, fmt.Errorf("loop: store %s: %w", key, err)
	}
	info, err := s.Get(ctx, key, 0)
	return info, changed, err
}

// Get returns a loop at a version (0: the current one).
func (s *Store) Get(ctx context.Context, key string, version int) (*Info, error) {
	var info Info
	var def string
	var updated int64
	q := `SELECT l.key, l.tenant, v.version, l.mode, l.updated_at, v.def, v.digest, COALESCE(k.reason, '')
		FROM loops l JOIN loop_versions v ON v.key = l.key AND v.version = CASE WHEN ? > 0 THEN ? ELSE l.version END
		LEFT JOIN loop_kills k ON k.scope = 'loop' AND k.target = l.key WHERE l.key = ?`
	err := s.db.R.QueryRowContext(ctx, q, version, version, key).Scan(&info.Key, &info.Tenant, &info.Version, &info.Mode, &updated, &def, &info.Digest, &info.Killed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("loop %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("loop: get %s: %w", key, err)
	}
	info.UpdatedAt = time.UnixMilli(updated).UTC()
	if err := json.Unmarshal([]byte(def), &info.Def); err != nil {
		return nil, fmt.Errorf("loop: %s: stored definition: %w", key, err)
	}
	if version == 0 {
		info.Def.Mode = info.Mode
	}
	return &info, nil
}

// List returns the loops of a tenant ("" = all), by key.
func (s *Store) List(ctx context.Context, tenant string) ([]*Info, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT key FROM loops WHERE ? = '' OR tenant = ? ORDER BY key`, tenant, tenant)
	if err != nil {
		return nil, fmt.Errorf("loop: list: %w", err)
	}
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return nil, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]*Info, 0, len(keys))
	for _, k := range keys {
		info, err := s.Get(ctx, k, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Versions lists a loop's versions, newest first.
func (s *Store) Versions(ctx context.Context, key string) ([]Version, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT version, digest, actor, created_at, def FROM loop_versions WHERE key = ? ORDER BY version DESC`, key)
	if err != nil {
		return nil, fmt.Errorf("loop: versions: %w", err)
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		var v Version
		var at int64
		var def string
		if err := rows.Scan(&v.Version, &v.Digest, &v.Actor, &at, &def); err != nil {
			return nil, err
		}
		v.CreatedAt = time.UnixMilli(at).UTC()
		if err := json.Unmarshal([]byte(def), &v.Def); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("loop %s: %w", key, ErrNotFound)
	}
	return out, rows.Err()
}

// Kill engages a kill switch: scope "loop" (target: a loop key) or "site"
// (target: tenant:site, the first segment of objects' hierarchy paths).
func (s *Store) Kill(ctx context.Context, actor, scope, target, tenant, reason string) error {
	if scope != "loop" && scope != "site" {
		return fmt.Errorf("loop: kill scope must be loop or site, not %q: %w", scope, ErrInvalid)
	}
	if strings.TrimSpace(reason) == "" || len(reason) > 1024 {
		return fmt.Errorf("loop: a kill switch needs a reason (at most 1024 bytes): %w", ErrInvalid)
	}
	now := s.now().UTC().UnixMilli()
	return s.tx(ctx, true, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO loop_kills(scope, target, tenant, reason, actor, at) VALUES (?,?,?,?,?,?)
			ON CONFLICT(scope, target) DO UPDATE SET reason = excluded.reason, actor = excluded.actor, at = excluded.at`, scope, target, tenant, reason, actor, now); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, actor, tenant, "loop.killed", scope+":"+target, map[string]any{"scope": scope, "reason": reason})
	})
}

// Release disengages a kill switch; false when none was engaged.
func (s *Store) Release(ctx context.Context, actor, scope, target, tenant string) (bool, error) {
	released := false
	err := s.tx(ctx, true, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM loop_kills WHERE scope = ? AND target = ? AND tenant = ?`, scope, target, tenant)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		released = true
		return s.appendAudit(ctx, tx, actor, tenant, "loop.released", scope+":"+target, map[string]any{"scope": scope})
	})
	return released, err
}

// Kills returns the engaged kill switches.
func (s *Store) Kills(ctx context.Context) (guard.Kill, error) {
	k := guard.Kill{Loops: map[string]string{}, Sites: map[string]string{}}
	rows, err := s.db.R.QueryContext(ctx, `SELECT scope, target, reason FROM loop_kills`)
	if err != nil {
		return k, fmt.Errorf("loop: kills: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var scope, target, reason string
		if err := rows.Scan(&scope, &target, &reason); err != nil {
			return k, err
		}
		if scope == "loop" {
			k.Loops[target] = reason
		} else {
			k.Sites[target] = reason
		}
	}
	return k, rows.Err()
}

// Bypass is a time-boxed bypass of one guard: requested with a reason, in
// force once approved by someone other than its requester, for Duration
// from then.
type Bypass struct {
	ID          int64         `json:"id"`
	Loop        string        `json:"loop"`
	Tenant      string        `json:"tenant"`
	Object      string        `json:"object,omitempty"`
	Guard       string        `json:"guard"`
	Reason      string        `json:"reason"`
	RequestedBy string        `json:"requested_by"`
	Votes       []guard.Vote  `json:"votes"`
	State       string        `json:"state"`
	Duration    time.Duration `json:"-"`
	DurationS   float64       `json:"duration_s"`
	CreatedAt   time.Time     `json:"created_at"`
	Until       *time.Time    `json:"until,omitempty"`
}

// MaxBypass bounds a bypass's duration.
const MaxBypass = 24 * time.Hour

var guardName = regexp.MustCompile(`^(permissive|interlock|bounds|max_step|max_rate)(:[A-Za-z0-9_]+)?$|^rate_limit(:object|:actuator)?$|^cooldown$`)

// RequestBypass records a bypass request; it is not in force until
// approved.
func (s *Store) RequestBypass(ctx context.Context, actor string, b Bypass) (*Bypass, error) {
	switch {
	case !guardName.MatchString(b.Guard):
		return nil, fmt.Errorf("loop: guard %q cannot be bypassed (bypassable: permissive[:<name>], interlock[:<name>], bounds[:<value>], max_step[:<value>], max_rate[:<value>], rate_limit[:object|:actuator], cooldown; never the kill switch or the approval): %w", b.Guard, ErrInvalid)
	case strings.TrimSpace(b.Reason) == "" || len(b.Reason) > 1024:
		return nil, fmt.Errorf("loop: a bypass needs a reason (at most 1024 bytes): %w", ErrInvalid)
	case b.Duration <= 0 || b.Duration > MaxBypass:
		return nil, fmt.Errorf("loop: a bypass lasts more than 0 and at most %s: %w", MaxBypass, ErrInvalid)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	err := s.tx(ctx, true, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO loop_bypasses(key, tenant, object, guard, reason, requested_by, state, duration_ms, created_at, until) VALUES (?,?,?,?,?,?,'pending',?,?,0)`,
			b.Loop, b.Tenant, b.Object, b.Guard, b.Reason, actor, b.Duration.Milliseconds(), now.UnixMilli())
		if err != nil {
			return err
		}
		b.ID, _ = res.LastInsertId()
		return s.appendAudit(ctx, tx, actor, b.Tenant, "loop.bypass_requested", b.Loop, map[string]any{"bypass": b.ID, "guard": b.Guard, "object": b.Object, "reason": b.Reason, "duration_s": b.Duration.Seconds()})
	})
	if err != nil {
		return nil, fmt.Errorf("loop: bypass: %w", err)
	}
	return s.GetBypass(ctx, b.ID)
}

// VoteBypass approves or rejects a pending bypass. The requester cannot
// approve their own request; one approval by someone else puts it in
// force.
func (s *Store) VoteBypass(ctx context.Context, actor string, id int64, approve bool, note string) (*Bypass, error) {
	b, err := s.GetBypass(ctx, id)
	if err != nil {
		return nil, err
	}
	if b.State != "pending" {
		return nil, fmt.Errorf("loop: bypass %d is %s: %w", id, b.State, ErrConflict)
	}
	if approve && actor == b.RequestedBy {
		return nil, fmt.Errorf("loop: a bypass needs an approver other than its requester: %w", ErrConflict)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	b.Votes = append(b.Votes, guard.Vote{By: actor, Approve: approve, At: now, Note: note})
	state, until := "rejected", int64(0)
	if approve {
		state, until = "active", now.Add(b.Duration).UnixMilli()
	}
	votes, _ := json.Marshal(b.Votes)
	err = s.tx(ctx, true, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE loop_bypasses SET votes = ?, state = ?, until = ? WHERE id = ? AND state = 'pending'`, string(votes), state, until, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("bypass %d was decided meanwhile: %w", id, ErrConflict)
		}
		kind := "loop.bypass_rejected"
		if approve {
			kind = "loop.bypass_approved"
		}
		return s.appendAudit(ctx, tx, actor, b.Tenant, kind, b.Loop, map[string]any{"bypass": id, "guard": b.Guard, "object": b.Object, "note": note, "until": until})
	})
	if err != nil {
		return nil, fmt.Errorf("loop: bypass %d: %w", id, err)
	}
	return s.GetBypass(ctx, id)
}

// EndBypass ends a bypass before its time.
func (s *Store) EndBypass(ctx context.Context, actor string, id int64) (*Bypass, error) {
	b, err := s.GetBypass(ctx, id)
	if err != nil {
		return nil, err
	}
	if b.State != "pending" && b.State != "active" {
		return nil, fmt.Errorf("loop: bypass %d is %s: %w", id, b.State, ErrConflict)
	}
	err = s.tx(ctx, true, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE loop_bypasses SET state = 'ended' WHERE id = ?`, id); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, actor, b.Tenant, "loop.bypass_ended", b.Loop, map[string]any{"bypass": id, "guard": b.Guard})
	})
	if err != nil {
		return nil, fmt.Errorf("loop: bypass %d: %w", id, err)
	}
	return s.GetBypass(ctx, id)
}

const bypassCols = `id, key, tenant, object, guard, reason, requested_by, votes, state, duration_ms, created_at, until`

func scanBypass(sc interface{ Scan(...any) error }, now time.Time) (*Bypass, error) {
	var b Bypass
	var votes string
	var dur, created, until int64
	if err := sc.Scan(&b.ID, &b.Loop, &b.Tenant, &b.Object, &b.Guard, &b.Reason, &b.RequestedBy, &votes, &b.State, &dur, &created, &until); err != nil {
		return nil, err
	}
	_ = json.Unmarshal([]byte(votes), &b.Votes)
	b.Duration = time.Duration(dur) * time.Millisecond
	b.DurationS = b.Duration.Seconds()
	b.CreatedAt = time.UnixMilli(created).UTC()
	if until > 0 {
		u := time.UnixMilli(until).UTC()
		b.Until = &u
		if b.State == "active" && !now.Before(u) {
			b.State = "expired"
		}
	}
	return &b, nil
}

// GetBypass returns one bypass.
func (s *Store) GetBypass(ctx context.Context, id int64) (*Bypass, error) {
	b, err := scanBypass(s.db.R.QueryRowContext(ctx, `SELECT `+bypassCols+` FROM loop_bypasses WHERE id = ?`, id), s.now())
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("bypass %d: %w", id, ErrNotFound)
	}
	return b, err
}

// Bypasses lists the bypasses of a tenant ("" = all) that are pending or
// in force (all of them when all is true), newest first.
func (s *Store) Bypasses(ctx context.Context, tenant string, all bool) ([]*Bypass, error) {
	now := s.now()
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+bypassCols+` FROM loop_bypasses WHERE (? = '' OR tenant = ?)
		AND (? OR state = 'pending' OR (state = 'active' AND until > ?)) ORDER BY id DESC LIMIT 1000`, tenant, tenant, all, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("loop: bypasses: %w", err)
	}
	defer rows.Close()
	var out []*Bypass
	for rows.Next() {
		b, err := scanBypass(rows, now)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// activeBypasses returns the bypasses in force now, as the guards take
// them.
func (s *Store) activeBypasses(ctx context.Context) ([]guard.Bypass, error) {
	bs, err := s.Bypasses(ctx, "", false)
	if err != nil {
		return nil, err
	}
	var out []guard.Bypass
	for _, b := range bs {
		if b.State != "active" || b.Until == nil {
			continue
		}
		gb := guard.Bypass{Guard: b.Guard, Loop: b.Loop, Object: b.Object, Until: *b.Until, Reason: b.Reason, RequestedBy: b.RequestedBy}
		for _, v := range b.Votes {
			if v.Approve {
				gb.ApprovedBy = append(gb.ApprovedBy, v.By)
			}
		}
		out = append(out, gb)
	}
	return out, nil
}

func digestJSON(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// AuditEvent appends an entry about a loop that changes nothing here (a
// vote relayed to an edge).
func (s *Store) AuditEvent(ctx context.Context, actor, tenant, kind, subject string, data map[string]any) error {
	return s.tx(ctx, true, func(tx *sql.Tx) error { return s.appendAudit(ctx, tx, actor, tenant, kind, subject, data) })
}

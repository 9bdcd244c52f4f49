package rollout

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// Errors of the store (wrapped).
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: a plan for the artifact is running already, or a change
	// that does not apply to the plan's state.
	ErrConflict = errors.New("conflict")
)

// Audit entry kinds.
const (
	KindCreated = "rollout.created"
	KindForced  = "rollout.forced"
	KindStage   = "rollout.stage"
	KindState   = "rollout.state"
)

var migrations = []store.Migration{{
	Name: "rollouts",
	Statements: []string{
		`CREATE TABLE rollout_plans (
			id         TEXT PRIMARY KEY,
			tenant     TEXT NOT NULL,
			kind       TEXT NOT NULL,
			artifact   TEXT NOT NULL,
			state      TEXT NOT NULL,
			rev        INTEGER NOT NULL,
			plan       TEXT NOT NULL,    -- the Plan as JSON
			created_at INTEGER NOT NULL  -- unix ms
		)`,
		`CREATE INDEX rollout_plans_artifact ON rollout_plans(tenant, kind, artifact, created_at)`,
		`CREATE TABLE rollout_nodes (
			plan   TEXT NOT NULL,
			node   TEXT NOT NULL,
			stage  TEXT NOT NULL,
			since  INTEGER NOT NULL,  -- unix ms
			PRIMARY KEY (plan, node)
		)`,
		`CREATE TABLE rollout_records (
			id      INTEGER PRIMARY KEY AUTOINCREMENT,
			plan    TEXT NOT NULL,
			tenant  TEXT NOT NULL,
			node    TEXT NOT NULL,
			seq     INTEGER NOT NULL,  -- the record's id at its node
			at      INTEGER NOT NULL,  -- unix ms
			record  TEXT NOT NULL,     -- the Record as JSON
			UNIQUE (plan, node, seq)
		)`,
	},
}}

// Record is one stage change at a node, with the figures and gates that
// decided it: the evidence of a rollout. Seq is its id at the node that
// made it (an edge's records reach the hub with their Seq).
type Record struct {
	ID      int64        `json:"id"`
	Plan    string       `json:"plan"`
	Tenant  string       `json:"tenant"`
	Node    string       `json:"node"`
	Seq     int64        `json:"seq"`
	At      time.Time    `json:"at"`
	From    string       `json:"from,omitempty"`
	To      string       `json:"to"`
	Reason  string       `json:"reason"`
	By      string       `json:"by,omitempty"`
	Figures Figures      `json:"figures"`
	Results []GateResult `json:"results,omitempty"`
}

// NodeState is a node's stage in a plan.
type NodeState struct {
	Plan  string    `json:"plan"`
	Node  string    `json:"node"`
	Stage string    `json:"stage"`
	Since time.Time `json:"since"`
}

// Options open a Store.
type Options struct {
	DB      *store.DB
	Audit   *audit.Log
	OnAudit func()
	Now     func() time.Time
}

// Store keeps plans, the nodes' stages and the records, in the node's
// metadata database; every change is audited in its transaction.
type Store struct {
	db      *store.DB
	audit   *audit.Log
	onAudit func()
	now     func() time.Time
}

// Open migrates the tables and returns the store.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.DB == nil || o.Audit == nil {
		return nil, errors.New("rollout: DB and Audit are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := o.DB.Migrate(ctx, "rollout", migrations); err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	return &Store{db: o.DB, audit: o.Audit, onAudit: o.OnAudit, now: o.Now}, nil
}

func (s *Store) audited() {
	if s.onAudit != nil {
		s.onAudit()
	}
}

func (s *Store) appendAudit(ctx context.Context, tx *sql.Tx, actor, tenant, kind, subject string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	_, err = s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Tenant: tenant, Kind: kind, Subject: subject, Data: b})
	return err
}

// Create stores a new running plan (validated; id, state, revision and
// times set here) and audits it. A plan for the same artifact running
// already is ErrConflict: roll it back or let it finish first.
func (s *Store) Create(ctx context.Context, actor string, p *Plan) (*Plan, error) {
	if err := code.ValidNamespace(p.Tenant); err != nil {
		return nil, fmt.Errorf("%w: tenant: %w", ErrInvalid, err)
	}
	p.Defaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	p.State, p.Rev, p.CreatedBy, p.CreatedAt, p.UpdatedAt = Running, 1, actor, now, now
	p.Force, p.NodeForce = nil, nil
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var running string
		err := tx.QueryRowContext(ctx, `SELECT id FROM rollout_plans WHERE tenant = ? AND kind = ? AND artifact = ? AND state = ?`,
			p.Tenant, p.Kind, p.Artifact, Running).Scan(&running)
		if err == nil {
			return fmt.Errorf("%w: rollout %s of %s is running: promote it, roll it back or let it finish first", ErrConflict, running, p.Artifact)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM rollout_plans`).Scan(&n); err != nil {
			return err
		}
		p.ID = "ro-" + strconv.Itoa(n+1)
		if err := putPlan(ctx, tx, p); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, actor, p.Tenant, KindCreated, p.ID, map[string]any{
			"kind": p.Kind, "artifact": p.Artifact, "version": p.Version, "baseline": p.Baseline,
			"targets": p.Targets, "canary": p.Canary, "stages": p.Stages, "gates": p.Gates,
		})
	})
	if err != nil {
		return nil, fmt.Errorf("rollout: create: %w", err)
	}
	s.audited()
	return p, nil
}

func putPlan(ctx context.Context, tx *sql.Tx, p *Plan) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO rollout_plans(id, tenant, kind, artifact, state, rev, plan, created_at) VALUES (?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET state = excluded.state, rev = excluded.rev, plan = excluded.plan`,
		p.ID, p.Tenant, p.Kind, p.Artifact, p.State, p.Rev, string(b), p.CreatedAt.UnixMilli())
	return err
}

// Put stores a plan as another store (the hub's) made it, when it is new
// or of a higher revision (an edge keeps the hub's plans); it reports
// whether it stored it.
func (s *Store) Put(ctx context.Context, p *Plan) (bool, error) {
	if p == nil || p.ID == "" {
		return false, fmt.Errorf("%w: a plan without id", ErrInvalid)
	}
	if err := p.Validate(); err != nil {
		return false, err
	}
	stored := false
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var rev int
		err := tx.QueryRowContext(ctx, `SELECT rev FROM rollout_plans WHERE id = ?`, p.ID).Scan(&rev)
		if err == nil && rev >= p.Rev {
			return nil
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		stored = true
		return putPlan(ctx, tx, p)
	})
	if err != nil {
		return false, fmt.Errorf("rollout: put %s: %w", p.ID, err)
	}
	return stored, nil
}

func scanPlan(row interface{ Scan(...any) error }) (*Plan, error) {
	var b string
	if err := row.Scan(&b); err != nil {
		return nil, err
	}
	var p Plan
	if err := json.Unmarshal([]byte(b), &p); err != nil {
		return nil, fmt.Errorf("a stored plan: %w", err)
	}
	return &p, nil
}

// Get returns a plan of the tenant.
func (s *Store) Get(ctx context.Context, tenant, id string) (*Plan, error) {
	p, err := scanPlan(s.db.R.QueryRowContext(ctx, `SELECT plan FROM rollout_plans WHERE id = ? AND tenant = ?`, id, tenant))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("rollout %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("rollout: get %s: %w", id, err)
	}
	return p, nil
}

// List returns the plans of a tenant ("": all), of one artifact ("":
// all), newest first; running only when asked.
func (s *Store) List(ctx context.Context, tenant, artifact string, runningOnly bool) ([]*Plan, error) {
	state := ""
	if runningOnly {
		state = Running
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT plan FROM rollout_plans WHERE (? = '' OR tenant = ?) AND (? = '' OR artifact = ?) AND (? = '' OR state = ?)
		ORDER BY created_at DESC, id DESC`, tenant, tenant, artifact, artifact, state, state)
	if err != nil {
		return nil, fmt.Errorf("rollout: list: %w", err)
	}
	defer rows.Close()
	out := []*Plan{}
	for rows.Next() {
		p, err := scanPlan(rows)
		if err != nil {
			return nil, fmt.Errorf("rollout: list: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rollout: list: %w", err)
	}
	return out, nil
}

// ForceStage records an operator's decision: every target (node "") or
// one target moves to stage. Rolling back every target ends the plan
// (Aborted); promoting every target to Active lets the nodes finish it.
// Audited; the plan's revision grows, so edges take it.
func (s *Store) ForceStage(ctx context.Context, actor, tenant, id, node, stage, reason string) (*Plan, error) {
	switch stage {
	case Shadow, Canary, Active, RolledBack:
	default:
		return nil, fmt.Errorf("%w: stage must be shadow, canary, active or rolled_back, got %q", ErrInvalid, stage)
	}
	var out *Plan
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		p, err := scanPlan(tx.QueryRowContext(ctx, `SELECT plan FROM rollout_plans WHERE id = ? AND tenant = ?`, id, tenant))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("rollout %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if p.State != Running {
			return fmt.Errorf("%w: rollout %s is %s", ErrConflict, id, p.State)
		}
		now := s.now().UTC().Truncate(time.Millisecond)
		f := &Force{Stage: stage, By: actor, At: now, Reason: reason}
		if node == "" {
			p.Force, p.NodeForce = f, nil
			if stage == RolledBack {
				p.State = Aborted
			}
		} else {
			if p.NodeForce == nil {
				p.NodeForce = map[string]*Force{}
			}
			p.NodeForce[node] = f
		}
		p.Rev++
		p.UpdatedAt = now
		if err := putPlan(ctx, tx, p); err != nil {
			return err
		}
		out = p
		return s.appendAudit(ctx, tx, actor, tenant, KindForced, id, map[string]any{"node": node, "stage": stage, "reason": reason, "rev": p.Rev})
	})
	if err != nil {
		return nil, fmt.Errorf("rollout: force %s: %w", id, err)
	}
	s.audited()
	return out, nil
}

// SetState ends a running plan (Done, or Aborted with a global rollback),
// audited with the reason.
func (s *Store) SetState(ctx context.Context, actor, tenant, id, state, reason string) (*Plan, error) {
	var out *Plan
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		p, err := scanPlan(tx.QueryRowContext(ctx, `SELECT plan FROM rollout_plans WHERE id = ? AND tenant = ?`, id, tenant))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("rollout %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if p.State != Running {
			out = p
			return nil
		}
		now := s.now().UTC().Truncate(time.Millisecond)
		p.State, p.UpdatedAt = state, now
		if state == Aborted {
			p.Force = &Force{Stage: RolledBack, By: actor, At: now, Reason: reason}
		}
		p.Rev++
		if err := putPlan(ctx, tx, p); err != nil {
			return err
		}
		out = p
		return s.appendAudit(ctx, tx, actor, tenant, KindState, id, map[string]any{"state": state, "reason": reason, "rev": p.Rev})
	})
	if err != nil {
		return nil, fmt.Errorf("rollout: %s: %w", id, err)
	}
	s.audited()
	return out, nil
}

// Node returns a node's stage in a plan (ok false before it started
// there).
func (s *Store) Node(ctx context.Context, plan, node string) (NodeState, bool, error) {
	st := NodeState{Plan: plan, Node: node}
	var since int64
	err := s.db.R.QueryRowContext(ctx, `SELECT stage, since FROM rollout_nodes WHERE plan = ? AND node = ?`, plan, node).Scan(&st.Stage, &since)
	if errors.Is(err, sql.ErrNoRows) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("rollout: %w", err)
	}
	st.Since = time.UnixMilli(since).UTC()
	return st, true, nil
}

// Nodes returns every node's stage in a plan.
func (s *Store) Nodes(ctx context.Context, plan string) ([]NodeState, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT node, stage, since FROM rollout_nodes WHERE plan = ? ORDER BY node`, plan)
	if err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	defer rows.Close()
	out := []NodeState{}
	for rows.Next() {
		st := NodeState{Plan: plan}
		var since int64
		if err := rows.Scan(&st.Node, &st.Stage, &since); err != nil {
			return nil, fmt.Errorf("rollout: %w", err)
		}
		st.Since = time.UnixMilli(since).UTC()
		out = append(out, st)
	}
	return out, rows.Err()
}

// Transition records a stage change made at this node (rec.Seq is set
// to its id): the node's stage, the record and an audit entry, in one
// transaction.
func (s *Store) Transition(ctx context.Context, actor string, rec *Record) error {
	return s.record(ctx, actor, rec, true)
}

// Import keeps a record another node (an edge) made and sent up: its
// stage there and the record, audited with the edge as actor; the same
// record again changes nothing. The plan must be the tenant's.
func (s *Store) Import(ctx context.Context, edge string, rec *Record) error {
	if rec == nil || rec.Node != edge || rec.Seq <= 0 {
		return fmt.Errorf("%w: a record of another node or without its sequence", ErrInvalid)
	}
	if _, err := s.Get(ctx, rec.Tenant, rec.Plan); err != nil {
		return err
	}
	return s.record(ctx, edge, rec, false)
}

func (s *Store) record(ctx context.Context, actor string, rec *Record, local bool) error {
	added := false
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if local {
			var n int64
			if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM rollout_records WHERE node = ?`, rec.Node).Scan(&n); err != nil {
				return err
			}
			rec.Seq = n + 1
		} else {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM rollout_records WHERE plan = ? AND node = ? AND seq = ?`, rec.Plan, rec.Node, rec.Seq).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
		}
		added = true
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO rollout_records(plan, tenant, node, seq, at, record) VALUES (?,?,?,?,?,?)`,
			rec.Plan, rec.Tenant, rec.Node, rec.Seq, rec.At.UnixMilli(), string(b))
		if err != nil {
			return err
		}
		if rec.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		// An older record (sent late) does not move the node back.
		if _, err := tx.ExecContext(ctx, `INSERT INTO rollout_nodes(plan, node, stage, since) VALUES (?,?,?,?)
			ON CONFLICT(plan, node) DO UPDATE SET stage = excluded.stage, since = excluded.since WHERE excluded.since >= rollout_nodes.since`,
			rec.Plan, rec.Node, rec.To, rec.At.UnixMilli()); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, actor, rec.Tenant, KindStage, rec.Plan, map[string]any{
			"node": rec.Node, "seq": rec.Seq, "from": rec.From, "to": rec.To, "reason": rec.Reason, "by": rec.By,
			"samples": rec.Figures.Samples, "figures": rec.Figures.Values,
		})
	})
	if err != nil {
		return fmt.Errorf("rollout: record %s at %s: %w", rec.Plan, rec.Node, err)
	}
	if added {
		s.audited()
	}
	return nil
}

// Records returns a plan's records, oldest first, at most limit (the
// newest ones).
func (s *Store) Records(ctx context.Context, tenant, plan string, limit int) ([]*Record, error) {
	if limit <= 0 || limit > 10000 {
		limit = 10000
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT id, record FROM (SELECT id, record FROM rollout_records WHERE plan = ? AND tenant = ? ORDER BY id DESC LIMIT ?) ORDER BY id`,
		plan, tenant, limit)
	if err != nil {
		return nil, fmt.Errorf("rollout: records: %w", err)
	}
	defer rows.Close()
	out := []*Record{}
	for rows.Next() {
		var b string
		var id int64
		if err := rows.Scan(&id, &b); err != nil {
			return nil, fmt.Errorf("rollout: records: %w", err)
		}
		var rec Record
		if err := json.Unmarshal([]byte(b), &rec); err != nil {
			return nil, fmt.Errorf("rollout: a stored record: %w", err)
		}
		rec.ID = id
		out = append(out, &rec)
	}
	return out, rows.Err()
}

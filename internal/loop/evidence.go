package loop

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/guard"
)

// Evidence kinds.
const (
	KindAction = "action" // the decision turned on (or repeated): an action was proposed
	KindClear  = "clear"  // the decision turned off
	KindError  = "error"  // the loop failed to evaluate for the object
)

// Evidence states: what became of a decision. An action moves
// proposed → (awaiting_approval) → sent → (verifying) → done or failed;
// it may end refused (a guard), rejected or expired (its approval),
// shadow (a shadow loop's: recorded, not acted on), or recorded (a
// decision whose action has nothing to send: an alarm, an event).
const (
	StateShadow   = "shadow"
	StateRefused  = "refused"
	StateAwaiting = "awaiting_approval"
	StateRejected = "rejected"
	StateExpired  = "expired"
	StateSent     = "sent"
	StateVerify   = "verifying"
	StateDone     = "done"
	StateFailed   = "failed"
	StateRecorded = "recorded"
	StateError    = "error"
)

// Final reports whether an evidence state is final.
func Final(state string) bool {
	switch state {
	case StateAwaiting, StateSent, StateVerify:
		return false
	}
	return true
}

// Evidence is the record of one decision of a loop for one object: its
// inputs, the guards' results, the action and what became of it.
type Evidence struct {
	ID      int64     `json:"id"`
	Loop    string    `json:"loop"`
	Version int       `json:"version"`
	Digest  string    `json:"digest"` // the definition's
	Tenant  string    `json:"tenant"`
	Object  string    `json:"object"`
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Mode    Mode      `json:"mode"`
	State   string    `json:"state"`
	// Features are the feature values the decision saw; Detector the
	// detector's output; Twin the reported values the expressions read.
	Features map[string]float64 `json:"features,omitempty"`
	Detector map[string]float64 `json:"detector,omitempty"`
	Current  map[string]float64 `json:"current,omitempty"`
	// Model is the model that filled score (decide.model): its id, the
	// version that scored, the scores, or why there were none.
	Model *ModelUse `json:"model,omitempty"`
	// InputsDigest is the SHA-256 of the canonical JSON of every input
	// (features, detector, twin, time): two decisions from the same inputs
	// have the same digest.
	InputsDigest string         `json:"inputs_digest"`
	Guards       []guard.Result `json:"guards,omitempty"`
	Refusal      string         `json:"refusal,omitempty"`
	Action       *Action        `json:"action,omitempty"`
	Approval     *ApprovalState `json:"approval,omitempty"`
	Alarm        string         `json:"alarm,omitempty"` // the alarm raised or cleared
	Event        string         `json:"event,omitempty"` // the event recorded
	Outcome      string         `json:"outcome,omitempty"`
	Error        string         `json:"error,omitempty"`
	Steps        []Step         `json:"steps"`
	// Origin is the edge whose loop decided, at the hub; "" for this node.
	Origin    string    `json:"origin,omitempty"`
	OriginID  int64     `json:"origin_id,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Action is what a decision sends.
type Action struct {
	Command   string             `json:"command,omitempty"`
	Args      map[string]any     `json:"args,omitempty"`
	Desired   map[string]any     `json:"desired,omitempty"`
	Values    map[string]float64 `json:"values,omitempty"` // the numeric targets after the guards (clamped ones moved)
	CommandID string             `json:"command_id,omitempty"`
	Version   int64              `json:"twin_version,omitempty"` // desired version set
	SentAt    *time.Time         `json:"sent_at,omitempty"`
	VerifyBy  *time.Time         `json:"verify_by,omitempty"`
}

// ApprovalState is an action's approval.
type ApprovalState struct {
	Required  int          `json:"required"`
	Approvers []string     `json:"approvers,omitempty"`
	Expires   time.Time    `json:"expires"`
	Votes     []guard.Vote `json:"votes"`
}

// Step is one transition of the record.
type Step struct {
	At     time.Time `json:"at"`
	State  string    `json:"state"`
	Detail string    `json:"detail,omitempty"`
}

func (e *Evidence) step(at time.Time, state, detail string) {
	e.State = state
	e.UpdatedAt = at
	e.Steps = append(e.Steps, Step{At: at, State: state, Detail: detail})
	if Final(state) && detail != "" {
		e.Outcome = detail
	}
}

// evidenceWrite is one write of a record: a new record (insert) or a new
// state of one, with its audit entry when kind is set (an action sent, a
// vote). An update carries the record as it was when it was asked for.
type evidenceWrite struct {
	ev          *Evidence
	insert      bool
	rec         []byte // an update's record, its state and time
	state       string
	updatedAt   int64
	actor, kind string
	data        map[string]any
}

// newEvidenceWrite takes what a write of ev stores now.
func newEvidenceWrite(ev *Evidence, actor, kind string, data map[string]any) (evidenceWrite, error) {
	w := evidenceWrite{ev: ev, insert: ev.ID == 0, state: ev.State, updatedAt: ev.UpdatedAt.UnixMilli(), actor: actor, kind: kind, data: data}
	if !w.insert {
		var err error
		if w.rec, err = json.Marshal(ev); err != nil {
			return w, err
		}
	}
	return w, nil
}

// writeEvidence makes writes in one transaction, in order; an insert sets
// its record's ID. The transaction is shared with the other writes made
// at the same time (store.SharedTx: the command service's, the alarms'),
// so that they all cost one commit.
func (s *Store) writeEvidence(ctx context.Context, ws []evidenceWrite) error {
	audited := false
	for i := range ws {
		audited = audited || ws[i].kind != ""
	}
	err := s.db.SharedTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for i := range ws {
			if err := s.writeOne(ctx, tx, &ws[i]); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	if err != nil {
		for i := range ws {
			if ws[i].insert {
				ws[i].ev.ID = 0 // rolled back
			}
		}
		return err
	}
	if audited && s.onAudit != nil {
		s.onAudit()
	}
	return nil
}

func (s *Store) writeOne(ctx context.Context, tx *sql.Tx, w *evidenceWrite) error {
	e := w.ev
	if w.insert {
		rec, err := json.Marshal(e)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO loop_evidence(key, version, tenant, object, at, kind, mode, state, record, origin, origin_id, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
			e.Loop, e.Version, e.Tenant, e.Object, e.At.UnixMilli(), e.Kind, string(e.Mode), e.State, string(rec), e.Origin, e.OriginID, e.UpdatedAt.UnixMilli())
		if err != nil {
			return err
		}
		e.ID, _ = res.LastInsertId()
		// The record holds its own id.
		rec, _ = json.Marshal(e)
		_, err = tx.ExecContext(ctx, `UPDATE loop_evidence SET record = ? WHERE id = ?`, string(rec), e.ID)
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE loop_evidence SET state = ?, record = ?, updated_at = ? WHERE id = ?`, w.state, string(w.rec), w.updatedAt, e.ID); err != nil {
		return err
	}
	if w.kind == "" {
		return nil
	}
	data := w.data
	if data == nil {
		data = map[string]any{}
	}
	data["evidence"] = e.ID
	data["version"] = e.Version
	data["object"] = e.Object
	return s.appendAudit(ctx, tx, w.actor, e.Tenant, w.kind, e.Loop, data)
}

// GetEvidence returns one record.
func (s *Store) GetEvidence(ctx context.Context, id int64) (*Evidence, error) {
	var rec string
	err := s.db.R.QueryRowContext(ctx, `SELECT record FROM loop_evidence WHERE id = ?`, id).Scan(&rec)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("evidence %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("loop: evidence %d: %w", id, err)
	}
	var e Evidence
	if err := json.Unmarshal([]byte(rec), &e); err != nil {
		return nil, fmt.Errorf("loop: evidence %d: %w", id, err)
	}
	return &e, nil
}

// EvidenceOf returns a record by the node that wrote it: origin "" and
// its id here, or an edge's code and its id there (an imported record).
func (s *Store) EvidenceOf(ctx context.Context, origin string, id int64) (*Evidence, error) {
	if origin == "" {
		return s.GetEvidence(ctx, id)
	}
	var here int64
	err := s.db.R.QueryRowContext(ctx, `SELECT id FROM loop_evidence WHERE origin = ? AND origin_id = ?`, origin, id).Scan(&here)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("evidence %d of %s: %w", id, origin, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("loop: evidence %d of %s: %w", id, origin, err)
	}
	return s.GetEvidence(ctx, here)
}

// EvidenceFilter selects evidence records.
type EvidenceFilter struct {
	Tenant string // "" = all
	Loop   string // key
	Object string
	States []string
	Before int64 // id: records older than it (paging)
	Limit  int   // default 100, at most 1000
}

// ListEvidence returns matching records, newest first.
func (s *Store) ListEvidence(ctx context.Context, f EvidenceFilter) ([]*Evidence, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	q := `SELECT record FROM loop_evidence WHERE 1=1`
	var args []any
	if f.Tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, f.Tenant)
	}
	if f.Loop != "" {
		q += ` AND key = ?`
		args = append(args, f.Loop)
	}
	if f.Object != "" {
		q += ` AND object = ?`
		args = append(args, f.Object)
	}
	if len(f.States) > 0 {
		q += ` AND state IN (?` + strings.Repeat(",?", len(f.States)-1) + `)`
		for _, st := range f.States {
			args = append(args, st)
		}
	}
	if f.Before > 0 {
		q += ` AND id < ?`
		args = append(args, f.Before)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("loop: evidence: %w", err)
	}
	defer rows.Close()
	var out []*Evidence
	for rows.Next() {
		var rec string
		if err := rows.Scan(&rec); err != nil {
			return nil, err
		}
		var e Evidence
		if err := json.Unmarshal([]byte(rec), &e); err != nil {
			return nil, err
		}
		out = append(out, &e)
	}
	return out, rows.Err()
}

// ImportEvidence stores a record an edge's loop wrote (forwarded to the
// hub), keyed by the edge and its id there: a newer state replaces an
// older one, a repeat changes nothing. It returns whether it changed
// anything.
func (s *Store) ImportEvidence(ctx context.Context, edge string, e *Evidence) (bool, error) {
	in := *e
	in.Origin, in.OriginID = edge, e.ID
	var changed bool
	err := s.tx(ctx, false, func(tx *sql.Tx) error {
		var id, updated int64
		var state string
		err := tx.QueryRowContext(ctx, `SELECT id, updated_at, state FROM loop_evidence WHERE origin = ? AND origin_id = ?`, edge, e.ID).Scan(&id, &updated, &state)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			in.ID = 0
			rec, _ := json.Marshal(in)
			res, err := tx.ExecContext(ctx, `INSERT INTO loop_evidence(key, version, tenant, object, at, kind, mode, state, record, origin, origin_id, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
				in.Loop, in.Version, in.Tenant, in.Object, in.At.UnixMilli(), in.Kind, string(in.Mode), in.State, string(rec), edge, e.ID, in.UpdatedAt.UnixMilli())
			if err != nil {
				return err
			}
			in.ID, _ = res.LastInsertId()
			changed = true
		case err != nil:
			return err
		case in.UpdatedAt.UnixMilli() < updated || (in.UpdatedAt.UnixMilli() == updated && len(in.Steps) == 0):
			return nil
		default:
			in.ID = id
			changed = true
		}
		rec, _ := json.Marshal(in)
		_, err = tx.ExecContext(ctx, `UPDATE loop_evidence SET state = ?, record = ?, updated_at = ? WHERE id = ?`, in.State, string(rec), in.UpdatedAt.UnixMilli(), in.ID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("loop: import evidence from %s: %w", edge, err)
	}
	return changed, nil
}

// pruneEvidence deletes final records older than before, keeping at most
// keep records per loop; it returns how many it deleted.
func (s *Store) pruneEvidence(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, false, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM loop_evidence WHERE at < ? AND state NOT IN ('awaiting_approval','sent','verifying')`, before.UnixMilli())
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

// Counts is how many evidence records a loop has, by state, and the
// refusals by guard (the guard's kind: "interlock", "cooldown", ...).
type Counts struct {
	States   map[string]int `json:"states"`
	Refusals map[string]int `json:"refusals,omitempty"`
}

// Counts returns the evidence counts of every loop of a tenant ("" =
// all), by loop key: this node's records and those kept from edges.
func (s *Store) Counts(ctx context.Context, tenant string) (map[string]*Counts, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT key, state, COALESCE(json_extract(record, '$.refusal'), ''), COUNT(*) FROM loop_evidence
		WHERE ? = '' OR tenant = ? GROUP BY 1, 2, 3`, tenant, tenant)
	if err != nil {
		return nil, fmt.Errorf("loop: counts: %w", err)
	}
	defer rows.Close()
	out := map[string]*Counts{}
	for rows.Next() {
		var key, state, refusal string
		var n int
		if err := rows.Scan(&key, &state, &refusal, &n); err != nil {
			return nil, err
		}
		c := out[key]
		if c == nil {
			c = &Counts{States: map[string]int{}, Refusals: map[string]int{}}
			out[key] = c
		}
		c.States[state] += n
		if refusal != "" {
			kind, _, _ := strings.Cut(refusal, ":")
			c.Refusals[kind] += n
		}
	}
	return out, rows.Err()
}

// Summary says in a few words where a record stands: the guard that
// refused it, its error, its outcome, or else its last step's detail.
func (ev *Evidence) Summary() string {
	switch {
	case ev.Refusal != "" && ev.State != StateAwaiting:
		return "refused by " + ev.Refusal
	case ev.Error != "":
		return ev.Error
	case ev.Outcome != "":
		return ev.Outcome
	case len(ev.Steps) > 0:
		return ev.Steps[len(ev.Steps)-1].Detail
	}
	return ""
}

// KindText says in words what kind of decision a record is.
func KindText(kind string) string {
	switch kind {
	case KindAction:
		return "the decision turned on and proposed its action"
	case KindClear:
		return "the decision turned off"
	case KindError:
		return "the loop failed to evaluate"
	}
	return kind
}

package alarm

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/code"
)

// SuppressedChattering is Alarm.Suppressed of a chattering alarm.
const SuppressedChattering = "chattering"

// actorSystem is the actor of what the service does by itself.
const actorSystem = "system"

// txn collects what a write transaction did, for after its commit.
type txn struct {
	events  []Event
	audited bool
	floods  map[string]bool // tenant → a flood started (true) or ended (false)
}

// write runs fn in a write transaction, which it may share with other
// writes (store.SharedTx); after the commit it calls OnAudit when fn
// audited, and delivers the events.
func (s *Service) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx, t *txn) error) error {
	var t *txn
	err := s.db.SharedTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t = &txn{floods: map[string]bool{}}
		return fn(ctx, tx, t)
	}, func() { s.committed(t) })
	if err != nil {
		return err
	}
	if t.audited && s.opts.OnAudit != nil {
		s.opts.OnAudit()
	}
	if s.opts.OnEvent != nil {
		s.dispatch.run(s.opts.OnEvent)
	}
	return nil
}

// committed runs after the commit of t's transaction, in commit order: it
// applies flood changes, counts events and queues them for OnEvent.
func (s *Service) committed(t *txn) {
	if len(t.floods) > 0 {
		s.floodMu.Lock()
		for tenant, on := range t.floods {
			if on {
				s.flooding[tenant] = true
			} else {
				delete(s.flooding, tenant)
			}
		}
		s.floodMu.Unlock()
	}
	for _, e := range t.events {
		s.m.events.WithLabelValues(e.Kind).Inc()
		switch e.Kind {
		case KindFloodStarted:
			s.m.floods.Inc()
			s.log.Warn("alarm flood started", "tenant", e.Alarm.Tenant, "count", s.opts.Flood.Count, "window", s.opts.Flood.Window)
		case KindFloodEnded:
			s.log.Info("alarm flood ended", "tenant", e.Alarm.Tenant)
		case KindSuppressed:
			s.log.Info("alarm suppressed", "id", e.Alarm.ID, "object", e.Alarm.Object, "name", e.Alarm.Name, "reason", e.Alarm.Suppressed)
		}
	}
	if s.opts.OnEvent != nil {
		s.dispatch.push(t.events)
	}
}

// change is one event of an operation: its kind, time and actor.
type change struct {
	kind  string
	at    time.Time
	actor string
}

// emit records the changes of alarm a, each with a's snapshot.
func (s *Service) emit(ctx context.Context, tx *sql.Tx, t *txn, a *Alarm, changes ...change) error {
	for _, c := range changes {
		e := Event{Time: c.at, Kind: c.kind, Alarm: a.snapshot(), Actor: c.actor}
		if err := insertEvent(ctx, tx, &e, c.kind == KindRaised && !a.Silenced()); err != nil {
			return err
		}
		t.events = append(t.events, e)
	}
	return nil
}

// emitFlood records a flood event of tenant.
func (s *Service) emitFlood(ctx context.Context, tx *sql.Tx, t *txn, tenant, kind string, at time.Time) error {
	e := Event{Time: at, Kind: kind, Alarm: Alarm{Tenant: tenant}, Actor: actorSystem}
	if err := insertEvent(ctx, tx, &e, false); err != nil {
		return err
	}
	t.events = append(t.events, e)
	t.floods[tenant] = kind == KindFloodStarted
	return nil
}

// annunciated counts the tenant's activations that were neither shelved
// nor suppressed, in the flood window that ends at at.
func (s *Service) annunciated(ctx context.Context, q querier, tenant string, at time.Time) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM alarm_events
		WHERE tenant = ? AND kind = ? AND notify = 1 AND time > ?`,
		tenant, KindRaised, at.Add(-s.opts.Flood.Window).UnixMilli()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("alarm: count activations: %w", err)
	}
	return n, nil
}

// floodOn reads whether the tenant's latest flood event started a flood.
func floodOn(ctx context.Context, q querier, tenant string) (bool, error) {
	var kind string
	err := q.QueryRowContext(ctx, `SELECT kind FROM alarm_events WHERE alarm_id = '' AND tenant = ?
		ORDER BY seq DESC LIMIT 1`, tenant).Scan(&kind)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("alarm: read flood: %w", err)
	}
	return kind == KindFloodStarted, nil
}

// checkFlood starts a flood of tenant when its annunciated activations
// reached the policy's count; called after an annunciated activation.
func (s *Service) checkFlood(ctx context.Context, tx *sql.Tx, t *txn, tenant string, at time.Time) error {
	if s.opts.Flood.Count < 0 {
		return nil
	}
	on, err := floodOn(ctx, tx, tenant)
	if err != nil || on {
		return err
	}
	n, err := s.annunciated(ctx, tx, tenant, at)
	if err != nil || n < s.opts.Flood.Count {
		return err
	}
	return s.emitFlood(ctx, tx, t, tenant, KindFloodStarted, at)
}

// activate makes a a new activation of the condition r reports, and
// returns the changes: raised, preceded by unsuppressed when a chattering
// suppression had ended, followed by suppressed when it starts.
func (s *Service) activate(a *row, r request) []change {
	var out []change
	ch := s.opts.Chatter
	if a.Suppressed != "" && a.Origin == "" && r.At.Sub(a.RaisedAt) >= ch.Quiet {
		a.Suppressed, a.activations = "", nil
		out = append(out, change{KindUnsuppressed, r.At, actorSystem})
	}
	a.State, a.Active, a.Acked = UnackActive, true, false
	a.Count++
	a.RaisedAt, a.ClearedAt, a.AckedAt, a.AckedBy, a.AckNote = r.At, nil, nil, "", ""
	a.Severity, a.Message, a.Data = r.Severity, r.Message, r.Data
	out = append(out, change{KindRaised, r.At, r.Source})
	if ch.Count > 0 {
		a.activations = append(a.activations, r.At.UnixMilli())
		if n := len(a.activations); n > ch.Count {
			a.activations = append([]int64(nil), a.activations[n-ch.Count:]...)
		}
		first := msTime(a.activations[0])
		if a.Suppressed == "" && len(a.activations) == ch.Count && r.At.Sub(first) <= ch.Window {
			a.Suppressed = SuppressedChattering
			out = append(out, change{KindSuppressed, r.At, actorSystem})
		}
	}
	return out
}

// Raise reports that the source's condition holds for the object. A new
// alarm, or one whose condition had cleared, becomes unack_active with a
// new activation (Count+1); re-raising an active alarm updates severity,
// message and data without a new activation (event "updated"), and changes
// nothing when they are the same. changed says whether anything was written.
// An alarm imported from an edge cannot be raised here (ErrConflict).
func (s *Service) Raise(ctx context.Context, r RaiseRequest) (*Alarm, bool, error) {
	now := s.now()
	req, err := r.validate(now)
	if err != nil {
		return nil, false, err
	}
	var (
		out     Alarm
		changed bool
	)
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx, t *txn) error {
		changed = false
		a, err := load(ctx, tx, req.id, now)
		var changes []change
		activated := true
		switch {
		case errors.Is(err, ErrNotFound):
			a = &row{Alarm: Alarm{ID: req.id, Tenant: req.tenant, Object: req.Object, Source: req.Source, Name: req.Name}}
			changes = s.activate(a, req)
		case err != nil:
			return err
		case a.Origin != "":
			return fmt.Errorf("%w: alarm %s was raised on edge %s", ErrConflict, a.ID, a.Origin)
		case a.Active:
			if a.Severity == req.Severity && a.Message == req.Message && bytes.Equal(a.Data, req.Data) {
				out = a.snapshot()
				return nil
			}
			a.Severity, a.Message, a.Data = req.Severity, req.Message, req.Data
			changes, activated = []change{{KindUpdated, req.At, req.Source}}, false
		default:
			changes = s.activate(a, req)
		}
		a.Version++
		a.UpdatedAt = now
		if err := save(ctx, tx, a); err != nil {
			return err
		}
		if err := s.emit(ctx, tx, t, &a.Alarm, changes...); err != nil {
			return err
		}
		if activated && !a.Silenced() {
			if err := s.checkFlood(ctx, tx, t, a.Tenant, req.At); err != nil {
				return err
			}
		}
		changed, out = true, a.snapshot()
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return &out, changed, nil
}

// Clear reports that the source's condition no longer holds for the
// object (at: when it returned to normal; zero: now): unack_active becomes
// unack_cleared, ack_active becomes cleared. Clearing an alarm that is not
// active changes nothing; one never raised is ErrNotFound.
func (s *Service) Clear(ctx context.Context, source, object, name string, at time.Time) (*Alarm, bool, error) {
	if _, err := checkKey(source, object, name); err != nil {
		return nil, false, err
	}
	now := s.now()
	if at.IsZero() {
		at = now
	}
	at = at.UTC().Truncate(time.Millisecond)
	id := ID(source, object, name)
	var (
		out     Alarm
		changed bool
	)
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, t *txn) error {
		changed = false
		a, err := load(ctx, tx, id, now)
		switch {
		case err != nil:
			return err
		case a.Origin != "":
			return fmt.Errorf("%w: alarm %s was raised on edge %s", ErrConflict, a.ID, a.Origin)
		case !a.Active:
			out = a.snapshot()
			return nil
		}
		a.Active, a.State = false, stateOf(false, a.Acked)
		a.ClearedAt = &at
		a.Version++
		a.UpdatedAt = now
		if err := save(ctx, tx, a); err != nil {
			return err
		}
		if err := s.emit(ctx, tx, t, &a.Alarm, change{KindCleared, at, source}); err != nil {
			return err
		}
		changed, out = true, a.snapshot()
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return &out, changed, nil
}

// operate is the write path of the operator actions: load the alarm by id,
// let fn change it (false: nothing to do), then save, audit and record the
// event of kind.
func (s *Service) operate(ctx context.Context, actor, id, kind, auditKind string,
	fn func(a *row, now time.Time) (bool, map[string]any)) (*Alarm, error) {
	now := s.now()
	var out Alarm
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, t *txn) error {
		a, err := load(ctx, tx, id, now)
		if err != nil {
			return err
		}
		ok, details := fn(a, now)
		if !ok {
			out = a.snapshot()
			return nil
		}
		a.Version++
		a.UpdatedAt = now
		if err := save(ctx, tx, a); err != nil {
			return err
		}
		details["object"], details["source"], details["name"] = a.Object, a.Source, a.Name
		details["state"], details["count"], details["version"] = a.State, a.Count, a.Version
		data, err := json.Marshal(details)
		if err != nil {
			return fmt.Errorf("alarm: audit: %w", err)
		}
		e := audit.Entry{Time: now, Actor: actor, Tenant: a.Tenant, Kind: auditKind, Subject: a.ID, Data: data}
		if _, err := s.opts.Audit.AppendTx(ctx, tx, e); err != nil {
			return fmt.Errorf("alarm: audit %s: %w", auditKind, err)
		}
		t.audited = true
		if err := s.emit(ctx, tx, t, &a.Alarm, change{kind, now, actor}); err != nil {
			return err
		}
		out = a.snapshot()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Ack acknowledges the alarm's latest activation: unack_active becomes
// ack_active, unack_cleared becomes cleared. It appends an "alarm.ack"
// audit entry; acknowledging an acknowledged alarm changes nothing and
// audits nothing.
func (s *Service) Ack(ctx context.Context, actor, id, note string) (*Alarm, error) {
	if err := checkActor(actor); err != nil {
		return nil, err
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	if err := checkText("note", note, MaxMessageBytes); err != nil {
		return nil, err
	}
	return s.operate(ctx, actor, id, KindAcked, "alarm.ack", func(a *row, now time.Time) (bool, map[string]any) {
		if a.Acked {
			return false, nil
		}
		a.Acked, a.State = true, stateOf(a.Active, true)
		a.AckedAt, a.AckedBy, a.AckNote = &now, actor, note
		return true, map[string]any{"note": note}
	})
}

// Shelve takes the alarm out of the "needs attention" view and its
// notifications until the given time (in the future, at most MaxShelve
// ahead), for a reason; its events are still recorded, and Sweep ends the
// shelving when it expires. Shelving a shelved alarm again replaces the
// shelving. It appends an "alarm.shelve" audit entry.
func (s *Service) Shelve(ctx context.Context, actor, id, reason string, until time.Time) (*Alarm, error) {
	if err := checkActor(actor); err != nil {
		return nil, err
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	if reason == "" {
		return nil, invalid("reason", "required")
	}
	if err := checkText("reason", reason, MaxMessageBytes); err != nil {
		return nil, err
	}
	until = until.UTC().Truncate(time.Millisecond)
	now := s.now()
	if !until.After(now) {
		return nil, invalid("until", "%s is not in the future", until.Format(time.RFC3339Nano))
	}
	if until.Sub(now) > MaxShelve {
		return nil, invalid("until", "%s is more than %s ahead", until.Format(time.RFC3339Nano), MaxShelve)
	}
	sh := Shelve{By: actor, Reason: reason, Until: until}
	return s.operate(ctx, actor, id, KindShelved, "alarm.shelve", func(a *row, now time.Time) (bool, map[string]any) {
		if a.Shelved != nil && *a.Shelved == sh {
			return false, nil
		}
		a.Shelved, a.shelf = &sh, nil
		return true, map[string]any{"reason": reason, "until": until.Format(time.RFC3339Nano)}
	})
}

// Unshelve ends a shelving before it expires. It appends an
// "alarm.unshelve" audit entry; unshelving an alarm that is not shelved
// changes nothing and audits nothing.
func (s *Service) Unshelve(ctx context.Context, actor, id string) (*Alarm, error) {
	if err := checkActor(actor); err != nil {
		return nil, err
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	return s.operate(ctx, actor, id, KindUnshelved, "alarm.unshelve", func(a *row, now time.Time) (bool, map[string]any) {
		if a.Shelved == nil {
			return false, nil
		}
		d := map[string]any{"reason": a.Shelved.Reason, "until": a.Shelved.Until.Format(time.RFC3339Nano), "shelved_by": a.Shelved.By}
		a.Shelved, a.shelf = nil, nil
		return true, d
	})
}

// Sweep does what time does: it ends shelvings that expired (event
// unshelved, actor "system"), chattering suppressions of alarms without an
// activation for Chatter.Quiet (unsuppressed), and floods whose tenant's
// annunciated activations in the window fell below Flood.Count
// (flood_ended). The engine calls it every few seconds.
func (s *Service) Sweep(ctx context.Context) error {
	now := s.now()
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx, t *txn) error {
		expired, err := loadMany(ctx, tx, now, `WHERE shelved_until > 0 AND shelved_until <= ? ORDER BY id`, now.UnixMilli())
		if err != nil {
			return err
		}
		for _, a := range expired {
			a.Shelved, a.shelf = nil, nil
			if err := s.sweepSave(ctx, tx, t, a, now, KindUnshelved); err != nil {
				return err
			}
		}
		quiet, err := loadMany(ctx, tx, now, `WHERE suppressed != '' AND origin = '' AND raised_at <= ? ORDER BY id`,
			now.Add(-s.opts.Chatter.Quiet).UnixMilli())
		if err != nil {
			return err
		}
		for _, a := range quiet {
			a.Suppressed, a.activations = "", nil
			if err := s.sweepSave(ctx, tx, t, a, now, KindUnsuppressed); err != nil {
				return err
			}
		}
		floods, err := floodStates(ctx, tx)
		if err != nil {
			return err
		}
		for tenant := range floods {
			if s.opts.Flood.Count >= 0 {
				n, err := s.annunciated(ctx, tx, tenant, now)
				if err != nil {
					return err
				}
				if n >= s.opts.Flood.Count {
					continue
				}
			}
			if err := s.emitFlood(ctx, tx, t, tenant, KindFloodEnded, now); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Service) sweepSave(ctx context.Context, tx *sql.Tx, t *txn, a *row, now time.Time, kind string) error {
	a.Version++
	a.UpdatedAt = now
	if err := save(ctx, tx, a); err != nil {
		return err
	}
	return s.emit(ctx, tx, t, &a.Alarm, change{kind, now, actorSystem})
}

// Import applies an alarm raised on an edge and forwarded to this node
// (the hub). It is stored when a.Version is newer than the edge's version
// imported last (OriginVersion), or when the alarm was last imported from
// another edge (its object moved); otherwise nothing changes and Import
// returns false. Origin becomes edge, OriginVersion a.Version, and Version
// this node's own next version. What this node's operators did stays: a
// shelving made here (the edge's shelving is not imported), and an
// acknowledgement made here of the same activation (same Count) that the
// edge has not seen yet. The events recorded are those the difference
// implies (raised, cleared, acked, updated, suppressed, unsuppressed), and
// an annunciated activation counts towards this node's flood. An alarm
// raised on this node cannot be overwritten (ErrConflict).
func (s *Service) Import(ctx context.Context, edge string, a Alarm) (bool, error) {
	if _, err := code.Parse(edge); err != nil {
		return false, invalid("edge", "%v", err)
	}
	imp := a.snapshot()
	if err := checkImported(&imp); err != nil {
		return false, err
	}
	ms := func(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }
	imp.RaisedAt = ms(imp.RaisedAt)
	if imp.ClearedAt != nil {
		*imp.ClearedAt = ms(*imp.ClearedAt)
	}
	if imp.AckedAt != nil {
		*imp.AckedAt = ms(*imp.AckedAt)
	}
	if !imp.Acked {
		imp.AckedAt, imp.AckedBy, imp.AckNote = nil, "", ""
	}
	if imp.Active {
		imp.ClearedAt = nil
	}
	now := s.now()
	var applied bool
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, t *txn) error {
		applied = false
		old, err := load(ctx, tx, imp.ID, now)
		switch {
		case errors.Is(err, ErrNotFound):
			old = nil
		case err != nil:
			return err
		case old.Origin == "":
			return fmt.Errorf("%w: alarm %s was raised on this node", ErrConflict, old.ID)
		case old.Origin == edge && imp.Version <= old.OriginVersion:
			return nil
		}
		n := &row{Alarm: imp}
		n.Origin, n.OriginVersion, n.Version, n.UpdatedAt = edge, imp.Version, 1, now
		n.Shelved = nil
		if old != nil {
			n.Version = old.Version + 1
			n.Shelved, n.shelf = old.Shelved, old.shelf
			if old.Acked && !n.Acked && old.Count == n.Count {
				n.Acked, n.State = true, stateOf(n.Active, true)
				n.AckedAt, n.AckedBy, n.AckNote = old.AckedAt, old.AckedBy, old.AckNote
			}
		}
		if err := save(ctx, tx, n); err != nil {
			return err
		}
		changes := importChanges(old, n, now)
		if err := s.emit(ctx, tx, t, &n.Alarm, changes...); err != nil {
			return err
		}
		if len(changes) > 0 && changes[0].kind == KindRaised && !n.Silenced() {
			if err := s.checkFlood(ctx, tx, t, n.Tenant, n.RaisedAt); err != nil {
				return err
			}
		}
		applied = true
		return nil
	})
	return applied, err
}

// importChanges are the events an import from old (nil: none) to n implies.
func importChanges(old, n *row, now time.Time) []change {
	var out []change
	activated := old == nil || n.Count > old.Count
	if activated {
		out = append(out, change{KindRaised, n.RaisedAt, n.Source})
	} else if n.Active && (old.Severity != n.Severity || old.Message != n.Message || !bytes.Equal(old.Data, n.Data)) {
		out = append(out, change{KindUpdated, now, n.Source})
	}
	if !n.Active && (activated || old.Active) {
		at := now
		if n.ClearedAt != nil {
			at = *n.ClearedAt
		}
		out = append(out, change{KindCleared, at, n.Source})
	}
	if n.Acked && (activated || !old.Acked) {
		at := now
		if n.AckedAt != nil {
			at = *n.AckedAt
		}
		out = append(out, change{KindAcked, at, n.AckedBy})
	}
	was := ""
	if old != nil {
		was = old.Suppressed
	}
	switch {
	case was == "" && n.Suppressed != "":
		out = append(out, change{KindSuppressed, now, actorSystem})
	case was != "" && n.Suppressed == "":
		out = append(out, change{KindUnsuppressed, now, actorSystem})
	}
	return out
}

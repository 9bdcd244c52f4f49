package hub

// Closed loops and alarms at the hub: the loop engine (a consumer of the
// ingest log) for the objects not behind an edge, and the alarm service,
// whose changes go to the objects' MQTT alarm topics.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/api"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/loop"
	"github.com/wanwu-iot/wanwu/internal/node"
)

// LoopsCursor is the loop engine's cursor file in the data directory.
const LoopsCursor = "loops.cursor"

// openLoops opens the alarm service and the loop engine and starts the
// engine; it runs before the pipeline, whose consumer the engine is.
func (h *Hub) openLoops(ctx context.Context) error {
	var err error
	if h.alarms, err = alarm.Open(ctx, alarm.Options{
		DB: h.db, Audit: h.audit, OnAudit: h.wakeAuditForwarder, Now: h.opts.Now, Logger: h.log,
		OnEvent: h.alarmChanged, Registerer: h.metrics,
	}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	st, err := loop.OpenStore(ctx, h.db, h.audit, h.wakeAuditForwarder, h.opts.Now)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if h.loops, err = loop.NewEngine(loop.Options{
		Store: st, Objects: h.reg, Commands: h.commands, Twins: h.twins, Alarms: h.alarms,
		Emit: h.emitLoopEvent, Role: "hub", Now: h.opts.Now, Logger: h.log, Registerer: h.metrics,
		Scorer: h.mlScorer, OnEvidence: h.evidenceWritten,
	}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return h.loops.Start(ctx)
}

// loopConsumer is the engine as a consumer of the ingest log.
func (h *Hub) loopConsumer() node.Consumer {
	return node.Consumer{Consumer: h.loops, Name: "loops", CursorFile: LoopsCursor}
}

// emitLoopEvent records a loop's event (a work order) for its object.
func (h *Hub) emitLoopEvent(ctx context.Context, msg ingest.Message) error {
	p := h.loopPipe.Load()
	if p == nil {
		return errors.New("hub: the pipeline has not started")
	}
	return p.Submit(ctx, msg)
}

// alarmChanged publishes an alarm's change to its object's MQTT alarm
// topic, for integrations.
func (h *Hub) alarmChanged(ev alarm.Event) {
	h.capturer.Load().Alarm(ev)
	m := h.alarmPub.Load()
	if m == nil {
		return
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return
	}
	if err := m.PublishAlarm(ev.Alarm.Object, body); err != nil {
		h.log.Debug("alarm not published to MQTT", "alarm", ev.Alarm.ID, "err", err)
	}
}

// edgeLoops answers an edge's long poll for its loop bundle: at once when
// the bundle's digest is not after, else when a change (every change of
// loops, kill switches and bypasses is audited) makes it so, or nil once
// wait passed.
func (h *Hub) edgeLoops(ctx context.Context, edge, after string, wait time.Duration) ([]byte, error) {
	obj, err := h.reg.Object(ctx, edge)
	if err != nil {
		return nil, err
	}
	return h.pollAudited(ctx, wait, func() ([]byte, error) {
		b, err := h.loops.Store().EdgeBundle(ctx, edge, obj.Tenant)
		if err != nil || b.Digest == after {
			return nil, err
		}
		return json.Marshal(b)
	})
}

// edgeEvidence keeps an evidence record a loop at an edge wrote. A record
// the hub cannot read is logged and passed over: refusing it would stall
// the edge's link.
func (h *Hub) edgeEvidence(ctx context.Context, edge, device string, data []byte) error {
	var ev loop.Evidence
	if err := json.Unmarshal(data, &ev); err != nil || ev.Object != device || ev.ID <= 0 {
		h.log.Warn("an edge's loop evidence is malformed; passed over", "edge", edge, "device", device, "err", err)
		return nil
	}
	_, err := h.loops.Store().ImportEvidence(ctx, edge, &ev)
	return err
}

// edgeAlarm keeps an alarm of an edge (the hub's copy: acknowledged and
// shelved here too).
func (h *Hub) edgeAlarm(ctx context.Context, edge, device string, data []byte) error {
	var a alarm.Alarm
	if err := json.Unmarshal(data, &a); err != nil || a.Object != device {
		h.log.Warn("an edge's alarm is malformed; passed over", "edge", edge, "device", device, "err", err)
		return nil
	}
	if _, err := h.alarms.Import(ctx, edge, a); err != nil && (errors.Is(err, alarm.ErrInvalid) || errors.Is(err, alarm.ErrConflict)) {
		h.log.Warn("an edge's alarm was refused; passed over", "edge", edge, "alarm", a.ID, "err", err)
		return nil
	} else if err != nil {
		return err
	}
	return nil
}

// relayVote queues a vote given at the hub for an action waiting at an
// edge; it goes down with the edge's next poll of its downlink (held here
// while the link is down; lost if the hub restarts before, when the
// operator votes again). The vote is audited here; the edge checks the
// loop's approvers and records it in its evidence, which comes back up.
func (h *Hub) relayVote(ctx context.Context, ev *loop.Evidence, by string, approve bool, note string) error {
	v := api.EdgeVote{ID: "vote-" + node.RandomID()[:16], Evidence: ev.OriginID, By: by, Approve: approve, Note: note}
	if err := h.loops.Store().AuditEvent(ctx, by, ev.Tenant, "loop.vote_relayed", ev.Loop, map[string]any{
		"evidence": ev.ID, "edge": ev.Origin, "edge_evidence": ev.OriginID, "approve": approve, "note": note}); err != nil {
		return err
	}
	d := h.downlinkOf(ev.Origin)
	d.mu.Lock()
	d.votes = append(d.votes, v)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return nil
}

package hub

// Closed loops and alarms at the hub: the loop engine (a consumer of the
// ingest log) for the objects not behind an edge, and the alarm service,
// whose changes go to the objects' MQTT alarm topics.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/wanwu-iot/wanwu/internal/alarm"
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

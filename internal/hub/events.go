package hub

// Presence, and the forwarders that copy the database's device events
// (command life cycles, presence) to their bus streams for integrations.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/netuse"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/webhook"
)

// forwarded is one event as a forwarder publishes it.
type forwarded struct {
	seq         uint64
	tenant, id  string // the device
	eventID     string // deduplicates a republish
	body        []byte // JSON with the "seq" member
	description string // for errors
}

// eventForwarder publishes a table's events to a bus stream in order: from
// the newest event the stream holds to the newest in the database, so that
// neither a burst, nor a crash, nor a failed publish loses one (event ids
// make a repeat harmless).
type eventForwarder struct {
	name   string
	stream *bus.Events
	wake   chan struct{}
	// after returns up to limit events after seq, none older than since.
	after func(ctx context.Context, seq uint64, since time.Time, limit int) ([]forwarded, error)
}

func newEventForwarder(name string, stream *bus.Events, after func(context.Context, uint64, time.Time, int) ([]forwarded, error)) *eventForwarder {
	return &eventForwarder{name: name, stream: stream, wake: make(chan struct{}, 1), after: after}
}

// Wake tells the forwarder that events were committed; it never blocks.
func (f *eventForwarder) Wake() {
	if f == nil {
		return
	}
	select {
	case f.wake <- struct{}{}:
	default: // awake already; it reads from the database
	}
}

func (h *Hub) forward(ctx context.Context, f *eventForwarder) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		if err := f.publishPending(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("event forwarding to the bus failed; retrying", "events", f.name, "err", err)
			retry.Reset(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-retry.C:
		}
	}
}

func (f *eventForwarder) publishPending(ctx context.Context) error {
	last, err := f.stream.LastSeq(ctx)
	if err != nil {
		return err
	}
	// Events older than the stream keeps would only expire again.
	since := time.Now().Add(-f.stream.MaxAge())
	for {
		events, err := f.after(ctx, last, since, 500)
		if err != nil {
			return err
		}
		if len(events) == 0 {
			return nil
		}
		for _, e := range events {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = f.stream.Publish(pctx, e.tenant, e.id, e.eventID, e.body)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", e.description, err)
			}
			last = e.seq
		}
	}
}

// commandEventsAfter reads command events for their forwarder.
func (h *Hub) commandEventsAfter(ctx context.Context, seq uint64, since time.Time, limit int) ([]forwarded, error) {
	events, err := h.commands.EventsAfter(ctx, seq, since, limit)
	if err != nil {
		return nil, err
	}
	return forwardedOf(events, func(e command.Event) (uint64, string, string) {
		return e.Seq, e.Command.Code, fmt.Sprintf("%s-%d", e.Command.ID, e.Seq)
	}, "command event")
}

// presenceEventsAfter reads presence events for their forwarder.
func (h *Hub) presenceEventsAfter(ctx context.Context, seq uint64, since time.Time, limit int) ([]forwarded, error) {
	events, err := h.presence.EventsAfter(ctx, seq, since, limit)
	if err != nil {
		return nil, err
	}
	return forwardedOf(events, func(e presence.Event) (uint64, string, string) {
		return e.Seq, e.Code, fmt.Sprintf("presence-%s-%d", h.deployID, e.Seq)
	}, "presence event")
}

// forwardedOf turns a table's events into what a forwarder publishes, their
// JSON as the body; describe names each (sequence, device code, event id).
func forwardedOf[E any](events []E, describe func(E) (seq uint64, code, eventID string), what string) ([]forwarded, error) {
	out := make([]forwarded, 0, len(events))
	for _, e := range events {
		seq, code, eventID := describe(e)
		body, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("hub: %s %d: %w", what, seq, err)
		}
		tenant, id := splitCode(code)
		out = append(out, forwarded{seq: seq, tenant: tenant, id: id, eventID: eventID, body: body,
			description: fmt.Sprintf("%s %d", what, seq)})
	}
	return out, nil
}

// openPresence opens the presence service, which the adapters and the
// intake report to; startTelemetry starts it.
func (h *Hub) openPresence(ctx context.Context) error {
	var err error
	if h.presence, err = presence.Open(ctx, presence.Options{
		DB: h.db, Now: h.opts.Now, Logger: h.log, Metrics: h.metrics,
		Idle: time.Duration(h.opts.Config.CoAP.SessionIdle),
		// A PSM device's uplink after a sleep sends what waited for it.
		WakeGap: netuse.WakeGap(h.opts.Config.Networks.Profile), OnWake: h.deviceWoke,
		OnEvent: func() {
			h.presenceEvents.Wake()
			h.webhooks.Wake()
		},
	}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

// openWebhooks opens the webhook service over the stored device events and
// the command and presence events.
func (h *Hub) openWebhooks(ctx context.Context) error {
	var err error
	if h.webhooks, err = webhook.Open(ctx, webhook.Options{
		DB: h.db, Audit: h.audit, OnAudit: h.wakeAuditForwarder, Commands: h.commands, Presence: h.presence, Events: h.tel.Events,
		Logger: h.log, Metrics: h.metrics, Now: h.opts.Now,
	}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

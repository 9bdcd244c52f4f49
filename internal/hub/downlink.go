package hub

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// PSKFile holds the secret device PSKs are derived from.
const PSKFile = "psk.key"

// modelOf returns a device's thing model for the twin and command
// services, with notFound wrapped around an unknown device.
func (h *Hub) modelOf(notFound error) func(ctx context.Context, code string) (*thingmodel.Model, error) {
	return func(ctx context.Context, code string) (*thingmodel.Model, error) {
		o, err := h.reg.Object(ctx, code)
		if errors.Is(err, registry.ErrNotFound) {
			return nil, fmt.Errorf("%w: %v", notFound, err)
		}
		if err != nil {
			return nil, err
		}
		return h.reg.ModelOf(ctx, o)
	}
}

// startTwinsAndCommands opens the twin and command services (tables in the
// metadata database) and starts command delivery.
func (h *Hub) startTwinsAndCommands(ctx context.Context) error {
	cfg := h.opts.Config
	var err error
	if h.twins, err = twin.Open(ctx, twin.Options{
		DB: h.db, Audit: h.audit, OnAudit: h.wakeAuditForwarder, Model: h.modelOf(twin.ErrNotFound), Now: h.opts.Now,
		Limits: twin.Limits{MaxDocBytes: cfg.Twins.MaxDocBytes},
		OnChange: func(c twin.Change) {
			if !c.Desired {
				return
			}
			body, _ := json.Marshal(map[string]any{"version": c.Version})
			tenant, id := splitCode(c.Code)
			if err := h.bus.AnnounceTwin(tenant, id, body); err != nil {
				h.log.Warn("twin change not announced", "device", c.Code, "err", err)
			}
		},
	}); err != nil {
		return fmt.Errorf("hub: twins: %w", err)
	}
	if h.commands, err = command.Open(ctx, command.Options{
		DB: h.db, Audit: h.audit, OnAudit: h.wakeAuditForwarder, Model: h.modelOf(command.ErrNotFound),
		Now: h.opts.Now, Logger: h.log.With("component", "commands"),
		DefaultTTL: time.Duration(cfg.Commands.DefaultTTL), AckTimeout: time.Duration(cfg.Commands.AckTimeout),
		MaxAttempts: cfg.Commands.MaxAttempts,
		OnEvent: func(command.Event) {
			select {
			case h.commandEventsPending <- struct{}{}:
			default: // the forwarder is awake already; it reads from the database
			}
		},
	}); err != nil {
		return fmt.Errorf("hub: commands: %w", err)
	}
	return h.commands.Start(ctx)
}

// forwardCommandEvents publishes command events to the bus in order, as
// forwardAudit does the audit log: from the newest event the stream holds
// to the newest in the database, so that neither a burst, nor a crash, nor
// a failed publish loses one (message ids make a repeat harmless).
func (h *Hub) forwardCommandEvents(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		if err := h.publishPendingCommandEvents(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("command event forwarding to the bus failed; retrying", "err", err)
			retry.Reset(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-h.commandEventsPending:
		case <-retry.C:
		}
	}
}

func (h *Hub) publishPendingCommandEvents(ctx context.Context) error {
	last, err := h.bus.CommandEventsPublished(ctx)
	if err != nil {
		return err
	}
	// Events older than the stream keeps would only expire again.
	since := time.Now().Add(-h.bus.CommandEventMaxAge())
	for {
		events, err := h.commands.EventsAfter(ctx, last, since, 500)
		if err != nil {
			return err
		}
		if len(events) == 0 {
			return nil
		}
		for _, e := range events {
			body, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("hub: command event %d: %w", e.Seq, err)
			}
			tenant, id := splitCode(e.Command.Code)
			eventID := fmt.Sprintf("%s-%d", e.Command.ID, e.Seq)
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = h.bus.PublishCommandEvent(pctx, tenant, id, eventID, body)
			cancel()
			if err != nil {
				return err
			}
			last = e.Seq
		}
	}
}

// devicePSK is the CoAP/DTLS pre-shared key of a device: derived from the
// hub's PSK secret and the device's active key, as text (hex) so that tools
// taking keys as strings use it unchanged.
func (h *Hub) devicePSK(ctx context.Context, code string) ([]byte, error) {
	fp, err := h.reg.ActiveKeyFingerprint(ctx, code)
	if err != nil {
		return nil, err
	}
	return []byte(hex.EncodeToString(h.psk.Derive(code, fp))), nil
}

func splitCode(c string) (tenant, id string) {
	for i := 0; i < len(c); i++ {
		if c[i] == ':' {
			return c[:i], c[i+1:]
		}
	}
	return "", c
}

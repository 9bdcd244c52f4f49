package hub

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/psk"
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
// metadata database); startTelemetry starts command delivery.
func (h *Hub) openTwinsAndCommands(ctx context.Context) error {
	cfg := h.opts.Config
	var err error
	if h.twins, err = twin.Open(ctx, twin.Options{
		DB: h.db, Audit: h.audit, OnAudit: h.wakeAuditForwarder, Model: h.modelOf(twin.ErrNotFound), Now: h.opts.Now,
		Limits: twin.Limits{MaxDocBytes: cfg.Twins.MaxDocBytes},
		OnChange: func(c twin.Change) {
			if !c.Desired {
				return
			}
			h.edgeTwinChanged(c.Code, c.Version)
			body, _ := json.Marshal(map[string]any{"version": c.Version})
			tenant, id := splitCode(c.Code)
			if err := h.bus.AnnounceTwin(tenant, id, body); err != nil {
				h.log.Warn("twin change not announced", "device", c.Code, "err", err)
			}
		},
	}); err != nil {
		return fmt.Errorf("hub: twins: %w", err)
	}
	h.openReach()
	if h.commands, err = command.Open(ctx, command.Options{
		DB: h.db, Audit: h.audit, OnAudit: h.wakeAuditForwarder, Model: h.modelOf(command.ErrNotFound),
		Now: h.opts.Now, Logger: h.log.With("component", "commands"),
		DefaultTTL: time.Duration(cfg.Commands.DefaultTTL), AckTimeout: time.Duration(cfg.Commands.AckTimeout),
		MaxAttempts: cfg.Commands.MaxAttempts,
		Reach:       h.reachOf,
		OnEvent: func(ev command.Event) {
			h.commandEvents.Wake()
			h.webhooks.Wake()
			if h.loops != nil { // raw captures feed the loops' band features
				h.loops.CommandEvent(ev)
			}
		},
	}); err != nil {
		return fmt.Errorf("hub: commands: %w", err)
	}
	return nil
}

// devicePSK is the CoAP/DTLS pre-shared key a PSK identity names: a bare
// code names the device's oldest valid key (during a rotation's overlap the
// retiring one, so that a device not yet given its new key goes on
// working), "<code>~<key id>" one key by its fingerprint. The key is
// derived from the hub's PSK secret and the key's fingerprint, as text
// (hex) so that tools taking keys as strings use it unchanged.
func (h *Hub) devicePSK(ctx context.Context, identity string) ([]byte, error) {
	code, keyID := psk.ParseIdentity(identity)
	fps, err := h.reg.ValidKeyFingerprints(ctx, code)
	if err != nil {
		return nil, err
	}
	fp, ok := psk.Select(fps, keyID)
	if !ok {
		return nil, fmt.Errorf("%w: %s names no valid key of %s", registry.ErrNotFound, identity, code)
	}
	return []byte(hex.EncodeToString(h.psk.Derive(code, fp))), nil
}

// keyPSKIdentity is the PSK identity of a device's active key.
func (h *Hub) keyPSKIdentity(ctx context.Context, code string) (string, error) {
	fp, err := h.reg.ActiveKeyFingerprint(ctx, code)
	if err != nil {
		return "", err
	}
	return psk.Identity(code, fp), nil
}

func splitCode(c string) (tenant, id string) {
	for i := 0; i < len(c); i++ {
		if c[i] == ':' {
			return c[:i], c[i+1:]
		}
	}
	return "", c
}

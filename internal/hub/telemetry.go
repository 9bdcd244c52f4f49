package hub

// The telemetry side and the protocol adapters: the node's components,
// with the hub's TLS certificate, PSKs and identity changes.

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/node"
	"github.com/wanwu-iot/wanwu/internal/psk"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

// startTelemetry opens presence, the twin, command and webhook services,
// the stores and the pipeline, and starts the protocol adapters.
func (h *Hub) startTelemetry(ctx context.Context) error {
	cfg := h.opts.Config
	// Open before anything starts: each service's callbacks reach the
	// others (command and presence events wake the webhooks).
	if err := h.openPresence(ctx); err != nil {
		return err
	}
	if err := h.openTwinsAndCommands(ctx); err != nil {
		return err
	}
	if err := h.openLoops(ctx); err != nil {
		return err
	}
	var err error
	if h.tel, err = node.StartTelemetry(ctx, node.TelemetryOptions{
		Dir: cfg.DataDir, Config: cfg.Telemetry, Bus: h.bus, Disk: h.dir.Disk,
		Logger: h.log, Metrics: h.metrics, Now: h.opts.Now, Presence: h.presence,
		Consumers: []node.Consumer{h.loopConsumer()},
	}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	h.loopPipe.Store(h.tel.Pipeline)
	if err := h.startCapture(ctx); err != nil {
		return err
	}
	if err := h.openWebhooks(ctx); err != nil {
		return err
	}
	if err := h.openUsage(ctx); err != nil {
		return err
	}
	if err := h.openEdges(ctx); err != nil {
		return err
	}
	h.presence.Start()
	if err := h.commands.Start(ctx); err != nil {
		return err
	}
	h.webhooks.Start()
	if cfg.MQTT.TLSListen != "" || cfg.HTTP.TLSListen != "" || cfg.CoAP.DTLSListen != "" {
		if h.tlsConf, err = serverTLS(cfg.DataDir, h.ca, cfg.TLSHosts); err != nil {
			return err
		}
	}
	deps := node.AdapterDeps{
		Registry: h.reg, Intake: h.tel.Intake, Twins: h.twins, Commands: h.commands, Presence: h.presence, Usage: h.usage,
		Logger: h.log, Metrics: h.metrics, ProtocolErrors: h.protoErrs,
		TLS: h.tlsConf, ClientCAs: h.ca.Pool(),
		SessionKeep: h.sessionKeep,
	}
	if cfg.CoAP.DTLSListen != "" || cfg.CoAP.Listen != "" {
		if h.psk, err = psk.LoadOrCreate(filepath.Join(cfg.DataDir, PSKFile)); err != nil {
			return fmt.Errorf("hub: %w", err)
		}
		deps.PSK = h.devicePSK
	}
	if h.adapters, err = node.BuildAdapters(node.AdapterConfig{
		MQTT: cfg.MQTT, CoAP: cfg.CoAP, MaxPayload: cfg.Telemetry.MaxPayload,
	}, deps); err != nil {
		return err
	}
	if err := h.adapters.Start(ctx); err != nil {
		return err
	}
	if m, ok := h.adapters.Get("mqtt").(*mqtt.Server); ok {
		h.alarmPub.Store(m)
	}
	// A changed desired state reaches the device on whichever adapter
	// holds it.
	if h.unsubTwn, err = h.bus.SubscribeTwinAnnouncements(func(tenant, id string, _ []byte) {
		h.adapters.TwinChanged(tenant + ":" + id)
	}); err != nil {
		return err
	}
	// Identity changes reach connected devices: a revoked, quarantined,
	// decommissioned, deleted or updated device (a new model or number is
	// read at connect time), or one whose key was revoked, is disconnected
	// and must pass admission again.
	h.unsub, err = h.bus.SubscribeAudit(func(kind string, entry []byte) {
		switch kind {
		case registry.KindObjectRevoked, registry.KindObjectQuarantined, registry.KindKeyRevoked, registry.KindKeyRotated:
			if e, err := audit.DecodeLeaf(entry); err == nil {
				h.adapters.DisconnectDevice(e.Subject)
			}
		case registry.KindObjectDecommissioned, registry.KindObjectDeleted:
			if e, err := audit.DecodeLeaf(entry); err == nil {
				h.adapters.DisconnectDevice(e.Subject)
				h.networkChanged(kind, e.Subject, e.Data)
				h.goTracked(func() { h.endDevice(kind, e) })
			}
		case registry.KindObjectUpdated:
			// A new path or tags change nothing for a session; a new model
			// or number (edge) does. A new network profile changes how its
			// bytes are counted and when downlink goes to it.
			if e, err := audit.DecodeLeaf(entry); err == nil {
				if registry.UpdateNeedsReconnect(e.Data) {
					h.adapters.DisconnectDevice(e.Subject)
				}
				h.networkChanged(kind, e.Subject, e.Data)
			}
		}
	})
	return err
}

// endDevice cancels the commands of a device whose identity ended and, when
// its code was released (deleted, or decommissioned with release), forgets
// its twin, so that an object registered under the code later inherits
// neither.
func (h *Hub) endDevice(kind string, e audit.Entry) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.commands.CancelAll(ctx, "system", e.Subject); err != nil {
		h.log.Warn("commands of an ended device not canceled", "device", e.Subject, "err", err)
	}
	var data struct {
		ReleaseCode bool `json:"release_code"`
	}
	_ = json.Unmarshal(e.Data, &data)
	if kind == registry.KindObjectDeleted || data.ReleaseCode {
		if err := h.twins.Forget(ctx, e.Subject); err != nil {
			h.log.Warn("twin of a released code not forgotten", "device", e.Subject, "err", err)
		}
	}
}

package hub

// The telemetry side: the stores, the decoder, the pipeline and its
// consumers, the twin and command services, and the protocol adapters.

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/time/rate"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
)

// startTelemetry opens the stores and the pipeline and starts the MQTT endpoint.
func (h *Hub) startTelemetry(ctx context.Context) error {
	cfg := h.opts.Config
	var err error
	if h.tsdb, err = tsdb.Open(tsdb.Options{
		Dir: filepath.Join(cfg.DataDir, tsdbDir), OutOfOrderWindow: time.Duration(cfg.Telemetry.OutOfOrderWindow),
		Retention: time.Duration(cfg.Telemetry.Retention), Logger: h.log.With("component", "tsdb"), Registerer: h.metrics,
	}); err != nil {
		return fmt.Errorf("hub: tsdb: %w", err)
	}
	if h.events, err = eventstore.Open(ctx, filepath.Join(cfg.DataDir, eventsFile)); err != nil {
		return err
	}
	h.decoder = ingest.NewDecoder(ingest.Options{
		MaxPayload: cfg.Telemetry.MaxPayload, FutureSkew: time.Duration(cfg.Telemetry.FutureSkew),
		MaxAge: time.Duration(cfg.Telemetry.OutOfOrderWindow), Now: h.opts.Now,
	})
	if h.pipe, err = pipeline.New(pipeline.Options{
		Bus: h.bus, TSDB: h.tsdb, Events: h.events, Logger: h.log, Metrics: h.metrics,
		CursorFile: filepath.Join(cfg.DataDir, ingestCursor),
		Admit:      h.disk.Admit,
		OnNoSpace:  func(store string, err error) { h.disk.Report(store, err) },
	}); err != nil {
		return err
	}
	if err := h.pipe.Start(ctx); err != nil {
		return err
	}
	if err := h.startTwinsAndCommands(ctx); err != nil {
		return err
	}
	if cfg.MQTT.TLSListen != "" || cfg.HTTP.TLSListen != "" {
		if h.tlsConf, err = serverTLS(cfg.DataDir, h.ca, cfg.TLSHosts); err != nil {
			return err
		}
	}
	if h.mqtt, err = mqtt.New(mqtt.Options{
		Listen: cfg.MQTT.Listen, TLSListen: cfg.MQTT.TLSListen, TLS: h.tlsConf,
		DevListen: cfg.MQTT.DevListen, DevACL: cfg.MQTT.DevACL,
		Registry: h.reg, Pipeline: h.pipe, Decoder: h.decoder, Twins: h.twins, Commands: h.commands,
		Logger: h.log, Metrics: h.metrics, ProtocolErrors: h.protoErrs,
		MaxPacket: uint32(cfg.Telemetry.MaxPayload) + 1024, MaxInflight: uint16(cfg.MQTT.MaxInflight), MaxQueued: cfg.MQTT.MaxQueued,
		Limits: mqtt.Limits{
			ConnectPerDevice: rate.Limit(cfg.MQTT.Limits.ConnectPerDevice), ConnectPerDeviceBurst: cfg.MQTT.Limits.ConnectPerDeviceBurst,
			ConnectPerAddr: rate.Limit(cfg.MQTT.Limits.ConnectPerAddr), ConnectPerAddrBurst: cfg.MQTT.Limits.ConnectPerAddrBurst,
			PublishPerDevice: rate.Limit(cfg.MQTT.Limits.PublishPerDevice), PublishPerDeviceBurst: cfg.MQTT.Limits.PublishPerDeviceBurst,
			AuthFailuresPerAddr: rate.Limit(cfg.MQTT.Limits.AuthFailuresPerAddr), AuthFailuresPerAddrBurst: cfg.MQTT.Limits.AuthFailuresPerAddrBurst,
			AuthFailuresPerDevice: rate.Limit(cfg.MQTT.Limits.AuthFailuresPerDevice), AuthFailuresPerDeviceBurst: cfg.MQTT.Limits.AuthFailuresPerDeviceBurst,
		},
	}); err != nil {
		return err
	}
	h.adapters = append(h.adapters, h.mqtt)
	if err := h.newCoAP(); err != nil {
		return err
	}
	if h.coap != nil {
		h.adapters = append(h.adapters, h.coap)
	}
	for _, a := range h.adapters {
		if err := a.Start(ctx); err != nil {
			return err // an adapter's errors name it, or the listener's key
		}
	}
	if h.unsubTwn, err = h.followTwinAnnouncements(); err != nil {
		return err
	}
	// Identity changes reach connected devices: a revoked or quarantined
	// device, or one whose key was revoked, is disconnected and must pass
	// admission again.
	h.unsub, err = h.bus.SubscribeAudit(func(kind string, entry []byte) {
		switch kind {
		case registry.KindObjectRevoked, registry.KindObjectQuarantined, registry.KindKeyRevoked, registry.KindKeyRotated:
			if e, err := audit.DecodeLeaf(entry); err == nil {
				for _, a := range h.adapters {
					a.DisconnectDevice(e.Subject)
				}
			}
		}
	})
	return err
}

package hub

// The HTTP(S) API: the handler with everything it serves, the web console
// included, on the node's HTTP servers.

import (
	"context"
	"crypto/ed25519"
	"time"

	"golang.org/x/time/rate"

	"github.com/wanwu-iot/wanwu/internal/api"
	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/console"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/node"
)

func (h *Hub) startHTTP() error {
	cfg := h.opts.Config
	pubPEM, _ := keys.MarshalPublicKeyPEM(h.signer.Public())
	did, _ := keys.DID(h.signer.Public())
	var pskFunc func(context.Context, string) ([]byte, error)
	var pskIdentity func(context.Context, string) (string, error)
	if h.psk != nil {
		pskFunc, pskIdentity = h.devicePSK, h.keyPSKIdentity
	}
	listeners := h.adapters.Listeners()
	con, err := console.New(console.Options{
		Audit: h.audit, Registry: h.reg, Presence: h.presence, Gatherer: h.metrics, Metrics: h.metrics,
		Logger: h.log.With("component", "console"), Role: "hub", Code: h.deployID, Version: h.opts.Version,
		ImportMaxRows:   cfg.Identity.ImportMaxRows,
		SessionLifetime: time.Duration(cfg.Console.SessionLifetime), SecureCookies: cfg.Console.SecureCookies,
		LiveEvery: time.Duration(cfg.Console.LiveEvery), MaxLiveStreams: cfg.Console.MaxLiveStreams,
	})
	if err != nil {
		return err
	}
	h.console = con
	handler, err := api.New(api.Options{
		Registry: h.reg, Audit: h.audit, CA: h.ca, Logger: h.log.With("component", "api"),
		Metrics: h.metrics, Gatherer: h.metrics, Ready: h.Ready,
		TSDB: h.tel.TSDB, Events: h.tel.Events, Pipeline: h.tel.Pipeline, Intake: h.tel.Intake,
		Twins: h.twins, Commands: h.commands, Presence: h.presence, Webhooks: h.webhooks, Loops: h.loops, Alarms: h.alarms, PSK: pskFunc, PSKIdentity: pskIdentity,
		Usage: h.usage, Profile: cfg.Networks.Profile, Edges: h.edges, EdgeSnapshot: h.edgeSnapshot,
		EdgeCommands: h.edgeDownlinkPoll, EdgeCommandsAck: h.edgeDownlinkAck,
		SignDownlink:    func(msg []byte) []byte { return ed25519.Sign(h.signer, msg) },
		EdgeLoops:       h.edgeLoops,
		EdgeML:          h.edgeML,
		MLModels:        h.mlModels,
		Rollouts:        h.rollouts,
		RolloutChanged:  h.rolloutChanged,
		MLStats:         h.mlStats,
		Datasets:        h.datasets,
		CaptureNow:      h.captureNow,
		RelayVote:       h.relayVote,
		Console:         con,
		IngestPerDevice: rate.Limit(cfg.MQTT.Limits.PublishPerDevice), IngestPerDeviceBurst: cfg.MQTT.Limits.PublishPerDeviceBurst,
		IngestPerAddr: rate.Limit(cfg.MQTT.Limits.ConnectPerAddr * 10), IngestPerAddrBurst: cfg.MQTT.Limits.ConnectPerAddrBurst * 10,
		ImportMaxRows: cfg.Identity.ImportMaxRows, DecommissionReleaseCodes: cfg.Identity.DecommissionReleaseCodes,
		Info: api.Info{
			Version: h.opts.Version, Role: "hub", DeploymentID: h.deployID, SigningDID: did, SigningKeyPEM: string(pubPEM),
			AuditOrigin: AuditOrigin(h.deployID), AuditVerifierKey: h.audit.VerifierKey(),
			MQTT: listeners["mqtt/"+mqtt.ListenerTCP], MQTTTLS: listeners["mqtt/"+mqtt.ListenerTLS], HTTPS: cfg.HTTP.TLSListen,
			CoAP: listeners["coap/"+coap.ListenerUDP], CoAPDTLS: listeners["coap/"+coap.ListenerDTLS],
		},
	})
	if err != nil {
		return err
	}
	con.UseAPI(handler)
	h.http, err = node.StartHTTP(node.HTTPOptions{
		Config: cfg.HTTP, TLS: h.tlsConf, Handler: handler, PprofListen: cfg.Debug.PprofListen, Logger: h.log,
	})
	return err
}

package hub

// The HTTP(S) API server and the optional profiler listener.

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"golang.org/x/time/rate"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/api"
	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

func (h *Hub) startHTTP() error {
	cfg := h.opts.Config
	pubPEM, _ := keys.MarshalPublicKeyPEM(h.signer.Public())
	did, _ := keys.DID(h.signer.Public())
	var pskFunc func(context.Context, string) ([]byte, error)
	if h.psk != nil {
		pskFunc = h.devicePSK
	}
	listeners := map[string]string{} // "<adapter>/<listener>"
	for _, a := range h.adapters {
		for name, addr := range a.Listeners() {
			listeners[a.Name()+"/"+name] = addr
		}
	}
	handler, err := api.New(api.Options{
		Registry: h.reg, Audit: h.audit, CA: h.ca, Logger: h.log.With("component", "api"),
		Metrics: h.metrics, Gatherer: h.metrics, Ready: h.Ready,
		TSDB: h.tsdb, Events: h.events, Pipeline: h.pipe, Decoder: h.decoder,
		Twins: h.twins, Commands: h.commands, PSK: pskFunc,
		IngestPerDevice: rate.Limit(cfg.MQTT.Limits.PublishPerDevice), IngestPerDeviceBurst: cfg.MQTT.Limits.PublishPerDeviceBurst,
		IngestPerAddr: rate.Limit(cfg.MQTT.Limits.ConnectPerAddr * 10), IngestPerAddrBurst: cfg.MQTT.Limits.ConnectPerAddrBurst * 10,
		ImportMaxRows: cfg.Identity.ImportMaxRows,
		Info: api.Info{
			Version: h.opts.Version, DeploymentID: h.deployID, SigningDID: did, SigningKeyPEM: string(pubPEM),
			AuditOrigin: AuditOrigin(h.deployID), AuditVerifierKey: h.audit.VerifierKey(),
			MQTT: listeners["mqtt/"+mqtt.ListenerTCP], MQTTTLS: listeners["mqtt/"+mqtt.ListenerTLS], HTTPS: h.opts.Config.HTTP.TLSListen,
			CoAP: listeners["coap/"+coap.ListenerUDP], CoAPDTLS: listeners["coap/"+coap.ListenerDTLS],
		},
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", h.opts.Config.HTTP.Listen)
	if err != nil {
		return adapter.ListenError("http.listen", h.opts.Config.HTTP.Listen, err)
	}
	h.listener = ln
	h.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	h.goTracked(func() {
		if err := h.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("http server stopped", "err", err)
		}
	})
	if addr := h.opts.Config.HTTP.TLSListen; addr != "" {
		tln, err := net.Listen("tcp", addr)
		if err != nil {
			return adapter.ListenError("http.tls_listen", addr, err)
		}
		h.tlsLn = tln
		h.https = &http.Server{
			Handler: handler, TLSConfig: h.tlsConf, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
			IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: h.http.ErrorLog,
		}
		h.goTracked(func() {
			if err := h.https.ServeTLS(tln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				h.log.Error("https server stopped", "err", err)
			}
		})
	}
	return nil
}

// startPprof serves Go's profiler on its own listener when configured, so
// it never shares the API's address or authentication.
func (h *Hub) startPprof() error {
	addr := h.opts.Config.Debug.PprofListen
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return adapter.ListenError("debug.pprof_listen", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	h.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	h.log.Warn("serving /debug/pprof", "addr", ln.Addr().String())
	h.goTracked(func() {
		if err := h.pprof.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("pprof server stopped", "err", err)
		}
	})
	return nil
}

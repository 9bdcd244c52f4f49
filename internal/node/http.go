package node

// The HTTP(S) servers of a node's API, and the optional profiler.

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/config"
)

// HTTPOptions configure StartHTTP.
type HTTPOptions struct {
	Config  config.HTTP
	TLS     *tls.Config // for Config.TLSListen
	Handler http.Handler
	// PprofListen serves Go's profiler on its own listener; "" = off.
	PprofListen string
	Logger      *slog.Logger
}

// HTTP is a node's running API servers.
type HTTP struct {
	log                *slog.Logger
	ln, tlsLn          net.Listener
	http, https, pprof *http.Server
	wg                 sync.WaitGroup
}

// StartHTTP serves the handler on the plain listener, and on the TLS
// listener when one is configured, and the profiler when asked. On error,
// what it opened is closed again.
func StartHTTP(o HTTPOptions) (h *HTTP, err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	h = &HTTP{log: o.Logger}
	defer func() {
		if err != nil {
			_ = h.Shutdown(context.Background())
			h = nil
		}
	}()
	if h.ln, err = net.Listen("tcp", o.Config.Listen); err != nil {
		return nil, adapter.ListenError("http.listen", o.Config.Listen, err)
	}
	errLog := slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn)
	h.http = &http.Server{
		Handler:           o.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	h.serve("http", func() error { return h.http.Serve(h.ln) })
	if addr := o.Config.TLSListen; addr != "" {
		if h.tlsLn, err = net.Listen("tcp", addr); err != nil {
			return nil, adapter.ListenError("http.tls_listen", addr, err)
		}
		h.https = &http.Server{
			Handler: o.Handler, TLSConfig: o.TLS, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
			IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: errLog,
		}
		h.serve("https", func() error { return h.https.ServeTLS(h.tlsLn, "", "") })
	}
	if addr := o.PprofListen; addr != "" {
		// Its own listener, so that it never shares the API's address or
		// authentication.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, adapter.ListenError("debug.pprof_listen", addr, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		h.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		o.Logger.Warn("serving /debug/pprof", "addr", ln.Addr().String())
		h.serve("pprof", func() error { return h.pprof.Serve(ln) })
	}
	return h, nil
}

func (h *HTTP) serve(name string, serve func() error) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("server stopped", "server", name, "err", err)
		}
	}()
}

// URL is the API's base URL.
func (h *HTTP) URL() string { return "http://" + h.ln.Addr().String() }

// TLSURL is the API's HTTPS base URL, "" when not configured.
func (h *HTTP) TLSURL() string {
	if h.tlsLn == nil {
		return ""
	}
	return "https://" + h.tlsLn.Addr().String()
}

// Shutdown stops accepting requests and waits for those in flight (until
// ctx ends) and for the servers' goroutines.
func (h *HTTP) Shutdown(ctx context.Context) error {
	var errs []error
	if h.http != nil {
		errs = append(errs, h.http.Shutdown(ctx))
	} else if h.ln != nil {
		errs = append(errs, h.ln.Close())
	}
	if h.https != nil {
		errs = append(errs, h.https.Shutdown(ctx))
	} else if h.tlsLn != nil {
		errs = append(errs, h.tlsLn.Close())
	}
	if h.pprof != nil {
		errs = append(errs, h.pprof.Close())
	}
	h.wg.Wait()
	return errors.Join(errs...)
}

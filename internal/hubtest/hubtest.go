// Package hubtest starts real hubs in-process for black-box tests: each on a
// free loopback port in its own temporary data directory, driven through the
// HTTP API with net/http and through the `wanwu` command line itself.
package hubtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/cli"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/hub"
)

// Hub is a running test hub.
type Hub struct {
	*hub.Hub
	t      testing.TB
	Config config.Hub
	// Dir is the data directory; it survives Restart.
	Dir string
	// URL is the API base URL of the current run.
	URL string
	// AdminToken is the first admin token, read from the data directory.
	AdminToken string
	// Now is the registry's clock (nil = time.Now).
	Now func() time.Time
}

// Start starts a hub in a fresh temporary directory; mutate adjusts its
// configuration. The hub shuts down when the test ends.
func Start(t testing.TB, mutate ...func(*config.Hub)) *Hub {
	t.Helper()
	return StartIn(t, t.TempDir(), mutate...)
}

// StartClock starts a hub whose registry reads the given clock.
func StartClock(t testing.TB, now func() time.Time, mutate ...func(*config.Hub)) *Hub {
	t.Helper()
	return startIn(t, t.TempDir(), now, mutate...)
}

// StartIn starts a hub on dir.
func StartIn(t testing.TB, dir string, mutate ...func(*config.Hub)) *Hub {
	t.Helper()
	return startIn(t, dir, nil, mutate...)
}

func startIn(t testing.TB, dir string, now func() time.Time, mutate ...func(*config.Hub)) *Hub {
	t.Helper()
	cfg := config.DefaultHub()
	cfg.DataDir = dir
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.TLSListen = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.MQTT.TLSListen = "127.0.0.1:0"
	cfg.CoAP.DTLSListen = "127.0.0.1:0"
	cfg.CoAP.Listen = "127.0.0.1:0"
	cfg.Log.Level = "warn"
	for _, m := range mutate {
		m(&cfg)
	}
	h := &Hub{t: t, Config: cfg, Dir: dir, Now: now}
	h.start()
	t.Cleanup(func() { h.Stop() })
	return h
}

func (h *Hub) start() {
	h.t.Helper()
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: level}))
	h.Hub = hub.New(hub.Options{Config: h.Config, Logger: log, Version: "test", Now: h.Now})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Hub.Start(ctx); err != nil {
		h.t.Fatalf("start hub: %v", err)
	}
	h.URL = h.Hub.URL()
	tok, err := os.ReadFile(filepath.Join(h.Dir, hub.AdminTokenFile))
	if err != nil {
		h.t.Fatalf("read admin token: %v", err)
	}
	h.AdminToken = strings.TrimSpace(string(tok))
}

// Stop shuts the hub down; it is safe to call twice.
func (h *Hub) Stop() {
	if h.Hub == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Hub.Shutdown(ctx); err != nil {
		h.t.Errorf("shutdown hub: %v", err)
	}
}

// Restart stops the hub and starts a new one on the same data directory.
func (h *Hub) Restart() {
	h.t.Helper()
	h.Stop()
	h.start()
}

// Response is a decoded API answer.
type Response struct {
	Status int
	Body   []byte
}

// JSON decodes the body into v, failing the test on error.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// Map decodes the body as a JSON object.
func (r Response) Map(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.JSON(t, &m)
	return m
}

// Do sends a request with token (empty = none); body may be nil, a []byte,
// a string, or a value to encode as JSON.
func (h *Hub) Do(method, path, token string, body any) Response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			h.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, h.URL+path, rd)
	if err != nil {
		h.t.Fatalf("request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return Response{Status: resp.StatusCode, Body: out}
}

// Admin sends a request with the admin token.
func (h *Hub) Admin(method, path string, body any) Response {
	h.t.Helper()
	return h.Do(method, path, h.AdminToken, body)
}

// MustAdmin sends an admin request and fails unless the status is want.
func (h *Hub) MustAdmin(want int, method, path string, body any) Response {
	h.t.Helper()
	r := h.Admin(method, path, body)
	if r.Status != want {
		h.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r
}

// Wanwu runs the wanwu command line in-process; ctl and verify commands get
// --data-dir pointing at this hub.
func (h *Hub) Wanwu(args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	if len(args) > 0 && (args[0] == "ctl" || args[0] == "verify") && !hasFlag(args, "--data-dir") {
		args = append(args, "--data-dir", h.Dir)
	}
	var out, errb bytes.Buffer
	code = cli.Main(args, &out, &errb)
	return out.String(), errb.String(), code
}

// MustWanwu runs the command line and fails the test on a non-zero exit.
func (h *Hub) MustWanwu(args ...string) string {
	h.t.Helper()
	out, errs, code := h.Wanwu(args...)
	if code != 0 {
		h.t.Fatalf("wanwu %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

package hubtest

// Edges for black-box tests: an edge node started in-process against a
// test hub, through a link proxy the test can cut.

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wanwudevice "github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/edge"
	"github.com/wanwu-iot/wanwu/internal/linkemu"
)

// LinkProxy stands between an edge and its hub: a relay to the hub's
// current HTTPS address that a test cuts and restores.
type LinkProxy = linkemu.Relay

// NewLinkProxy relays a loopback port to target(), asked at each
// connection; it closes when the test ends.
func NewLinkProxy(t testing.TB, target func() string) *LinkProxy {
	p, err := linkemu.NewRelay(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Edge is a running test edge.
type Edge struct {
	*edge.Edge
	t      testing.TB
	Config config.Hub
	// Dir is the data directory; it survives Restart.
	Dir string
	// Token is the edge API's admin token.
	Token string
}

// RegisterEdge registers an edge object at the hub (hub-made key) and
// saves its identity in dir, as `ctl object register --kind edge --out`
// does.
func RegisterEdge(t testing.TB, h *Hub, code, dir string) *wanwudevice.Identity {
	t.Helper()
	r := h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": code, "kind": "edge"})
	id, err := wanwudevice.ParseRegistration(r.Body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := id.Save(dir); err != nil {
		t.Fatal(err)
	}
	return id
}

// StartEdge starts an edge on dir (its identity in dir/identity) whose
// hub is hubURL; mutate adjusts its configuration. It stops when the test
// ends.
func StartEdge(t testing.TB, dir, hubURL string, mutate ...func(*config.Hub)) *Edge {
	t.Helper()
	cfg := config.DefaultEdge()
	cfg.DataDir = dir
	cfg.Edge.Hub = hubURL
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.CoAP.Listen = "127.0.0.1:0"
	cfg.Edge.RetryMax = config.Duration(200 * time.Millisecond)
	cfg.Log.Level = "warn"
	cfg.MQTT.Limits.PublishPerDevice, cfg.MQTT.Limits.PublishPerDeviceBurst = 1e6, 1e6
	for _, m := range mutate {
		m(&cfg)
	}
	e := &Edge{t: t, Config: cfg, Dir: dir}
	e.start()
	t.Cleanup(e.Stop)
	return e
}

func (e *Edge) start() {
	e.t.Helper()
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: level})).With("role", "edge")
	e.Edge = edge.New(edge.Options{Config: e.Config, Logger: log, Version: "test"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.Edge.Start(ctx); err != nil {
		e.t.Fatalf("start edge: %v", err)
	}
	tok, err := os.ReadFile(filepath.Join(e.Dir, edge.AdminTokenFile))
	if err != nil {
		e.t.Fatalf("read edge token: %v", err)
	}
	e.Token = strings.TrimSpace(string(tok))
}

// Stop shuts the edge down; safe to call twice.
func (e *Edge) Stop() {
	if e.Edge == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.Edge.Shutdown(ctx); err != nil {
		e.t.Errorf("shutdown edge: %v", err)
	}
}

// Restart stops the edge and starts it again on the same data directory.
func (e *Edge) Restart() {
	e.t.Helper()
	e.Stop()
	e.start()
}

// HTTPSAddr is the hub's current HTTPS listener address.
func (h *Hub) HTTPSAddr() string {
	return strings.TrimPrefix(h.Hub.HTTPSURL(), "https://")
}

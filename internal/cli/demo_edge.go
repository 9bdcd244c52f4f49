package cli

// The demo's edge node: the plant's devices behind it, its link to the hub
// through a relay the demo pulls now and then (and the user may pull).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/edge"
	"github.com/wanwu-iot/wanwu/internal/hub"
	"github.com/wanwu-iot/wanwu/internal/hubclient"
	"github.com/wanwu-iot/wanwu/internal/linkemu"
	"github.com/wanwu-iot/wanwu/internal/scenario"
	"github.com/wanwu-iot/wanwu/internal/sim"
)

// demoEdge is the demo's running edge with the relay its link goes
// through.
type demoEdge struct {
	edge  *edge.Edge
	relay *linkemu.Relay
	dir   string
	// cutFile, when it exists, keeps the link pulled.
	cutFile string
	// outageUntil is the end of the outage the demo itself made.
	outageUntil time.Time
	outageNext  time.Time
}

// demoOutage is how long the demo pulls its edge's link, and how often.
const (
	demoOutage      = 30 * time.Second
	demoOutageFirst = 90 * time.Second
	demoOutageEvery = 5 * time.Minute
)

// startDemoEdge registers the demo's edge at the hub (once: its identity
// stays in <data dir>/edge/identity), starts it with its link through a
// relay, and returns the route the scenario's edge classes take.
func startDemoEdge(ctx context.Context, cfg config.Hub, h *hub.Hub, hc *hubclient.Client, sc *scenario.Scenario, log *slog.Logger) (*demoEdge, *sim.EdgeRoute, error) {
	behind := false
	for _, c := range sc.Classes {
		behind = behind || c.Edge
	}
	if !behind {
		return nil, nil, nil
	}
	if h.HTTPSURL() == "" {
		return nil, nil, usagef("the demo's edge needs the hub's HTTPS listener (--http.tls-listen)")
	}
	d := &demoEdge{dir: filepath.Join(cfg.DataDir, "edge")}
	d.cutFile = filepath.Join(d.dir, "cut-link")
	code := sc.Tenant + ":edge-1"
	idDir := filepath.Join(d.dir, edge.IdentityDir)
	if _, err := device.LoadIdentity(idDir); err != nil {
		body, _ := json.Marshal(map[string]string{"name": sc.Tenant, "title": "simulated devices"})
		if _, status, err := hc.Do(ctx, "POST", "/api/v1/tenants", bytes.NewReader(body), "application/json"); err != nil && status != http.StatusConflict {
			return nil, nil, fmt.Errorf("demo edge: tenant: %w", err)
		}
		body, _ = json.Marshal(map[string]any{"code": code, "kind": "edge", "path": "plant-1"})
		raw, _, err := hc.Do(ctx, "POST", "/api/v1/objects", bytes.NewReader(body), "application/json")
		if err != nil {
			return nil, nil, fmt.Errorf("demo edge: register %s: %w", code, err)
		}
		id, err := device.ParseRegistration(raw, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("demo edge: %w", err)
		}
		if err := id.Save(idDir); err != nil {
			return nil, nil, fmt.Errorf("demo edge: %w", err)
		}
	}
	hubAddr := strings.TrimPrefix(h.HTTPSURL(), "https://")
	var err error
	if d.relay, err = linkemu.NewRelay(func() string { return hubAddr }); err != nil {
		return nil, nil, err
	}
	ec := config.DefaultEdge()
	ec.DataDir = d.dir
	ec.Edge.Hub = "https://" + d.relay.Addr()
	ec.HTTP.Listen, ec.MQTT.Listen, ec.CoAP.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	ec.Telemetry = cfg.Telemetry
	d.edge = edge.New(edge.Options{Config: ec, Logger: log.With("role", "edge"), Version: currentBuild().Version})
	if err := d.edge.Start(ctx); err != nil {
		d.relay.Close()
		return nil, nil, err
	}
	_ = os.Remove(d.cutFile)
	d.outageNext = time.Now().Add(demoOutageFirst)
	l := d.edge.Listeners()
	return d, &sim.EdgeRoute{Code: code, MQTT: "mqtt://" + l["mqtt/tcp"], CoAP: "coap://" + l["coap/udp"]}, nil
}

// tick pulls or restores the link: the demo's own outage (demoOutage
// every demoOutageEvery, first after demoOutageFirst), or the user's cut
// file.
func (d *demoEdge) tick(now time.Time, log *slog.Logger) {
	if !d.outageNext.IsZero() && now.After(d.outageNext) {
		d.outageUntil = now.Add(demoOutage)
		d.outageNext = now.Add(demoOutageEvery)
		log.Info("demo: pulling the edge's link to the hub", "for", demoOutage)
	}
	_, userCut := os.Stat(d.cutFile)
	cut := now.Before(d.outageUntil) || userCut == nil
	switch {
	case cut && !d.relay.IsCut():
		d.relay.Cut()
	case !cut && d.relay.IsCut():
		d.relay.Restore()
		log.Info("demo: the edge's link to the hub is back")
	}
}

// line is the edge's part of the live status.
func (d *demoEdge) line(ctx context.Context, now time.Time) string {
	st, err := d.edge.Status(ctx)
	if err != nil {
		return "edge: " + err.Error() + "\n"
	}
	link := "up"
	switch {
	case d.relay.IsCut() && now.Before(d.outageUntil):
		link = fmt.Sprintf("PULLED by the demo for %s more", d.outageUntil.Sub(now).Round(time.Second))
	case d.relay.IsCut():
		link = "PULLED (rm " + d.cutFile + " to restore)"
	case !st.Link.Up:
		link = "down, retrying"
	}
	var parts []string
	for _, b := range st.Backlog {
		s := fmt.Sprintf("%s %d", b.Class, b.Records)
		if b.Records > 0 && b.OldestS >= 1 {
			s += fmt.Sprintf(" (oldest %s)", time.Duration(b.OldestS*float64(time.Second)).Round(time.Second))
		}
		parts = append(parts, s)
	}
	up, down := d.relay.Bytes()
	next := ""
	if !d.relay.IsCut() && d.outageNext.After(now) {
		next = fmt.Sprintf("; next outage in %s (or: touch %s)", d.outageNext.Sub(now).Round(time.Second), d.cutFile)
	}
	return fmt.Sprintf("edge %s: %d devices online, link %s%s\n  waiting for the hub: %s; link %s up, %s down\n",
		st.Code, st.DevicesOnline, link, next, strings.Join(parts, ", "), byteText(up), byteText(down))
}

// client calls the edge's own API with its admin token.
func (d *demoEdge) client() *hubclient.Client {
	tok, _ := os.ReadFile(filepath.Join(d.dir, edge.AdminTokenFile))
	return hubclient.New(d.edge.URL(), strings.TrimSpace(string(tok)))
}

// shutdown stops the edge and its relay.
func (d *demoEdge) shutdown(ctx context.Context) error {
	err := d.edge.Shutdown(ctx)
	d.relay.Close()
	return err
}

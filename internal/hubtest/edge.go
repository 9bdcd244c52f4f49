package hubtest

// Edges for black-box tests: an edge node started in-process against a
// test hub, through a link proxy the test can cut.

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	wanwudevice "github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/edge"
)

// LinkProxy stands between an edge and its hub: a TCP relay to the hub's
// current HTTPS address that a test can cut (every connection closed, new
// ones refused) and restore, as a pulled cable or a restarted hub does. It
// counts the bytes it relays each way (TLS records included), so that a
// benchmark can put a figure on what the link carries.
type LinkProxy struct {
	ln     net.Listener
	target func() string
	// bytesUp and bytesDown count the bytes relayed towards the target
	// and back.
	bytesUp, bytesDown atomic.Int64

	mu      sync.Mutex
	down    bool
	conns   map[net.Conn]struct{}
	relayed time.Time // when the first connection since Restore was relayed
	wg      sync.WaitGroup
}

// NewLinkProxy relays 127.0.0.1:<port> to target(), asked at each
// connection; it closes when the test ends.
func NewLinkProxy(t testing.TB, target func() string) *LinkProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &LinkProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address.
func (p *LinkProxy) Addr() string { return p.ln.Addr().String() }

func (p *LinkProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		up, err := net.DialTimeout("tcp", p.target(), 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		if p.relayed.IsZero() {
			p.relayed = time.Now()
		}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn, n *atomic.Int64) {
			defer p.wg.Done()
			_, _ = io.Copy(countingWriter{dst, n}, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(up, c, &p.bytesUp)
		go pipe(c, up, &p.bytesDown)
	}
}

// countingWriter counts what it writes as it goes (io.Copy's own count
// comes only when a connection ends).
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// Relayed is when the proxy relayed the first connection to the target
// since the last Restore (zero if none yet).
func (p *LinkProxy) Relayed() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.relayed
}

// Bytes returns the bytes relayed so far towards the target (up) and back
// (down), on every connection since the proxy started.
func (p *LinkProxy) Bytes() (up, down int64) { return p.bytesUp.Load(), p.bytesDown.Load() }

// Cut closes every relayed connection and refuses new ones until Restore.
func (p *LinkProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (p *LinkProxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.relayed = time.Time{}
	p.mu.Unlock()
}

// Close stops the proxy.
func (p *LinkProxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
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

package device_test

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/hubtest"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

const pumpModel = "../examples/pump.model.json"

// startHub starts a hub with tenant acme and the pump model.
func startHub(t *testing.T, mutate ...func(*config.Hub)) *hubtest.Hub {
	t.Helper()
	h := hubtest.Start(t, mutate...)
	h.MustWanwu("ctl", "tenant", "create", "acme")
	h.MustWanwu("ctl", "model", "register", pumpModel)
	return h
}

// newClaimToken creates a claim token for acme (ctl claim create flags).
func newClaimToken(t *testing.T, h *hubtest.Hub, flags ...string) string {
	t.Helper()
	out := h.MustWanwu(append([]string{"ctl", "claim", "create", "--tenant", "acme", "--json"}, flags...)...)
	var v struct{ Token string }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Token == "" {
		t.Fatalf("claim create: %v: %s", err, out)
	}
	return v.Token
}

// claim claims an identity named id with a new key.
func claim(t *testing.T, h *hubtest.Hub, id string, flags ...string) *device.Identity {
	t.Helper()
	key, err := device.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ident, err := device.Claim(ctx(t), h.URL, newClaimToken(t, h, flags...), key, device.ClaimOptions{ID: id})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return ident
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func connect(t *testing.T, opts device.Options) *device.Client {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	c, err := device.Connect(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stored counts the samples of property at base + seq milliseconds for
// seq in [0, n), one query per 10,000 milliseconds.
func stored(t *testing.T, h *hubtest.Hub, code, property string, base time.Time, n int) map[int]int {
	t.Helper()
	out := map[int]int{}
	for from := 0; from < n; from += 10_000 {
		to := min(from+10_000, n)
		start := float64(base.UnixMilli()+int64(from)) / 1000
		end := float64(base.UnixMilli()+int64(to)) / 1000
		r := h.Admin("GET", fmt.Sprintf("/api/v1/telemetry/%s/%s?start=%.3f&end=%.3f&step=1ms&agg=count", code, property, start, end), nil)
		if r.Status != 200 {
			if r.Status == 404 {
				return out // nothing stored yet
			}
			t.Fatalf("telemetry: %d %s", r.Status, r.Body)
		}
		var v struct {
			Series []struct {
				Points []struct {
					Time  time.Time
					Value float64
				}
			}
		}
		r.JSON(t, &v)
		for _, s := range v.Series {
			for _, p := range s.Points {
				if seq := int(p.Time.Sub(base) / time.Millisecond); seq >= from && seq < to {
					out[seq] += int(p.Value)
				}
			}
		}
	}
	return out
}

// exactlyOnce waits until every seq in [0, n) is stored, and fails if one
// is stored twice.
func exactlyOnce(t *testing.T, h *hubtest.Hub, code, property string, base time.Time, n int) {
	t.Helper()
	var got map[int]int
	eventually(t, "every record stored", func() error {
		got = stored(t, h, code, property, base, n)
		if len(got) < n {
			return fmt.Errorf("%d of %d records stored", len(got), n)
		}
		return nil
	})
	for seq, k := range got {
		if k != 1 {
			t.Errorf("seq %d stored %d times", seq, k)
		}
	}
}

func mustKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := device.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// proxy forwards TCP connections to the address target returns when they
// arrive, and cuts them all on demand: a connection lost mid-stream.
type proxy struct {
	ln     net.Listener
	target func() string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target func() string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target())
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer p.wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// cut closes every connection through the proxy.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// metric returns the value of one series on the hub's /metrics (0 if absent).
func metric(t *testing.T, h *hubtest.Hub, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(string(h.Do("GET", "/metrics", "", nil).Body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// TestClaimConnectPublish: a device claims its identity, saves and loads
// it, connects over MQTT with device tokens, publishes (stored), follows its
// twin and carries out a command; a bad value is refused with its reason.
func TestClaimConnectPublish(t *testing.T) {
	h := startHub(t)
	if _, err := device.Claim(ctx(t), h.URL, "wwc_"+strings.Repeat("x", 43), mustKey(t), device.ClaimOptions{}); !errors.Is(err, device.ErrClaimRefused) {
		t.Fatalf("claim with an unknown token: %v, want ErrClaimRefused", err)
	}
	id := claim(t, h, "pump-7", "--model", "acme:pump@1.0.0")
	if id.Code != "acme:pump-7" || id.Number == "" || id.Certificate == "" || id.Credential == "" {
		t.Fatalf("identity %+v", id)
	}
	dir := filepath.Join(t.TempDir(), "identity")
	if err := id.Save(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, device.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, want mode 0600", err)
	}
	id, err := device.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The key is the identity's: another key in key.pem is refused.
	other := *id
	other.Key = mustKey(t)
	if err := other.Save(t.TempDir()); err == nil {
		t.Error("saved an identity with a key that is not its own")
	}

	c := connect(t, device.Options{Identity: id, Broker: "mqtt://" + h.MQTT().Addr(mqtt.ListenerTCP), BufferDir: t.TempDir()})
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	if err := c.Publish(ctx(t), device.Record{Name: "temperature", Unit: "Cel", Time: base, Value: 71.5},
		device.Record{Name: "mode", Time: base, Value: "auto"}, device.Record{Name: "running", Time: base, Value: true}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	// Numbers are queryable once acknowledged; text values reach the event
	// store from the ingest log within about a second.
	eventually(t, "the published values", func() error {
		var latest struct {
			Values map[string]struct{ Value any }
		}
		h.MustAdmin(200, "GET", "/api/v1/telemetry/acme:pump-7/latest", nil).JSON(t, &latest)
		if latest.Values["temperature"].Value != 71.5 || latest.Values["mode"].Value != "auto" || latest.Values["running"].Value != true {
			return fmt.Errorf("stored %+v", latest.Values)
		}
		return nil
	})
	var refused *device.RefusedError
	if err := c.Publish(ctx(t), device.Record{Name: "temperature", Value: 500}); !errors.As(err, &refused) || refused.Reason != "out_of_range" {
		t.Errorf("out of range value: %v, want a refusal out_of_range", err)
	}
	if n := c.Buffered(); n != 0 {
		t.Errorf("%d messages left in the buffer", n)
	}

	// Twin: a desired change reaches OnDesired; the device reports it.
	deltas := make(chan device.Delta, 10)
	if err := c.OnDesired(func(ctx context.Context, d device.Delta) { deltas <- d }); err != nil {
		t.Fatal(err)
	}
	h.MustWanwu("ctl", "twin", "set", id.Code, "speed=1200", "mode=manual")
	select {
	case d := <-deltas:
		if d.Version != 1 || d.State["speed"] != 1200.0 || d.State["mode"] != "manual" {
			t.Errorf("delta %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delta")
	}
	if err := c.ReportState(ctx(t), map[string]any{"speed": 1200, "mode": "manual"}); err != nil {
		t.Fatalf("report: %v", err)
	}
	eventually(t, "the twin's delta empty", func() error {
		var tw struct{ Delta map[string]any }
		h.MustAdmin(200, "GET", "/api/v1/objects/acme:pump-7/twin", nil).JSON(t, &tw)
		if len(tw.Delta) != 0 {
			return fmt.Errorf("delta %v", tw.Delta)
		}
		return nil
	})
	if err := c.ReportState(ctx(t), map[string]any{"speed": "fast"}); !errors.As(err, &refused) {
		t.Errorf("a reported value of the wrong type: %v, want a refusal", err)
	}

	// Commands: issued before the handler exists, they wait; then each is
	// carried out once and its result reaches the hub.
	h.MustWanwu("ctl", "command", "send", id.Code, "setSpeed", "rpm=900", "--id", "c-1")
	var calls sync.Map
	if err := c.OnCommand(func(ctx context.Context, cmd device.Command) device.Result {
		n, _ := calls.LoadOrStore(cmd.ID, new(int))
		*n.(*int)++
		if cmd.Action == "stop" {
			return device.Failed("cannot stop while filling")
		}
		var args struct{ RPM float64 }
		json.Unmarshal(cmd.Args, &args)
		return device.Succeeded(map[string]any{"rpm": args.RPM})
	}); err != nil {
		t.Fatal(err)
	}
	h.MustWanwu("ctl", "command", "send", id.Code, "stop", "--id", "c-2")
	for id, want := range map[string]string{"c-1": "succeeded", "c-2": "failed"} {
		eventually(t, "command "+id+" "+want, func() error {
			var v struct{ Command struct{ Status string } }
			h.MustAdmin(200, "GET", "/api/v1/commands/"+id, nil).JSON(t, &v)
			if v.Command.Status != want {
				return fmt.Errorf("status %s", v.Command.Status)
			}
			return nil
		})
	}
	calls.Range(func(k, v any) bool {
		if *v.(*int) != 1 {
			t.Errorf("command %v carried out %d times", k, *v.(*int))
		}
		return true
	})
}

// TestNothingLostAcrossCutsAndRestarts: records published while the
// connection is cut, while the hub restarts, and while the device's own
// process is down (a client closed with records buffered, a new one on the
// same buffer directory) are all stored, each exactly once.
func TestNothingLostAcrossCutsAndRestarts(t *testing.T) {
	h := startHub(t)
	id := claim(t, h, "meter-1")
	// The proxy reads the hub's address from here, set after each start:
	// while the hub is down, the old address refuses connections.
	var target atomic.Value
	target.Store(h.MQTT().Addr(mqtt.ListenerTCP))
	p := newProxy(t, func() string { return target.Load().(string) })
	opts := device.Options{Identity: id, Broker: "mqtt://" + p.addr(), BufferDir: t.TempDir(), Logger: testLogger(t)}
	c, err := device.Connect(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	const n = 600
	publish := func(c *device.Client, from, to int) {
		for seq := from; seq < to; seq++ {
			pctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			err := c.Publish(pctx, device.Record{Name: "seq", Time: base.Add(time.Duration(seq) * time.Millisecond), Value: seq})
			cancel()
			if err != nil && !errors.Is(err, device.ErrPending) {
				t.Fatalf("publish %d: %v", seq, err)
			}
		}
	}
	publish(c, 0, 100)
	p.cut()
	publish(c, 100, 200)
	p.cut()
	publish(c, 200, 300)
	h.Restart() // the hub goes away mid-stream and comes back on another port
	target.Store(h.MQTT().Addr(mqtt.ListenerTCP))
	publish(c, 300, 400)
	// The device goes down with records buffered while the hub is away.
	h.Stop()
	publish(c, 400, 500)
	if c.Buffered() == 0 {
		t.Fatal("nothing buffered while the hub was down: the test proves nothing")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	h.Restart()
	target.Store(h.MQTT().Addr(mqtt.ListenerTCP))
	c = connect(t, opts)
	publish(c, 500, n)
	eventually(t, "the buffer drained", func() error {
		if k := c.Buffered(); k > 0 {
			return fmt.Errorf("%d messages buffered", k)
		}
		return nil
	})
	exactlyOnce(t, h, id.Code, "seq", base, n)
}

// TestTokenRenewal: with tokens of two seconds and no clock skew allowed,
// the MQTT session is renewed before its token expires, a connection cut
// after that is made again with a fresh token, and CoAP requests carry a
// fresh token once the old one nears its expiry.
func TestTokenRenewal(t *testing.T) {
	h := startHub(t, func(c *config.Hub) { c.Identity.TokenSkew = config.Duration(time.Millisecond) })
	id := claim(t, h, "short-1")
	p := newProxy(t, func() string { return h.MQTT().Addr(mqtt.ListenerTCP) })
	c := connect(t, device.Options{Identity: id, Broker: "mqtt://" + p.addr(), BufferDir: t.TempDir(), TokenTTL: 2 * time.Second})
	if err := c.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	accepted := `wanwu_mqtt_connects_total{result="accepted_active"}`
	before := metric(t, h, accepted)
	time.Sleep(3500 * time.Millisecond) // past the first token's expiry
	if got := metric(t, h, accepted) - before; got < 1 {
		t.Errorf("%v connects in 3.5 s with 2 s tokens: the session was not renewed", got)
	}
	p.cut()
	if err := c.Publish(ctx(t), device.Record{Name: "seq", Time: base, Value: 0}); err != nil {
		t.Fatalf("publish after a cut, the first token long expired: %v", err)
	}

	cc := connect(t, device.Options{Identity: id, CoAP: "coap://" + h.CoAP().Addr(coap.ListenerUDP), BufferDir: t.TempDir(), TokenTTL: 2 * time.Second})
	if err := cc.Publish(ctx(t), device.Record{Name: "seq", Time: base.Add(time.Millisecond), Value: 1}); err != nil {
		t.Fatalf("coap publish: %v", err)
	}
	time.Sleep(2500 * time.Millisecond)
	if err := cc.Publish(ctx(t), device.Record{Name: "seq", Time: base.Add(2 * time.Millisecond), Value: 2}); err != nil {
		t.Fatalf("coap publish after the first token expired: %v", err)
	}
	exactlyOnce(t, h, id.Code, "seq", base, 3)
}

// TestCoAP: telemetry and reported state over plain CoAP with tokens and
// over DTLS with the claimed certificate; twins and commands in queue mode:
// what the hub holds reaches the device when it next sends or polls.
func TestCoAP(t *testing.T) {
	h := startHub(t)
	id := claim(t, h, "nb-1", "--model", "acme:pump@1.0.0")
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i, ep := range []string{"coap://" + h.CoAP().Addr(coap.ListenerUDP), "coaps://" + h.CoAP().Addr(coap.ListenerDTLS)} {
		opts := device.Options{Identity: id, CoAP: ep, ServerName: "localhost", MemoryBuffer: true}
		var sockets atomic.Int32
		if i == 1 {
			// DTLS over a socket the caller opens (a link emulator's).
			opts.ListenPacket = func(context.Context) (net.PacketConn, error) {
				sockets.Add(1)
				return net.ListenPacket("udp", "127.0.0.1:0")
			}
		}
		c := connect(t, opts)
		if err := c.Publish(ctx(t), device.Record{Name: "speed", Time: base.Add(time.Duration(i) * time.Millisecond), Value: i}); err != nil {
			t.Fatalf("%s: publish: %v", ep, err)
		}
		var refused *device.RefusedError
		if err := c.Publish(ctx(t), device.Record{Name: "speed", Value: -1}); !errors.As(err, &refused) || refused.Reason != "out_of_range" {
			t.Errorf("%s: out of range: %v", ep, err)
		}
		if err := c.ReportState(ctx(t), map[string]any{"mode": "auto"}); err != nil {
			t.Errorf("%s: report: %v", ep, err)
		}

		// Queue mode: a command and a desired change wait at the hub
		// until the device asks.
		cmds := make(chan device.Command, 4)
		deltas := make(chan device.Delta, 4)
		if err := c.OnCommand(func(_ context.Context, cmd device.Command) device.Result {
			cmds <- cmd
			return device.Succeeded(nil)
		}); err != nil {
			t.Fatal(err)
		}
		if err := c.OnDesired(func(_ context.Context, d device.Delta) { deltas <- d }); err != nil {
			t.Fatal(err)
		}
		cid := fmt.Sprintf("q-%d", i)
		h.MustWanwu("ctl", "command", "send", id.Code, "setSpeed", "rpm=900", "--id", cid)
		h.MustWanwu("ctl", "command", "send", id.Code, "stop", "--id", cid+"b")
		h.MustWanwu("ctl", "twin", "set", id.Code, fmt.Sprintf("speed=%d", 1000+i))
		if err := c.Poll(ctx(t)); err != nil {
			t.Fatalf("%s: poll: %v", ep, err)
		}
		for _, want := range []string{cid, cid + "b"} {
			select {
			case cmd := <-cmds:
				if cmd.ID != want {
					t.Errorf("%s: command %s, want %s", ep, cmd.ID, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: command %s not carried out", ep, want)
			}
		}
		select {
		case d := <-deltas:
			if d.State["speed"] != float64(1000+i) {
				t.Errorf("%s: delta %+v", ep, d)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no delta", ep)
		}
		eventually(t, "the results", func() error {
			if out := h.MustWanwu("ctl", "command", "get", cid+"b"); !strings.Contains(out, `"status": "succeeded"`) {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
		if i == 1 && sockets.Load() == 0 {
			t.Errorf("%s: Options.ListenPacket not used", ep)
		}
		// One client per device at a time: this one's poll after its last
		// result would otherwise take the next endpoint's first command.
		if err := c.Close(); err != nil {
			t.Errorf("%s: close: %v", ep, err)
		}
	}
	exactlyOnce(t, h, id.Code, "speed", base, 2)
}

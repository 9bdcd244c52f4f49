package hubtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mb "github.com/simonvetter/modbus"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/edge"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// edgeSetup is a hub with an edge placed behind a cuttable link, and
// devices registered at the hub behind the edge.
type edgeSetup struct {
	hub   *Hub
	proxy *LinkProxy
	edge  *Edge
	devs  []tokenDevice
	// target is the hub's HTTPS address the proxy relays to (it changes
	// with a restart).
	target atomic.Value
}

// restartHub restarts the hub (on a new port) and points the proxy at it.
func (s *edgeSetup) restartHub() {
	s.hub.Restart()
	s.target.Store(s.hub.HTTPSAddr())
}

func newEdgeSetup(t *testing.T, devices int) *edgeSetup {
	t.Helper()
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	s := &edgeSetup{hub: h}
	s.target.Store(h.HTTPSAddr())
	s.proxy = NewLinkProxy(t, func() string { return s.target.Load().(string) })
	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	for i := range devices {
		s.devs = append(s.devs, newEdgeDevice(t, h, fmt.Sprintf("acme:m%02d", i), "acme:edge-1"))
	}
	s.edge = StartEdge(t, dir, "https://"+s.proxy.Addr(), func(c *config.Hub) {
		// Refusals the tests look for are the identity's, not the rate's.
		c.MQTT.Limits.ConnectPerDevice, c.MQTT.Limits.ConnectPerDeviceBurst = 1000, 1000
	})
	return s
}

// newEdgeDevice registers a device behind edge (hub-made key) and signs
// it a token.
func newEdgeDevice(t *testing.T, h *Hub, code, edge string) tokenDevice {
	t.Helper()
	return newTokenObject(t, h, map[string]any{"code": code, "edge": edge})
}

// newTokenObject registers the object the request describes (hub-made
// key) and signs it a device token.
func newTokenObject(t *testing.T, h *Hub, req map[string]any) tokenDevice {
	t.Helper()
	code, _ := req["code"].(string)
	var reg struct {
		PrivateKey string `json:"private_key"`
	}
	h.MustAdmin(201, "POST", "/api/v1/objects", req).JSON(t, &reg)
	key, err := keys.ParsePrivateKeyPEM([]byte(reg.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := devtoken.Sign(key, code, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tokenDevice{code, tok}
}

// waitEdgeAdmits waits until the edge's replica has the device (the
// snapshot reached it) and the device can connect.
func (s *edgeSetup) connect(t *testing.T, dev tokenDevice) *paho.Client {
	t.Helper()
	var c *paho.Client
	eventually(t, "the device admitted at the edge", func() error {
		var err error
		c, err = dialToken5(t, s.edge.Listeners()["mqtt/tcp"], dev.code, dev.token, nil)
		return err
	})
	return c
}

// stream publishes seq samples (value seq at base+seq ms) from each device
// at QoS 1 until stop, recording what the edge acknowledged.
type stream struct {
	base  time.Time
	mu    sync.Mutex
	acked map[string]map[int]bool
	wg    sync.WaitGroup
	stop  chan struct{}
	sent  atomic.Int64
}

func startStream(t *testing.T, s *edgeSetup, perDevice int) *stream {
	st := &stream{base: time.Now().Add(-time.Hour).Truncate(time.Second), acked: map[string]map[int]bool{}, stop: make(chan struct{})}
	for _, d := range s.devs {
		st.acked[d.code] = map[int]bool{}
	}
	for _, d := range s.devs {
		c := s.connect(t, d)
		acked := st.acked[d.code]
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			topic := "wanwu/v1/" + d.code[len("acme:"):]
			topic = "wanwu/v1/acme/" + topic[len("wanwu/v1/"):] + "/telemetry"
			for seq := 0; seq < perDevice; seq++ {
				select {
				case <-st.stop:
					return
				default:
				}
				ts := float64(st.base.UnixMilli()+int64(seq)) / 1000
				payload := fmt.Sprintf(`[{"n":"seq","v":%d,"t":%.3f}]`, seq, ts)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
				cancel()
				if err != nil {
					t.Errorf("%s: publish %d: %v", d.code, seq, err)
					return
				}
				st.mu.Lock()
				acked[seq] = true
				st.mu.Unlock()
				st.sent.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return st
}

// TestEdgeForwardsThroughLinkCutsAndHubRestarts: 100 forced cuts of the
// edge↔hub link (every tenth a restart of the hub) while devices stream
// to the edge; the hub ends with exactly every record the edge
// acknowledged.
func TestEdgeForwardsThroughLinkCutsAndHubRestarts(t *testing.T) {
	s := newEdgeSetup(t, 8)
	st := startStream(t, s, 1<<30)
	for i := range 100 {
		time.Sleep(40 * time.Millisecond)
		if i%10 == 9 {
			s.restartHub()
			continue
		}
		s.proxy.Cut()
		time.Sleep(30 * time.Millisecond)
		s.proxy.Restore()
	}
	close(st.stop)
	st.wg.Wait()
	t.Logf("%d records acknowledged by the edge", st.sent.Load())
	for _, d := range s.devs {
		countStored(t, s.hub, d.code, st.base, st.acked[d.code])
	}
}

// edgeProc is a `wanwu edge` child process.
type edgeProc struct {
	cmd    *exec.Cmd
	stderr lockedBuffer
	done   chan struct{}
}

// launchEdge starts bin (wanwu, or this test binary with env) as `wanwu
// edge` on dir against hubURL with free ports, and the extra flags; it is
// killed when the test ends. It does not wait for the edge to serve.
func launchEdge(t *testing.T, bin string, env []string, dir, hubURL string, extra ...string) *edgeProc {
	t.Helper()
	p := &edgeProc{done: make(chan struct{})}
	args := append([]string{"edge", "--data-dir", dir, "--hub", hubURL, "--http.listen", "127.0.0.1:0",
		"--mqtt.listen", "127.0.0.1:0", "--coap.listen", "127.0.0.1:0", "--log.level", "warn"}, extra...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("edge stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

// startEdgeProc runs `wanwu edge` on dir against hubURL and returns it with
// its MQTT address once it serves.
func startEdgeProc(t *testing.T, dir, hubURL string) (*edgeProc, string) {
	t.Helper()
	os.Remove(filepath.Join(dir, edge.URLFile))
	p := launchEdge(t, os.Args[0], []string{envTestMain + "=1"}, dir, hubURL)
	deadline := time.Now().Add(procStartTimeout)
	for {
		select {
		case <-p.done:
			t.Fatalf("edge exited: %s", p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge not ready: %s", p.stderr.String())
		}
		if b, err := os.ReadFile(filepath.Join(dir, edge.URLFile)); err == nil {
			var info struct{ MQTT string }
			resp, err := http.Get(strings.TrimSpace(string(b)) + "/api/v1/info")
			if err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&info)
				resp.Body.Close()
				if info.MQTT != "" {
					return p, info.MQTT
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEdgeKillNineLosesNothingAcknowledged: the edge is killed with SIGKILL
// while devices stream to it, twice, and restarted on its data directory;
// every record it acknowledged reaches the hub.
func TestEdgeKillNineLosesNothingAcknowledged(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	proxy := NewLinkProxy(t, h.HTTPSAddr)
	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	var devs []tokenDevice
	for i := range 4 {
		devs = append(devs, newEdgeDevice(t, h, fmt.Sprintf("acme:k%02d", i), "acme:edge-1"))
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	acked := map[string]map[int]bool{}
	next := map[string]int{}
	for _, d := range devs {
		acked[d.code] = map[int]bool{}
	}
	for round := range 3 {
		p, mqttAddr := startEdgeProc(t, dir, "https://"+proxy.Addr())
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for _, d := range devs {
			var c *paho.Client
			eventually(t, "the device admitted at the edge", func() error {
				var err error
				c, err = dialToken5(t, mqttAddr, d.code, d.token, func(error) {})
				return err
			})
			wg.Add(1)
			go func() {
				defer wg.Done()
				mu.Lock()
				seq := next[d.code]
				mu.Unlock()
				for ; ; seq++ {
					select {
					case <-stop:
						return
					default:
					}
					ts := float64(base.UnixMilli()+int64(seq)) / 1000
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := c.Publish(ctx, &paho.Publish{Topic: "wanwu/v1/acme/" + d.code[len("acme:"):] + "/telemetry", QoS: 1,
						Payload: []byte(fmt.Sprintf(`[{"n":"seq","v":%d,"t":%.3f}]`, seq, ts))})
					cancel()
					if err != nil {
						return // the edge died: this seq was not acknowledged
					}
					mu.Lock()
					acked[d.code][seq] = true
					next[d.code] = seq + 1
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Second)
		if round < 2 {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
			wg.Wait()
			continue
		}
		close(stop)
		wg.Wait()
	}
	total := 0
	for _, d := range devs {
		total += len(acked[d.code])
		countStored(t, h, d.code, base, acked[d.code])
	}
	t.Logf("%d records acknowledged across two SIGKILLs", total)
}

// TestEdgeRevocationAndOutage: devices authenticate at the edge from the
// hub's snapshot; one revoked at the hub is refused once the change reaches
// the edge; one revoked before an outage is refused during it, across an
// edge restart, while the others go on connecting.
func TestEdgeRevocationAndOutage(t *testing.T) {
	s := newEdgeSetup(t, 3)
	keep, early, late := s.devs[0], s.devs[1], s.devs[2]
	for _, d := range s.devs {
		s.connect(t, d).Disconnect(&paho.Disconnect{})
	}
	mqttAddr := func() string { return s.edge.Listeners()["mqtt/tcp"] }
	refused := func(d tokenDevice) error {
		if o, err := s.edge.Registry().Object(context.Background(), d.code); err != nil || o.Status != "revoked" {
			return fmt.Errorf("%s not revoked at the edge yet (%v)", d.code, err)
		}
		c, err := dialToken5(t, mqttAddr(), d.code, d.token, nil)
		if err == nil {
			c.Disconnect(&paho.Disconnect{})
			return fmt.Errorf("%s still admitted", d.code)
		}
		return nil
	}
	// Revoked at the hub with the link up: refused at the edge once the
	// snapshot arrives.
	s.hub.MustAdmin(200, "POST", "/api/v1/objects/"+early.code+"/revoke", map[string]any{"reason": "stolen"})
	eventually(t, "the revocation at the edge", func() error { return refused(early) })
	// The outage: the link is cut and the edge restarts without a hub.
	s.proxy.Cut()
	s.edge.Restart()
	if err := refused(early); err != nil {
		t.Fatalf("during the outage: %v", err)
	}
	c, err := dialToken5(t, mqttAddr(), keep.code, keep.token, nil)
	if err != nil {
		t.Fatalf("a device in good standing refused during the outage: %v", err)
	}
	if _, err := c.Publish(context.Background(), &paho.Publish{Topic: "wanwu/v1/acme/" + keep.code[len("acme:"):] + "/telemetry", QoS: 1,
		Payload: []byte(`[{"n":"seq","v":1}]`)}); err != nil {
		t.Fatalf("publish during the outage: %v", err)
	}
	c.Disconnect(&paho.Disconnect{})
	// Revoked at the hub during the outage: the edge cannot know until
	// the link returns; then it refuses.
	s.hub.MustAdmin(200, "POST", "/api/v1/objects/"+late.code+"/revoke", map[string]any{"reason": "stolen"})
	s.proxy.Restore()
	eventually(t, "the revocation made during the outage at the edge", func() error { return refused(late) })
	// What was sent during the outage reached the hub.
	eventually(t, "the outage's record at the hub", func() error {
		v := latest(t, s.hub, keep.code)
		if _, ok := v["seq"]; !ok {
			return fmt.Errorf("no seq at the hub yet")
		}
		return nil
	})
}

// plc is a Modbus TCP server with holding registers, as a PLC answers.
type plc struct {
	mu      sync.Mutex
	holding [128]uint16
}

func (p *plc) HandleHoldingRegisters(r *mb.HoldingRegistersRequest) ([]uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if int(r.Addr)+int(r.Quantity) > len(p.holding) {
		return nil, mb.ErrIllegalDataAddress
	}
	if r.IsWrite {
		copy(p.holding[r.Addr:], r.Args)
		return nil, nil
	}
	return append([]uint16(nil), p.holding[r.Addr:r.Addr+r.Quantity]...), nil
}

func (p *plc) HandleCoils(*mb.CoilsRequest) ([]bool, error) { return nil, mb.ErrIllegalFunction }
func (p *plc) HandleDiscreteInputs(*mb.DiscreteInputsRequest) ([]bool, error) {
	return nil, mb.ErrIllegalFunction
}
func (p *plc) HandleInputRegisters(*mb.InputRegistersRequest) ([]uint16, error) {
	return nil, mb.ErrIllegalFunction
}

// TestEdgeModbusToHub: an edge polls a Modbus device placed behind it by
// its model's register map; the scaled values reach the hub, and a command
// issued at the edge writes the register.
func TestEdgeModbusToHub(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(`{"id":"acme:boiler","version":"1.0.0",
	 "properties":{"temperature":{"type":"number","unit":"Cel"},"speed":{"type":"integer"}},
	 "actions":{"setSpeed":{"input":{"rpm":{"type":"integer","minimum":0,"maximum":3000}}}},
	 "mapping":{"modbus":{"groups":[{"interval":"100ms","registers":[
	   {"property":"temperature","table":"holding","address":0,"type":"i16","scale":0.1},
	   {"property":"speed","table":"holding","address":1,"type":"u16"}]}],
	  "actions":{"setSpeed":{"argument":"rpm","table":"holding","address":1,"type":"u16"}}}}}`))
	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:boiler-1", "edge": "acme:edge-1", "model": map[string]string{"id": "acme:boiler", "version": "1.0.0"}})
	dev := &plc{}
	temp := int16(-125)
	dev.holding[0] = uint16(temp) // -12.5 °C
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv, err := mb.NewServer(&mb.ServerConfiguration{URL: "tcp://" + addr, Timeout: time.Minute, MaxClients: 4, Logger: stdlog.New(io.Discard, "", 0)}, dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	e := StartEdge(t, dir, h.HTTPSURL(), func(c *config.Hub) {
		c.Edge.Southbound = []config.SouthboundDevice{{Code: "acme:boiler-1", URL: "tcp://" + addr, Unit: 1}}
	})
	eventually(t, "the PLC's temperature at the hub", func() error {
		v := latest(t, h, "acme:boiler-1")
		if got, ok := v["temperature"]; !ok || got.Value != -12.5 {
			return fmt.Errorf("temperature %v", got)
		}
		return nil
	})
	// A command issued on the edge's own API (the hub away or not) writes
	// the register the model maps.
	req, _ := http.NewRequest("POST", e.URL()+"/api/v1/objects/acme:boiler-1/commands", strings.NewReader(`{"action":"setSpeed","args":{"rpm":1200}}`))
	req.Header.Set("Authorization", "Bearer "+e.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 && resp.StatusCode != 202 {
		t.Fatalf("issue command at the edge: %s", resp.Status)
	}
	eventually(t, "the register written", func() error {
		dev.mu.Lock()
		defer dev.mu.Unlock()
		if dev.holding[1] != 1200 {
			return fmt.Errorf("register 1 = %d", dev.holding[1])
		}
		return nil
	})
	eventually(t, "the new speed at the hub", func() error {
		if got := latest(t, h, "acme:boiler-1")["speed"]; got.Value != float64(1200) {
			return fmt.Errorf("speed %v", got.Value)
		}
		return nil
	})
}

// TestEdgeRelaysHubCommands: a command issued at the hub for a device
// behind the edge reaches the device through the edge, also when it was
// issued during an outage, and the device's result reaches the hub.
func TestEdgeRelaysHubCommands(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(`{"id":"acme:valve","version":"1.0.0",
	 "properties":{"open":{"type":"boolean"}},"actions":{"set":{"input":{"open":{"type":"boolean"}}}}}`))
	var target atomic.Value
	target.Store(h.HTTPSAddr())
	proxy := NewLinkProxy(t, func() string { return target.Load().(string) })
	dir := t.TempDir()
	RegisterEdge(t, h, "acme:edge-1", filepath.Join(dir, "identity"))
	var reg struct {
		PrivateKey string `json:"private_key"`
	}
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:valve-1", "edge": "acme:edge-1",
		"model": map[string]string{"id": "acme:valve", "version": "1.0.0"}}).JSON(t, &reg)
	key, err := keys.ParsePrivateKeyPEM([]byte(reg.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := devtoken.Sign(key, "acme:valve-1", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e := StartEdge(t, dir, "https://"+proxy.Addr())

	// The device at the edge answers every command it gets.
	var c *paho.Client
	var answered atomic.Int64
	eventually(t, "the valve admitted at the edge", func() error {
		conn, err := net.Dial("tcp", e.Listeners()["mqtt/tcp"])
		if err != nil {
			return err
		}
		c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(p paho.PublishReceived) (bool, error) {
				if strings.HasSuffix(p.Packet.Topic, "/twin/desired") {
					// The device does what it is told and reports it.
					var doc struct{ Desired json.RawMessage }
					if json.Unmarshal(p.Packet.Payload, &doc) == nil && len(doc.Desired) > 2 {
						go func() {
							_, _ = c.Publish(context.Background(), &paho.Publish{Topic: "wanwu/v1/acme/valve-1/twin/reported", QoS: 1,
								Payload: doc.Desired})
						}()
					}
					return true, nil
				}
				var cmd struct{ ID string }
				if json.Unmarshal(p.Packet.Payload, &cmd) == nil && cmd.ID != "" {
					go func() {
						_, _ = c.Publish(context.Background(), &paho.Publish{Topic: "wanwu/v1/acme/valve-1/commands/" + cmd.ID + "/result", QoS: 1,
							Payload: []byte(`{"status":"succeeded","output":{}}`)})
						answered.Add(1)
					}()
				}
				return true, nil
			}}})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = c.Connect(ctx, &paho.Connect{ClientID: "acme:valve-1", KeepAlive: 30, CleanStart: true,
			Username: "acme:valve-1", UsernameFlag: true, Password: []byte(tok), PasswordFlag: true})
		if err != nil {
			conn.Close()
		}
		return err
	})
	defer c.Disconnect(&paho.Disconnect{})
	subscribe5(t, c, 1, "wanwu/v1/acme/valve-1/commands/+", "wanwu/v1/acme/valve-1/twin/desired")

	issue := func() string {
		var cmd struct{ ID string }
		h.MustAdmin(201, "POST", "/api/v1/objects/acme:valve-1/commands", map[string]any{"action": "set", "args": map[string]any{"open": true}}).JSON(t, &cmd)
		return cmd.ID
	}
	status := func(id string) string {
		var out struct{ Command struct{ Status string } }
		h.MustAdmin(200, "GET", "/api/v1/commands/"+id, nil).JSON(t, &out)
		return out.Command.Status
	}
	first := issue()
	eventually(t, "the first command succeeded at the hub", func() error {
		if s := status(first); s != "succeeded" {
			return fmt.Errorf("status %s", s)
		}
		return nil
	})
	// Issued at the hub during an outage: it goes down once the link is
	// back, and its result comes up.
	proxy.Cut()
	second := issue()
	time.Sleep(500 * time.Millisecond)
	if s := status(second); s != "queued" {
		t.Fatalf("during the outage the command is %s, want queued", s)
	}
	proxy.Restore()
	eventually(t, "the outage's command succeeded at the hub", func() error {
		if s := status(second); s != "succeeded" {
			return fmt.Errorf("status %s", s)
		}
		return nil
	})
	if n := answered.Load(); n != 2 {
		t.Errorf("the device answered %d commands, want 2", n)
	}
	// Desired state set at the hub reaches the device through the edge;
	// what it reports reaches the hub's twin.
	h.MustAdmin(200, "PATCH", "/api/v1/objects/acme:valve-1/twin/desired", map[string]any{"open": true})
	eventually(t, "the reported state at the hub", func() error {
		var tw struct {
			Reported map[string]any
			Delta    map[string]any
		}
		h.MustAdmin(200, "GET", "/api/v1/objects/acme:valve-1/twin", nil).JSON(t, &tw)
		if tw.Reported["open"] != true {
			return fmt.Errorf("reported %v", tw.Reported)
		}
		return nil
	})
	var etw struct{ Desired map[string]any }
	req, _ := http.NewRequest("GET", e.URL()+"/api/v1/objects/acme:valve-1/twin", nil)
	req.Header.Set("Authorization", "Bearer "+e.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&etw); err != nil || etw.Desired["open"] != true {
		t.Fatalf("the edge's twin: %v %v", etw, err)
	}
	// What the hub knows of the edge: ctl and its metrics.
	eventually(t, "the edge in ctl edge list", func() error {
		out := h.MustWanwu("ctl", "edge", "list")
		if !strings.Contains(out, "acme:edge-1") || !strings.Contains(out, "up") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	show := h.MustWanwu("ctl", "edge", "show", "acme:edge-1")
	for _, want := range []string{"link        up", "alarm", "telemetry", "AT HUB THROUGH"} {
		if !strings.Contains(show, want) {
			t.Errorf("ctl edge show lacks %q:\n%s", want, show)
		}
	}
	metrics := string(h.Do("GET", "/metrics", "", nil).Body)
	for _, want := range []string{`wanwu_edge_last_seen_timestamp_seconds{edge="acme:edge-1"}`, `wanwu_edge_backlog_records{class="alarm",edge="acme:edge-1"} 0`, `wanwu_edge_received_messages_total{class="control",edge="acme:edge-1"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the hub's metrics lack %s", want)
		}
	}
}

package forward

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/node"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

const testModel = `{"id":"t:m","version":"1.0.0",
 "properties":{"v":{"type":"number"},"seq":{"type":"number"},"raw":{"type":"string","priority":"bulk"},
   "secret":{"type":"number","classification":"core"}},
 "events":{"alarm":{"priority":"alarm"},"note":{}}}`

// testEdge is the edge side: a bus, the telemetry side with the outboxes
// as a consumer, on a data directory that survives restarts.
type testEdge struct {
	t      *testing.T
	shared []string
	dir    string
	quota  [NumClasses]int64
	key    crypto.Signer
	bus    *bus.Bus
	tel    *node.Telemetry
	boxes  *Outboxes
	link   *Link
}

func newTestEdge(t *testing.T, quota [NumClasses]int64) *testEdge {
	key, err := keys.Generate(keys.P256)
	if err != nil {
		t.Fatal(err)
	}
	return &testEdge{t: t, dir: t.TempDir(), quota: quota, key: key}
}

func (e *testEdge) start(hubURL string) {
	t := e.t
	ctx := context.Background()
	model, err := thingmodel.Parse([]byte(testModel))
	if err != nil {
		t.Fatal(err)
	}
	if e.bus, err = bus.Start(ctx, bus.Options{StoreDir: filepath.Join(e.dir, "nats"), Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	if e.boxes, err = OpenOutboxes(ctx, OutboxOptions{Bus: e.bus, Edge: "t:edge", Tenant: "t", Quota: e.quota, Key: e.key, Shared: e.shared, RollupGrace: 200 * time.Millisecond,
		Models: func(k string) *thingmodel.Model {
			if k == model.Key() {
				return model
			}
			return nil
		}, Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultHub().Telemetry
	if e.tel, err = node.StartTelemetry(ctx, node.TelemetryOptions{Dir: e.dir, Config: cfg, Bus: e.bus, Logger: quiet(),
		Consumers: []node.Consumer{{Consumer: e.boxes, Name: "forward", CursorFile: "forward.cursor"}}, Admit: e.boxes.Admit}); err != nil {
		t.Fatal(err)
	}
	if e.link, err = NewLink(LinkOptions{Hub: hubURL, Client: http.DefaultClient, Outboxes: e.boxes, Epoch: "e1", Logger: quiet(),
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, MaxMessages: 8}); err != nil {
		t.Fatal(err)
	}
	e.link.Start()
}

func (e *testEdge) stop() {
	ctx := context.Background()
	_ = e.link.Shutdown(ctx)
	if err := e.tel.Shutdown(ctx); err != nil {
		e.t.Error(err)
	}
	if err := e.bus.Shutdown(ctx); err != nil {
		e.t.Error(err)
	}
}

func (e *testEdge) submit(m ingest.Message) error {
	m.Tenant, m.Model, m.Source = "t", "t:m@1.0.0", "mqtt"
	if m.Received == 0 {
		m.Received = time.Now().UnixMilli()
	}
	return e.tel.Pipeline.Submit(context.Background(), m)
}

func telemetry(dev string, seq int) ingest.Message {
	now := time.Now().UnixMilli()
	return ingest.Message{Device: dev, Kind: ingest.Telemetry, Records: []ingest.Record{
		{Property: "seq", Time: now, Float: float64(seq)}, {Property: "v", Time: now, Float: float64(seq % 17)}}}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testHub is the hub side: a receiver on a real database, storing what it
// is given in memory, behind an HTTP server that can be cut.
type testHub struct {
	t    *testing.T
	rcv  *Receiver
	srv  *httptest.Server
	down atomic.Bool

	mu       sync.Mutex
	bytes    int
	got      []ingest.Message
	classes  []Class
	perClass [NumClasses]int
}

func newTestHub(t *testing.T) *testHub {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	signer, _, err := keys.LoadOrCreateEd25519(filepath.Join(t.TempDir(), "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	lg, err := audit.Open(ctx, db.W, signer, "test")
	if err != nil {
		t.Fatal(err)
	}
	h := &testHub{t: t}
	h.rcv, err = OpenReceiver(ctx, ReceiverOptions{DB: db, Audit: lg, Logger: quiet(),
		Submit: func(_ context.Context, msgs []ingest.Message) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.got = append(h.got, msgs...)
			return nil
		},
		Member: func(_ context.Context, edge, tenant, device string) (bool, error) { return device != "t:stranger", nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	edge := Edge{Code: "t:edge", Tenant: "t"}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.down.Load() {
			// A cut link: the connection ends without an answer.
			if hj, ok := w.(http.Hijacker); ok {
				c, _, _ := hj.Hijack()
				c.Close()
				return
			}
		}
		var out any
		var err error
		if r.Method == http.MethodGet {
			out, err = h.rcv.State(r.Context(), edge, r.URL.Query().Get("epoch"))
		} else {
			body, _ := io.ReadAll(r.Body)
			h.mu.Lock()
			h.bytes += len(body)
			h.mu.Unlock()
			var u *Uplink
			if u, err = DecodeUplink(body); err == nil {
				out, err = h.rcv.Forward(r.Context(), edge, u)
				if err == nil && len(u.Seqs) > 0 {
					h.mu.Lock()
					h.classes = append(h.classes, Class(u.Class))
					h.perClass[u.Class] += len(u.Seqs)
					h.mu.Unlock()
				}
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *testHub) messages() []ingest.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]ingest.Message(nil), h.got...)
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkExactlyOnce: every (device, seq) submitted arrived once, in order
// per device.
func checkExactlyOnce(t *testing.T, got []ingest.Message, devices, perDevice int) {
	t.Helper()
	next := map[string]int{}
	dups := 0
	for _, m := range got {
		if m.Kind != ingest.Telemetry || len(m.Records) == 0 || m.Records[0].Property != "seq" {
			continue
		}
		s := int(m.Records[0].Float)
		switch {
		case s == next[m.Device]:
			next[m.Device]++
		case s < next[m.Device]:
			dups++
		default:
			t.Fatalf("%s: seq %d arrived when %d was due (lost or out of order)", m.Device, s, next[m.Device])
		}
	}
	if dups > 0 {
		t.Errorf("%d duplicates", dups)
	}
	for d := range devices {
		dev := fmt.Sprintf("t:d%d", d)
		if next[dev] != perDevice {
			t.Errorf("%s: %d of %d arrived", dev, next[dev], perDevice)
		}
	}
}

func TestForwardExactlyOnceThroughCutsAndRestarts(t *testing.T) {
	hub := newTestHub(t)
	edge := newTestEdge(t, [NumClasses]int64{})
	edge.start(hub.srv.URL)
	const devices, perDevice = 5, 300
	for i := range perDevice {
		for d := range devices {
			if err := edge.submit(telemetry(fmt.Sprintf("t:d%d", d), i)); err != nil {
				t.Fatal(err)
			}
		}
		switch {
		case i%25 == 10:
			hub.down.Store(true)
		case i%25 == 20:
			hub.down.Store(false)
		case i%100 == 99:
			// The edge restarts on the same data directory.
			edge.stop()
			edge.start(hub.srv.URL)
		}
	}
	hub.down.Store(false)
	waitFor(t, 30*time.Second, "every message at the hub", func() bool { return len(hub.messages()) >= devices*perDevice })
	time.Sleep(200 * time.Millisecond)
	checkExactlyOnce(t, hub.messages(), devices, perDevice)
	edge.stop()
}

func TestForwardAlarmsFirst(t *testing.T) {
	hub := newTestHub(t)
	hub.down.Store(true)
	edge := newTestEdge(t, [NumClasses]int64{})
	edge.start(hub.srv.URL)
	defer edge.stop()
	for i := range 200 {
		if err := edge.submit(telemetry("t:d0", i)); err != nil {
			t.Fatal(err)
		}
		if err := edge.submit(ingest.Message{Device: "t:d1", Kind: ingest.Telemetry,
			Records: []ingest.Record{{Property: "raw", Time: time.Now().UnixMilli(), String: "capture"}}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := edge.submit(ingest.Message{Device: "t:d2", Kind: ingest.Event, Event: "alarm", EventData: []byte(`{"level":"high"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the alarms in the alarm outbox", func() bool {
		bl, err := edge.boxes.Backlogs(context.Background())
		return err == nil && bl[Alarm].Records == 3 && bl[Telemetry].Records == 400 && bl[Bulk].Records == 200
	})
	hub.down.Store(false)
	waitFor(t, 20*time.Second, "everything at the hub", func() bool { return len(hub.messages()) == 403 })
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if hub.classes[0] != Alarm {
		t.Fatalf("first uplink after the outage was %s, want alarm", hub.classes[0])
	}
	for i, c := range hub.classes {
		if i > 0 && c < hub.classes[i-1] {
			t.Fatalf("uplinks went %v: a more urgent class after a less urgent backlog", hub.classes)
		}
	}
}

func TestForwardQuotaPolicies(t *testing.T) {
	hub := newTestHub(t)
	hub.down.Store(true)
	quota := [NumClasses]int64{Alarm: 2 << 10, Control: 1 << 20, Telemetry: 16 << 10, Bulk: 8 << 10}
	edge := newTestEdge(t, quota)
	edge.start(hub.srv.URL)
	defer edge.stop()
	const n = 600
	for i := range n {
		if err := edge.submit(telemetry("t:d0", i)); err != nil {
			t.Fatal(err)
		}
		if err := edge.submit(ingest.Message{Device: "t:d1", Kind: ingest.Telemetry,
			Records: []ingest.Record{{Property: "raw", Time: time.Now().UnixMilli(), String: "a raw capture of some length"}}}); err != nil {
			t.Fatal(err)
		}
	}
	// The alarm class keeps everything: once its outbox is at its quota,
	// devices' alarms are refused (back-pressure), never dropped.
	accepted, refused := 0, 0
	for range 200 {
		err := edge.submit(ingest.Message{Device: "t:d2", Kind: ingest.Event, Event: "alarm", EventData: []byte(`{"level":"high","text":"pressure above the limit"}`)})
		if err != nil {
			refused++
			// Let the forwarder catch up, so that the flag is current.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		accepted++
	}
	if refused == 0 {
		t.Fatalf("no alarm refused with a %d-byte alarm quota", quota[Alarm])
	}
	waitFor(t, 10*time.Second, "the forwarder to append everything", func() bool {
		bl, err := edge.boxes.Backlogs(context.Background())
		return err == nil && int(bl[Alarm].Records) == accepted
	})
	hub.down.Store(false)
	waitFor(t, 30*time.Second, "the backlog at the hub", func() bool {
		bl, err := edge.boxes.Backlogs(context.Background())
		if err != nil {
			return false
		}
		for _, b := range bl {
			if b.Messages > 0 {
				return false
			}
		}
		return true
	})
	// Account for every value: raw at the hub plus what gap records say
	// was reduced equals what was accepted, per class.
	var raw [NumClasses]int
	var reduced = map[string]int{}
	gaps := 0
	for _, m := range hub.messages() {
		switch {
		case m.Kind == ingest.Event && m.Event == GapEvent:
			gaps++
			body, err := VerifyRecord(m.EventData, edge.key.Public())
			if err != nil {
				t.Fatalf("gap record: %v", err)
			}
			var g gap
			if err := json.Unmarshal(body, &g); err != nil {
				t.Fatal(err)
			}
			reduced[g.Class] += g.Records
			if g.Class == "telemetry" && (g.Policy != "downsampled" || g.Rollups == 0) {
				t.Errorf("telemetry gap %+v: want downsampled with rollups", g)
			}
			if g.Class == "bulk" && g.Policy != "dropped" {
				t.Errorf("bulk gap %+v: want dropped", g)
			}
		case m.Kind == ingest.Event && m.Event == "alarm":
			raw[Alarm]++
		case m.Kind == ingest.Telemetry && IsRollup(m.Records[0].Property):
		case m.Kind == ingest.Telemetry && m.Records[0].Property == "raw":
			raw[Bulk]++
		case m.Kind == ingest.Telemetry:
			raw[Telemetry] += len(m.Records)
		}
	}
	if gaps == 0 || reduced["telemetry"] == 0 || reduced["bulk"] == 0 {
		t.Fatalf("gaps %d, reduced %v: want both classes reduced", gaps, reduced)
	}
	if reduced["alarm"] != 0 || reduced["control"] != 0 {
		t.Fatalf("reduced %v: alarm and control are never reduced", reduced)
	}
	if raw[Alarm] != accepted {
		t.Errorf("alarms at the hub %d, accepted %d", raw[Alarm], accepted)
	}
	if got := raw[Telemetry] + reduced["telemetry"]; got != 2*n {
		t.Errorf("telemetry: %d raw + %d reduced = %d, want %d", raw[Telemetry], reduced["telemetry"], got, 2*n)
	}
	if got := raw[Bulk] + reduced["bulk"]; got != n {
		t.Errorf("bulk: %d raw + %d reduced = %d, want %d", raw[Bulk], reduced["bulk"], got, n)
	}
}

// TestClassifiedValuesStayAtTheEdge: the raw values of a property
// classified core never cross the link; the hub gets their per-minute
// rollups, which account for every value. With a sharing grant, the raw
// values go, and the link carries many times the bytes.
func TestClassifiedValuesStayAtTheEdge(t *testing.T) {
	run := func(shared []string) (int, []ingest.Message) {
		hub := newTestHub(t)
		edge := newTestEdge(t, [NumClasses]int64{})
		edge.shared = shared
		edge.start(hub.srv.URL)
		defer edge.stop()
		start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
		const n = 600 // 200 a minute, over three minutes
		for i := range n {
			ts := start + int64(i)*300
			if err := edge.submit(ingest.Message{Device: "t:d0", Kind: ingest.Telemetry, Received: ts, Records: []ingest.Record{
				{Property: "secret", Time: ts, Float: float64(i)}, {Property: "v", Time: ts, Float: 1}}}); err != nil {
				t.Fatal(err)
			}
		}
		// One more value, after the grace, closes the three minutes.
		time.Sleep(400 * time.Millisecond)
		if err := edge.submit(ingest.Message{Device: "t:d0", Kind: ingest.Telemetry, Records: []ingest.Record{{Property: "v", Time: time.Now().UnixMilli(), Float: 1}}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "the open values at the hub", func() bool {
			v := 0
			for _, m := range hub.messages() {
				for _, r := range m.Records {
					if r.Property == "v" {
						v++
					}
				}
			}
			return v == n+1
		})
		time.Sleep(300 * time.Millisecond)
		hub.mu.Lock()
		defer hub.mu.Unlock()
		return hub.bytes, append([]ingest.Message(nil), hub.got...)
	}
	kept, msgs := run(nil)
	raw, count, sum := 0, 0.0, 0.0
	for _, m := range msgs {
		for _, r := range m.Records {
			switch r.Property {
			case "secret":
				raw++
			case "secret" + rollupCount:
				count += r.Float
			case "secret" + rollupMean:
				sum += r.Float * 200
			}
		}
	}
	if raw != 0 {
		t.Fatalf("%d raw values of a core property crossed the link", raw)
	}
	if count != 600 || sum != 599*600/2 {
		t.Fatalf("rollups count %v values summing to %v, want 600 and %d", count, sum, 599*600/2)
	}
	sharedBytes, msgs := run([]string{"t:m/secret"})
	raw = 0
	for _, m := range msgs {
		for _, r := range m.Records {
			if r.Property == "secret" {
				raw++
			}
		}
	}
	if raw != 600 {
		t.Fatalf("with a sharing grant %d raw values crossed, want 600", raw)
	}
	t.Logf("link bytes: %d with the property kept at the edge, %d with it shared", kept, sharedBytes)
	if sharedBytes < kept+600*8 {
		t.Fatalf("link bytes %d kept vs %d shared: the raw values should cost at least 8 bytes each", kept, sharedBytes)
	}
}

func FuzzDecodeUplink(f *testing.F) {
	good, _ := EncodeUplink(&Uplink{Epoch: "e1", Class: 2, Seqs: []uint64{1, 2}, Data: [][]byte{{1, 2}, {3}}, Status: []byte(`{}`)})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := DecodeUplink(b)
		if err != nil {
			return
		}
		if u.Epoch == "" || u.Class >= NumClasses || len(u.Seqs) != len(u.Data) {
			t.Fatalf("accepted an uplink that breaks its rules: %+v", u)
		}
		for i := 1; i < len(u.Seqs); i++ {
			if u.Seqs[i] <= u.Seqs[i-1] {
				t.Fatalf("sequences do not ascend: %v", u.Seqs)
			}
		}
	})
}

func FuzzOutboxMessage(f *testing.F) {
	batch, _ := ingest.EncodeBatch([]ingest.Message{telemetry("t:d0", 1)})
	f.Add(appendFrame(appendFrame(nil, batch), batch))
	f.Add([]byte{0})
	f.Add([]byte{5, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := Decode(b)
		if err != nil {
			return
		}
		for _, m := range msgs {
			if m.Device == "" {
				t.Fatalf("a message without a device: %+v", m)
			}
		}
	})
}

func FuzzVerifyRecord(f *testing.F) {
	key, _ := keys.Generate(keys.P256)
	signedGap, _ := SignRecord([]byte(`{"edge":"t:e","records":3}`), key)
	f.Add(signedGap)
	f.Add([]byte(`{"gap":{},"sig":"AA"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := VerifyRecord(b, key.Public())
		if err == nil && !json.Valid(body) {
			t.Fatalf("verified a record whose body is not JSON: %q", body)
		}
	})
}

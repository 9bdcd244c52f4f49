package modbus

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// The tests run the driver against simonvetter/modbus's own TCP server on
// loopback, with the real intake (node.StartTelemetry over an embedded
// bus), command service and twin service.

// field is a Modbus device's memory: a RequestHandler for mb.NewServer.
type field struct {
	mu       sync.Mutex
	holding  map[uint16]uint16
	input    map[uint16]uint16
	coils    map[uint16]bool
	discrete map[uint16]bool
	// fail answers a request touching the address (any table) with the
	// exception; failAll answers every request with it.
	fail    map[uint16]error
	failAll error
	// delay holds every answer back (a hanging device).
	delay time.Duration
	reads atomic.Int64
}

func newField() *field {
	return &field{holding: map[uint16]uint16{}, input: map[uint16]uint16{}, coils: map[uint16]bool{},
		discrete: map[uint16]bool{}, fail: map[uint16]error{}}
}

func (f *field) setDelay(d time.Duration) {
	f.mu.Lock()
	f.delay = d
	f.mu.Unlock()
}

// enter applies the delay and the exceptions of a request.
func (f *field) enter(addr, n uint16) error {
	f.reads.Add(1)
	f.mu.Lock()
	d := f.delay
	f.mu.Unlock()
	time.Sleep(d)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAll != nil {
		return f.failAll
	}
	for a := addr; a < addr+n; a++ {
		if err := f.fail[a]; err != nil {
			return err
		}
	}
	return nil
}

func (f *field) regs(m map[uint16]uint16, addr, n uint16, write bool, args []uint16) ([]uint16, error) {
	if err := f.enter(addr, n); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]uint16, 0, n)
	for i := range n {
		if write {
			m[addr+i] = args[i]
		} else {
			out = append(out, m[addr+i])
		}
	}
	return out, nil
}

func (f *field) bits(m map[uint16]bool, addr, n uint16, write bool, args []bool) ([]bool, error) {
	if err := f.enter(addr, n); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]bool, 0, n)
	for i := range n {
		if write {
			m[addr+i] = args[i]
		} else {
			out = append(out, m[addr+i])
		}
	}
	return out, nil
}

func (f *field) HandleCoils(r *mb.CoilsRequest) ([]bool, error) {
	return f.bits(f.coils, r.Addr, r.Quantity, r.IsWrite, r.Args)
}

func (f *field) HandleDiscreteInputs(r *mb.DiscreteInputsRequest) ([]bool, error) {
	return f.bits(f.discrete, r.Addr, r.Quantity, false, nil)
}

func (f *field) HandleHoldingRegisters(r *mb.HoldingRegistersRequest) ([]uint16, error) {
	return f.regs(f.holding, r.Addr, r.Quantity, r.IsWrite, r.Args)
}

func (f *field) HandleInputRegisters(r *mb.InputRegistersRequest) ([]uint16, error) {
	return f.regs(f.input, r.Addr, r.Quantity, false, nil)
}

func (f *field) holdingAt(a uint16) uint16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holding[a]
}

func (f *field) coilAt(a uint16) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.coils[a]
}

// freeAddr is a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// serve runs a Modbus TCP server for h on addr until the test ends or
// stop is called.
func serve(t *testing.T, addr string, h mb.RequestHandler) (stop func()) {
	t.Helper()
	s, err := mb.NewServer(&mb.ServerConfiguration{URL: "tcp://" + addr, Timeout: time.Minute, MaxClients: 8,
		Logger: log.New(io.Discard, "", 0)}, h)
	if err != nil {
		t.Fatal(err)
	}
	var err2 error
	for range 50 { // a port just given up may take a moment to be free again
		if err2 = s.Start(); err2 == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err2 != nil {
		t.Fatal(err2)
	}
	var once sync.Once
	stop = func() { once.Do(func() { s.Stop() }) }
	t.Cleanup(stop)
	return stop
}

// serveGarbage runs a TCP server that answers every request with a frame
// whose byte count and length disagree with what was asked: a device
// answering wrong lengths.
func serveGarbage(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				for {
					hdr := make([]byte, 7)
					if _, err := io.ReadFull(c, hdr); err != nil {
						return
					}
					body := make([]byte, int(binary.BigEndian.Uint16(hdr[4:6]))-1)
					if _, err := io.ReadFull(c, body); err != nil {
						return
					}
					// Function as asked, a byte count of 2 and three bytes.
					pdu := []byte{body[0], 2, 0xde, 0xad, 0xbe}
					out := append([]byte{hdr[0], hdr[1], 0, 0, 0, byte(len(pdu) + 1), hdr[6]}, pdu...)
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			})
		}
	})
	return l.Addr().String()
}

// recorder is a consumer of the ingest log: what reached the store.
type recorder struct {
	mu   sync.Mutex
	recs map[string][]ingest.Record // by device/property
	msgs map[string]int             // by device
}

func (r *recorder) Add(msgs []ingest.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.msgs[m.Device]++
		for _, rec := range m.Records {
			rec.Data = append([]byte(nil), rec.Data...)
			k := m.Device + "/" + rec.Property
			r.recs[k] = append(r.recs[k], rec)
		}
	}
}

func (r *recorder) Write(context.Context) error  { return nil }
func (r *recorder) Commit(context.Context) error { return nil }

func (r *recorder) latest(device, prop string) (ingest.Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := r.recs[device+"/"+prop]
	if len(rs) == 0 {
		return ingest.Record{}, false
	}
	return rs[len(rs)-1], true
}

func (r *recorder) messages(device string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[device]
}

// presenceLog is an adapter.Presence that keeps what it heard.
type presenceLog struct {
	mu     sync.Mutex
	events []string // "connected <code> <remote>", "disconnected <code> <reason>"
}

func (p *presenceLog) Connected(code, tenant, protocol, remote string) {
	p.add("connected " + code + " " + protocol)
}

func (p *presenceLog) Disconnected(code, tenant, protocol, reason string) {
	p.add("disconnected " + code + " " + protocol + " " + reason)
}

func (p *presenceLog) Seen(code, tenant, protocol string) {}

func (p *presenceLog) add(s string) {
	p.mu.Lock()
	p.events = append(p.events, s)
	p.mu.Unlock()
}

func (p *presenceLog) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.events...)
}

// telemetry is the telemetry side as a node assembles it (node imports
// this package, so its tests assemble it here): the stores, the decoder,
// the pipeline with a further consumer, and the intake.
type telemetry struct {
	tsdb     *tsdb.Store
	events   *eventstore.Store
	Pipeline *pipeline.Pipeline
	Intake   *adapter.Intake
}

func startTelemetry(ctx context.Context, dir string, cfg config.Telemetry, b *bus.Bus, c pipeline.Consumer) (*telemetry, error) {
	t := &telemetry{}
	var err error
	if t.tsdb, err = tsdb.Open(tsdb.Options{Dir: filepath.Join(dir, "tsdb"), OutOfOrderWindow: 24 * time.Hour}); err != nil {
		return nil, err
	}
	if t.events, err = eventstore.Open(ctx, filepath.Join(dir, "events.db")); err != nil {
		return nil, err
	}
	dec := ingest.NewDecoder(ingest.Options{MaxPayload: cfg.MaxPayload})
	if t.Pipeline, err = pipeline.New(pipeline.Options{Bus: b, TSDB: t.tsdb, Events: t.events, Logger: slog.New(slog.DiscardHandler),
		CursorFile: filepath.Join(dir, "ingest.cursor")}); err != nil {
		return nil, err
	}
	if err := t.Pipeline.AddConsumer(c, pipeline.ConsumerOptions{Name: "test", CursorFile: filepath.Join(dir, "test.cursor")}); err != nil {
		return nil, err
	}
	if err := t.Pipeline.Start(ctx); err != nil {
		return nil, err
	}
	t.Intake = adapter.NewIntake(adapter.IntakeOptions{Decoder: dec, Pipeline: t.Pipeline, Logger: slog.New(slog.DiscardHandler)})
	t.Intake.Start()
	return t, nil
}

func (t *telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.Intake.Shutdown(ctx), t.Pipeline.Shutdown(ctx), t.tsdb.Close(), t.events.Close())
}

// env is the edge around the driver: the telemetry side with a recording
// consumer, a command service and a twin service on one SQLite file.
type env struct {
	t        *testing.T
	ctx      context.Context
	tel      *telemetry
	rec      *recorder
	pres     *presenceLog
	commands *command.Service
	twins    *twin.Service
	models   sync.Map // code → *thingmodel.Model
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{t: t, ctx: ctx, rec: &recorder{recs: map[string][]ingest.Record{}, msgs: map[string]int{}}, pres: &presenceLog{}}
	b, err := bus.Start(ctx, bus.Options{StoreDir: filepath.Join(dir, "nats"), Sync: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	var cfg config.Telemetry
	cfg.MaxPayload = 4096
	e.tel, err = startTelemetry(ctx, dir, cfg, b, e.rec)
	if err != nil {
		b.Shutdown(ctx)
		t.Fatal(err)
	}
	db, err := store.Open(ctx, filepath.Join(dir, "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	al, err := audit.Open(ctx, db.W, ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)), "wanwu.edge/test")
	if err != nil {
		t.Fatal(err)
	}
	model := func(_ context.Context, code string) (*thingmodel.Model, error) {
		if m, ok := e.models.Load(code); ok {
			return m.(*thingmodel.Model), nil
		}
		return nil, command.ErrNotFound
	}
	if e.commands, err = command.Open(ctx, command.Options{DB: db, Audit: al, Model: model, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	if err := e.commands.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if e.twins, err = twin.Open(ctx, twin.Options{DB: db, Audit: al, Model: model}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.commands.Shutdown(ctx)
		if err := e.tel.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		b.Shutdown(ctx)
		db.Close()
	})
	return e
}

// driver starts a driver over the env with fast backoffs; it is shut down
// (and its goroutines waited for) before the env is.
func (e *env) driver(devs []Device, edit func(*Options)) *Driver {
	e.t.Helper()
	for _, d := range devs {
		e.models.Store(d.Code, d.Model)
	}
	o := Options{
		Intake: e.tel.Intake, Commands: e.commands, Twins: e.twins, Presence: e.pres, Devices: devs,
		Timeout: 300 * time.Millisecond, RetryBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	}
	if edit != nil {
		edit(&o)
	}
	d, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := d.Start(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			e.t.Errorf("Shutdown: %v", err)
		}
	})
	return d
}

func parseModel(t *testing.T, doc string) *thingmodel.Model {
	t.Helper()
	m, err := thingmodel.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func statusOf(d *Driver, code string) Status {
	for _, s := range d.Status() {
		if s.Code == code {
			return s
		}
	}
	return Status{}
}

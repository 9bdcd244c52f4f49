package coap

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/udp"
	"github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/psk"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// env is a CoAP endpoint over the real registry, bus, pipeline and stores.
type env struct {
	t      testing.TB
	ctx    context.Context
	dir    string
	db     *store.DB
	ca     *ca.CA
	reg    *registry.Registry
	bus    *bus.Bus
	tsdb   *tsdb.Store
	events *eventstore.Store
	pipe   *pipeline.Pipeline
	dec    *ingest.Decoder
	intake *adapter.Intake
	psk    *psk.Deriver
	twins  *twin.Service
	cmds   *command.Service
	srv    *Server
	opts   Options
}

const pumpModel = `{"id":"acme:pump","version":"1.0.0","title":"Pump",
 "properties":{"temperature":{"type":"number","unit":"Cel","minimum":-40,"maximum":125},
               "setpoint":{"type":"number","minimum":0,"maximum":125},
               "mode":{"type":"string","enum":["auto","manual"]}},
 "events":{"overheat":{"data":{"type":"object","properties":{"t":{"type":"number"}}}}},
 "actions":{"reboot":{"input":{"delay":{"type":"integer","minimum":0}}}}}`

var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

func newEnv(t testing.TB, edit func(*Options)) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{t: t, ctx: ctx, dir: dir}
	var err error
	if e.db, err = store.Open(ctx, filepath.Join(dir, "wanwu.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	if e.ca, _, err = ca.LoadOrCreate(dir, "test"); err != nil {
		t.Fatal(err)
	}
	signer, _, err := keys.LoadOrCreateEd25519(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	al, err := audit.Open(ctx, e.db.W, signer, "wanwu.hub/test")
	if err != nil {
		t.Fatal(err)
	}
	if e.reg, err = registry.New(registry.Options{DB: e.db, CA: e.ca, Signer: signer, Audit: al, DeploymentID: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.CreateTenant(ctx, "admin", "acme", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.reg.RegisterModel(ctx, "admin", []byte(pumpModel), nil); err != nil {
		t.Fatal(err)
	}
	if e.bus, err = bus.Start(ctx, bus.Options{StoreDir: filepath.Join(dir, "nats"), Sync: bus.SyncAlways, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if e.tsdb, err = tsdb.Open(tsdb.Options{Dir: filepath.Join(dir, "tsdb"), NoSync: true, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if e.events, err = eventstore.Open(ctx, filepath.Join(dir, "events.db")); err != nil {
		t.Fatal(err)
	}
	if e.pipe, err = pipeline.New(pipeline.Options{Bus: e.bus, TSDB: e.tsdb, Events: e.events, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if err := e.pipe.Start(ctx); err != nil {
		t.Fatal(err)
	}
	model := func(ctx context.Context, code string) (*thingmodel.Model, error) {
		o, err := e.reg.Object(ctx, code)
		if errors.Is(err, registry.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s", twin.ErrNotFound, code)
		}
		if err != nil {
			return nil, err
		}
		return e.reg.ModelOf(ctx, o)
	}
	if e.twins, err = twin.Open(ctx, twin.Options{DB: e.db, Audit: al, Model: model,
		OnChange: func(c twin.Change) {
			if c.Desired && e.srv != nil {
				e.srv.NotifyTwin(c.Code)
			}
		}}); err != nil {
		t.Fatal(err)
	}
	if e.cmds, err = command.Open(ctx, command.Options{DB: e.db, Audit: al, Model: model, AckTimeout: 2 * time.Second, RetryBackoff: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := e.cmds.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.dec = ingest.NewDecoder(ingest.Options{MaxPayload: 8 << 10})
	e.intake = adapter.NewIntake(adapter.IntakeOptions{Decoder: e.dec, Pipeline: e.pipe, Logger: quiet})
	e.intake.Start()
	if e.psk, err = psk.LoadOrCreate(filepath.Join(dir, "psk.key")); err != nil {
		t.Fatal(err)
	}
	serverCert := e.serverCert()
	e.opts = Options{
		Listen: "127.0.0.1:0", DTLSListen: "127.0.0.1:0",
		Certificate: &serverCert, ClientCAs: e.ca.Pool(),
		PSK:      e.pskOf,
		Registry: e.reg, Intake: e.intake, Twins: e.twins, Commands: e.cmds,
		Logger: quiet,
	}
	if edit != nil {
		edit(&e.opts)
	}
	if e.srv, err = New(e.opts); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(sctx); err != nil {
			t.Error(err)
		}
		if err := e.intake.Shutdown(sctx); err != nil {
			t.Error(err)
		}
		_ = e.cmds.Shutdown(sctx)
		_ = e.pipe.Shutdown(sctx)
		e.tsdb.Close()
		e.events.Close()
		e.bus.Shutdown(sctx)
	})
	return e
}

// pskOf is what the hub does (internal/hub devicePSK): the PSK of the
// device's active key, as the hex text devices are given; a revoked device
// has none.
func (e *env) pskOf(ctx context.Context, identity string) ([]byte, error) {
	fp, err := e.reg.ActiveKeyFingerprint(ctx, identity)
	if err != nil {
		return nil, err
	}
	return []byte(hex.EncodeToString(e.psk.Derive(identity, fp))), nil
}

func (e *env) serverCert() tls.Certificate {
	e.t.Helper()
	k, err := keys.Generate(keys.P256)
	if err != nil {
		e.t.Fatal(err)
	}
	cert, err := e.ca.IssueServer([]string{"localhost", "127.0.0.1", "::1"}, time.Hour, k.Public())
	if err != nil {
		e.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: k, Leaf: cert}
}

// dev is a registered device with its key.
type dev struct {
	code string
	key  crypto.Signer
	reg  *registry.Registration
}

func (e *env) device(code string, withModel bool) *dev {
	e.t.Helper()
	k, err := keys.Generate(keys.P256)
	if err != nil {
		e.t.Fatal(err)
	}
	req := registry.RegisterRequest{Code: code, Key: registry.KeySource{PublicKey: k.Public()}}
	if withModel {
		req.Model = &registry.ModelRef{ID: "acme:pump", Version: "1.0.0"}
	}
	reg, err := e.reg.Register(e.ctx, "admin", req)
	if err != nil {
		e.t.Fatalf("register %s: %v", code, err)
	}
	return &dev{code: code, key: k, reg: reg}
}

func (d *dev) token(t testing.TB) string {
	t.Helper()
	tok, err := devtoken.Sign(d.key, d.code, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (d *dev) tlsCert(t testing.TB) tls.Certificate {
	t.Helper()
	blk, _ := pem.Decode([]byte(d.reg.Certificate))
	if blk == nil {
		t.Fatal("no certificate")
	}
	return tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: d.key}
}

// udpClient dials the plain UDP listener.
func (e *env) udpClient(addr string, opts ...udp.Option) *client.Conn {
	e.t.Helper()
	if addr == "" {
		addr = e.srv.Addr(ListenerUDP)
	}
	cc, err := udp.Dial(addr, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// pskClient dials the DTLS listener with a device's PSK.
func (e *env) pskClient(d *dev, opts ...udp.Option) (*client.Conn, error) {
	key, err := e.pskOf(e.ctx, d.code)
	if err != nil {
		return nil, err
	}
	cc, err := dtls.Dial(e.srv.Addr(ListenerDTLS), &piondtls.Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte(d.code),
		CipherSuites:    []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
	}, opts...)
	if err == nil {
		e.t.Cleanup(func() { _ = cc.Close() })
	}
	return cc, err
}

// certClient dials the DTLS listener with a device certificate.
func (e *env) certClient(d *dev) (*client.Conn, error) {
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Certificate())
	cc, err := dtls.Dial(e.srv.Addr(ListenerDTLS), &piondtls.Config{
		Certificates: []tls.Certificate{d.tlsCert(e.t)},
		RootCAs:      roots,
		ServerName:   "localhost",
	})
	if err == nil {
		e.t.Cleanup(func() { _ = cc.Close() })
	}
	return cc, err
}

// waitSamples polls the TSDB until the count of samples of property for the
// device reaches want or the deadline passes; it returns the last count.
func (e *env) countSamples(code, property string, from, to time.Time) int {
	e.t.Helper()
	series, err := e.tsdb.Range(e.ctx, []tsdb.Matcher{{Name: "__name__", Op: "=", Value: property}, {Name: "device", Op: "=", Value: code}}, from, to, time.Hour, tsdb.AggCount)
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0.0
	for _, s := range series {
		for _, p := range s.Points {
			n += p.V
		}
	}
	return int(n)
}

func (e *env) waitSamples(code, property string, from, to time.Time, want int) int {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := e.countSamples(code, property, from, to)
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectSamples waits until the device has want samples of property since
// from, then fails if another one arrives within 300 ms: for messages that
// must be stored once, or not at all.
func (e *env) expectSamples(code, property string, from time.Time, want int) {
	e.t.Helper()
	if n := e.waitSamples(code, property, from, time.Now().Add(time.Minute), want); n != want {
		e.t.Fatalf("stored %d samples, want %d", n, want)
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := e.countSamples(code, property, from, time.Now().Add(time.Minute)); n != want {
			e.t.Fatalf("stored %d samples, want %d", n, want)
		}
	}
}

func hasIPv6Loopback() bool {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

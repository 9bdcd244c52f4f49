package hubtest

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsPeer is the reference of DESIGN.md §3 for the edge link's recovery:
// a hub nats-server with JetStream and a leaf node listener, an edge
// nats-server with JetStream connected to it as a leaf node (through a
// LinkProxy, so that the link can be cut), a stream EDGE at the edge and a
// stream HUB at the hub that sources EDGE across the two JetStream domains.
// Every other setting of the servers and streams is its default but one:
// the hub does not advertise its leaf node address (NoAdvertise), else the
// edge learns it and reconnects straight to it, around the cut link (on a
// real network the cable's cut would stop that too).
type natsPeer struct {
	t                  *testing.T
	hubDir             string
	hubPort, leafPort  int
	hub, edge          *server.Server
	proxy              *LinkProxy
	edgeConn, hubConn  *nats.Conn
	edgeJS             jetstream.JetStream
	published, errored int
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startNATS(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatalf("nats-server %s not ready", o.ServerName)
	}
	return s
}

// hubOptions are the hub server's options: the same ports and store at
// every start, as a restarted process has.
func (p *natsPeer) hubOptions() *server.Options {
	return &server.Options{ServerName: "hub", Host: "127.0.0.1", Port: p.hubPort, NoSigs: true, NoLog: true,
		JetStream: true, JetStreamDomain: "hub", StoreDir: p.hubDir,
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: p.leafPort, NoAdvertise: true}}
}

func newNATSPeer(t *testing.T) *natsPeer {
	t.Helper()
	p := &natsPeer{t: t, hubDir: t.TempDir(), hubPort: freePort(t), leafPort: freePort(t)}
	p.hub = startNATS(t, p.hubOptions())
	leaf := fmt.Sprintf("127.0.0.1:%d", p.leafPort)
	p.proxy = NewLinkProxy(t, func() string { return leaf })
	p.edge = startNATS(t, &server.Options{ServerName: "edge", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, JetStreamDomain: "edge", StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{{
			URLs: []*url.URL{{Scheme: "nats-leaf", Host: p.proxy.Addr()}}}}}})
	t.Cleanup(func() {
		p.edge.Shutdown()
		if p.hub != nil {
			p.hub.Shutdown()
		}
	})
	var err error
	if p.edgeConn, err = nats.Connect(p.edge.ClientURL()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.edgeConn.Close)
	if p.edgeJS, err = jetstream.New(p.edgeConn); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := p.edgeJS.CreateStream(ctx, jetstream.StreamConfig{Name: "EDGE", Subjects: []string{"telemetry.>"},
		Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	p.connectHub()
	js, _ := jetstream.New(p.hubConn)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "HUB", Storage: jetstream.FileStorage,
		Sources: []*jetstream.StreamSource{{Name: "EDGE", Domain: "edge"}}}); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *natsPeer) connectHub() {
	p.t.Helper()
	nc, err := nats.Connect(p.hub.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		p.t.Fatal(err)
	}
	p.hubConn = nc
	p.t.Cleanup(nc.Close)
}

// publish sends one message every 10 ms to the edge's stream until ctx
// ends; each holds the time it was sent (unix ns) and 400 bytes of
// padding, about the size of a SenML message of 10 records.
func (p *natsPeer) publish(ctx context.Context) {
	payload := make([]byte, 8+400)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := p.edgeJS.Publish(pctx, "telemetry.d0", payload); err != nil {
			p.errored++
		} else {
			p.published++
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// newestAt is when the newest message in the hub's stream was sent (zero
// when it cannot say).
func newestAt(ctx context.Context, nc *nats.Conn) time.Time {
	js, err := jetstream.New(nc)
	if err != nil {
		return time.Time{}
	}
	s, err := js.Stream(ctx, "HUB")
	if err != nil {
		return time.Time{}
	}
	m, err := s.GetLastMsgForSubject(ctx, "telemetry.d0")
	if err != nil || len(m.Data) < 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(m.Data)))
}

// recoverOnce cuts the leaf link ("cut") or shuts the hub server down
// ("restart") for outage, restores it, and measures from the link's return
// until the hub's stream holds a message sent during the outage; false when
// none does within limit.
func (p *natsPeer) recoverOnce(ctx context.Context, kind string, outage, limit time.Duration) (time.Duration, bool) {
	p.t.Helper()
	if kind == "cut" {
		p.proxy.Cut()
	} else {
		p.hubConn.Close()
		p.hub.Shutdown()
		p.hub.WaitForShutdown()
		p.hub = nil
	}
	out := time.Now()
	time.Sleep(outage)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var back time.Time
	if kind == "cut" {
		back = time.Now()
		p.proxy.Restore()
	} else {
		backc := make(chan time.Time, 1)
		go func() { backc <- dialUntil(ctx, "127.0.0.1:"+strconv.Itoa(p.leafPort)) }()
		p.hub = startNATS(p.t, p.hubOptions())
		p.connectHub()
		back = <-backc
	}
	for ctx.Err() == nil {
		if newestAt(ctx, p.hubConn).After(out) {
			return time.Since(back), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, false
}

// TestEdgeBenchPeerNATS: the same recovery figure as TestEdgeBenchRecovery
// for the NATS peer: an edge publisher sends 100 messages/s to the edge's
// stream; the leaf link is cut, or the hub server shut down, for each of
// EDGE_RECOVERY_OUTAGES ("5s 30s"), then restored (or the hub server started
// again on its store directory and ports). Measured from the link's return
// (Restore; the restarted hub's leaf node port accepting a connection) to
// a message sent during the outage in the hub's stream, polled every 10
// ms, for at most EDGE_PEER_LIMIT (3 minutes) a repetition.
func TestEdgeBenchPeerNATS(t *testing.T) {
	edgeBench(t)
	reps := envInt(t, "EDGE_REPS", 5)
	outages := envDurations(t, "EDGE_RECOVERY_OUTAGES", "5s 30s")
	limit := envDuration(t, "EDGE_PEER_LIMIT", 3*time.Minute)
	p := newNATSPeer(t)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.publish(ctx) }()
	halt := sync.OnceFunc(func() { stop(); <-done })
	defer halt()
	waitUntil(t, time.Minute, "live sourcing", func() bool { return !newestAt(ctx, p.hubConn).IsZero() })
	for _, outage := range outages {
		for _, kind := range strings.Fields(cmp.Or(os.Getenv("EDGE_PEER_KINDS"), "cut restart")) {
			var times []time.Duration
			missed := 0
			for range reps {
				time.Sleep(2 * time.Second)
				d, ok := p.recoverOnce(ctx, kind, outage, limit)
				if !ok {
					missed++
					t.Logf("%s: nothing sent during the outage reached the hub's stream within %v", kind, limit)
					continue
				}
				times = append(times, d)
				t.Logf("%s after %v: %v", kind, outage, d)
			}
			report("recovery nats kind=%s outage=%v stored %s not_within_%v=%d", kind, outage, durations(times), limit, missed)
		}
	}
	halt()
	report("recovery nats load published=%d publish_errors=%d", p.published, p.errored)
}

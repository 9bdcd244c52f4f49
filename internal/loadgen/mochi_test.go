package loadgen

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// authHook admits clients whose username is not "bad" and allows every topic.
type authHook struct{ mochi.HookBase }

func (h *authHook) ID() string { return "bench-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	return string(pk.Connect.Username) != "bad"
}

func (h *authHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// startMochi runs an in-process mochi-mqtt broker with authHook on a free
// loopback port and returns its tcp:// address.
func startMochi(t *testing.T) string {
	t.Helper()
	s := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddHook(new(authHook), nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "bench", Address: "127.0.0.1:0"})
	if err := s.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return "tcp://" + l.Address()
}

// TestRunAgainstBroker runs the generator end to end against a real broker,
// with both client libraries: every acknowledged message must be counted as
// delivered exactly once. This is a correctness test, not a benchmark.
//
// The counting subscription is QoS 0: mochi-mqtt v2.7.9 can deadlock a QoS 1
// subscriber's connection under concurrent publishers (Inflight.NextImmediate
// takes the read lock and calls GetAll, which takes it again; a publisher's
// Inflight.Set queued between the two blocks both for ever). 1,000 messages
// fit mochi's outbound buffer, so QoS 0 loses nothing here.
func TestRunAgainstBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	for _, proto := range []int{5, 3} {
		t.Run(protoName(proto), func(t *testing.T) {
			broker := startMochi(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := Run(ctx, Options{
				Broker:            broker,
				Protocol:          proto,
				Clients:           20,
				MessagesPerClient: 50,
				QoS:               1,
				Inflight:          4,
				SubscribeTopic:    "wanwu/v1/bench/+/telemetry",
				SubscriberQoS:     new(byte),
				// Each library counts, for its own test.
				SubscriberProtocol: proto,
				TargetPID:          os.Getpid(), // the broker runs in this process
				DrainQuiet:         2 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Connected != 20 || res.Sent != 1000 || res.Acked != 1000 || res.Delivered != 1000 ||
				res.Lost != 0 || res.Duplicates != 0 || len(res.Errors) != 0 {
				t.Errorf("connected %d sent %d acked %d delivered %d lost %d dup %d errors %v; want 20, 1000 ×4, 0, 0, none",
					res.Connected, res.Sent, res.Acked, res.Delivered, res.Lost, res.Duplicates, res.Errors)
			}
			if res.PublishToAck.N != 1000 || res.PublishToDeliver.N != 1000 || res.PublishToDeliver.P50 <= 0 {
				t.Errorf("latency samples: ack %+v deliver %+v", res.PublishToAck, res.PublishToDeliver)
			}
			if res.TargetRSSBefore <= 0 || res.TargetRSSAfter <= 0 || res.Throughput <= 0 {
				t.Errorf("target sampling: rss %d→%d throughput %v", res.TargetRSSBefore, res.TargetRSSAfter, res.Throughput)
			}
			if res.PayloadBytes != DefaultPayloadSize {
				t.Errorf("payload %d bytes, want %d", res.PayloadBytes, DefaultPayloadSize)
			}
		})
	}
}

// TestRunAtRate checks the paced schedule: no message leaves before its
// time, so a run can be no shorter than its schedule and a timed run sends
// no more than it allows; and every paced message is still counted.
func TestRunAtRate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	broker := startMochi(t)
	for _, tc := range []struct {
		name     string
		opts     Options
		minSent  int64
		maxSent  int64
		minSpell time.Duration // the schedule's length: the earliest the last message may go
	}{
		// Message 10 of each client leaves 9/50 s after its phase.
		{"messages", Options{MessagesPerClient: 10, Rate: 50}, 100, 100, 180 * time.Millisecond},
		{"aligned", Options{MessagesPerClient: 10, Rate: 50, Aligned: true}, 100, 100, 180 * time.Millisecond},
		// In 300 ms at 20/s a client's schedule holds messages 1-6.
		{"duration", Options{Duration: 300 * time.Millisecond, Rate: 20}, 1, 60, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Broker, o.Clients, o.QoS, o.Inflight = broker, 10, 1, 2
			o.SubscribeTopic, o.SubscriberQoS, o.DrainQuiet = "wanwu/v1/bench/+/telemetry", new(byte), 2*time.Second
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := Run(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent < tc.minSent || res.Sent > tc.maxSent || res.Acked != res.Sent || res.Delivered != res.Sent ||
				res.Lost != 0 || len(res.Errors) != 0 {
				t.Errorf("sent %d (want %d-%d), acked %d, delivered %d, lost %d, errors %v",
					res.Sent, tc.minSent, tc.maxSent, res.Acked, res.Delivered, res.Lost, res.Errors)
			}
			if res.PublishWindow < tc.minSpell {
				t.Errorf("published in %v, faster than the schedule's %v", res.PublishWindow, tc.minSpell)
			}
			if int64(res.PublishToAck.N) != res.Acked {
				t.Errorf("%d latency samples for %d acknowledgements", res.PublishToAck.N, res.Acked)
			}
		})
	}
}

func TestIdleAgainstBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	broker := startMochi(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Idle(ctx, Options{
		Broker:      broker,
		Clients:     20,
		TargetPID:   os.Getpid(),
		SourceAddrs: []string{"127.0.0.2", "127.0.0.3"},
		IdleSettle:  100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 20 || len(res.Errors) != 0 || res.TargetRSSAfter <= 0 {
		t.Errorf("connected %d errors %v rss after %d", res.Connected, res.Errors, res.TargetRSSAfter)
	}
}

// TestRefusedConnect checks that a broker's refusal is reported by reason
// code, not retried when retrying cannot help, and not mistaken for load.
func TestRefusedConnect(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	broker := startMochi(t)
	res, err := Run(context.Background(), Options{
		Broker:      broker,
		Clients:     3,
		Credentials: func(int) (string, string) { return "bad", "pw" },
	})
	if err == nil {
		t.Fatal("no error with every connect refused")
	}
	if res == nil || res.Connected != 0 || res.Errors["connack_0x86"] != 3 || res.Errors["connect_retry"] != 0 {
		t.Errorf("result %+v", res)
	}
}

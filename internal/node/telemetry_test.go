package node

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/ingest"
)

// seen is a consumer of the ingest log that records the devices it got.
type seen struct {
	mu      sync.Mutex
	pending []string
	devices []string
}

func (s *seen) Add(msgs []ingest.Message) {
	for _, m := range msgs {
		s.pending = append(s.pending, m.Device)
	}
}

func (s *seen) Write(context.Context) error {
	s.mu.Lock()
	s.devices = append(s.devices, s.pending...)
	s.mu.Unlock()
	s.pending = nil
	return nil
}

func (s *seen) Commit(context.Context) error { return nil }

func (s *seen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.devices)
}

// TestTelemetryConsumers: what the intake accepts reaches a further
// consumer of the ingest log (the edge's forwarder, later), and Shutdown
// leaves the stores closed.
func TestTelemetryConsumers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := bus.Start(ctx, bus.Options{StoreDir: filepath.Join(dir, "nats"), Sync: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(ctx)
	var cfg config.Telemetry
	cfg.MaxPayload = 4096
	c := &seen{}
	tel, err := StartTelemetry(ctx, TelemetryOptions{
		Dir: dir, Config: cfg, Bus: b, Logger: slog.New(slog.DiscardHandler),
		Consumers: []Consumer{{Consumer: c, Name: "test", CursorFile: "test.cursor"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		rej, _ := tel.Intake.AcceptWait(ctx, &adapter.Upload{
			Device: ingest.Device{Code: fmt.Sprintf("acme:d%d", i), Tenant: "acme"}, Source: "test",
			ContentType: ingest.ContentSenMLJSON, Payload: []byte(`[{"n":"t","v":1}]`),
		})
		if rej != nil {
			t.Fatal(rej)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); c.count() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the consumer got %d of %d", c.count(), n)
		}
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

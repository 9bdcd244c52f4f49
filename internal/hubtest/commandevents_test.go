package hubtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCommandEventsReachTheStream: every command event in the database
// reaches the COMMANDS stream, also those the stream lost. The stream keeps
// its messages without an fsync each (they copy the database), so a crash
// may lose its newest ones; here the whole stream is lost while the hub is
// down, and the restarted hub publishes every event again from the
// database.
func TestCommandEventsReachTheStream(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	register(t, h, "acme:pump-ev", "--model", "acme:pump@1.0.0")
	const commands = 40
	for i := range commands {
		h.MustAdmin(201, "POST", "/api/v1/objects/acme:pump-ev/commands", map[string]any{
			"id": fmt.Sprintf("ev-%d", i), "action": "stop",
		})
	}
	h.MustAdmin(200, "POST", "/api/v1/commands/ev-0/cancel", nil)
	want := commands + 1 // issued each, and one canceled
	eventually(t, "events in the stream", func() error { return streamHolds(t, h, want) })

	h.Stop()
	if err := os.RemoveAll(filepath.Join(h.Dir, "nats", "jetstream", "$G", "streams", "COMMANDS")); err != nil {
		t.Fatal(err)
	}
	h.Restart()
	eventually(t, "events in the stream after it was lost", func() error { return streamHolds(t, h, want) })
	// New events follow on.
	h.MustAdmin(200, "POST", "/api/v1/commands/ev-1/cancel", nil)
	eventually(t, "a new event", func() error { return streamHolds(t, h, want+1) })
}

// streamHolds checks that the COMMANDS stream holds n events, with Seq 1 to
// n in order and once each.
func streamHolds(t *testing.T, h *Hub, n int) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var seqs []uint64
	if err := h.Bus().CommandEvents().ReadAll(ctx, func(b []byte) error {
		var e struct{ Seq uint64 }
		if err := json.Unmarshal(b, &e); err != nil {
			return err
		}
		seqs = append(seqs, e.Seq)
		return nil
	}); err != nil {
		return err
	}
	if len(seqs) != n {
		return fmt.Errorf("stream holds %d events, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			return fmt.Errorf("event %d has seq %d", i, s)
		}
	}
	return nil
}

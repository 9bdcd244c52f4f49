package forward

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/ingest"
)

// TestWriteSplitsLargeBacklogs: many batches taken before one Write (a
// read-back after an outage) go into several outbox messages, none over
// MaxMessage, each headed by its last batch; after a restart the class
// holds through the last batch, and reading back gives every batch once.
func TestWriteSplitsLargeBacklogs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := bus.Start(ctx, bus.Options{StoreDir: filepath.Join(dir, "nats"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(ctx)
	open := func() *Outboxes {
		x, err := OpenOutboxes(ctx, OutboxOptions{Bus: b, Edge: "t:edge", Tenant: "t", Quota: DefaultQuota, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	x := open()
	big := strings.Repeat("x", 100<<10) // a 100 KiB string value per batch
	const batches = 30
	for seq := uint64(1); seq <= batches; seq++ {
		m := ingest.Message{Device: "t:d", Tenant: "t", Kind: ingest.Telemetry, Received: int64(seq),
			Records: []ingest.Record{{Property: "raw", Time: int64(seq), Kind: ingest.KindString, String: big}}}
		x.AddSeq(seq, []ingest.Message{m})
	}
	if err := x.Write(ctx); err != nil {
		t.Fatalf("3 MiB of batches in one Write: %v", err)
	}
	box := x.boxes[Telemetry]
	st, err := box.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages < 6 {
		t.Fatalf("%d outbox messages for 3 MiB, want them split at %d bytes", st.Messages, MaxMessage)
	}
	var got []int64
	if _, err := box.Read(ctx, st.First, 1000, func(seq uint64, data []byte) bool {
		if len(data) > MaxMessage+64 {
			t.Errorf("message %d: %d bytes", seq, len(data))
		}
		msgs, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			got = append(got, m.Received)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if r != int64(i+1) {
			t.Fatalf("batches read back %v, want 1..%d once each in order", got, batches)
		}
	}
	if len(got) != batches {
		t.Fatalf("%d batches read back, want %d", len(got), batches)
	}
	_, head, err := box.Last(ctx)
	if err != nil || head != batches {
		t.Fatalf("the last message is headed %d (%v), want %d", head, err, batches)
	}
	// A restart takes the class's place from the last header: the same
	// batches added again are not appended twice.
	y := open()
	if y.have[Telemetry] != batches {
		t.Fatalf("after a restart the class holds through %d, want %d", y.have[Telemetry], batches)
	}
}

package bus

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestPublishIngestSequences: each batch gets the next stream sequence, and
// a retry under the same batch id gets the first copy's, stored once.
func TestPublishIngestSequences(t *testing.T) {
	b := startBus(t)
	ctx := context.Background()
	for i := range 3 {
		seq, err := b.PublishIngest(ctx, fmt.Sprint("batch-", i), []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i+1) {
			t.Fatalf("batch %d stored at sequence %d, want %d", i, seq, i+1)
		}
	}
	seq, err := b.PublishIngest(ctx, "batch-1", []byte("1"))
	if err != nil || seq != 2 {
		t.Fatalf("retried batch-1: sequence %d, %v; want 2", seq, err)
	}
	if info, err := b.ingest.Info(ctx); err != nil || info.State.LastSeq != 3 {
		t.Fatalf("stream info %+v, %v; want the last sequence 3 (the retry is not stored again)", info, err)
	}
}

// TestReadIngest: reading from a sequence returns the batches from there
// to the last one, in order, and says how far it got.
func TestReadIngest(t *testing.T) {
	b := startBus(t)
	ctx := context.Background()
	const n = 600 // more than one fetch
	for i := range n {
		if _, err := b.PublishIngest(ctx, fmt.Sprint("batch-", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		from, to, wantFirst, wantReached uint64
		wantCount                        int
	}{
		{from: 0, wantFirst: 1, wantReached: n, wantCount: n},
		{from: 1, wantFirst: 1, wantReached: n, wantCount: n},
		{from: 400, wantFirst: 400, wantReached: n, wantCount: n - 399},
		{from: n, wantFirst: n, wantReached: n, wantCount: 1},
		{from: n + 1, wantReached: n, wantCount: 0},
		{from: 3, to: 7, wantFirst: 3, wantReached: 7, wantCount: 5},
		{from: 300, to: 299, wantReached: 299, wantCount: 0},
		{from: 590, to: n + 10, wantFirst: 590, wantReached: n, wantCount: 11},
	} {
		var seqs []uint64
		reached, err := b.ReadIngest(ctx, tc.from, tc.to, noneLost(t), func(seq uint64, batch []byte) error {
			if string(batch) != fmt.Sprint(seq-1) {
				return fmt.Errorf("sequence %d holds %q", seq, batch)
			}
			seqs = append(seqs, seq)
			return nil
		})
		if err != nil {
			t.Fatalf("from %d to %d: %v", tc.from, tc.to, err)
		}
		if reached != tc.wantReached || len(seqs) != tc.wantCount {
			t.Fatalf("from %d to %d: reached %d with %d batches, want %d with %d", tc.from, tc.to, reached, len(seqs), tc.wantReached, tc.wantCount)
		}
		if len(seqs) > 0 && (seqs[0] != tc.wantFirst || !slices.IsSorted(seqs)) {
			t.Fatalf("from %d to %d: first %d, in order %v", tc.from, tc.to, seqs[0], slices.IsSorted(seqs))
		}
	}
	// An error from fn stops the reading where it was.
	stop := fmt.Errorf("enough")
	reached, err := b.ReadIngest(ctx, 10, 0, noneLost(t), func(seq uint64, _ []byte) error {
		if seq == 13 {
			return stop
		}
		return nil
	})
	if err != stop || reached != 12 {
		t.Fatalf("stopped reading: reached %d, %v; want 12 and the handler's error", reached, err)
	}
	// Reading leaves no consumer behind on the stream.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := b.ingest.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d consumers left on the stream after reading", info.State.Consumers)
		}
	}
}

// TestDropIngestConsumer: the durable consumer earlier hubs fed the stores
// from is removed once, and its acknowledgement floor reported.
func TestDropIngestConsumer(t *testing.T) {
	b := startBus(t)
	ctx := context.Background()
	if _, ok, err := b.DropIngestConsumer(ctx, "stores"); err != nil || ok {
		t.Fatalf("no consumer yet: ok %v, %v", ok, err)
	}
	for i := range 5 {
		if _, err := b.PublishIngest(ctx, fmt.Sprint("batch-", i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.js.CreateOrUpdateConsumer(ctx, ingestStream, jetstream.ConsumerConfig{Durable: "stores", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range msgs.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	floor, ok, err := b.DropIngestConsumer(ctx, "stores")
	if err != nil || !ok || floor != 3 {
		t.Fatalf("dropped consumer: floor %d, ok %v, %v; want 3, true", floor, ok, err)
	}
	if _, ok, err := b.DropIngestConsumer(ctx, "stores"); err != nil || ok {
		t.Fatalf("dropped twice: ok %v, %v", ok, err)
	}
}

func noneLost(t *testing.T) func(from, to uint64) {
	return func(from, to uint64) { t.Errorf("batches %d-%d reported lost", from, to) }
}

// TestReadIngestReportsExpired: batches the stream dropped under its byte
// bound are reported as lost, exactly, before the ones still held.
func TestReadIngestReportsExpired(t *testing.T) {
	b, err := Start(context.Background(), Options{StoreDir: t.TempDir(), ServerName: "test", IngestMaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	ctx := context.Background()
	batch := make([]byte, 4<<10)
	for i := range 100 {
		if _, err := b.PublishIngest(ctx, fmt.Sprint("batch-", i), batch); err != nil {
			t.Fatal(err)
		}
	}
	info, err := b.ingest.Info(ctx)
	if err != nil || info.State.FirstSeq <= 1 {
		t.Fatalf("stream state %+v, %v: nothing expired", info.State, err)
	}
	var lost [][2]uint64
	var first uint64
	reached, err := b.ReadIngest(ctx, 1, 0, func(from, to uint64) { lost = append(lost, [2]uint64{from, to}) }, func(seq uint64, _ []byte) error {
		if first == 0 {
			first = seq
		}
		return nil
	})
	if err != nil || reached != 100 {
		t.Fatalf("reached %d, %v", reached, err)
	}
	if len(lost) != 1 || lost[0] != [2]uint64{1, info.State.FirstSeq - 1} || first != info.State.FirstSeq {
		t.Fatalf("lost %v, first read %d; want [1, %d] and then %d", lost, first, info.State.FirstSeq-1, info.State.FirstSeq)
	}
}

package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/testfs"
)

// TestFullDiskFailsFastAndRecovers fills the filesystem under JetStream:
// publishes fail within a second (not after their timeout) and say why,
// Ready says so, and once space is back the bus reopens JetStream by itself
// and every batch acknowledged before or after is read back.
func TestFullDiskFailsFastAndRecovers(t *testing.T) {
	dir := testfs.Mount(t, 24<<20)
	var reported atomic.Int32
	var spaceBack atomic.Bool
	b, err := Start(context.Background(), Options{
		StoreDir: dir, ServerName: "test", Logger: slog.New(slog.DiscardHandler),
		OnNoSpace:      func(error) { reported.Add(1) },
		SpaceAvailable: spaceBack.Load,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	ctx := context.Background()
	batch := make([]byte, 32<<10)
	acked := map[uint64]string{}
	publish := func(id string) (time.Duration, error) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		start := time.Now()
		copy(batch, id)
		seq, err := b.PublishIngest(pctx, id, batch)
		if err == nil {
			acked[seq] = id
		}
		return time.Since(start), err
	}
	for i := range 20 {
		if _, err := publish(fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	fill := testfs.NewFiller(t, dir)
	fill.FillTo(0)
	var failedAfter time.Duration
	for i := range 50 {
		took, err := publish(fmt.Sprintf("full-%d", i))
		if err == nil {
			continue // the block still had room
		}
		if !errors.Is(err, ErrStoreFailed) {
			t.Fatalf("publish on a full disk: %v, want ErrStoreFailed", err)
		}
		failedAfter = took
		break
	}
	if failedAfter == 0 {
		t.Fatal("publishes kept succeeding on a full disk")
	}
	if failedAfter > 3*time.Second {
		t.Errorf("the first failed publish took %v: it waited for an answer that never comes", failedAfter)
	}
	if took, err := publish("refused"); !errors.Is(err, ErrStoreFailed) || took > 100*time.Millisecond {
		t.Errorf("publish while failed: %v after %v, want ErrStoreFailed at once", err, took)
	}
	if err := b.Ready(); !errors.Is(err, ErrStoreFailed) {
		t.Errorf("Ready() = %v, want ErrStoreFailed", err)
	}
	if reported.Load() == 0 {
		t.Error("OnNoSpace was not told")
	}

	fill.Free()
	spaceBack.Store(true)
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		_, err := publish(fmt.Sprintf("after-%d", i))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishes still fail 15s after space returned: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := b.Ready(); err != nil {
		t.Fatalf("Ready() after recovery = %v", err)
	}
	for i := range 20 {
		if _, err := publish(fmt.Sprintf("later-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	read := map[uint64]string{}
	if _, err := b.ReadIngest(ctx, 1, 0, func(from, to uint64) { t.Errorf("batches %d-%d lost", from, to) }, func(seq uint64, data []byte) error {
		read[seq] = string(data[:len("before-00")])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for seq, id := range acked {
		got, ok := read[seq]
		if !ok || got[:3] != id[:3] {
			t.Errorf("acknowledged batch %s (sequence %d) read back as %q", id, seq, got)
		}
	}
	t.Logf("%d batches acknowledged, %d read back; first failure after %v", len(acked), len(read), failedAfter)
}

package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// ingestRecorder is an IngestHandler whose Commit can be made to fail, and
// which records what was stored and when commits ran.
type ingestRecorder struct {
	mu      sync.Mutex
	stored  []string
	commits int
	// pendingAtCommit is IngestPending seen inside each Commit: batches must
	// still be unacknowledged then.
	pendingAtCommit []uint64
	failCommits     int
	b               *Bus
	// firstStore and firstCommit are when Store and a successful Commit
	// first ran.
	firstStore, firstCommit time.Time
}

func (r *ingestRecorder) handler(every time.Duration) IngestHandler {
	return IngestHandler{
		Store: func(batches [][]byte) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, b := range batches {
				r.stored = append(r.stored, string(b))
			}
			if r.firstStore.IsZero() {
				r.firstStore = time.Now()
			}
			return nil
		},
		Commit: func() error {
			n, err := r.b.IngestPending(context.Background(), "test")
			if err != nil {
				return err
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			r.pendingAtCommit = append(r.pendingAtCommit, n)
			if r.failCommits > 0 {
				r.failCommits--
				return errors.New("disk full")
			}
			r.commits++
			if r.firstCommit.IsZero() {
				r.firstCommit = time.Now()
			}
			return nil
		},
		CommitEvery: every,
	}
}

func (r *ingestRecorder) snapshot() (stored []string, commits int, pending []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.stored...), r.commits, append([]uint64(nil), r.pendingAtCommit...)
}

func waitDrained(t *testing.T, b *Bus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := b.IngestPending(context.Background(), "test")
		if err == nil && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest consumer not drained: %d pending (%v)", n, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConsumeIngestCommitsInGroups: batches stored within CommitEvery share
// one commit, are acknowledged only after it, and a failed commit has them
// delivered again.
func TestConsumeIngestCommitsInGroups(t *testing.T) {
	b := startBus(t)
	ctx, cancel := context.WithCancel(context.Background())
	rec := &ingestRecorder{b: b, failCommits: 1}
	done := make(chan error, 1)
	// Publish before consuming, so that the batches wait together.
	for i := range 10 {
		if err := b.PublishIngest(ctx, fmt.Sprint("batch-", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	go func() { done <- b.ConsumeIngest(ctx, "test", rec.handler(200*time.Millisecond)) }()
	waitDrained(t, b)
	stored, commits, pending := rec.snapshot()
	// The first commit failed: all ten were stored twice, committed once.
	if len(stored) != 20 || commits != 1 {
		t.Fatalf("stored %d batches with %d commits, want 20 and 1 (the first commit failed)", len(stored), commits)
	}
	for i, n := range pending {
		if n != 10 {
			t.Fatalf("commit %d saw %d batches unacknowledged, want all 10", i, n)
		}
	}
	// A lone batch is acknowledged once CommitEvery has passed, not before.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	rec2 := &ingestRecorder{b: b}
	go func() { done <- b.ConsumeIngest(ctx, "test", rec2.handler(50*time.Millisecond)) }()
	if err := b.PublishIngest(ctx, "batch-late", []byte("late")); err != nil {
		t.Fatal(err)
	}
	// Wait for the commit itself: the consumer restarting on the same
	// durable name can show nothing pending for a moment.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, n, _ := rec2.snapshot(); n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lone batch was never committed")
		}
	}
	waitDrained(t, b)
	stored, commits, _ = rec2.snapshot()
	rec2.mu.Lock()
	waited := rec2.firstCommit.Sub(rec2.firstStore)
	rec2.mu.Unlock()
	if waited < 40*time.Millisecond {
		t.Fatalf("a lone batch was committed %v after it was stored, before CommitEvery", waited)
	}
	if len(stored) != 1 || stored[0] != "late" || commits != 1 {
		t.Fatalf("stored %q with %d commits", stored, commits)
	}
}

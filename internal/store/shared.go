package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// Every commit of the writer is an fsync (synchronous=FULL), and the writer
// makes them one after the other: writes made one commit each queue behind
// each other's fsyncs. SharedTx lets concurrent writes share a commit, as
// databases with a group commit do: while one transaction commits, the
// writes that arrive wait; the first of them then runs them all in one
// transaction, each inside a savepoint of its own, so that a write that
// fails is rolled back alone, and commits once for all.

// sharedWrites is the queue of SharedTx.
type sharedWrites struct {
	mu      sync.Mutex
	queue   []*sharedWrite
	leading bool // a commit is being led
}

type sharedWrite struct {
	ctx       context.Context
	fn        func(ctx context.Context, tx *sql.Tx) error
	committed func()
	// ready is closed when the write committed or failed, or when it is to
	// lead the next commit (lead set first).
	ready chan struct{}
	lead  bool
	err   error
}

// SharedTx runs fn in a write transaction that it may share with other
// SharedTx calls made at the same time, inside a savepoint of its own, and
// returns once that transaction committed: fn's error (its changes rolled
// back, the others' kept), or the commit's.
//
// fn gets ctx without its cancellation: a caller that gives up must not
// interrupt a transaction that carries other callers' writes (SQLite would
// roll back all of it), so fn runs to its end unless ctx was done before it
// began. committed, if not nil, runs after the commit of a write whose fn
// succeeded, in the order the functions ran and before any of them returns:
// for what must follow commit order. fn must not write through the database
// itself (Tx or SharedTx): the transaction it runs in holds the writer.
func (db *DB) SharedTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error, committed func()) error {
	if db.W == nil {
		return errors.New("store: database is open read-only")
	}
	w := &sharedWrite{ctx: ctx, fn: fn, committed: committed, ready: make(chan struct{})}
	q := &db.shared
	q.mu.Lock()
	q.queue = append(q.queue, w)
	if !q.leading {
		q.leading, w.lead = true, true
		close(w.ready)
	}
	q.mu.Unlock()
	<-w.ready
	if w.lead {
		db.commitShared()
	}
	return w.err
}

// WritesWaiting is how many SharedTx calls wait for a commit.
func (db *DB) WritesWaiting() int {
	db.shared.mu.Lock()
	defer db.shared.mu.Unlock()
	return len(db.shared.queue)
}

// commitShared commits the waiting writes in one transaction, then wakes
// them and hands the lead to the first write that came meanwhile.
func (db *DB) commitShared() {
	q := &db.shared
	q.mu.Lock()
	batch := q.queue
	q.queue = nil
	q.mu.Unlock()
	err := db.Tx(context.Background(), func(tx *sql.Tx) error {
		for _, w := range batch {
			if w.err = w.ctx.Err(); w.err != nil {
				continue
			}
			if _, err := tx.Exec(`SAVEPOINT shared`); err != nil {
				return fmt.Errorf("store: savepoint: %w", err)
			}
			if w.err = w.fn(context.WithoutCancel(w.ctx), tx); w.err != nil {
				if _, err := tx.Exec(`ROLLBACK TO shared`); err != nil {
					return fmt.Errorf("store: roll back a write: %w", err)
				}
			}
			if _, err := tx.Exec(`RELEASE shared`); err != nil {
				return fmt.Errorf("store: savepoint: %w", err)
			}
		}
		return nil
	})
	for _, w := range batch {
		switch {
		case err != nil && w.err == nil:
			w.err = err
		case w.err == nil && w.committed != nil:
			w.committed()
		}
	}
	q.mu.Lock()
	for _, w := range batch {
		if !w.lead {
			close(w.ready)
		}
	}
	if len(q.queue) > 0 {
		next := q.queue[0]
		next.lead = true
		close(next.ready)
	} else {
		q.leading = false
	}
	q.mu.Unlock()
}

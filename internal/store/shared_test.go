package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

var testSchema = []Migration{{Name: "t", Statements: []string{`CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)`}}}

func openTest(t testing.TB) *DB {
	t.Helper()
	db, err := OpenFile(context.Background(), filepath.Join(t.TempDir(), "t.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(context.Background(), "test", testSchema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestSharedTx: writes queued behind a commit share the next one, each in
// a savepoint: a write that fails after writing leaves nothing, one whose
// caller gave up before it ran does not run, the others commit, and their
// committed callbacks run in the order the writes ran, before SharedTx
// returns to any of them.
func TestSharedTx(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	held, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- db.SharedTx(ctx, func(context.Context, *sql.Tx) error { close(held); <-release; return nil }, nil)
	}()
	<-held

	const n = 30
	errBoom := errors.New("boom")
	gaveUp, cancel := context.WithCancel(ctx)
	cancel()
	var mu sync.Mutex
	var ran, committed []int
	returned := 0
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx := ctx
			if i == 7 {
				wctx = gaveUp
			}
			errs[i] = db.SharedTx(wctx, func(ctx context.Context, tx *sql.Tx) error {
				mu.Lock()
				ran = append(ran, i)
				mu.Unlock()
				if _, err := tx.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, ?)`, i, fmt.Sprint(i)); err != nil {
					return err
				}
				if i%3 == 2 {
					return errBoom
				}
				return nil
			}, func() {
				mu.Lock()
				defer mu.Unlock()
				if returned > 0 {
					t.Errorf("write %d: committed ran after a SharedTx of its commit returned", i)
				}
				committed = append(committed, i)
			})
			mu.Lock()
			returned++
			mu.Unlock()
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for db.WritesWaiting() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes wait, want %d", db.WritesWaiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}

	var want []int
	for i, err := range errs {
		switch {
		case i == 7:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("write %d, given up: %v", i, err)
			}
		case i%3 == 2:
			if !errors.Is(err, errBoom) {
				t.Errorf("write %d: %v, want its own error", i, err)
			}
		case err != nil:
			t.Errorf("write %d: %v", i, err)
		default:
			want = append(want, i)
		}
	}
	rows, err := db.R.QueryContext(ctx, `SELECT k FROM t ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var stored []int
	for rows.Next() {
		var k int
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, k)
	}
	if !slices.Equal(stored, want) {
		t.Errorf("stored %v, want %v", stored, want)
	}
	if slices.Contains(ran, 7) {
		t.Error("the write whose caller gave up ran")
	}
	var ranOK []int
	for _, i := range ran {
		if i%3 != 2 {
			ranOK = append(ranOK, i)
		}
	}
	if !slices.Equal(committed, ranOK) {
		t.Errorf("committed callbacks in order %v, want the order the writes ran %v", committed, ranOK)
	}
}

// BenchmarkWrite compares concurrent writers with a commit each (Tx) and
// with shared commits (SharedTx); every commit is an fsync.
func BenchmarkWrite(b *testing.B) {
	for _, shared := range []bool{false, true} {
		name := "Tx"
		if shared {
			name = "SharedTx"
		}
		b.Run(name, func(b *testing.B) {
			db := openTest(b)
			ctx := context.Background()
			var mu sync.Mutex
			k := 0
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					k++
					key := k
					mu.Unlock()
					insert := func(ctx context.Context, tx *sql.Tx) error {
						_, err := tx.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, 'x')`, key)
						return err
					}
					var err error
					if shared {
						err = db.SharedTx(ctx, insert, nil)
					} else {
						err = db.Tx(ctx, func(tx *sql.Tx) error { return insert(ctx, tx) })
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

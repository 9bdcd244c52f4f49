package store_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// restore writes the SQL dump in testdata/name into a new database file.
func restore(t *testing.T, name, path string) {
	t.Helper()
	dump, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(string(dump)); err != nil {
		t.Fatalf("restore %s: %v", name, err)
	}
}

// openAll opens wanwu.db and events.db in dir with every owner of their
// tables, as the hub does, and returns the metadata database.
func openAll(t *testing.T, dir string) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(dir, "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	al, err := audit.Open(ctx, db.W, ed25519.NewKeyFromSeed(make([]byte, 32)), "wanwu.hub/fixture")
	if err != nil {
		t.Fatal(err)
	}
	tw, err := twin.Open(ctx, twin.Options{DB: db, Audit: al})
	if err != nil {
		t.Fatal(err)
	}
	noModel := func(context.Context, string) (*thingmodel.Model, error) { return nil, nil }
	if _, err := command.Open(ctx, command.Options{DB: db, Audit: al, Model: noModel}); err != nil {
		t.Fatal(err)
	}
	ev, err := eventstore.Open(ctx, filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	ev.Close()
	got, err := tw.Get(ctx, "acme:pump-1")
	if err != nil {
		t.Fatalf("twin written before schema versions: %v", err)
	}
	if got.Version != 1 || got.Desired["rpm"] == nil {
		t.Errorf("twin = %+v", got)
	}
	return db
}

// TestOpenUnversionedDataDir: the databases of a data directory written by
// the release before schema versions (testdata/unversioned-*.sql: every
// table, user_version 0) open with every owner, keep their rows, and are
// recorded at the current versions; opening again changes nothing.
func TestOpenUnversionedDataDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	restore(t, "unversioned-wanwu.sql", filepath.Join(dir, "wanwu.db"))
	restore(t, "unversioned-events.sql", filepath.Join(dir, "events.db"))

	db := openAll(t, dir)
	for o, want := range map[string]int{"store": 4, "audit": 1, "twin": 1, "command": 1} {
		if v, err := db.SchemaVersion(ctx, o); err != nil || v != want {
			t.Errorf("%s: version %d, %v; want %d", o, v, err, want)
		}
	}
	// Step 2 of the identity tables gave the old claims table its new columns.
	if _, err := db.R.Exec(`SELECT last_used_at, revoked_reason FROM claims`); err != nil {
		t.Errorf("claims after migration: %v", err)
	}
	// Step 3 gave objects the code a released row had, step 4 their network.
	if _, err := db.R.Exec(`SELECT released_code, network FROM objects`); err != nil {
		t.Errorf("objects after migration: %v", err)
	}
	var n int
	if err := db.R.QueryRow(`SELECT (SELECT count(*) FROM objects) + (SELECT count(*) FROM commands) + (SELECT count(*) FROM command_events)`).Scan(&n); err != nil || n != 3 {
		t.Errorf("rows kept: %d, %v; want 3", n, err)
	}
	if id, ok, err := db.Meta(ctx, "deployment_id"); err != nil || !ok || id != "fixture-deployment" {
		t.Errorf("deployment id %q %v %v", id, ok, err)
	}
	db.Close()

	ev, err := store.OpenFile(ctx, filepath.Join(dir, "events.db"), store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	if v, err := ev.SchemaVersion(ctx, "eventstore"); err != nil || v != 1 {
		t.Errorf("eventstore: version %d, %v; want 1", v, err)
	}
	if err := ev.R.QueryRow(`SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM text_values)`).Scan(&n); err != nil || n != 2 {
		t.Errorf("events rows kept: %d, %v; want 2", n, err)
	}

	openAll(t, dir) // idempotent
}

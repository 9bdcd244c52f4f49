package store

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// steps is a schema of three versions: a table, a column added to it (with
// a backfill), an index.
var steps = []Migration{
	{Name: "items", Statements: []string{
		`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`,
	}},
	{Name: "items.label", Statements: []string{
		`ALTER TABLE items ADD COLUMN label TEXT NOT NULL DEFAULT ''`,
		`UPDATE items SET label = upper(name)`,
	}},
	{Name: "items by label", Statements: []string{
		`CREATE INDEX items_by_label ON items(label)`,
	}},
}

func openFile(t *testing.T, path string) *DB {
	t.Helper()
	db, err := OpenFile(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func version(t *testing.T, db *DB, owner string) int {
	t.Helper()
	v, err := db.SchemaVersion(context.Background(), owner)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func userVersion(t *testing.T, db *DB) int {
	t.Helper()
	var v int
	if err := db.W.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// schemaOf is the database's schema as SQLite keeps it (without the
// bookkeeping table), for comparing databases migrated along different paths.
func schemaOf(t *testing.T, db *DB) []string {
	t.Helper()
	rows, err := db.W.Query(`SELECT type || ' ' || name || ': ' || sql FROM sqlite_master
		WHERE sql IS NOT NULL AND name <> 'schema_versions' ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrateFresh: a new database gets every step, its owner's version and
// the layout version.
func TestMigrateFresh(t *testing.T) {
	db := openFile(t, filepath.Join(t.TempDir(), "t.db"))
	if got := userVersion(t, db); got != 0 {
		t.Fatalf("user_version before any migration = %d, want 0", got)
	}
	if err := db.Migrate(context.Background(), "items", steps); err != nil {
		t.Fatal(err)
	}
	if got := version(t, db, "items"); got != len(steps) {
		t.Errorf("version = %d, want %d", got, len(steps))
	}
	if got := userVersion(t, db); got != layoutVersion {
		t.Errorf("user_version = %d, want %d", got, layoutVersion)
	}
	if _, err := db.W.Exec(`INSERT INTO items (name, label) VALUES ('a', 'A')`); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateFromEachVersion: a database left at each older version (only
// its first n steps run, with a row written then) reaches the same schema as
// a fresh one, and the data written at the old version is carried forward.
func TestMigrateFromEachVersion(t *testing.T) {
	ctx := context.Background()
	fresh := openFile(t, filepath.Join(t.TempDir(), "fresh.db"))
	if err := fresh.Migrate(ctx, "items", steps); err != nil {
		t.Fatal(err)
	}
	want := schemaOf(t, fresh)
	for n := 0; n < len(steps); n++ {
		db := openFile(t, filepath.Join(t.TempDir(), "old.db"))
		if err := db.Migrate(ctx, "items", steps[:n]); err != nil {
			t.Fatalf("first %d steps: %v", n, err)
		}
		if got := version(t, db, "items"); got != n {
			t.Fatalf("after %d steps: version %d", n, got)
		}
		if n > 0 {
			if _, err := db.W.Exec(`INSERT INTO items (name) VALUES ('pump')`); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Migrate(ctx, "items", steps); err != nil {
			t.Fatalf("from version %d: %v", n, err)
		}
		if got := version(t, db, "items"); got != len(steps) {
			t.Errorf("from version %d: version %d, want %d", n, got, len(steps))
		}
		if got := schemaOf(t, db); !reflect.DeepEqual(got, want) {
			t.Errorf("from version %d: schema\n%q\nwant\n%q", n, got, want)
		}
		if n > 0 {
			var label string
			if err := db.W.QueryRow(`SELECT label FROM items WHERE name = 'pump'`).Scan(&label); err != nil {
				t.Fatalf("from version %d: %v", n, err)
			}
			// Step 2 backfills the label of rows that existed before it.
			if wantLabel := map[bool]string{true: "PUMP", false: ""}[n < 2]; label != wantLabel {
				t.Errorf("from version %d: label %q, want %q", n, label, wantLabel)
			}
		}
	}
}

// TestMigrateIdempotent: migrating again, in the same process or after a
// reopen, changes nothing (not even the time of the recorded version).
func TestMigrateIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	db := openFile(t, path)
	if err := db.Migrate(ctx, "items", steps); err != nil {
		t.Fatal(err)
	}
	var at int64
	if err := db.W.QueryRow(`SELECT updated_at FROM schema_versions WHERE owner = 'items'`).Scan(&at); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, "items", steps); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openFile(t, path)
	if err := db.Migrate(ctx, "items", steps); err != nil {
		t.Fatal(err)
	}
	var at2 int64
	var n int
	if err := db.W.QueryRow(`SELECT updated_at, (SELECT count(*) FROM schema_versions) FROM schema_versions WHERE owner = 'items'`).Scan(&at2, &n); err != nil {
		t.Fatal(err)
	}
	if at2 != at || n != 1 {
		t.Errorf("after re-migrating: updated_at %d (was %d), %d rows in schema_versions", at2, at, n)
	}
	if got := version(t, db, "items"); got != len(steps) {
		t.Errorf("version = %d", got)
	}
}

// TestMigrateRefusesNewer: a binary that knows fewer steps than the database
// has applied refuses it, naming both versions, and writes nothing; so does
// one that meets a newer layout (user_version), when it opens the file.
func TestMigrateRefusesNewer(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	db := openFile(t, path)
	if err := db.Migrate(ctx, "items", steps); err != nil {
		t.Fatal(err)
	}
	err := db.Migrate(ctx, "items", steps[:2])
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("older binary: err = %v, want ErrSchemaTooNew", err)
	}
	for _, s := range []string{`"items"`, "version 3", "up to 2", path} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %s", err, s)
		}
	}
	if got := version(t, db, "items"); got != len(steps) {
		t.Errorf("version after refusal = %d", got)
	}
	if err := db.CheckVersion(ctx, "items", steps[:1]); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("CheckVersion: err = %v, want ErrSchemaTooNew", err)
	}
	if err := db.CheckVersion(ctx, "items", steps); err != nil {
		t.Errorf("CheckVersion at the same version: %v", err)
	}

	if _, err := db.W.Exec(`PRAGMA user_version = 2`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, ro := range []bool{false, true} {
		_, err := OpenFile(ctx, path, Options{ReadOnly: ro})
		if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), "layout is version 2") {
			t.Errorf("read-only %v: open with user_version 2: err = %v, want ErrSchemaTooNew naming version 2", ro, err)
		}
	}
}

// TestOpenReadOnlyRefusesNewer: Open with ReadOnly (wanwu verify) checks the
// identity tables' version without writing.
func TestOpenReadOnlyRefusesNewer(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wanwu.db")
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := version(t, db, owner); got != len(migrations) {
		t.Fatalf("identity version = %d, want %d", got, len(migrations))
	}
	if _, err := db.W.Exec(`UPDATE schema_versions SET version = version + 1 WHERE owner = ?`, owner); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, ro := range []bool{false, true} {
		if _, err := Open(ctx, path, Options{ReadOnly: ro}); !errors.Is(err, ErrSchemaTooNew) {
			t.Errorf("read-only %v: err = %v, want ErrSchemaTooNew", ro, err)
		}
	}
}

// TestMigrateFailureRollsBack: a failing step leaves the database at the
// version it had, without the steps before it in the same run.
func TestMigrateFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	db := openFile(t, filepath.Join(t.TempDir(), "t.db"))
	if err := db.Migrate(ctx, "items", steps[:1]); err != nil {
		t.Fatal(err)
	}
	bad := append(steps[:2:2], Migration{Name: "broken", Statements: []string{`CREATE INDEX x ON nowhere(y)`}})
	err := db.Migrate(ctx, "items", bad)
	if err == nil || !strings.Contains(err.Error(), "version 3 (broken)") {
		t.Fatalf("err = %v, want one naming version 3 (broken)", err)
	}
	if got := version(t, db, "items"); got != 1 {
		t.Errorf("version after a failed migration = %d, want 1", got)
	}
	if _, err := db.W.Exec(`SELECT label FROM items`); err == nil {
		t.Error("step 2 of the failed migration was kept")
	}
}

// TestMigrateOwnersIndependent: owners of one database keep their own
// versions.
func TestMigrateOwnersIndependent(t *testing.T) {
	ctx := context.Background()
	db := openFile(t, filepath.Join(t.TempDir(), "t.db"))
	other := []Migration{{Name: "other", Statements: []string{`CREATE TABLE other (k TEXT PRIMARY KEY)`}}}
	if err := db.Migrate(ctx, "items", steps); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, "other", other); err != nil {
		t.Fatal(err)
	}
	if a, b := version(t, db, "items"), version(t, db, "other"); a != 3 || b != 1 {
		t.Errorf("versions items %d, other %d; want 3, 1", a, b)
	}
	if got := version(t, db, "nobody"); got != 0 {
		t.Errorf("unknown owner's version = %d", got)
	}
}

// TestMigrateModelsKeepRows: step 3 rebuilds the models table (deprecation,
// shared models without a tenant row) and keeps every version registered
// before it, not deprecated.
func TestMigrateModelsKeepRows(t *testing.T) {
	ctx := context.Background()
	db := openFile(t, filepath.Join(t.TempDir(), "wanwu.db"))
	if err := db.Migrate(ctx, owner, migrations[:2]); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO tenants(name, prefix, created_at) VALUES ('acme', 'fd00:1:2::/48', 1)`,
		`INSERT INTO models(id, version, tenant, doc, created_at) VALUES ('acme:pump', '1.0.0', 'acme', X'7b7d', 5)`,
	} {
		if _, err := db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Migrate(ctx, owner, migrations); err != nil {
		t.Fatal(err)
	}
	var id, tenant string
	var created, deprecated int64
	if err := db.R.QueryRow(`SELECT id, tenant, created_at, deprecated_at FROM models`).Scan(&id, &tenant, &created, &deprecated); err != nil {
		t.Fatal(err)
	}
	if id != "acme:pump" || tenant != "acme" || created != 5 || deprecated != 0 {
		t.Errorf("model after migration: %s %s %d %d", id, tenant, created, deprecated)
	}
	// A shared model needs no tenant row.
	if _, err := db.W.Exec(`INSERT INTO models(id, version, tenant, doc, created_at) VALUES ('std:pump', '1.0.0', 'std', X'7b7d', 5)`); err != nil {
		t.Errorf("shared model: %v", err)
	}
}

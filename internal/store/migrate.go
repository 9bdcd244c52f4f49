package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Schema versions.
//
// Each package that keeps tables in a database (store itself for identity,
// audit, twin, command in wanwu.db; eventstore in events.db) owns an ordered
// list of Migrations and hands it to Migrate when it opens. An owner's
// version is the number of its steps applied, recorded in the table
// schema_versions of that database; steps are forward-only, and a released
// step is never edited: a change is a new step at the end.
//
// Versions are kept per owner rather than one per file because the owners
// open independently (a test opens only the tables it needs; an edge will
// assemble other components than the hub), and a single number would order
// one package's steps against another's. PRAGMA user_version versions the
// bookkeeping itself: 0 is a database written before schema versions existed
// (or an empty one), 1 is one with schema_versions. A database whose
// user_version or owner version is above what this binary knows was written
// by a newer release and is refused, never written to.
//
// The statements avoid SQLite-only syntax where that costs nothing, so that
// the same lists can later run on PostgreSQL (schema_versions itself is plain
// SQL; there the layout version would be a row instead of the pragma).

// Migration is one forward step of an owner's schema.
type Migration struct {
	// Name says what the step does; errors name it.
	Name string
	// Statements run in order, inside the transaction of the migration.
	Statements []string
}

// layoutVersion is the PRAGMA user_version of a database that keeps its
// owners' versions in schema_versions.
const layoutVersion = 1

// ErrSchemaTooNew is returned (wrapped, with the versions) when a database
// was written by a newer release than this binary: its layout or an owner's
// schema version is above the ones this binary knows.
var ErrSchemaTooNew = errors.New("store: database schema is newer than this binary")

// Migrate brings owner's tables to version len(steps): it runs the steps
// after the version recorded for owner and records the new version, all in
// one transaction (a failing step leaves the database at the version it had).
// It refuses a database whose recorded version for owner is above len(steps).
func (db *DB) Migrate(ctx context.Context, owner string, steps []Migration) error {
	if db.W == nil {
		return errors.New("store: database is open read-only")
	}
	return MigrateDB(ctx, db.W, owner, steps)
}

// MigrateDB is Migrate for a package that holds only a handle w of the
// database (the audit log); w may be any SQLite handle that can write.
func MigrateDB(ctx context.Context, w *sql.DB, owner string, steps []Migration) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: migrate %s: begin: %w", owner, err)
	}
	defer tx.Rollback()
	name := fileName(ctx, tx)
	if err := ensureLayout(ctx, tx, name); err != nil {
		return err
	}
	from, err := ownerVersion(ctx, tx, owner)
	if err != nil {
		return fmt.Errorf("store: %s: %w", name, err)
	}
	if from > len(steps) {
		return tooNew(name, owner, from, len(steps))
	}
	if from == len(steps) {
		return nil
	}
	for i := from; i < len(steps); i++ {
		for j, stmt := range steps[i].Statements {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("store: %s: migrate %s to version %d (%s), statement %d: %w",
					name, owner, i+1, steps[i].Name, j+1, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO schema_versions (owner, version, updated_at) VALUES (?, ?, ?)
		 ON CONFLICT (owner) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at`,
		owner, len(steps), time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("store: %s: record version of %s: %w", name, owner, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: %s: migrate %s: commit: %w", name, owner, err)
	}
	return nil
}

func tooNew(name, owner string, v, known int) error {
	return fmt.Errorf("%w: %s: the schema of %q is at version %d, this binary knows versions up to %d "+
		"(written by a newer release; migrations are forward-only: run that release or restore the backup made before upgrading)",
		ErrSchemaTooNew, name, owner, v, known)
}

// fileName is the database's file, for errors.
func fileName(ctx context.Context, q queryer) string {
	var file string
	if err := q.QueryRowContext(ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file); err != nil || file == "" {
		return "database"
	}
	return file
}

// SchemaVersion returns the version recorded for owner (0: none).
func (db *DB) SchemaVersion(ctx context.Context, owner string) (int, error) {
	h := db.R
	if db.W != nil {
		h = db.W
	}
	v, err := ownerVersion(ctx, h, owner)
	if err != nil {
		return 0, fmt.Errorf("store: %s: %w", db.path, err)
	}
	return v, nil
}

// CheckVersion fails with ErrSchemaTooNew when owner's recorded version is
// above len(steps); it writes nothing (for a database opened read-only).
func (db *DB) CheckVersion(ctx context.Context, owner string, steps []Migration) error {
	v, err := db.SchemaVersion(ctx, owner)
	if err != nil {
		return err
	}
	if v > len(steps) {
		return tooNew(db.path, owner, v, len(steps))
	}
	return nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ownerVersion reads owner's version; a database without schema_versions
// (written before versions existed, or read-only and empty) is at 0.
func ownerVersion(ctx context.Context, q queryer, owner string) (int, error) {
	var n int
	err := q.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_versions'`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("schema version of %s: %w", owner, err)
	}
	if n == 0 {
		return 0, nil
	}
	var v int
	err = q.QueryRowContext(ctx, `SELECT version FROM schema_versions WHERE owner = ?`, owner).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("schema version of %s: %w", owner, err)
	}
	return v, nil
}

// checkLayout returns the database's user_version and refuses one above
// layoutVersion.
func checkLayout(ctx context.Context, q queryer, name string) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: %s: read user_version: %w", name, err)
	}
	if v > layoutVersion {
		return 0, fmt.Errorf("%w: %s: its layout is version %d (PRAGMA user_version), this binary knows versions up to %d "+
			"(written by a newer release; migrations are forward-only: run that release or restore the backup made before upgrading)",
			ErrSchemaTooNew, name, v, layoutVersion)
	}
	return v, nil
}

// ensureLayout checks the layout and, on a database that has none yet (new,
// or written before schema versions existed), creates schema_versions and
// sets user_version, in the caller's transaction.
func ensureLayout(ctx context.Context, tx *sql.Tx, name string) error {
	v, err := checkLayout(ctx, tx, name)
	if err != nil || v == layoutVersion {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_versions (
		owner      TEXT PRIMARY KEY,
		version    INTEGER NOT NULL,
		updated_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("store: %s: create schema_versions: %w", name, err)
	}
	// A pragma takes no parameters; the value is a constant.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, layoutVersion)); err != nil {
		return fmt.Errorf("store: %s: set user_version: %w", name, err)
	}
	return nil
}

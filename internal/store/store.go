// Package store opens the hub's SQLite databases, owns the identity tables of
// the metadata database, and versions every table owner's schema (Migrate:
// ordered, forward-only steps per owner; see migrate.go).
//
// The embedded default is SQLite through modernc.org/sqlite (pure Go, no cgo, so
// the edge binary cross-compiles). The database runs in WAL mode with
// synchronous=FULL: a write the API acknowledged survives a crash or a power
// loss. Writes go through one connection (SQLite has one writer anyway, and a
// single connection turns lock contention into queueing instead of
// SQLITE_BUSY errors); reads use a small pool that WAL lets run beside the
// writer. Since every commit is an fsync, concurrent writers can share one
// (SharedTx, a group commit with a savepoint per write).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB holds the writer and reader handles of one database file.
type DB struct {
	// W is the single writer connection; use it for every transaction that writes.
	W *sql.DB
	// R serves reads concurrently with the writer.
	R    *sql.DB
	path string

	shared sharedWrites // SharedTx
}

// Options tune how the database is opened.
type Options struct {
	// ReadOnly opens the file without the writer (used by offline verification).
	ReadOnly bool
	// Readers is the size of the read pool (default 4).
	Readers int
}

// Open opens (creating if needed) the metadata database at path and brings
// the identity tables, which this package owns, to the current version
// (migrations). Read-only, it only checks that the version is not newer.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	db, err := OpenFile(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	if opts.ReadOnly {
		err = db.CheckVersion(ctx, owner, migrations)
	} else {
		err = db.Migrate(ctx, owner, migrations)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// OpenFile opens (creating if needed) a database at path the same way, with
// no tables: the owners of its tables bring them to their versions with
// Migrate. It refuses a database whose layout (PRAGMA user_version) is newer
// than this binary's.
func OpenFile(ctx context.Context, path string, opts Options) (*DB, error) {
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db := &DB{path: abs}
	if opts.ReadOnly {
		r, err := sql.Open("sqlite", dsn(abs, true))
		if err != nil {
			return nil, fmt.Errorf("store: open %s: %w", abs, err)
		}
		r.SetMaxOpenConns(opts.Readers)
		if err := r.PingContext(ctx); err != nil {
			r.Close()
			return nil, fmt.Errorf("store: open %s: %w", abs, err)
		}
		if _, err := checkLayout(ctx, r, abs); err != nil {
			r.Close()
			return nil, err
		}
		db.R, db.W = r, nil
		return db, nil
	}
	w, err := sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	if _, err := checkLayout(ctx, w, abs); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open readers: %w", err)
	}
	r.SetMaxOpenConns(opts.Readers)
	db.W, db.R = w, r
	return db, nil
}

func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("mode", "ro")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(FULL)")
		q.Add("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode()
}

// Path is the absolute file name of the database.
func (db *DB) Path() string { return db.path }

// Close closes both handles.
func (db *DB) Close() error {
	var errs []error
	if db.R != nil {
		errs = append(errs, db.R.Close())
	}
	if db.W != nil {
		errs = append(errs, db.W.Close())
	}
	return errors.Join(errs...)
}

// Tx runs fn in a write transaction and commits when fn returns nil.
func (db *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if db.W == nil {
		return errors.New("store: database is open read-only")
	}
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// owner names this package's tables (identity) in schema_versions.
const owner = "store"

// migrations are the identity tables' schema steps, oldest first; Open
// applies those a database lacks. Append, never edit a released step.
var migrations = []Migration{
	{
		// Releases before schema versions ran these statements at every open;
		// being IF NOT EXISTS, they adopt such a database as it is.
		Name:       "identity tables",
		Statements: identityV1,
	},
	{
		// ctl claim list shows when a claim token was last used, and a
		// revocation keeps the operator's reason (issue 16).
		Name: "claims: last use and revocation reason",
		Statements: []string{
			`ALTER TABLE claims ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0`,
			`ALTER TABLE claims ADD COLUMN revoked_reason TEXT NOT NULL DEFAULT ''`,
		},
	},
	{
		// Lifecycle to the end (issue 16): a model version can be deprecated;
		// models in the shared namespace "std" belong to no tenant, so the
		// table is rebuilt without the foreign key to tenants (the registry
		// checks a tenant model's tenant when it registers it; tenants are
		// never deleted); an object whose code was released on
		// decommissioning, or that was deleted, keeps its row (its keys stay
		// in the CRL) under an archive code and remembers the code it had.
		Name: "lifecycle: deprecated and shared models, released codes, replaced certificates",
		Statements: []string{
			`CREATE TABLE models_v3 (
				id                TEXT NOT NULL,
				version           TEXT NOT NULL,
				tenant            TEXT NOT NULL,
				doc               BLOB NOT NULL,
				created_at        INTEGER NOT NULL,
				deprecated_at     INTEGER NOT NULL DEFAULT 0,
				deprecated_reason TEXT NOT NULL DEFAULT '',
				PRIMARY KEY (id, version)
			)`,
			`INSERT INTO models_v3 (id, version, tenant, doc, created_at) SELECT id, version, tenant, doc, created_at FROM models`,
			`DROP TABLE models`,
			`ALTER TABLE models_v3 RENAME TO models`,
			`ALTER TABLE objects ADD COLUMN released_code TEXT NOT NULL DEFAULT ''`,
			// A certificate replaced while its key stays (an edge change
			// moves the object's number, which the certificate names) is
			// revoked here, so the CRL still lists it.
			`CREATE TABLE replaced_certificates (
				serial     TEXT PRIMARY KEY,
				code       TEXT NOT NULL,
				revoked_at INTEGER NOT NULL
			)`,
		},
	},
	{
		// The platform applies each device's network profile (issue 17):
		// an object names its link's profile (package netprofile), ""
		// when not set.
		Name: "objects: network profile",
		Statements: []string{
			`ALTER TABLE objects ADD COLUMN network TEXT NOT NULL DEFAULT ''`,
		},
	},
}

var identityV1 = []string{
	`CREATE TABLE IF NOT EXISTS meta (
		key   TEXT PRIMARY KEY,
		value TEXT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS tenants (
		name       TEXT PRIMARY KEY,
		title      TEXT NOT NULL DEFAULT '',
		prefix     TEXT NOT NULL,
		prefix_set INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS subnets (
		tenant    TEXT NOT NULL REFERENCES tenants(name),
		key       TEXT NOT NULL,
		subnet_id INTEGER NOT NULL,
		attempt   INTEGER NOT NULL,
		PRIMARY KEY (tenant, key),
		UNIQUE (tenant, subnet_id)
	)`,
	`CREATE TABLE IF NOT EXISTS models (
		id         TEXT NOT NULL,
		version    TEXT NOT NULL,
		tenant     TEXT NOT NULL REFERENCES tenants(name),
		doc        BLOB NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (id, version)
	)`,
	`CREATE TABLE IF NOT EXISTS objects (
		code          TEXT PRIMARY KEY,
		tenant        TEXT NOT NULL REFERENCES tenants(name),
		kind          TEXT NOT NULL,
		status        TEXT NOT NULL,
		status_reason TEXT NOT NULL DEFAULT '',
		path          TEXT NOT NULL DEFAULT '',
		tags          TEXT NOT NULL DEFAULT '{}',
		edge          TEXT NOT NULL DEFAULT '',
		model_id      TEXT NOT NULL DEFAULT '',
		model_version TEXT NOT NULL DEFAULT '',
		number        TEXT NOT NULL UNIQUE,
		subnet_key    TEXT NOT NULL,
		iid_attempt   INTEGER NOT NULL,
		created_at    INTEGER NOT NULL,
		updated_at    INTEGER NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS objects_by_tenant_path ON objects(tenant, path)`,
	`CREATE TABLE IF NOT EXISTS object_keys (
		id              INTEGER PRIMARY KEY AUTOINCREMENT,
		code            TEXT NOT NULL REFERENCES objects(code),
		did             TEXT NOT NULL UNIQUE,
		alg             TEXT NOT NULL,
		fingerprint     TEXT NOT NULL,
		status          TEXT NOT NULL,
		created_at      INTEGER NOT NULL,
		retire_at       INTEGER NOT NULL DEFAULT 0,
		revoked_at      INTEGER NOT NULL DEFAULT 0,
		cert_serial     TEXT NOT NULL UNIQUE,
		cert_pem        TEXT NOT NULL,
		cert_not_after  INTEGER NOT NULL,
		credential      TEXT NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS object_keys_by_code ON object_keys(code)`,
	`CREATE TABLE IF NOT EXISTS tokens (
		id         TEXT PRIMARY KEY,
		name       TEXT NOT NULL UNIQUE,
		role       TEXT NOT NULL,
		tenant     TEXT NOT NULL DEFAULT '',
		hash       BLOB NOT NULL UNIQUE,
		created_at INTEGER NOT NULL,
		revoked_at INTEGER NOT NULL DEFAULT 0
	)`,
	`CREATE TABLE IF NOT EXISTS claims (
		id            TEXT PRIMARY KEY,
		hash          BLOB NOT NULL UNIQUE,
		tenant        TEXT NOT NULL REFERENCES tenants(name),
		name          TEXT NOT NULL DEFAULT '',
		max_uses      INTEGER NOT NULL,
		uses          INTEGER NOT NULL DEFAULT 0,
		expires_at    INTEGER NOT NULL,
		template      TEXT NOT NULL,
		created_at    INTEGER NOT NULL,
		revoked_at    INTEGER NOT NULL DEFAULT 0
	)`,
}

// Meta reads a value from the meta table; ok is false when the key is absent.
func (db *DB) Meta(ctx context.Context, key string) (value string, ok bool, err error) {
	h := db.R
	if db.W != nil {
		h = db.W
	}
	err = h.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: meta %s: %w", key, err)
	}
	return value, true, nil
}

// EnsureMeta returns the stored value of key, storing def first when the key is absent.
func (db *DB) EnsureMeta(ctx context.Context, key string, def func() string) (string, error) {
	var out string
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&out)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		out = def()
		_, err = tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?)`, key, out)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("store: meta %s: %w", key, err)
	}
	return out, nil
}

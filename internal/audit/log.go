package audit

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/wanwu-iot/wanwu/internal/store"
)

// Errors. Callers test for them with errors.Is; an error may wrap more than
// one when one cause explains another (a malformed leaf is tampering).
var (
	// ErrTampered: stored or exported data does not match what was signed or
	// what the tree commits to: a changed, missing or extra leaf, a wrong
	// stored hash, a head whose root the leaves do not produce.
	ErrTampered = errors.New("audit log tampered")
	// ErrBadSignature: a head is not signed by the expected key for the
	// expected origin.
	ErrBadSignature = errors.New("audit head signature invalid")
	// ErrBadProof: an inclusion or consistency proof does not verify.
	ErrBadProof = errors.New("audit proof invalid")
	// ErrMalformedHead: a head is not a well-formed signed checkpoint.
	ErrMalformedHead = errors.New("audit head malformed")
	// ErrBadLeaf: leaf bytes are not a canonical entry encoding.
	ErrBadLeaf = errors.New("audit leaf malformed")
	// ErrInvalidEntry: an entry cannot be appended (missing kind or actor,
	// oversized fields, details that are not a JSON object).
	ErrInvalidEntry = errors.New("invalid audit entry")
	// ErrRange: a requested index or tree size lies beyond the log.
	ErrRange = errors.New("audit index or size out of range")
)

// MaxBatch is the most entries Entries and LeafBytes return per call.
const MaxBatch = 1000

const hashSize = 32 // SHA-256

var (
	hasher  = rfc6962.DefaultHasher
	factory = &compact.RangeFactory{Hash: hasher.HashChildren}
)

// schema holds the log's tables. audit_state has one row: the tree size and
// the compact range of the whole tree (the roots of its perfect subtrees, left
// to right, concatenated: one hash per set bit of size, so at most 64).
// audit_nodes holds every perfect subtree root, leaves included (level 0),
// which is all that proofs for any past size need.
var schemaV1 = []string{
	`CREATE TABLE IF NOT EXISTS audit_leaves (
		idx  INTEGER PRIMARY KEY,
		leaf BLOB NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS audit_nodes (
		level INTEGER NOT NULL,
		idx   INTEGER NOT NULL,
		hash  BLOB NOT NULL,
		PRIMARY KEY (level, idx)
	) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS audit_state (
		id    INTEGER PRIMARY KEY CHECK (id = 0),
		size  INTEGER NOT NULL,
		range BLOB NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS audit_heads (
		size       INTEGER PRIMARY KEY,
		root       BLOB NOT NULL,
		note       BLOB NOT NULL,
		created_ms INTEGER NOT NULL
	)`,
	`INSERT OR IGNORE INTO audit_state (id, size, range) VALUES (0, 0, x'')`,
}

// migrations are the log's schema steps, oldest first (store.MigrateDB);
// append, never edit a released step.
var migrations = []store.Migration{
	{
		// Releases before schema versions ran these statements at every open;
		// being IF NOT EXISTS, they adopt such a database as it is.
		Name:       "log tables",
		Statements: schemaV1,
	},
}

// Log is the transparency log. It keeps no tree state in memory: every
// operation reads it from the database, so a rolled-back transaction can never
// leave the Log disagreeing with what is stored.
type Log struct {
	db     *sql.DB
	origin string
	signer note.Signer
	vkey   string
	mu     sync.Mutex // serializes Append's own transactions; AppendTx relies on the caller's
}

// Open brings the log's tables to their schema version and checks the stored state. origin
// names the log in its checkpoints (e.g. "wanwu.hub/<deployment id>") and is
// the signing key's name; key signs the heads.
func Open(ctx context.Context, db *sql.DB, key ed25519.PrivateKey, origin string) (*Log, error) {
	s, vkey, err := newSigner(key, origin)
	if err != nil {
		return nil, err
	}
	if err := store.MigrateDB(ctx, db, "audit", migrations); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{db: db, origin: origin, signer: s, vkey: vkey}
	if _, err := readState(ctx, db); err != nil {
		return nil, err
	}
	return l, nil
}

// VerifierKey returns the note verifier key ("name+hash+base64") that checks
// this log's heads; publish it for offline verification.
func (l *Log) VerifierKey() string { return l.vkey }

// Origin returns the log's checkpoint origin.
func (l *Log) Origin() string { return l.origin }

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readState loads the compact range of the whole tree.
func readState(ctx context.Context, q querier) (*compact.Range, error) {
	var size int64
	var blob []byte
	if err := q.QueryRowContext(ctx, `SELECT size, range FROM audit_state WHERE id = 0`).Scan(&size, &blob); err != nil {
		return nil, fmt.Errorf("audit: read state: %w", err)
	}
	n := bits.OnesCount64(uint64(size))
	if size < 0 || len(blob) != n*hashSize {
		return nil, fmt.Errorf("%w: state for size %d holds %d bytes of hashes, want %d", ErrTampered, size, len(blob), n*hashSize)
	}
	hashes := make([][]byte, n)
	for i := range hashes {
		hashes[i] = blob[i*hashSize : (i+1)*hashSize]
	}
	r, err := factory.NewRange(0, uint64(size), hashes)
	if err != nil {
		return nil, fmt.Errorf("%w: state: %w", ErrTampered, err)
	}
	return r, nil
}

func encodeRange(r *compact.Range) []byte {
	b := make([]byte, 0, len(r.Hashes())*hashSize)
	for _, h := range r.Hashes() {
		b = append(b, h...)
	}
	return b
}

func rootOf(r *compact.Range) ([]byte, error) {
	if r.End() == 0 {
		return hasher.EmptyRoot(), nil
	}
	return r.GetRootHash(nil)
}

// AppendTx appends e inside the caller's transaction and returns its index;
// the entry is part of the log exactly when the caller commits. Appends are
// serialized by SQLite's write lock, which this takes before reading the tree
// state, so the state it extends is the committed one. (A caller whose
// transaction has already read other tables may see SQLITE_BUSY here if
// another writer committed meanwhile; opening transactions with
// _txlock=immediate avoids that.)
func (l *Log) AppendTx(ctx context.Context, tx *sql.Tx, e Entry) (uint64, error) {
	// Write first: taking the write lock before the read below means the state
	// read cannot be a stale snapshot.
	if _, err := tx.ExecContext(ctx, `UPDATE audit_state SET size = size WHERE id = 0`); err != nil {
		return 0, fmt.Errorf("audit: lock log: %w", err)
	}
	r, err := readState(ctx, tx)
	if err != nil {
		return 0, err
	}
	e.Index = r.End()
	if e.Index >= maxIndex {
		return 0, fmt.Errorf("%w: log is full", ErrInvalidEntry)
	}
	if err := e.normalize(); err != nil {
		return 0, err
	}
	leaf := encodeLeaf(e)
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_leaves (idx, leaf) VALUES (?, ?)`, int64(e.Index), leaf); err != nil {
		return 0, fmt.Errorf("audit: store leaf %d: %w", e.Index, err)
	}
	var visitErr error
	err = r.Append(hasher.HashLeaf(leaf), func(id compact.NodeID, hash []byte) {
		if visitErr != nil {
			return
		}
		_, visitErr = tx.ExecContext(ctx, `INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)`,
			int64(id.Level), int64(id.Index), hash)
	})
	if err == nil {
		err = visitErr
	}
	if err != nil {
		return 0, fmt.Errorf("audit: store nodes for leaf %d: %w", e.Index, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE audit_state SET size = ?, range = ? WHERE id = 0`,
		int64(r.End()), encodeRange(r)); err != nil {
		return 0, fmt.Errorf("audit: store state: %w", err)
	}
	return e.Index, nil
}

// Append appends e in a transaction of its own.
func (l *Log) Append(ctx context.Context, e Entry) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("audit: begin: %w", err)
	}
	defer tx.Rollback()
	idx, err := l.AppendTx(ctx, tx, e)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("audit: commit entry %d: %w", idx, err)
	}
	return idx, nil
}

// Size returns the number of committed entries.
func (l *Log) Size(ctx context.Context) (uint64, error) {
	var size int64
	if err := l.db.QueryRowContext(ctx, `SELECT size FROM audit_state WHERE id = 0`).Scan(&size); err != nil {
		return 0, fmt.Errorf("audit: read size: %w", err)
	}
	return uint64(size), nil
}

// SizeTx returns the number of entries committed as tx sees them: a read
// transaction of the same database, so that the size matches what else tx
// reads (the registry versions an edge's identity snapshot with it: every
// identity change is appended in the transaction that makes it).
func (l *Log) SizeTx(ctx context.Context, tx *sql.Tx) (uint64, error) {
	var size int64
	if err := tx.QueryRowContext(ctx, `SELECT size FROM audit_state WHERE id = 0`).Scan(&size); err != nil {
		return 0, fmt.Errorf("audit: read size: %w", err)
	}
	return uint64(size), nil
}

// Head signs a checkpoint of the current tree and stores it in audit_heads,
// so that the data directory carries signed heads for offline verification.
func (l *Log) Head(ctx context.Context) (SignedHead, error) {
	r, err := readState(ctx, l.db)
	if err != nil {
		return SignedHead{}, err
	}
	root, err := rootOf(r)
	if err != nil {
		return SignedHead{}, fmt.Errorf("audit: root: %w", err)
	}
	h, err := signHead(l.signer, l.origin, r.End(), root)
	if err != nil {
		return SignedHead{}, err
	}
	if _, err := l.db.ExecContext(ctx,
		`INSERT OR IGNORE INTO audit_heads (size, root, note, created_ms) VALUES (?, ?, ?, ?)`,
		int64(h.Size), h.Root, h.Note, time.Now().UnixMilli()); err != nil {
		return SignedHead{}, fmt.Errorf("audit: store head %d: %w", h.Size, err)
	}
	// A head already stored for this size must commit to the same root, or
	// the tree changed under it.
	var stored []byte
	if err := l.db.QueryRowContext(ctx, `SELECT root FROM audit_heads WHERE size = ?`, int64(h.Size)).Scan(&stored); err != nil {
		return SignedHead{}, fmt.Errorf("audit: read head %d: %w", h.Size, err)
	}
	if string(stored) != string(h.Root) {
		return SignedHead{}, fmt.Errorf("%w: stored head for size %d has root %x, tree has %x", ErrTampered, h.Size, stored, h.Root)
	}
	return h, nil
}

// clampRange bounds [from, to) by the log size and MaxBatch.
func (l *Log) clampRange(ctx context.Context, from, to uint64) (uint64, uint64, error) {
	if from > to {
		return 0, 0, fmt.Errorf("%w: from %d > to %d", ErrRange, from, to)
	}
	size, err := l.Size(ctx)
	if err != nil {
		return 0, 0, err
	}
	to = min(to, size, from+MaxBatch)
	if from > to {
		from = to
	}
	return from, to, nil
}

// LeafBytes returns the leaves [from, to), at most MaxBatch of them and none
// beyond the log's end.
func (l *Log) LeafBytes(ctx context.Context, from, to uint64) ([][]byte, error) {
	from, to, err := l.clampRange(ctx, from, to)
	if err != nil {
		return nil, err
	}
	return readLeaves(ctx, l.db, from, to)
}

func readLeaves(ctx context.Context, db *sql.DB, from, to uint64) ([][]byte, error) {
	rows, err := db.QueryContext(ctx, `SELECT idx, leaf FROM audit_leaves WHERE idx >= ? AND idx < ? ORDER BY idx`,
		int64(from), int64(to))
	if err != nil {
		return nil, fmt.Errorf("audit: read leaves: %w", err)
	}
	defer rows.Close()
	leaves := make([][]byte, 0, to-from)
	for rows.Next() {
		var idx int64
		var leaf []byte
		if err := rows.Scan(&idx, &leaf); err != nil {
			return nil, fmt.Errorf("audit: read leaves: %w", err)
		}
		if want := from + uint64(len(leaves)); uint64(idx) != want {
			return nil, fmt.Errorf("%w: leaf %d missing", ErrTampered, want)
		}
		leaves = append(leaves, leaf)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: read leaves: %w", err)
	}
	if uint64(len(leaves)) != to-from {
		return nil, fmt.Errorf("%w: leaf %d missing", ErrTampered, from+uint64(len(leaves)))
	}
	return leaves, nil
}

// Entries returns the entries [from, to), at most MaxBatch of them and none
// beyond the log's end.
func (l *Log) Entries(ctx context.Context, from, to uint64) ([]Entry, error) {
	leaves, err := l.LeafBytes(ctx, from, to)
	if err != nil {
		return nil, err
	}
	entries := make([]Entry, len(leaves))
	for i, leaf := range leaves {
		e, err := DecodeLeaf(leaf)
		if err != nil {
			return nil, fmt.Errorf("%w: leaf %d: %w", ErrTampered, from+uint64(i), err)
		}
		if e.Index != from+uint64(i) {
			return nil, fmt.Errorf("%w: leaf %d claims index %d", ErrTampered, from+uint64(i), e.Index)
		}
		entries[i] = e
	}
	return entries, nil
}

// InclusionProof proves that leaf index is in the tree of the given size.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	if err := l.checkSize(ctx, size); err != nil {
		return nil, err
	}
	if index >= size {
		return nil, fmt.Errorf("%w: index %d not below size %d", ErrRange, index, size)
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("audit: inclusion proof: %w", err)
	}
	return l.fetchProof(ctx, nodes)
}

// ConsistencyProof proves that the tree of size1 is a prefix of the tree of
// size2.
func (l *Log) ConsistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	if err := l.checkSize(ctx, size2); err != nil {
		return nil, err
	}
	if size1 > size2 {
		return nil, fmt.Errorf("%w: size %d > %d", ErrRange, size1, size2)
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("audit: consistency proof: %w", err)
	}
	return l.fetchProof(ctx, nodes)
}

func (l *Log) checkSize(ctx context.Context, size uint64) error {
	cur, err := l.Size(ctx)
	if err != nil {
		return err
	}
	if size > cur {
		return fmt.Errorf("%w: size %d beyond the log's %d", ErrRange, size, cur)
	}
	return nil
}

// fetchProof reads the proof's perfect-subtree hashes and folds the ones
// that make up an ephemeral node into it.
func (l *Log) fetchProof(ctx context.Context, nodes proof.Nodes) ([][]byte, error) {
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		err := l.db.QueryRowContext(ctx, `SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?`,
			int64(id.Level), int64(id.Index)).Scan(&hashes[i])
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: node (%d, %d) missing", ErrTampered, id.Level, id.Index)
		}
		if err != nil {
			return nil, fmt.Errorf("audit: read node (%d, %d): %w", id.Level, id.Index, err)
		}
	}
	p, err := nodes.Rehash(hashes, hasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("audit: rehash proof: %w", err)
	}
	return p, nil
}

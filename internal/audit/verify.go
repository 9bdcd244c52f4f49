package audit

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

// VerifyInclusion checks that leaf is at index in the tree head commits to.
func VerifyInclusion(leaf []byte, index uint64, head SignedHead, p [][]byte) error {
	if err := proof.VerifyInclusion(hasher, index, head.Size, hasher.HashLeaf(leaf), p, head.Root); err != nil {
		return fmt.Errorf("%w: inclusion of leaf %d in size %d: %w", ErrBadProof, index, head.Size, err)
	}
	return nil
}

// VerifyConsistency checks that the tree old commits to is a prefix of the
// tree new commits to: nothing logged before old was changed or removed.
func VerifyConsistency(old, new SignedHead, p [][]byte) error {
	if old.Origin != new.Origin {
		return fmt.Errorf("%w: heads of different logs %q and %q", ErrBadProof, old.Origin, new.Origin)
	}
	if err := proof.VerifyConsistency(hasher, old.Size, new.Size, p, old.Root, new.Root); err != nil {
		return fmt.Errorf("%w: consistency of size %d with %d: %w", ErrBadProof, old.Size, new.Size, err)
	}
	return nil
}

// treeBuilder recomputes a tree from its leaves in O(log n) memory. With
// record set it also keeps the perfect-subtree roots each add completes (the
// nodes AppendTx stores), until the caller takes them.
type treeBuilder struct {
	r      *compact.Range
	record bool
	nodes  []node
	total  uint64 // nodes completed so far, recorded or not
}

// node is one perfect-subtree root as audit_nodes stores it.
type node struct {
	id   compact.NodeID
	hash []byte
}

func newTreeBuilder() *treeBuilder { return &treeBuilder{r: factory.NewEmptyRange(0)} }

func (t *treeBuilder) add(leaf []byte) {
	// Append fails only on a corrupted range, which this one cannot be.
	_ = t.r.Append(hasher.HashLeaf(leaf), t.visit)
}

func (t *treeBuilder) visit(id compact.NodeID, hash []byte) {
	t.total++
	if t.record {
		t.nodes = append(t.nodes, node{id, hash})
	}
}

// takeNodes returns the nodes recorded since the last call.
func (t *treeBuilder) takeNodes() []node {
	n := t.nodes
	t.nodes = nil
	return n
}

func (t *treeBuilder) size() uint64 { return t.r.End() }

func (t *treeBuilder) root() []byte {
	root, _ := rootOf(t.r)
	return root
}

// VerifyLeaves recomputes the tree from all its leaves, [0, head.Size), and
// checks it against head.
func VerifyLeaves(leaves [][]byte, head SignedHead) error {
	if uint64(len(leaves)) != head.Size {
		return fmt.Errorf("%w: %d leaves, head has size %d", ErrTampered, len(leaves), head.Size)
	}
	t := newTreeBuilder()
	for _, leaf := range leaves {
		t.add(leaf)
	}
	if root := t.root(); !bytes.Equal(root, head.Root) {
		return fmt.Errorf("%w: leaves give root %x, head at size %d has %x", ErrTampered, root, head.Size, head.Root)
	}
	return nil
}

// Report summarizes a successful VerifyDB.
type Report struct {
	Entries    uint64     // leaves read, decoded and hashed
	Heads      int        // stored signed heads checked (extra heads not counted)
	LatestHead SignedHead // the largest stored head; zero if none
	Unsigned   uint64     // entries after LatestHead, covered by no stored head yet
}

// VerifyDB checks a hub's log as stored in db, which the caller opens
// (read-only is enough) and this only reads. It re-reads every leaf, checks
// that each decodes as a canonical entry carrying its own index, recomputes
// the tree, and checks every stored head: its signature with v, its root
// against the recomputed tree at its size, and a consistency proof built from
// the stored nodes between each pair of consecutive heads. It also checks
// every stored node (audit_nodes, which inclusion and consistency proofs are
// built from) against the tree the leaves give, so a changed, missing or extra
// node is found even where no proof between the stored heads reads it, and the
// stored tree state that future appends will build on. The first problem
// found is returned, wrapping ErrTampered, ErrBadSignature or
// ErrMalformedHead.
//
// extra are heads kept outside the data directory (saved by an operator,
// received by a device, held by a witness). They are checked like stored
// heads, which catches what the directory alone cannot show: entries removed
// or rewritten together with the heads that covered them.
func VerifyDB(ctx context.Context, db *sql.DB, v note.Verifier, extra ...SignedHead) (Report, error) {
	stored, err := storedHeads(ctx, db, v)
	if err != nil {
		return Report{}, err
	}
	heads := append([]SignedHead(nil), stored...)
	for _, h := range extra {
		if len(h.Note) > 0 {
			ph, err := ParseHead(h.Note, v)
			if err != nil {
				return Report{}, fmt.Errorf("audit: saved head for size %d: %w", h.Size, err)
			}
			if ph.Size != h.Size || !bytes.Equal(ph.Root, h.Root) {
				return Report{}, fmt.Errorf("%w: saved head (size %d) differs from its own signed note", ErrMalformedHead, h.Size)
			}
		}
		heads = append(heads, h)
	}
	slices.SortStableFunc(heads, func(a, b SignedHead) int { return cmp.Compare(a.Size, b.Size) })
	var rep Report
	t := newTreeBuilder()
	t.record = true
	nodeStmt, err := db.PrepareContext(ctx, `SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?`)
	if err != nil {
		return Report{}, fmt.Errorf("audit: read nodes: %w", err)
	}
	defer nodeStmt.Close()
	next := 0 // next head to check
	checkHeads := func() error {
		for next < len(heads) && heads[next].Size == t.size() {
			h := heads[next]
			if root := t.root(); !bytes.Equal(root, h.Root) {
				return fmt.Errorf("%w: leaves give root %x at size %d, signed head has %x", ErrTampered, root, h.Size, h.Root)
			}
			next++
		}
		return nil
	}
	if err := checkHeads(); err != nil {
		return Report{}, err
	}
	for {
		n, err := verifyBatch(ctx, db, t, checkHeads)
		if err != nil {
			return Report{}, err
		}
		if err := checkNodes(ctx, nodeStmt, t.takeNodes()); err != nil {
			return Report{}, err
		}
		if n < verifyBatchSize {
			break
		}
	}
	rep.Entries = t.size()
	if next < len(heads) {
		return Report{}, fmt.Errorf("%w: a signed head has size %d, but only %d leaves are stored", ErrTampered, heads[next].Size, rep.Entries)
	}

	var nodes int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM audit_nodes`).Scan(&nodes); err != nil {
		return Report{}, fmt.Errorf("audit: count nodes: %w", err)
	}
	if uint64(nodes) != t.total {
		return Report{}, fmt.Errorf("%w: %d nodes stored, the %d leaves make %d", ErrTampered, nodes, rep.Entries, t.total)
	}

	state, err := readState(ctx, db)
	if err != nil {
		return Report{}, err
	}
	if !state.Equal(t.r) {
		return Report{}, fmt.Errorf("%w: stored tree state (size %d) does not match the %d stored leaves", ErrTampered, state.End(), rep.Entries)
	}

	l := &Log{db: db}
	for i := 1; i < len(heads); i++ {
		if heads[i].Size == heads[i-1].Size {
			continue // same root, checked above
		}
		p, err := l.fetchProof(ctx, mustConsistency(heads[i-1].Size, heads[i].Size))
		if err != nil {
			return Report{}, fmt.Errorf("audit: consistency proof %d→%d: %w", heads[i-1].Size, heads[i].Size, err)
		}
		if err := VerifyConsistency(heads[i-1], heads[i], p); err != nil {
			return Report{}, fmt.Errorf("%w: stored nodes: %w", ErrTampered, err)
		}
	}

	rep.Heads = len(stored)
	if len(stored) > 0 {
		rep.LatestHead = stored[len(stored)-1]
		rep.Unsigned = rep.Entries - rep.LatestHead.Size
	} else {
		rep.Unsigned = rep.Entries
	}
	return rep, nil
}

const verifyBatchSize = 1000

// verifyBatch reads, checks and hashes the next leaves into t, calling
// afterEach after each one, and returns how many it read.
func verifyBatch(ctx context.Context, db *sql.DB, t *treeBuilder, afterEach func() error) (int, error) {
	rows, err := db.QueryContext(ctx, `SELECT idx, leaf FROM audit_leaves WHERE idx >= ? ORDER BY idx LIMIT ?`,
		int64(t.size()), verifyBatchSize)
	if err != nil {
		return 0, fmt.Errorf("audit: read leaves: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var idx int64
		var leaf []byte
		if err := rows.Scan(&idx, &leaf); err != nil {
			return n, fmt.Errorf("audit: read leaves: %w", err)
		}
		want := t.size()
		if uint64(idx) != want {
			return n, fmt.Errorf("%w: leaf %d missing", ErrTampered, want)
		}
		e, err := DecodeLeaf(leaf)
		if err != nil {
			return n, fmt.Errorf("%w: leaf %d: %w", ErrTampered, idx, err)
		}
		if e.Index != want {
			return n, fmt.Errorf("%w: leaf %d claims index %d", ErrTampered, want, e.Index)
		}
		t.add(leaf)
		n++
		if err := afterEach(); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("audit: read leaves: %w", err)
	}
	return n, nil
}

// checkNodes compares each recomputed node with the stored one.
func checkNodes(ctx context.Context, stmt *sql.Stmt, nodes []node) error {
	for _, n := range nodes {
		var hash []byte
		err := stmt.QueryRowContext(ctx, int64(n.id.Level), int64(n.id.Index)).Scan(&hash)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: node (%d, %d) missing", ErrTampered, n.id.Level, n.id.Index)
		}
		if err != nil {
			return fmt.Errorf("audit: read node (%d, %d): %w", n.id.Level, n.id.Index, err)
		}
		if !bytes.Equal(hash, n.hash) {
			return fmt.Errorf("%w: stored node (%d, %d) is %x, the leaves give %x", ErrTampered, n.id.Level, n.id.Index, hash, n.hash)
		}
	}
	return nil
}

func mustConsistency(size1, size2 uint64) proof.Nodes {
	// Sizes come sorted from storedHeads, and size1 <= size2 is all
	// proof.Consistency requires.
	n, _ := proof.Consistency(size1, size2)
	return n
}

// storedHeads reads and checks every head in audit_heads, by increasing size.
func storedHeads(ctx context.Context, db *sql.DB, v note.Verifier) ([]SignedHead, error) {
	rows, err := db.QueryContext(ctx, `SELECT size, root, note FROM audit_heads ORDER BY size`)
	if err != nil {
		return nil, fmt.Errorf("audit: read heads: %w", err)
	}
	defer rows.Close()
	var heads []SignedHead
	for rows.Next() {
		var size int64
		var root, text []byte
		if err := rows.Scan(&size, &root, &text); err != nil {
			return nil, fmt.Errorf("audit: read heads: %w", err)
		}
		h, err := ParseHead(text, v)
		if err != nil {
			return nil, fmt.Errorf("audit: stored head for size %d: %w", size, err)
		}
		if h.Size != uint64(size) || !bytes.Equal(h.Root, root) {
			return nil, fmt.Errorf("%w: stored head row (size %d, root %x) differs from its signed note (size %d, root %x)",
				ErrTampered, size, root, h.Size, h.Root)
		}
		heads = append(heads, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: read heads: %w", err)
	}
	return heads, nil
}

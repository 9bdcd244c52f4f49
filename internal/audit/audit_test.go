package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	_ "modernc.org/sqlite"
)

const testOrigin = "wanwu.hub/test"

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newLog(t *testing.T) (*Log, *sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hub.db")
	db := openDB(t, path)
	l, err := Open(context.Background(), db, testKey(1), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return l, db, path
}

func entry(i int) Entry {
	return Entry{
		Actor:   "ops",
		Tenant:  "t1",
		Kind:    "object.registered",
		Subject: fmt.Sprintf("acme:p-%04d", i),
		Data:    json.RawMessage(fmt.Sprintf(`{"n": %d, "model": "acme:pump@1.2.0"}`, i)),
	}
}

func appendN(t *testing.T, l *Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		idx, err := l.Append(context.Background(), entry(i))
		if err != nil {
			t.Fatal(err)
		}
		if idx != uint64(i) {
			t.Fatalf("Append #%d got index %d", i, idx)
		}
	}
}

func verifier(t testing.TB) note.Verifier {
	t.Helper()
	v, err := NewVerifier(testKey(1).Public().(ed25519.PublicKey), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestProofs grows a log leaf by leaf to 70 and checks, at many sizes, every
// inclusion proof and consistency proofs from every smaller size.
func TestProofs(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t)
	v := verifier(t)
	var heads []SignedHead
	var leaves [][]byte
	for n := 0; n <= 70; n++ {
		if n > 0 {
			appendN(t, l, n-1, n)
		}
		h, err := l.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h.Size != uint64(n) {
			t.Fatalf("head size %d, want %d", h.Size, n)
		}
		ph, err := ParseHead(h.Note, v)
		if err != nil {
			t.Fatalf("ParseHead(own head): %v", err)
		}
		if ph.Size != h.Size || !bytes.Equal(ph.Root, h.Root) || ph.Origin != testOrigin {
			t.Fatalf("ParseHead = %+v, want %+v", ph, h)
		}
		heads = append(heads, h)
		if n > 0 {
			lb, err := l.LeafBytes(ctx, uint64(n-1), uint64(n))
			if err != nil {
				t.Fatal(err)
			}
			leaves = append(leaves, lb[0])
		}
		if err := VerifyLeaves(leaves, h); err != nil {
			t.Fatalf("VerifyLeaves at %d: %v", n, err)
		}
	}
	sizes := []uint64{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 70}
	for _, size := range sizes {
		for i := uint64(0); i < size; i++ {
			p, err := l.InclusionProof(ctx, i, size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d): %v", i, size, err)
			}
			if err := VerifyInclusion(leaves[i], i, heads[size], p); err != nil {
				t.Fatalf("VerifyInclusion(%d, %d): %v", i, size, err)
			}
			// The proof must not verify for a neighbouring leaf.
			if err := VerifyInclusion(leaves[(i+1)%size], i, heads[size], p); size > 1 && !errors.Is(err, ErrBadProof) {
				t.Fatalf("wrong leaf at %d in %d: %v", i, size, err)
			}
		}
	}
	for m := uint64(0); m <= 70; m++ {
		for _, n := range sizes {
			if m > n {
				continue
			}
			p, err := l.ConsistencyProof(ctx, m, n)
			if err != nil {
				t.Fatalf("ConsistencyProof(%d, %d): %v", m, n, err)
			}
			if err := VerifyConsistency(heads[m], heads[n], p); err != nil {
				t.Fatalf("VerifyConsistency(%d, %d): %v", m, n, err)
			}
			if m > 0 && m < n {
				bad := heads[m]
				bad.Root = heads[m-1].Root
				if err := VerifyConsistency(bad, heads[n], p); !errors.Is(err, ErrBadProof) {
					t.Fatalf("consistency with wrong old root %d→%d: %v", m, n, err)
				}
			}
		}
	}
	rep, err := VerifyDB(ctx, l.db, v)
	if err != nil {
		t.Fatalf("VerifyDB: %v", err)
	}
	if rep.Entries != 70 || rep.Heads != 71 || rep.LatestHead.Size != 70 || rep.Unsigned != 0 {
		t.Errorf("report = %+v", rep)
	}
}

func TestProofRanges(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t)
	appendN(t, l, 0, 5)
	for _, tc := range []struct {
		name string
		fn   func() error
	}{
		{"index at size", func() error { _, err := l.InclusionProof(ctx, 5, 5); return err }},
		{"size beyond log", func() error { _, err := l.InclusionProof(ctx, 0, 6); return err }},
		{"consistency beyond log", func() error { _, err := l.ConsistencyProof(ctx, 1, 6); return err }},
		{"consistency reversed", func() error { _, err := l.ConsistencyProof(ctx, 4, 3); return err }},
		{"entries reversed", func() error { _, err := l.Entries(ctx, 3, 2); return err }},
	} {
		if err := tc.fn(); !errors.Is(err, ErrRange) {
			t.Errorf("%s: %v, want ErrRange", tc.name, err)
		}
	}
}

func TestEntries(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 678_901_234, time.FixedZone("x", 3600))
	e := Entry{Actor: "claim:tok-1", Kind: "claim.used", Subject: "acme:p-1", Time: at,
		Data: json.RawMessage(` { "b": [1.0, 2e0, -0], "a": "<&>\u2028" } `)}
	if _, err := l.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1, 1200)
	got, err := l.Entries(ctx, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{Index: 0, Time: at.UTC().Truncate(time.Millisecond), Actor: "claim:tok-1", Kind: "claim.used",
		Subject: "acme:p-1", Data: json.RawMessage(`{"a":"<&>` + "\u2028" + `","b":[1,2,0]}`)}
	if !sameEntry(got[0], want) || string(got[0].Data) != string(want.Data) || got[0].Time.Location() != time.UTC {
		t.Errorf("Entries[0] = %+v (data %s), want %+v", got[0], got[0].Data, want)
	}
	batch, err := l.Entries(ctx, 100, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch) != MaxBatch || batch[0].Index != 100 || batch[MaxBatch-1].Index != 100+MaxBatch-1 {
		t.Errorf("Entries(100, 5000): %d entries from %d", len(batch), batch[0].Index)
	}
	tail, err := l.Entries(ctx, 1190, 5000)
	if err != nil || len(tail) != 10 {
		t.Errorf("Entries(1190, 5000) = %d entries, %v", len(tail), err)
	}
	none, err := l.LeafBytes(ctx, 5000, 6000)
	if err != nil || len(none) != 0 {
		t.Errorf("LeafBytes past end = %d, %v", len(none), err)
	}
}

func TestReadmeExample(t *testing.T) {
	e := Entry{Index: 0, Time: time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC), Actor: "ops", Tenant: "t1",
		Kind: "object.registered", Subject: "acme:p-0001", Data: json.RawMessage(`{"model":"acme:pump@1.2.0"}`)}
	if err := e.normalize(); err != nil {
		t.Fatal(err)
	}
	const want = `{"actor":"ops","data":{"model":"acme:pump@1.2.0"},"index":0,"kind":"object.registered","subject":"acme:p-0001","tenant":"t1","time":"2026-01-02T03:04:05.678Z"}`
	if got := string(encodeLeaf(e)); got != want {
		t.Errorf("leaf\n got %s\nwant %s", got, want)
	}
}

func TestInvalidEntries(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t)
	long := strings.Repeat("x", MaxFieldLen+1)
	for _, tc := range []struct {
		name string
		e    Entry
	}{
		{"no kind", Entry{Actor: "a"}},
		{"no actor", Entry{Kind: "k"}},
		{"long subject", Entry{Actor: "a", Kind: "k", Subject: long}},
		{"bad utf8", Entry{Actor: "a\xff", Kind: "k"}},
		{"data array", Entry{Actor: "a", Kind: "k", Data: json.RawMessage(`[1]`)}},
		{"data duplicate", Entry{Actor: "a", Kind: "k", Data: json.RawMessage(`{"a":1,"a":2}`)}},
		{"data bad json", Entry{Actor: "a", Kind: "k", Data: json.RawMessage(`{`)}},
		{"data huge number", Entry{Actor: "a", Kind: "k", Data: json.RawMessage(`{"a":1e999}`)}},
		{"data too big", Entry{Actor: "a", Kind: "k", Data: json.RawMessage(`{"a":"` + strings.Repeat("x", MaxDataLen) + `"}`)}},
		{"year 10000", Entry{Actor: "a", Kind: "k", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		if _, err := l.Append(ctx, tc.e); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: %v, want ErrInvalidEntry", tc.name, err)
		}
	}
	if n, _ := l.Size(ctx); n != 0 {
		t.Errorf("size after rejected entries = %d", n)
	}
}

// TestAppendTxRollback checks that a rolled-back append leaves no trace and
// that the next append is still right.
func TestAppendTxRollback(t *testing.T) {
	ctx := context.Background()
	l, db, _ := newLog(t)
	appendN(t, l, 0, 3)
	before, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE objects (code TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO objects VALUES ('acme:x')`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if idx, err := l.AppendTx(ctx, tx, entry(100+i)); err != nil || idx != uint64(3+i) {
			t.Fatalf("AppendTx = %d, %v", idx, err)
		}
	}
	// SizeTx counts what the transaction sees, its own entries included.
	if n, err := l.SizeTx(ctx, tx); err != nil || n != 8 {
		t.Fatalf("SizeTx inside the transaction = %d, %v; want 8", n, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	after, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size != before.Size || !bytes.Equal(after.Root, before.Root) {
		t.Fatalf("rollback changed the log: %d %x → %d %x", before.Size, before.Root, after.Size, after.Root)
	}

	// Commit path: the object and its entry land together.
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO objects VALUES ('acme:y')`); err != nil {
		t.Fatal(err)
	}
	idx, err := l.AppendTx(ctx, tx, entry(3))
	if err != nil || idx != 3 {
		t.Fatalf("AppendTx = %d, %v", idx, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 4, 10)

	h1, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h1.Size != 10 {
		t.Fatalf("size after rollback and 7 appends = %d, want 10", h1.Size)
	}
	// The rolled-back entries left no leaves or nodes behind: the stored tree
	// recomputes to the signed heads and extends the head from before.
	if _, err := VerifyDB(ctx, db, verifier(t)); err != nil {
		t.Fatalf("VerifyDB after rollback: %v", err)
	}
	p, err := l.ConsistencyProof(ctx, before.Size, h1.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyConsistency(before, h1, p); err != nil {
		t.Fatalf("consistency across rollback: %v", err)
	}
	var objects int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM objects`).Scan(&objects); err != nil || objects != 1 {
		t.Errorf("objects = %d, %v", objects, err)
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	l, db, path := newLog(t)
	appendN(t, l, 0, 37)
	h1, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	db2 := openDB(t, path)
	l2, err := Open(ctx, db2, testKey(1), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := l2.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h2.Size != 37 || !bytes.Equal(h1.Root, h2.Root) || !bytes.Equal(h1.Note, h2.Note) {
		t.Fatalf("reopened head %d %x, want %d %x", h2.Size, h2.Root, h1.Size, h1.Root)
	}
	appendN(t, l2, 37, 40)
	if _, err := VerifyDB(ctx, db2, verifier(t)); err != nil {
		t.Fatal(err)
	}
	if l2.VerifierKey() == "" || !strings.HasPrefix(l2.VerifierKey(), testOrigin+"+") {
		t.Errorf("VerifierKey = %q", l2.VerifierKey())
	}
}

func TestTamper(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		tamper string // SQL run after heads are signed
		want   error
	}{
		{"flip a byte in a leaf", `UPDATE audit_leaves SET leaf = CAST(replace(CAST(leaf AS TEXT), 'acme:p-0005', 'acme:p-0006') AS BLOB) WHERE idx = 5`, ErrTampered},
		{"corrupt a leaf", `UPDATE audit_leaves SET leaf = x'7b7d' WHERE idx = 7`, ErrTampered},
		{"delete a leaf", `DELETE FROM audit_leaves WHERE idx = 3`, ErrTampered},
		{"truncate", `DELETE FROM audit_leaves WHERE idx >= 15`, ErrTampered},
		{"extra leaf", `INSERT INTO audit_leaves SELECT 20, leaf FROM audit_leaves WHERE idx = 0`, ErrTampered},
		{"head row root", `UPDATE audit_heads SET root = zeroblob(32) WHERE size = 10`, ErrTampered},
		{"node hash", `UPDATE audit_nodes SET hash = zeroblob(32) WHERE level = 3 AND idx = 0`, ErrTampered},
		// Nodes that no consistency proof between the heads reads: only
		// checking every stored node against the leaves finds these, and
		// 'ctl audit prove' would serve them in inclusion proofs.
		{"leaf node hash", `UPDATE audit_nodes SET hash = zeroblob(32) WHERE level = 0 AND idx = 13`, ErrTampered},
		{"interior node hash", `UPDATE audit_nodes SET hash = zeroblob(32) WHERE level = 1 AND idx = 6`, ErrTampered},
		{"change one byte of a node", `UPDATE audit_nodes SET hash = substr(hash, 1, 31) || CASE WHEN substr(hash, 32) = x'00' THEN x'01' ELSE x'00' END WHERE level = 2 AND idx = 3`, ErrTampered},
		{"missing node", `DELETE FROM audit_nodes WHERE level = 2 AND idx = 4`, ErrTampered},
		{"extra node", `INSERT INTO audit_nodes SELECT 0, 40, hash FROM audit_nodes WHERE level = 0 AND idx = 0`, ErrTampered},
		{"state", `UPDATE audit_state SET range = zeroblob(length(range))`, ErrTampered},
		{"head signature", `UPDATE audit_heads SET note = CAST(replace(CAST(note AS TEXT), char(10) || '10' || char(10), char(10) || '11' || char(10)) AS BLOB) WHERE size = 10`, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, db, _ := newLog(t)
			appendN(t, l, 0, 10)
			if _, err := l.Head(ctx); err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 10, 20)
			if _, err := l.Head(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyDB(ctx, db, verifier(t)); err != nil {
				t.Fatalf("VerifyDB before tampering: %v", err)
			}
			res, err := db.ExecContext(ctx, tt.tamper)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				t.Fatal("tampering changed nothing")
			}
			_, err = VerifyDB(ctx, db, verifier(t))
			t.Logf("VerifyDB: %v", err)
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyDB = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestForgedHead(t *testing.T) {
	ctx := context.Background()
	l, db, _ := newLog(t)
	appendN(t, l, 0, 4)
	if _, err := l.Head(ctx); err != nil {
		t.Fatal(err)
	}
	// A head for the same origin signed with another key, as an attacker
	// holding the database but not the hub key would write.
	forger, err := Open(ctx, openDB(t, filepath.Join(t.TempDir(), "f.db")), testKey(2), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, forger, 0, 6)
	forged, err := forger.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v := verifier(t)
	if _, err := ParseHead(forged.Note, v); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("ParseHead(forged) = %v, want ErrBadSignature", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO audit_heads VALUES (?, ?, ?, 0)`, 6, forged.Root, forged.Note); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDB(ctx, db, v); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifyDB with forged head = %v, want ErrBadSignature", err)
	}
	// Right key, wrong log.
	other, err := NewVerifier(testKey(1).Public().(ed25519.PublicKey), "wanwu.hub/other")
	if err != nil {
		t.Fatal(err)
	}
	own, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseHead(own.Note, other); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("ParseHead for another origin = %v, want ErrBadSignature", err)
	}
}

func TestParseHeadMalformed(t *testing.T) {
	l, _, _ := newLog(t)
	v := verifier(t)
	sign := func(text string) []byte {
		msg, err := signText(l, text)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	root := "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	for _, tc := range []struct {
		name, text string
		want       error
	}{
		{"ok with extension", testOrigin + "\n0\n" + root + "\nextension line\n", nil},
		{"too few lines", testOrigin + "\n0\n", ErrMalformedHead},
		{"leading zero size", testOrigin + "\n01\n" + root + "\n", ErrMalformedHead},
		{"negative size", testOrigin + "\n-1\n" + root + "\n", ErrMalformedHead},
		{"short root", testOrigin + "\n1\nAAAA\n", ErrMalformedHead},
		{"root not base64", testOrigin + "\n1\n!!!\n", ErrMalformedHead},
	} {
		_, err := ParseHead(sign(tc.text), v)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: ParseHead = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := ParseHead([]byte("not a note"), v); !errors.Is(err, ErrMalformedHead) {
		t.Errorf("garbage: %v", err)
	}
}

func TestExport(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t)
	appendN(t, l, 0, 25)
	head, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 25, 27) // not covered by head
	entries, err := l.Entries(ctx, 0, 27)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := l.LeafBytes(ctx, 0, 27)
	if err != nil {
		t.Fatal(err)
	}
	var export bytes.Buffer
	var lines [][]byte
	for i, e := range entries {
		line, err := MarshalExport(e, leaves[i])
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
		export.Write(line)
		export.WriteByte('\n')
	}
	if err := VerifyExport(bytes.NewReader(export.Bytes()), head); err != nil {
		t.Fatalf("VerifyExport: %v", err)
	}
	e, leaf, err := ParseExport(lines[3])
	if err != nil || !bytes.Equal(leaf, leaves[3]) || !sameEntry(e, entries[3]) {
		t.Fatalf("ParseExport = %+v, %v", e, err)
	}
	var m map[string]any
	if err := json.Unmarshal(lines[3], &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"index", "time", "actor", "tenant", "kind", "subject", "data", "leaf"} {
		if _, ok := m[k]; !ok {
			t.Errorf("export line lacks %q: %s", k, lines[3])
		}
	}
	if _, err := MarshalExport(entries[1], leaves[2]); !errors.Is(err, ErrTampered) {
		t.Errorf("MarshalExport with another entry's leaf: %v", err)
	}

	join := func(ls [][]byte) []byte { return append(bytes.Join(ls, []byte("\n")), '\n') }
	edit := func(i int, from, to string) [][]byte {
		c := append([][]byte(nil), lines...)
		c[i] = bytes.Replace(c[i], []byte(from), []byte(to), 1)
		return c
	}
	swapped := append([][]byte(nil), lines...)
	swapped[4], swapped[5] = swapped[5], swapped[4]
	for _, tc := range []struct {
		name   string
		export []byte
	}{
		{"field differs from leaf", join(edit(2, `"actor":"ops"`, `"actor":"eve"`))},
		{"data differs from leaf", join(edit(2, `"n":2`, `"n":3`))},
		{"missing entries", join(lines[:20])},
		{"swapped entries", join(swapped)},
		{"leaf replaced", join(edit(6, base64Of(leaves[6]), base64Of(leaves[7])))},
		{"not json", []byte("{\n")},
		{"unknown field", join(edit(0, `{"index"`, `{"x":1,"index"`))},
	} {
		if err := VerifyExport(bytes.NewReader(tc.export), head); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: VerifyExport = %v, want ErrTampered", tc.name, err)
		}
	}
}

// TestSavedHead shows what a head kept elsewhere adds: a consistent rewrite
// of the data directory (leaves, heads and state all cut back) passes VerifyDB
// alone but not against the saved head.
func TestSavedHead(t *testing.T) {
	ctx := context.Background()
	l, db, _ := newLog(t)
	v := verifier(t)
	appendN(t, l, 0, 10)
	saved, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDB(ctx, db, v, saved); err != nil {
		t.Fatalf("VerifyDB with saved head: %v", err)
	}

	leaves, err := l.LeafBytes(ctx, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	tb := newTreeBuilder()
	for _, leaf := range leaves {
		tb.add(leaf)
	}
	for _, q := range []string{
		`DELETE FROM audit_leaves WHERE idx >= 5`,
		`DELETE FROM audit_heads`,
		`DELETE FROM audit_nodes WHERE (idx + 1) << level > 5`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `UPDATE audit_state SET size = 5, range = ?`, encodeRange(tb.r)); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyDB(ctx, db, v)
	if err != nil {
		t.Fatalf("VerifyDB of a consistent rewrite: %v", err)
	}
	if rep.Entries != 5 || rep.Heads != 0 || rep.Unsigned != 5 {
		t.Errorf("report = %+v", rep)
	}
	if _, err := VerifyDB(ctx, db, v, saved); !errors.Is(err, ErrTampered) {
		t.Fatalf("VerifyDB with saved head = %v, want ErrTampered", err)
	}
	forged := saved
	forged.Root = hasher.EmptyRoot()
	if _, err := VerifyDB(ctx, db, v, forged); !errors.Is(err, ErrMalformedHead) {
		t.Fatalf("VerifyDB with altered saved head = %v, want ErrMalformedHead", err)
	}
}

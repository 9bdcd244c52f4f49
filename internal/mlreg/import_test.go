package mlreg_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// openEdge opens a registry without a signing key, as an edge does.
func openEdge(t *testing.T) (*mlreg.Registry, *audit.Log) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, key, _ := ed25519.GenerateKey(nil)
	al, err := audit.Open(ctx, db.W, key, "wanwu.edge/test")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := mlreg.Open(ctx, mlreg.Options{DB: db, Audit: al})
	if err != nil {
		t.Fatal(err)
	}
	return reg, al
}

// entries is the whole audit log.
func entries(t *testing.T, al *audit.Log) []audit.Entry {
	t.Helper()
	ctx := context.Background()
	n, err := al.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	es, err := al.Entries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestImport: an edge's registry takes a version the hub registered, with
// the hub's signature, and serves it as the hub does; again is nothing
// new; it registers nothing itself.
func TestImport(t *testing.T) {
	hub := open(t)
	meta, model := testModel(t)
	rec, _, err := hub.reg.Register(hub.ctx, "alice", "acme", meta, model)
	if err != nil {
		t.Fatal(err)
	}
	edge, al := openEdge(t)
	served := *rec
	served.ONNX = nil // the record travels without its bytes
	for range 2 {
		if err := edge.Import(hub.ctx, &served, model, hub.pub); err != nil {
			t.Fatalf("Import: %v", err)
		}
	}
	got, err := edge.Get(hub.ctx, "acme", rec.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != rec.Version || got.MetaSHA256 != rec.MetaSHA256 || !bytes.Equal(got.ONNX, model) ||
		!bytes.Equal(got.Signature, rec.Signature) || got.Actor != "alice" || !got.CreatedAt.Equal(rec.CreatedAt) {
		t.Fatalf("imported %+v, registered %+v", got, rec)
	}
	if err := mlreg.Verify(hub.pub, got); err != nil {
		t.Fatalf("the imported version does not verify with the hub's key: %v", err)
	}
	if ok, err := edge.Has(hub.ctx, "acme", rec.ID, rec.Version, rec.MetaSHA256, rec.ONNXSHA256); err != nil || !ok {
		t.Fatalf("Has = %v, %v", ok, err)
	}
	var kinds []string
	for _, e := range entries(t, al) {
		kinds = append(kinds, e.Kind+" "+e.Actor+" "+e.Subject)
	}
	if len(kinds) != 1 || kinds[0] != "ml.imported hub pca8-reference@1" {
		t.Fatalf("audit at the edge: %q", kinds)
	}
	if _, _, err := edge.Register(hub.ctx, "bob", "acme", meta, model); err == nil {
		t.Fatal("a registry without a signing key registered a model")
	}
}

// TestImportRefuses: a record or bytes changed after the hub signed them,
// or signed by another key, are refused before anything is stored.
func TestImportRefuses(t *testing.T) {
	hub := open(t)
	meta, model := testModel(t)
	rec, _, err := hub.reg.Register(hub.ctx, "alice", "acme", meta, model)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, otherKey, _ := ed25519.GenerateKey(nil)
	for _, tc := range []struct {
		name   string
		pub    ed25519.PublicKey
		tamper func(r *mlreg.Record, onnx []byte) []byte
		want   error
	}{
		{"onnx byte", hub.pub, func(_ *mlreg.Record, b []byte) []byte { b[len(b)/2] ^= 1; return b }, mlreg.ErrBadSignature},
		{"onnx truncated", hub.pub, func(_ *mlreg.Record, b []byte) []byte { return b[:len(b)-1] }, mlreg.ErrBadSignature},
		{"onnx and its digest", hub.pub, func(r *mlreg.Record, b []byte) []byte {
			b[len(b)/2] ^= 1
			r.ONNXSHA256 = sha(b)
			return b
		}, mlreg.ErrBadSignature},
		{"meta", hub.pub, func(r *mlreg.Record, b []byte) []byte {
			r.Meta = []byte(strings.Replace(string(r.Meta), `"above":1.2399`, `"above":9.2399`, 1))
			return b
		}, mlreg.ErrBadSignature},
		{"meta and its digest", hub.pub, func(r *mlreg.Record, b []byte) []byte {
			r.Meta = []byte(strings.Replace(string(r.Meta), `"above":1.2399`, `"above":9.2399`, 1))
			r.MetaSHA256 = sha(r.Meta)
			return b
		}, mlreg.ErrBadSignature},
		{"version", hub.pub, func(r *mlreg.Record, b []byte) []byte { r.Version = "2"; return b }, mlreg.ErrBadSignature},
		{"tenant", hub.pub, func(r *mlreg.Record, b []byte) []byte { r.Tenant = "beta"; return b }, mlreg.ErrBadSignature},
		{"signature", hub.pub, func(r *mlreg.Record, b []byte) []byte { r.Signature[0] ^= 1; return b }, mlreg.ErrBadSignature},
		{"another key", otherPub, func(_ *mlreg.Record, b []byte) []byte { return b }, mlreg.ErrBadSignature},
		{"no key", nil, func(_ *mlreg.Record, b []byte) []byte { return b }, mlreg.ErrBadSignature},
		{"signed by another key", hub.pub, func(r *mlreg.Record, b []byte) []byte {
			r.Signature = ed25519.Sign(otherKey, mlreg.Statement(r.Tenant, r.ID, r.Version, r.MetaSHA256, r.ONNXSHA256))
			return b
		}, mlreg.ErrBadSignature},
		{"signed, but not a model", hub.pub, nil, mlreg.ErrInvalid}, // below: a hub that signs anything
	} {
		t.Run(tc.name, func(t *testing.T) {
			edge, al := openEdge(t)
			r := *rec
			r.Signature = bytes.Clone(rec.Signature)
			b := bytes.Clone(model)
			if tc.tamper != nil {
				b = tc.tamper(&r, b)
			} else {
				_, hubKey, _ := ed25519.GenerateKey(nil)
				tc.pub = hubKey.Public().(ed25519.PublicKey)
				b = []byte("not onnx")
				r.ONNXSHA256 = sha(b)
				r.Signature = ed25519.Sign(hubKey, mlreg.Statement(r.Tenant, r.ID, r.Version, r.MetaSHA256, r.ONNXSHA256))
			}
			err := edge.Import(context.Background(), &r, b, tc.pub)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Import = %v, want %v", err, tc.want)
			}
			if recs, err := edge.List(context.Background(), ""); err != nil || len(recs) != 0 {
				t.Fatalf("stored after a refusal: %v, %v", recs, err)
			}
			if es := entries(t, al); len(es) != 0 {
				t.Fatalf("audited after a refusal: %+v", es)
			}
		})
	}
}

package mlreg_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/store"
)

type env struct {
	ctx   context.Context
	reg   *mlreg.Registry
	audit *audit.Log
	pub   ed25519.PublicKey
}

func open(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	pub, key, _ := ed25519.GenerateKey(nil)
	al, err := audit.Open(ctx, db.W, key, "wanwu.hub/test")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	reg, err := mlreg.Open(ctx, mlreg.Options{DB: db, Audit: al, Signer: key, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return &env{ctx: ctx, reg: reg, audit: al, pub: pub}
}

// testModel returns the ml package's reference model and its Meta.
func testModel(t *testing.T) ([]byte, []byte) {
	t.Helper()
	onnxBytes, err := os.ReadFile("../ml/testdata/pca8.onnx")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := os.ReadFile("../ml/testdata/pca8.meta.json")
	if err != nil {
		t.Fatal(err)
	}
	return meta, onnxBytes
}

// editMeta changes the test Meta.
func editMeta(t *testing.T, meta []byte, edit func(m *ml.Meta)) []byte {
	t.Helper()
	m, err := ml.ParseMeta(meta)
	if err != nil {
		t.Fatal(err)
	}
	edit(&m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editModel changes the test graph.
func editModel(t *testing.T, model []byte, edit func(*onnx.ModelProto)) []byte {
	t.Helper()
	mp := &onnx.ModelProto{}
	if err := proto.Unmarshal(model, mp); err != nil {
		t.Fatal(err)
	}
	edit(mp)
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func auditKinds(t *testing.T, e *env) []audit.Entry {
	t.Helper()
	n, err := e.audit.Size(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	es, err := e.audit.Entries(e.ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, en := range es {
		if en.Kind == mlreg.KindRegistered {
			out = append(out, en)
		}
	}
	return out
}

func TestRegisterGetListVerify(t *testing.T) {
	e := open(t)
	meta, model := testModel(t)
	rec, created, err := e.reg.Register(e.ctx, "alice", "acme", meta, model)
	if err != nil || !created {
		t.Fatalf("Register: created %v, %v", created, err)
	}
	if rec.ID != "pca8-reference" || rec.Version != "1" || rec.Size != len(model) || rec.Actor != "alice" {
		t.Fatalf("record %+v", rec)
	}
	if err := mlreg.Verify(e.pub, rec); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := mlreg.Verify(e.reg.PublicKey(), rec); err != nil {
		t.Fatalf("Verify with the registry's key: %v", err)
	}

	// Again with the same content, spelt differently: nothing changes.
	compact, _ := json.Marshal(json.RawMessage(meta))
	again, created, err := e.reg.Register(e.ctx, "bob", "acme", compact, model)
	if err != nil || created {
		t.Fatalf("re-register: created %v, %v", created, err)
	}
	if again.Actor != "alice" || again.MetaSHA256 != rec.MetaSHA256 {
		t.Fatalf("re-register changed the record: %+v", again)
	}
	if got := auditKinds(t, e); len(got) != 1 || got[0].Actor != "alice" || got[0].Tenant != "acme" || got[0].Subject != "pca8-reference@1" {
		t.Fatalf("audit entries %+v, want one ml.registered by alice", got)
	}

	// A second version; Get "" is the newest.
	meta2 := editMeta(t, meta, func(m *ml.Meta) { m.Version = 2 })
	if _, created, err := e.reg.Register(e.ctx, "alice", "acme", meta2, model); err != nil || !created {
		t.Fatalf("version 2: created %v, %v", created, err)
	}
	newest, err := e.reg.Get(e.ctx, "acme", "pca8-reference", "")
	if err != nil || newest.Version != "2" || string(newest.ONNX) != string(model) {
		t.Fatalf("newest: %+v, %v", newest, err)
	}
	if err := mlreg.Verify(e.pub, newest); err != nil {
		t.Fatalf("Verify newest: %v", err)
	}
	list, err := e.reg.List(e.ctx, "acme")
	if err != nil || len(list) != 2 || list[0].Version != "1" || list[1].Version != "2" {
		t.Fatalf("List: %v, %v", list, err)
	}
	if other, err := e.reg.List(e.ctx, "other"); err != nil || len(other) != 0 {
		t.Fatalf("another tenant's list: %v, %v", other, err)
	}
	for _, tc := range []struct{ tenant, id, version string }{
		{"other", "pca8-reference", ""}, {"acme", "nope", ""}, {"acme", "pca8-reference", "3"}, {"acme", "pca8-reference", "x"},
	} {
		if _, err := e.reg.Get(e.ctx, tc.tenant, tc.id, tc.version); !errors.Is(err, mlreg.ErrNotFound) {
			t.Errorf("Get(%q, %q, %q) = %v, want ErrNotFound", tc.tenant, tc.id, tc.version, err)
		}
	}

	// An indented copy of the Meta (what the API serves) still verifies.
	var indented strings.Builder
	enc := json.NewEncoder(&indented)
	enc.SetIndent("", "  ")
	if err := enc.Encode(newest); err != nil {
		t.Fatal(err)
	}
	var decoded mlreg.Record
	if err := json.Unmarshal([]byte(indented.String()), &decoded); err != nil {
		t.Fatal(err)
	}
	decoded.ONNX = newest.ONNX
	if err := mlreg.Verify(e.pub, &decoded); err != nil {
		t.Fatalf("Verify of the indented copy: %v", err)
	}
}

func TestVerifyRefusesTampering(t *testing.T) {
	e := open(t)
	meta, model := testModel(t)
	rec, _, err := e.reg.Register(e.ctx, "alice", "acme", meta, model)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _, _ := ed25519.GenerateKey(nil)
	for _, tc := range []struct {
		name   string
		pub    ed25519.PublicKey
		tamper func(r *mlreg.Record)
	}{
		{"onnx byte", e.pub, func(r *mlreg.Record) { r.ONNX[len(r.ONNX)/2] ^= 1 }},
		{"meta", e.pub, func(r *mlreg.Record) {
			r.Meta = []byte(strings.Replace(string(r.Meta), `"above":1.2399`, `"above":9.2399`, 1))
		}},
		{"meta and its digest", e.pub, func(r *mlreg.Record) {
			r.Meta = []byte(strings.Replace(string(r.Meta), `"above":1.2399`, `"above":9.2399`, 1))
			r.MetaSHA256 = sha(r.Meta)
		}},
		{"version", e.pub, func(r *mlreg.Record) { r.Version = "2" }},
		{"tenant", e.pub, func(r *mlreg.Record) { r.Tenant = "other" }},
		{"signature", e.pub, func(r *mlreg.Record) { r.Signature[0] ^= 1 }},
		{"another key", otherPub, func(*mlreg.Record) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := e.reg.Get(e.ctx, "acme", rec.ID, rec.Version)
			if err != nil {
				t.Fatal(err)
			}
			before := string(r.Meta)
			tc.tamper(r)
			if strings.HasPrefix(tc.name, "meta") && string(r.Meta) == before {
				t.Fatal("the tampering changed nothing")
			}
			if err := mlreg.Verify(tc.pub, r); !errors.Is(err, mlreg.ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestRegisterConflict(t *testing.T) {
	e := open(t)
	meta, model := testModel(t)
	if _, _, err := e.reg.Register(e.ctx, "alice", "acme", meta, model); err != nil {
		t.Fatal(err)
	}
	changed := editMeta(t, meta, func(m *ml.Meta) { m.Thresholds["anomaly"] = ml.Threshold{Output: "score", Above: 2} })
	_, _, err := e.reg.Register(e.ctx, "bob", "acme", changed, model)
	if !errors.Is(err, mlreg.ErrConflict) {
		t.Fatalf("other content under version 1: %v, want ErrConflict", err)
	}
	// The same id and version in another tenant is another model.
	if _, created, err := e.reg.Register(e.ctx, "bob", "other", changed, model); err != nil || !created {
		t.Fatalf("another tenant: created %v, %v", created, err)
	}
	if got := auditKinds(t, e); len(got) != 2 {
		t.Fatalf("%d audit entries, want 2 (the conflict appends none)", len(got))
	}
}

func TestRegisterRefusals(t *testing.T) {
	e := open(t)
	meta, model := testModel(t)
	for _, tc := range []struct {
		name, tenant string
		meta, model  []byte
		want         []string // in the error
		wantErr      error
	}{
		{"not onnx", "acme", meta, []byte("this is not a protobuf at all \xff\xff"), []string{"not an ONNX model"}, ml.ErrRefused},
		{"unsupported operator", "acme", meta, editModel(t, model, func(mp *onnx.ModelProto) {
			mp.Graph.Node[len(mp.Graph.Node)-1].OpType = "ReduceSum"
		}), []string{`operator "ReduceSum" is not supported by gonnx`}, ml.ErrRefused},
		{"input mismatch", "acme", editMeta(t, meta, func(m *ml.Meta) { m.Inputs = m.Inputs[:7] }), model,
			[]string{`graph input "features" has shape [1, 8]`, "7 features"}, ml.ErrRefused},
		{"over budget", "acme", editMeta(t, meta, func(m *ml.Meta) { m.Budget.MaxModelBytes = 100 }), model,
			[]string{"over the budget of 100 (budget.max_model_bytes)"}, ml.ErrRefused},
		{"too many nodes", "acme", editMeta(t, meta, func(m *ml.Meta) { m.Budget.MaxNodes = 2 }), model,
			[]string{"over the budget of 2 (budget.max_nodes)"}, ml.ErrRefused},
		{"invalid meta", "acme", []byte(`{"id":"x"}`), model, []string{"version: must be 1 or more"}, ml.ErrInvalidMeta},
		{"unknown meta field", "acme", []byte(`{"id":"x","colour":"red"}`), model, []string{"colour"}, ml.ErrInvalidMeta},
		{"bad tenant", "Not A Tenant", meta, model, []string{"tenant"}, mlreg.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.reg.Register(e.ctx, "alice", tc.tenant, tc.meta, tc.model)
			if !errors.Is(err, mlreg.ErrInvalid) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want ErrInvalid and %v", err, tc.wantErr)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to say %q", err, w)
				}
			}
		})
	}
	if list, err := e.reg.List(e.ctx, ""); err != nil || len(list) != 0 {
		t.Fatalf("stored after refusals: %v, %v", list, err)
	}
	if got := auditKinds(t, e); len(got) != 0 {
		t.Fatalf("audit entries after refusals: %v", got)
	}
}

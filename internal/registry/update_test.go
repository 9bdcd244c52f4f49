package registry

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/keys"
)

func ptr[T any](v T) *T { return &v }

// TestUpdate: every field an update may change, each refusal naming its
// field, the number kept unless the edge (the /64) changes, and one audit
// entry naming old and new values.
func TestUpdate(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	e.mustTenant("beta", "")
	for _, d := range [][3]string{{"acme:pump", "1.0.0", ""}, {"acme:pump", "1.1.0", ""}, {"acme:pump", "2.0.0", ""}, {"acme:fan", "1.0.0", ""}, {"beta:pump", "1.0.0", ""}, {"std:meter", "1.0.0", ""}} {
		if _, _, err := e.reg.RegisterModel(e.ctx, "admin", modelDoc(d[0], d[1], d[2]), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.reg.DeprecateModel(e.ctx, "admin", "acme:pump", "1.1.0", "bad calibration", nil); err != nil {
		t.Fatal(err)
	}
	e.mustRegister(RegisterRequest{Code: "acme:edge-1", Kind: KindEdge})
	e.mustRegister(RegisterRequest{Code: "acme:edge-2", Kind: KindEdge})
	reg := e.mustRegister(RegisterRequest{Code: "acme:p1", Path: []string{"site-a", "hall"}, Tags: map[string]string{"env": "test", "line": "3"},
		Model: &ModelRef{ID: "acme:pump", Version: "1.0.0"}})
	number0 := reg.Object.Number
	e.mustRegister(RegisterRequest{Code: "acme:bare"})

	refused := []struct {
		name  string
		code  string
		u     UpdateRequest
		want  error
		field string
	}{
		{"nothing", "acme:p1", UpdateRequest{}, ErrInvalid, "body"},
		{"tags both ways", "acme:p1", UpdateRequest{Tags: map[string]string{}, TagsRemove: []string{"env"}}, ErrInvalid, "tags"},
		{"bad path", "acme:p1", UpdateRequest{Path: ptr([]string{"a b"})}, ErrInvalid, "path"},
		{"bad tag key", "acme:p1", UpdateRequest{TagsMerge: map[string]string{"a/b": "x"}}, ErrInvalid, "tags.a/b"},
		{"bad removed tag", "acme:p1", UpdateRequest{TagsRemove: []string{"a b"}}, ErrInvalid, "tags_remove"},
		{"model of another id", "acme:p1", UpdateRequest{Model: &ModelRef{ID: "acme:fan", Version: "1.0.0"}}, ErrInvalid, "model"},
		{"model of another tenant", "acme:bare", UpdateRequest{Model: &ModelRef{ID: "beta:pump", Version: "1.0.0"}}, ErrInvalid, "model"},
		{"deprecated version", "acme:p1", UpdateRequest{Model: &ModelRef{ID: "acme:pump", Version: "1.1.0"}}, ErrInvalid, "model"},
		{"unknown version", "acme:p1", UpdateRequest{Model: &ModelRef{ID: "acme:pump", Version: "9.0.0"}}, ErrNotFound, ""},
		{"edge unknown", "acme:p1", UpdateRequest{Edge: ptr("acme:edge-9")}, ErrInvalid, "edge"},
		{"edge is a device", "acme:p1", UpdateRequest{Edge: ptr("acme:bare")}, ErrInvalid, "edge"},
		{"edge in another tenant", "acme:p1", UpdateRequest{Edge: ptr("beta:e")}, ErrInvalid, "edge"},
		{"own edge", "acme:edge-1", UpdateRequest{Edge: ptr("acme:edge-1")}, ErrInvalid, "edge"},
		{"unknown object", "acme:nobody", UpdateRequest{Path: ptr([]string{"x"})}, ErrNotFound, ""},
	}
	size := e.size()
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.reg.Update(e.ctx, "op", c.code, c.u)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if c.field != "" {
				wantFieldError(t, err, c.field)
			}
		})
	}
	if e.size() != size {
		t.Fatalf("refused updates wrote %d audit entries", e.size()-size)
	}
	if _, err := e.reg.Update(e.ctx, "op", "acme:p1", UpdateRequest{Model: &ModelRef{ID: "acme:pump", Version: "1.1.0"}}); err == nil ||
		!strings.Contains(err.Error(), "bad calibration") || !strings.Contains(err.Error(), "use acme:pump@2.0.0") {
		t.Errorf("deprecated upgrade error %v should give the reason and name 2.0.0", err)
	}

	e.takeCommits()
	o, err := e.reg.Update(e.ctx, "op", "acme:p1", UpdateRequest{
		Path: ptr([]string{"site-b", "hall"}), TagsMerge: map[string]string{"owner": "ops"}, TagsRemove: []string{"line"},
		Model: &ModelRef{ID: "acme:pump", Version: "latest"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.Number != number0 {
		t.Errorf("a path change moved the number %s → %s", number0, o.Number)
	}
	if strings.Join(o.Path, "/") != "site-b/hall" || o.Tags["owner"] != "ops" || o.Tags["env"] != "test" || o.Tags["line"] != "" || *o.Model != (ModelRef{"acme:pump", "2.0.0"}) {
		t.Errorf("updated object %+v model %+v", o, o.Model)
	}
	commits := e.takeCommits()
	if len(commits) != 1 || len(commits[0]) != 1 || commits[0][0].Kind != KindObjectUpdated {
		t.Fatalf("commits %+v, want one object.updated", commits)
	}
	var data struct {
		Changes  map[string]fieldChange
		Reissued map[string]any
	}
	if err := json.Unmarshal(commits[0][0].Data, &data); err != nil {
		t.Fatal(err)
	}
	if c := data.Changes["model"]; c.Old != "acme:pump@1.0.0" || c.New != "acme:pump@2.0.0" {
		t.Errorf("model change %+v", c)
	}
	if _, ok := data.Changes["number"]; ok || len(data.Changes) != 3 || data.Reissued["credential"] != true {
		t.Errorf("changes %+v reissued %+v", data.Changes, data.Reissued)
	}
	cred, err := e.reg.Credential(e.ctx, "acme:p1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(decodeJWTPayload(t, cred), `"2.0.0"`) {
		t.Errorf("credential not reissued with the new model: %s", decodeJWTPayload(t, cred))
	}
	// The same values again change nothing and log nothing.
	size = e.size()
	if _, err := e.reg.Update(e.ctx, "op", "acme:p1", UpdateRequest{Path: ptr([]string{"site-b", "hall"})}); err != nil || e.size() != size {
		t.Errorf("no-op update: %v, %d entries", err, e.size()-size)
	}
	// A shared model on an object without one.
	if o, err := e.reg.Update(e.ctx, "op", "acme:bare", UpdateRequest{Model: &ModelRef{ID: "std:meter"}}); err != nil || o.Model.Version != "1.0.0" {
		t.Errorf("shared model: %v %+v", err, o)
	}

	// The edge moves the number to the edge's /64, keeping the interface id.
	serial0 := reg.Object.Keys[0].CertSerial
	o, err = e.reg.Update(e.ctx, "op", "acme:p1", UpdateRequest{Edge: ptr("acme:edge-1")})
	if err != nil {
		t.Fatal(err)
	}
	if o.Number == number0 || number0[strings.LastIndex(number0, ":"):] != o.Number[strings.LastIndex(o.Number, ":"):] {
		t.Errorf("edge change: number %s → %s", number0, o.Number)
	}
	if subnet64(t, o.Number) == subnet64(t, number0) {
		t.Errorf("edge change kept the /64")
	}
	if o.Keys[0].CertSerial == serial0 || o.Keys[0].Status != KeyActive {
		t.Errorf("edge change kept certificate %s", serial0)
	}
	revoked, err := e.reg.RevokedCertificates(e.ctx)
	if err != nil || len(revoked) != 1 {
		t.Fatalf("CRL after an edge change: %v %v, want the replaced certificate", revoked, err)
	}
	if a, _ := e.reg.Admit(e.ctx, "acme:p1", Presented{CertSerial: serial0}); a.Status == StatusActive {
		t.Errorf("the replaced certificate is still admitted: %+v", a)
	}
	if a, _ := e.reg.Admit(e.ctx, "acme:p1", Presented{CertSerial: o.Keys[0].CertSerial}); a.Status != StatusActive {
		t.Errorf("the new certificate: %+v", a)
	}
	// An updated ended object is refused.
	if _, err := e.reg.Revoke(e.ctx, "op", "acme:bare", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Update(e.ctx, "op", "acme:bare", UpdateRequest{Path: ptr([]string{"x"})}); !errors.Is(err, ErrConflict) {
		t.Errorf("updating a revoked object: %v", err)
	}
}

func decodeJWTPayload(t *testing.T, jwt string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDecommission: revoked like Revoke, admission says decommissioned,
// the code reserved or released, the history kept.
func TestDecommission(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	k := newKey(t, keys.P256)
	reg := e.mustRegister(RegisterRequest{Code: "acme:keep", Key: KeySource{PublicKey: k.Public()}})
	e.mustRegister(RegisterRequest{Code: "acme:free"})
	e.mustRegister(RegisterRequest{Code: "acme:gw", Kind: KindGateway})
	e.mustRegister(RegisterRequest{Code: "acme:behind", Edge: "acme:gw"})

	cases := []struct {
		name    string
		code    string
		release bool
		want    error
	}{
		{"unknown", "acme:none", false, ErrNotFound},
		{"edge still serving", "acme:gw", false, ErrConflict},
		{"reserved", "acme:keep", false, nil},
		{"twice", "acme:keep", false, ErrConflict},
		{"released", "acme:free", true, nil},
	}
	for _, c := range cases {
		o, err := e.reg.Decommission(e.ctx, "op", c.code, "end of life", c.release)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Fatalf("%s: err = %v, want %v", c.name, err, c.want)
		}
		if err == nil && (o.Status != StatusDecommissioned || o.StatusReason != "end of life") {
			t.Errorf("%s: %+v", c.name, o)
		}
	}
	a, err := e.reg.Admit(e.ctx, "acme:keep", Presented{DID: reg.Object.DID})
	if err != nil || a.Status != StatusRevoked || !strings.Contains(a.Reason, "decommissioned") {
		t.Errorf("admission of a decommissioned object: %+v %v", a, err)
	}
	if o, _ := e.reg.Object(e.ctx, "acme:keep"); o.Keys[0].Status != KeyRevoked {
		t.Errorf("key not revoked: %+v", o.Keys)
	}
	// Reserved: the code cannot be registered again; released: it can.
	if _, err := e.reg.Register(e.ctx, "op", RegisterRequest{Code: "acme:keep"}); !errors.Is(err, ErrConflict) {
		t.Errorf("re-registering a reserved code: %v", err)
	}
	old, err := e.reg.Object(e.ctx, "acme:free~1")
	if err != nil || old.ReleasedCode != "acme:free" || old.Status != StatusDecommissioned {
		t.Fatalf("archived row: %+v %v", old, err)
	}
	fresh := e.mustRegister(RegisterRequest{Code: "acme:free"})
	if fresh.Object.Number == old.Number {
		t.Errorf("the new object took the archived one's number")
	}
	if o, err := e.reg.Resolve(e.ctx, old.Number); err != nil || o.Code != "acme:free~1" {
		t.Errorf("the old number resolves to %+v %v", o, err)
	}
	// Releasing twice numbers the archives.
	if o, err := e.reg.Decommission(e.ctx, "op", "acme:free", "", true); err != nil || o.Code != "acme:free~2" {
		t.Errorf("second release: %+v %v", o, err)
	}
	// The old key cannot come back under the released code.
	if _, err := e.reg.Register(e.ctx, "op", RegisterRequest{Code: "acme:keep2", Key: KeySource{PublicKey: k.Public()}}); !errors.Is(err, ErrConflict) {
		t.Errorf("reusing a decommissioned key: %v", err)
	}
	for _, op := range []func() error{
		func() error { _, err := e.reg.Reinstate(e.ctx, "op", "acme:keep", ""); return err },
		func() error { _, err := e.reg.Revoke(e.ctx, "op", "acme:keep", ""); return err },
		func() error { _, err := e.reg.Rotate(e.ctx, "op", "acme:keep", KeySource{}, 0, 0); return err },
	} {
		if err := op(); !errors.Is(err, ErrConflict) {
			t.Errorf("lifecycle change on a decommissioned object: %v", err)
		}
	}
}

// TestDelete: the safe selection rule, dry run, and one entry per object.
func TestDelete(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	e.mustTenant("beta", "")
	test := map[string]string{"env": "test"}
	e.mustRegister(RegisterRequest{Code: "acme:gw", Kind: KindGateway, Tags: test})
	e.mustRegister(RegisterRequest{Code: "acme:t1", Tags: test, Edge: "acme:gw"})
	e.mustRegister(RegisterRequest{Code: "acme:t2", Tags: test, Path: []string{"lab"}})
	e.mustRegister(RegisterRequest{Code: "acme:prod", Tags: map[string]string{"env": "prod"}})
	e.mustRegister(RegisterRequest{Code: "beta:t1", Tags: test})
	e.mustRegister(RegisterRequest{Code: "acme:gw2", Kind: KindGateway, Tags: test})
	e.mustRegister(RegisterRequest{Code: "acme:prod2", Edge: "acme:gw2"})

	refused := []struct {
		name  string
		req   DeleteRequest
		want  error
		field string
	}{
		{"no tenant", DeleteRequest{Filter: ListFilter{Tags: test}}, ErrInvalid, "tenant"},
		{"no tag", DeleteRequest{Filter: ListFilter{Tenant: "acme", Under: []string{"lab"}}}, ErrInvalid, "tag"},
		{"status filter", DeleteRequest{Filter: ListFilter{Tenant: "acme", Tags: test, Status: "active"}}, ErrInvalid, "status"},
		{"edge serving a production object", DeleteRequest{Filter: ListFilter{Tenant: "acme", Tags: test}}, ErrConflict, ""},
	}
	for _, c := range refused {
		_, err := e.reg.Delete(e.ctx, "op", c.req)
		if !errors.Is(err, c.want) {
			t.Fatalf("%s: err = %v, want %v", c.name, err, c.want)
		}
		if c.field != "" {
			wantFieldError(t, err, c.field)
		}
	}
	if o, _ := e.reg.Object(e.ctx, "acme:t1"); o.Status != StatusActive {
		t.Fatalf("a refused delete changed acme:t1: %s", o.Status)
	}
	sel := DeleteRequest{Filter: ListFilter{Tenant: "acme", Tags: test, Kind: ""}, Reason: "test run over"}
	if _, err := e.reg.Update(e.ctx, "op", "acme:prod2", UpdateRequest{Edge: ptr("")}); err != nil {
		t.Fatal(err)
	}
	size := e.size()
	dry := sel
	dry.DryRun = true
	res, err := e.reg.Delete(e.ctx, "op", dry)
	if err != nil || strings.Join(res.Deleted, ",") != "acme:gw,acme:gw2,acme:t1,acme:t2" || e.size() != size {
		t.Fatalf("dry run: %+v %v, %d entries", res, err, e.size()-size)
	}
	res, err = e.reg.Delete(e.ctx, "op", sel)
	if err != nil || len(res.Deleted) != 4 {
		t.Fatalf("delete: %+v %v", res, err)
	}
	if got := e.size() - size; got != 4 {
		t.Errorf("%d audit entries, want one per object", got)
	}
	objs, _, err := e.reg.List(e.ctx, ListFilter{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, o := range objs {
		codes = append(codes, o.Code)
	}
	if strings.Join(codes, ",") != "acme:prod,acme:prod2" {
		t.Errorf("left after delete: %v", codes)
	}
	if _, err := e.reg.Object(e.ctx, "beta:t1"); err != nil {
		t.Errorf("another tenant's object: %v", err)
	}
	// The codes are free again.
	e.mustRegister(RegisterRequest{Code: "acme:t1"})
}

// TestModelsSharedAndDeprecated: the std namespace is deployment-wide and
// not a tenant; deprecation is listed and refused with the newer version.
func TestModelsSharedAndDeprecated(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	e.mustTenant("globex", "")
	if _, err := e.reg.CreateTenant(e.ctx, "admin", SharedNamespace, "", ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("tenant std: %v", err)
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, _, err := e.reg.RegisterModel(e.ctx, "admin", modelDoc("std:pump", v, "Pump"), nil); err != nil {
			t.Fatal(err)
		}
	}
	reg := e.mustRegister(RegisterRequest{Code: "globex:p1", Model: &ModelRef{ID: "std:pump", Version: "1.0.0"}})
	e.mustRegister(RegisterRequest{Code: "acme:p1", Model: &ModelRef{ID: "std:pump", Version: "latest"}})
	if _, err := e.reg.DeprecateModel(e.ctx, "admin", "std:pump", "1.0.0", "", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("deprecate without a reason: %v", err)
	}
	mi, err := e.reg.DeprecateModel(e.ctx, "admin", "std:pump", "1.0.0", "superseded", nil)
	if err != nil || !mi.Deprecated || !mi.Shared {
		t.Fatalf("deprecate: %+v %v", mi, err)
	}
	if _, err := e.reg.DeprecateModel(e.ctx, "admin", "std:pump", "1.0.0", "again", nil); !errors.Is(err, ErrConflict) {
		t.Errorf("deprecate twice: %v", err)
	}
	if _, err := e.reg.DeprecateModel(e.ctx, "admin", "std:pump", "3.0.0", "x", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("deprecate unknown: %v", err)
	}
	_, err = e.reg.Register(e.ctx, "op", RegisterRequest{Code: "globex:p2", Model: &ModelRef{ID: "std:pump", Version: "1.0.0"}})
	wantFieldError(t, err, "model")
	if !strings.Contains(err.Error(), "std:pump@1.1.0") {
		t.Errorf("refusal does not name the newer version: %v", err)
	}
	if _, _, err := e.reg.CreateClaim(e.ctx, "op", "globex", ClaimSpec{MaxUses: 1, TTL: time.Hour, Model: &ModelRef{ID: "std:pump", Version: "1.0.0"}}); err == nil {
		t.Errorf("a claim template on a deprecated version was accepted")
	}
	// Objects already on it keep working.
	if a, err := e.reg.Admit(e.ctx, "globex:p1", Presented{DID: reg.Object.DID}); err != nil || a.Status != StatusActive {
		t.Errorf("admission on a deprecated version: %+v %v", a, err)
	}
	ms, err := e.reg.Models(e.ctx, "globex")
	if err != nil || len(ms) != 2 || !ms[0].Deprecated || ms[1].Deprecated || ms[0].DeprecatedReason != "superseded" {
		t.Errorf("globex sees %+v %v", ms, err)
	}
	// Deprecating every version leaves "latest" nothing to pick.
	if _, err := e.reg.DeprecateModel(e.ctx, "admin", "std:pump", "1.1.0", "gone", nil); err != nil {
		t.Fatal(err)
	}
	_, err = e.reg.Register(e.ctx, "op", RegisterRequest{Code: "globex:p3", Model: &ModelRef{ID: "std:pump", Version: "latest"}})
	wantFieldError(t, err, "model")
}

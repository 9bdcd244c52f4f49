package registry

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/credential"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/number"
	"github.com/wanwu-iot/wanwu/internal/store"
)

const testDeployment = "test-deployment-0001"

// testEnv is a registry on a real SQLite file, assembled the way the hub
// assembles it (internal/hub/hub.go), with a fake clock and a recorder of
// what OnCommit receives.
type testEnv struct {
	tb     testing.TB
	ctx    context.Context
	dir    string
	db     *store.DB
	ca     *ca.CA
	signer ed25519.PrivateKey
	audit  *audit.Log
	reg    *Registry
	clock  *fakeClock

	mu      sync.Mutex
	commits [][]audit.Entry
}

// newTestEnv opens (or reopens) the registry in dir; edit may change the
// options before New.
func newTestEnv(tb testing.TB, dir string, edit func(*Options)) *testEnv {
	tb.Helper()
	ctx := context.Background()
	e := &testEnv{tb: tb, ctx: ctx, dir: dir, clock: &fakeClock{t: time.Now().UTC()}}
	var err error
	if e.db, err = store.Open(ctx, filepath.Join(dir, "wanwu.db"), store.Options{}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.db.Close() })
	deployID, err := e.db.EnsureMeta(ctx, "deployment_id", func() string { return testDeployment })
	if err != nil {
		tb.Fatal(err)
	}
	if e.ca, _, err = ca.LoadOrCreate(dir, deployID); err != nil {
		tb.Fatal(err)
	}
	if e.signer, _, err = keys.LoadOrCreateEd25519(filepath.Join(dir, "signing.key")); err != nil {
		tb.Fatal(err)
	}
	if e.audit, err = audit.Open(ctx, e.db.W, e.signer, "wanwu.hub/"+deployID); err != nil {
		tb.Fatal(err)
	}
	opts := Options{
		DB: e.db, CA: e.ca, Signer: e.signer, Audit: e.audit, DeploymentID: deployID,
		Now: e.clock.Now,
		OnCommit: func(entries []audit.Entry) {
			e.mu.Lock()
			e.commits = append(e.commits, slices.Clone(entries))
			e.mu.Unlock()
		},
	}
	if edit != nil {
		edit(&opts)
	}
	if e.reg, err = New(opts); err != nil {
		tb.Fatal(err)
	}
	return e
}

func (e *testEnv) size() uint64 {
	e.tb.Helper()
	n, err := e.audit.Size(e.ctx)
	if err != nil {
		e.tb.Fatal(err)
	}
	return n
}

// takeCommits returns and forgets what OnCommit has received so far.
func (e *testEnv) takeCommits() [][]audit.Entry {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.commits
	e.commits = nil
	return c
}

func (e *testEnv) mustTenant(name, prefix string) *Tenant {
	e.tb.Helper()
	t, err := e.reg.CreateTenant(e.ctx, "admin", name, "", prefix)
	if err != nil {
		e.tb.Fatalf("create tenant %s: %v", name, err)
	}
	return t
}

func (e *testEnv) mustRegister(req RegisterRequest) *Registration {
	e.tb.Helper()
	reg, err := e.reg.Register(e.ctx, "admin", req)
	if err != nil {
		e.tb.Fatalf("register %s: %v", req.Code, err)
	}
	return reg
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func modelDoc(id, version, title string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"version":%q,"title":%q,"properties":{"speed":{"type":"number","unit":"1/min","minimum":0,"maximum":3000}}}`, id, version, title)
}

func newKey(tb testing.TB, alg keys.Alg) crypto.Signer {
	tb.Helper()
	k, err := keys.Generate(alg)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func makeCSR(tb testing.TB, k crypto.Signer) []byte {
	tb.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev"}}, k)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func spkiOf(tb testing.TB, pub crypto.PublicKey) []byte {
	tb.Helper()
	b, err := keys.SPKI(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func subnet64(tb testing.TB, addr string) netip.Prefix {
	tb.Helper()
	a, err := netip.ParseAddr(addr)
	if err != nil {
		tb.Fatal(err)
	}
	return netip.PrefixFrom(a, 64).Masked()
}

func wantFieldError(t *testing.T, err error, field string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v (%T), want a FieldError on %q", err, err, field)
	}
	if fe.Field != field {
		t.Fatalf("FieldError on %q (%v), want %q", fe.Field, err, field)
	}
}

// TestNumberDerivation recomputes every number from public inputs only: the
// tenant's /48, the subnet key of the site or edge, and the key's SPKI (or,
// for a keyless asset, the code). Nothing collides in a fresh tenant, so every
// attempt is 0.
func TestNumberDerivation(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	acme := e.mustTenant("acme", "")
	if want := number.TenantPrefix(testDeployment, "acme").String(); acme.Prefix != want || acme.PrefixSet {
		t.Fatalf("acme prefix %s (set=%v), want derived %s", acme.Prefix, acme.PrefixSet, want)
	}
	beta := e.mustTenant("beta", "2001:db8:42::/48")
	if beta.Prefix != "2001:db8:42::/48" || !beta.PrefixSet {
		t.Fatalf("beta prefix %s (set=%v)", beta.Prefix, beta.PrefixSet)
	}
	e.mustRegister(RegisterRequest{Code: "acme:edge-1", Kind: KindEdge, Path: []string{"plant-1"}})
	e.mustRegister(RegisterRequest{Code: "acme:gw-1", Kind: KindGateway, Path: []string{"plant-2"}})

	cases := []struct {
		name      string
		code      string
		kind      string
		path      []string
		edge      string
		alg       keys.Alg // "" = keyless (assets only)
		tenant    *Tenant
		subnetKey string
	}{
		{"no path", "acme:d-0", KindDevice, nil, "", keys.P256, acme, "site:"},
		{"site plant-1", "acme:d-1", KindDevice, []string{"plant-1", "line-3"}, "", keys.P256, acme, "site:plant-1"},
		{"same site other line", "acme:d-2", KindDevice, []string{"plant-1", "line-4", "cell-9"}, "", keys.Ed25519, acme, "site:plant-1"},
		{"other site", "acme:d-3", KindDevice, []string{"plant-2"}, "", keys.P256, acme, "site:plant-2"},
		{"behind edge", "acme:d-4", KindDevice, []string{"plant-1"}, "acme:edge-1", keys.P256, acme, "edge:acme:edge-1"},
		{"behind same edge", "acme:d-5", KindDevice, nil, "acme:edge-1", keys.Ed25519, acme, "edge:acme:edge-1"},
		{"behind gateway", "acme:d-6", KindDevice, nil, "acme:gw-1", keys.P256, acme, "edge:acme:gw-1"},
		{"keyless asset", "acme:tank-1", KindAsset, []string{"plant-1"}, "", "", acme, "site:plant-1"},
		{"asset with key", "acme:tank-2", KindAsset, []string{"plant-1"}, "", keys.P256, acme, "site:plant-1"},
		{"operator prefix", "beta:d-1", KindDevice, []string{"north"}, "", keys.P256, beta, "site:north"},
		{"operator prefix keyless", "beta:room-1", KindAsset, nil, "", "", beta, "site:"},
	}
	subnets := map[string]netip.Prefix{} // subnet key → the /64 its objects got
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := RegisterRequest{Code: tc.code, Kind: tc.kind, Path: tc.path, Edge: tc.edge}
			var spki []byte
			if tc.alg != "" {
				k := newKey(t, tc.alg)
				req.Key.PublicKey = k.Public()
				spki = spkiOf(t, k.Public())
			}
			reg := e.mustRegister(req)
			prefix := netip.MustParsePrefix(tc.tenant.Prefix)
			sub := number.Subnet(prefix, number.SubnetID(tc.subnetKey, 0))
			iid := number.InterfaceIDFromCode(tc.code, 0)
			if spki != nil {
				iid = number.InterfaceID(spki, 0)
			}
			want := number.Address(sub, iid).String()
			if reg.Object.Number != want {
				t.Fatalf("number %s, want %s (subnet key %q)", reg.Object.Number, want, tc.subnetKey)
			}
			if !prefix.Contains(netip.MustParseAddr(reg.Object.Number)) {
				t.Errorf("number %s is outside the tenant's %s", reg.Object.Number, prefix)
			}
			if tc.alg == "" {
				if reg.Certificate != "" || reg.Credential != "" || reg.Object.DID != "" || len(reg.Object.Keys) != 0 {
					t.Errorf("keyless asset got key material: %+v", reg)
				}
			} else {
				cert, err := ca.ParseCertPEM([]byte(reg.Certificate))
				if err != nil {
					t.Fatal(err)
				}
				if len(cert.IPAddresses) != 1 || cert.IPAddresses[0].String() != want {
					t.Errorf("certificate IP SANs %v, want %s", cert.IPAddresses, want)
				}
				cl, err := credential.Verify(reg.Credential, e.signer.Public().(ed25519.PublicKey), e.clock.Now())
				if err != nil {
					t.Fatalf("credential: %v", err)
				}
				if cl.Number != want || cl.Code != tc.code || cl.Subject != reg.Object.DID || cl.Tenant != tc.tenant.Name {
					t.Errorf("credential claims %+v do not bind %s to %s", cl, tc.code, want)
				}
			}
			// The number resolves back to the same record.
			o, err := e.reg.Resolve(e.ctx, reg.Object.Number)
			if err != nil || o.Code != tc.code {
				t.Fatalf("resolve %s = %v, %v", reg.Object.Number, o, err)
			}
			key := tc.tenant.Name + "/" + tc.subnetKey
			if prev, ok := subnets[key]; ok && prev != sub {
				t.Errorf("subnet key %s gave %s before and %s now", key, prev, sub)
			}
			subnets[key] = sub
		})
	}
	// Same site → same /64 (checked above); different sites and edges → different /64s.
	seen := map[netip.Prefix]string{}
	for key, p := range subnets {
		if other, ok := seen[p]; ok {
			t.Errorf("subnet keys %s and %s share %s", key, other, p)
		}
		seen[p] = key
	}
	// The edge itself lives in its site's /64; the devices it serves share the edge's own /64.
	edge, err := e.reg.Object(e.ctx, "acme:edge-1")
	if err != nil {
		t.Fatal(err)
	}
	d4, _ := e.reg.Object(e.ctx, "acme:d-4")
	d5, _ := e.reg.Object(e.ctx, "acme:d-5")
	d1, _ := e.reg.Object(e.ctx, "acme:d-1")
	if subnet64(t, d4.Number) != subnet64(t, d5.Number) {
		t.Errorf("devices behind one edge got %s and %s", d4.Number, d5.Number)
	}
	if subnet64(t, edge.Number) != subnet64(t, d1.Number) {
		t.Errorf("edge %s is not in its site's /64 (%s)", edge.Number, d1.Number)
	}
	if subnet64(t, d4.Number) == subnet64(t, d1.Number) {
		t.Errorf("device behind the edge (%s) shares the site /64 (%s), though its path names the site", d4.Number, d1.Number)
	}
}

// TestNumberStableAcrossRotation: a rotation gives a new key but keeps the
// number (it was derived from the first key, and addresses are not renumbered).
func TestNumberStableAcrossRotation(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	reg := e.mustRegister(RegisterRequest{Code: "acme:d", Path: []string{"p"}})
	rot, err := e.reg.Rotate(e.ctx, "admin", "acme:d", KeySource{Alg: keys.Ed25519}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rot.Object.Number != reg.Object.Number {
		t.Errorf("rotation changed the number %s → %s", reg.Object.Number, rot.Object.Number)
	}
	cl, err := credential.Decode(rot.Credential)
	if err != nil || cl.Number != reg.Object.Number || cl.Subject != rot.Object.DID {
		t.Errorf("rotated credential %+v, %v", cl, err)
	}
}

func TestTenantConflicts(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	e.mustTenant("beta", "2001:db8:1::/48")
	derivedAcme := number.TenantPrefix(testDeployment, "acme").String()
	cases := []struct {
		name, tenant, prefix string
		wantErr              error
		field                string
	}{
		{"duplicate derived", "acme", "", ErrConflict, ""},
		{"duplicate with a prefix", "acme", "2001:db8:9::/48", ErrConflict, ""},
		{"duplicate prefix", "gamma", "2001:db8:1::/48", ErrConflict, ""},
		{"prefix equal to a derived one", "delta", derivedAcme, ErrConflict, ""},
		{"prefix not a /48", "eps", "2001:db8::/32", ErrInvalid, "prefix"},
		{"prefix with host bits", "eps", "2001:db8:1:1::/48", ErrInvalid, "prefix"},
		{"ipv4 prefix", "eps", "10.0.0.0/8", ErrInvalid, "prefix"},
		{"bad name", "Acme", "", ErrInvalid, "name"},
		{"empty name", "", "", ErrInvalid, "name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.size()
			e.takeCommits()
			_, err := e.reg.CreateTenant(e.ctx, "admin", tc.tenant, "", tc.prefix)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if tc.field != "" {
				wantFieldError(t, err, tc.field)
			}
			if after := e.size(); after != before {
				t.Errorf("audit size %d → %d on a refused tenant", before, after)
			}
			if c := e.takeCommits(); len(c) != 0 {
				t.Errorf("OnCommit got %v for a refused tenant", c)
			}
		})
	}
	ts, err := e.reg.Tenants(e.ctx, "")
	if err != nil || len(ts) != 2 {
		t.Fatalf("tenants %v, %v; want acme and beta only", ts, err)
	}
}

func TestModelVersions(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	e.mustTenant("beta", "")
	register := func(doc []byte) (bool, error) {
		_, created, err := e.reg.RegisterModel(e.ctx, "admin", doc, nil)
		return created, err
	}
	steps := []struct {
		name        string
		doc         []byte
		wantCreated bool
		wantErr     error
		growth      uint64
	}{
		{"first", modelDoc("acme:pump", "1.0.0", "Pump"), true, nil, 1},
		{"same doc again", modelDoc("acme:pump", "1.0.0", "Pump"), false, nil, 0},
		{"same doc reformatted", []byte("{\n  \"version\": \"1.0.0\", \"id\": \"acme:pump\", \"title\": \"Pump\",\n  \"properties\": {\"speed\": {\"maximum\": 3000, \"minimum\": 0, \"unit\": \"1/min\", \"type\": \"number\"}}}"), false, nil, 0},
		{"different doc same version", modelDoc("acme:pump", "1.0.0", "Pump v2"), false, ErrConflict, 0},
		{"1.9.0", modelDoc("acme:pump", "1.9.0", "Pump 1.9"), true, nil, 1},
		{"1.10.0", modelDoc("acme:pump", "1.10.0", "Pump 1.10"), true, nil, 1},
		{"1.2.0", modelDoc("acme:pump", "1.2.0", "Pump 1.2"), true, nil, 1},
		{"1.10.0-rc.1 (pre-release sorts below its release)", modelDoc("acme:pump", "1.10.0-rc.1", "Pump rc"), true, nil, 1},
		{"unknown tenant", modelDoc("nobody:pump", "1.0.0", ""), false, ErrNotFound, 0},
		{"beta model", modelDoc("beta:fan", "0.1.0", "Fan"), true, nil, 1},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := e.size()
			created, err := register(s.doc)
			if !errors.Is(err, s.wantErr) || (err != nil && s.wantErr == nil) {
				t.Fatalf("error %v, want %v", err, s.wantErr)
			}
			if created != s.wantCreated {
				t.Errorf("created %v, want %v", created, s.wantCreated)
			}
			if got := e.size() - before; got != s.growth {
				t.Errorf("audit grew by %d, want %d", got, s.growth)
			}
		})
	}
	for _, v := range []string{"", "latest"} {
		m, err := e.reg.Model(e.ctx, "acme:pump", v)
		if err != nil || m.Version != "1.10.0" {
			t.Errorf("Model(%q) = %v, %v; want 1.10.0", v, m, err)
		}
	}
	if _, err := e.reg.Model(e.ctx, "acme:fan", "latest"); !errors.Is(err, ErrNotFound) {
		t.Errorf("latest of an unknown model: %v", err)
	}
	infos, err := e.reg.Models(e.ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, mi := range infos {
		order = append(order, mi.Version)
	}
	if want := []string{"1.0.0", "1.2.0", "1.9.0", "1.10.0-rc.1", "1.10.0"}; !slices.Equal(order, want) {
		t.Errorf("Models order %v, want %v", order, want)
	}

	// An object registered against "latest" is pinned to the version it resolved to.
	reg := e.mustRegister(RegisterRequest{Code: "acme:p1", Model: &ModelRef{ID: "acme:pump", Version: "latest"}})
	if reg.Object.Model == nil || reg.Object.Model.Version != "1.10.0" {
		t.Errorf("registered with latest: model %+v, want 1.10.0", reg.Object.Model)
	}
	if cl, err := credential.Decode(reg.Credential); err != nil || cl.ModelVersion != "1.10.0" {
		t.Errorf("credential model version %q (%v), want 1.10.0", cl.ModelVersion, err)
	}
	if o, _ := e.reg.Object(e.ctx, "acme:p1"); o == nil || o.Model == nil || o.Model.Version != "1.10.0" {
		t.Errorf("stored model %+v, want 1.10.0", o)
	}
}

func TestCompareSemver(t *testing.T) {
	// In ascending order, per Semantic Versioning 2.0.0 §11.
	ordered := []string{
		"0.9.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
		"1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.2.0", "1.9.0", "1.10.0", "2.0.0",
	}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := compareSemver(ordered[i], ordered[j]); got != want {
				t.Errorf("compareSemver(%s, %s) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	shuffled := slices.Clone(ordered)
	slices.Reverse(shuffled)
	sortSemver(shuffled)
	if !slices.Equal(shuffled, ordered) {
		t.Errorf("sortSemver gave %v", shuffled)
	}
}

// TestRegisterRefused: each refused registration names its reason, and
// changes neither the objects, the audit log nor what OnCommit sees.
func TestRegisterRefused(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	e.mustTenant("beta", "")
	if _, _, err := e.reg.RegisterModel(e.ctx, "admin", modelDoc("beta:fan", "1.0.0", ""), nil); err != nil {
		t.Fatal(err)
	}
	taken := newKey(t, keys.P256)
	e.mustRegister(RegisterRequest{Code: "acme:sensor-1", Key: KeySource{PublicKey: taken.Public()}})
	e.mustRegister(RegisterRequest{Code: "acme:tank-1", Kind: KindAsset})
	e.mustRegister(RegisterRequest{Code: "beta:edge-1", Kind: KindEdge})
	e.mustRegister(RegisterRequest{Code: "acme:edge-q", Kind: KindEdge})
	e.mustRegister(RegisterRequest{Code: "acme:edge-r", Kind: KindGateway})
	if _, err := e.reg.Quarantine(e.ctx, "admin", "acme:edge-q", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Revoke(e.ctx, "admin", "acme:edge-r", "test"); err != nil {
		t.Fatal(err)
	}
	ed := newKey(t, keys.Ed25519)
	cases := []struct {
		name    string
		req     RegisterRequest
		wantErr error
		field   string
	}{
		{"edge is a device", RegisterRequest{Code: "acme:d1", Edge: "acme:sensor-1"}, ErrInvalid, "edge"},
		{"edge is an asset", RegisterRequest{Code: "acme:d1", Edge: "acme:tank-1"}, ErrInvalid, "edge"},
		{"edge not registered", RegisterRequest{Code: "acme:d1", Edge: "acme:edge-9"}, ErrInvalid, "edge"},
		{"edge in another tenant", RegisterRequest{Code: "acme:d1", Edge: "beta:edge-1"}, ErrInvalid, "edge"},
		{"own edge", RegisterRequest{Code: "acme:e1", Kind: KindEdge, Edge: "acme:e1"}, ErrInvalid, "edge"},
		{"edge quarantined", RegisterRequest{Code: "acme:d1", Edge: "acme:edge-q"}, ErrInvalid, "edge"},
		{"edge revoked", RegisterRequest{Code: "acme:d1", Edge: "acme:edge-r"}, ErrInvalid, "edge"},
		{"same public key", RegisterRequest{Code: "acme:d1", Key: KeySource{PublicKey: taken.Public()}}, ErrConflict, ""},
		{"same key by CSR", RegisterRequest{Code: "acme:d1", Key: KeySource{CSR: makeCSR(t, taken)}}, ErrConflict, ""},
		{"duplicate code", RegisterRequest{Code: "acme:sensor-1"}, ErrConflict, ""},
		{"duplicate asset code", RegisterRequest{Code: "acme:tank-1", Kind: KindAsset}, ErrConflict, ""},
		{"unknown tenant", RegisterRequest{Code: "nobody:d1"}, ErrNotFound, ""},
		{"unknown model", RegisterRequest{Code: "acme:d1", Model: &ModelRef{ID: "acme:pump", Version: "1.0.0"}}, ErrNotFound, ""},
		{"model of another tenant", RegisterRequest{Code: "acme:d1", Model: &ModelRef{ID: "beta:fan", Version: "1.0.0"}}, ErrInvalid, "model"},
		{"model without version", RegisterRequest{Code: "acme:d1", Model: &ModelRef{ID: "acme:pump"}}, ErrInvalid, "model"},
		{"alg does not match key", RegisterRequest{Code: "acme:d1", Key: KeySource{PublicKey: ed.Public(), Alg: keys.P256}}, ErrInvalid, "key_alg"},
		{"unknown alg", RegisterRequest{Code: "acme:d1", Key: KeySource{Alg: "rsa"}}, ErrInvalid, "key_alg"},
		{"bad csr", RegisterRequest{Code: "acme:d1", Key: KeySource{CSR: []byte("not a csr")}}, ErrInvalid, "csr"},
		{"bad kind", RegisterRequest{Code: "acme:d1", Kind: "toaster"}, ErrInvalid, "kind"},
		{"bad code", RegisterRequest{Code: "acme:a/b"}, ErrInvalid, "code"},
		{"bad path", RegisterRequest{Code: "acme:d1", Path: []string{"a", ""}}, ErrInvalid, "path"},
		{"bad tag", RegisterRequest{Code: "acme:d1", Tags: map[string]string{"Bad Key": "v"}}, ErrInvalid, "tags.Bad Key"},
		{"negative validity", RegisterRequest{Code: "acme:d1", Validity: -time.Hour}, ErrInvalid, "validity"},
		{"validity too long", RegisterRequest{Code: "acme:d1", Validity: 21 * 365 * 24 * time.Hour}, ErrInvalid, "validity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.size()
			e.takeCommits()
			reg, err := e.reg.Register(e.ctx, "admin", tc.req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Register = %v, %v; want %v", reg, err, tc.wantErr)
			}
			if tc.field != "" {
				wantFieldError(t, err, tc.field)
			}
			if after := e.size(); after != before {
				t.Errorf("audit size %d → %d on a refused registration", before, after)
			}
			if c := e.takeCommits(); len(c) != 0 {
				t.Errorf("OnCommit got %v for a refused registration", c)
			}
			if tc.req.Code == "acme:d1" {
				if _, err := e.reg.Object(e.ctx, "acme:d1"); !errors.Is(err, ErrNotFound) {
					t.Errorf("refused object exists: %v", err)
				}
			}
		})
	}
	// A failed registration left no half-allocated subnet behind: the next
	// good one behind a real edge still lands where the derivation says.
	e.mustRegister(RegisterRequest{Code: "acme:edge-1", Kind: KindEdge})
	k := newKey(t, keys.P256)
	reg := e.mustRegister(RegisterRequest{Code: "acme:d1", Edge: "acme:edge-1", Key: KeySource{PublicKey: k.Public()}})
	acme, _ := e.reg.Tenant(e.ctx, "acme")
	want := number.Address(number.Subnet(netip.MustParsePrefix(acme.Prefix), number.SubnetID("edge:acme:edge-1", 0)), number.InterfaceID(spkiOf(t, k.Public()), 0))
	if reg.Object.Number != want.String() {
		t.Errorf("number %s, want %s", reg.Object.Number, want)
	}
}

// TestRotateRevokesAtOnce: a negative overlap revokes the old key in the same
// change; the old key is refused at once and listed for the CRL.
func TestRotateRevokesAtOnce(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	reg := e.mustRegister(RegisterRequest{Code: "acme:d"})
	old := reg.Object.Keys[0]
	before := e.size()
	rot, err := e.reg.Rotate(e.ctx, "admin", "acme:d", KeySource{}, -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.size() - before; got != 2 {
		t.Errorf("rotation appended %d entries, want 2 (key.rotated, credential.issued)", got)
	}
	if len(rot.Object.Keys) != 2 {
		t.Fatalf("keys after rotation: %+v", rot.Object.Keys)
	}
	k0, k1 := rot.Object.Keys[0], rot.Object.Keys[1]
	if k0.Status != KeyRevoked || k0.RevokedAt == nil || !k0.RevokedAt.Equal(e.clock.Now().Truncate(time.Millisecond)) || k0.RetireAt != nil {
		t.Errorf("old key %+v, want revoked now without a retire time", k0)
	}
	if k1.Status != KeyActive || rot.Object.DID != k1.DID || k1.DID == old.DID {
		t.Errorf("new key %+v, object DID %s", k1, rot.Object.DID)
	}
	a, err := e.reg.Admit(e.ctx, "acme:d", Presented{DID: old.DID})
	if err != nil || a.Status != StatusRevoked || a.Reason != "key revoked" {
		t.Errorf("old key admission %+v, %v; want revoked", a, err)
	}
	a, err = e.reg.Admit(e.ctx, "acme:d", Presented{CertSerial: strings.ToUpper(k1.CertSerial)})
	if err != nil || a.Status != StatusActive {
		t.Errorf("new certificate admission %+v, %v; want active", a, err)
	}
	revoked, err := e.reg.RevokedCertificates(e.ctx)
	if err != nil || len(revoked) != 1 || fmt.Sprintf("%x", revoked[0].Serial.Bytes()) != old.CertSerial {
		t.Errorf("revoked certificates %+v, %v; want %s", revoked, err, old.CertSerial)
	}
	entries, err := e.audit.Entries(e.ctx, before, before+1)
	if err != nil || len(entries) != 1 || entries[0].Kind != KindKeyRotated || !strings.Contains(string(entries[0].Data), `"old_revoked":true`) {
		t.Errorf("rotation entry %+v, %v", entries, err)
	}
	// Nothing is left for RetireDue.
	if n, err := e.reg.RetireDue(e.ctx); n != 0 || err != nil {
		t.Errorf("RetireDue = %d, %v; want 0", n, err)
	}
	// The old certificate's key cannot come back.
	if m, err := e.reg.Credential(e.ctx, "acme:d"); err != nil || m != rot.Credential {
		t.Errorf("active credential is not the rotated one: %v", err)
	}
	// What a device's PSK derives from follows the active key.
	if fp, err := e.reg.ActiveKeyFingerprint(e.ctx, "acme:d"); err != nil || fp != k1.Fingerprint || fp == old.Fingerprint {
		t.Errorf("active key fingerprint %q, %v; want the new key's %q", fp, err, k1.Fingerprint)
	}
	if _, err := e.reg.ActiveKeyFingerprint(e.ctx, "acme:nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("fingerprint of an unknown object: %v, want ErrNotFound", err)
	}
}

// TestRetireDue: rotated-out keys are revoked when their overlap ends, once,
// with a key.revoked entry each.
func TestRetireDue(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	regA := e.mustRegister(RegisterRequest{Code: "acme:a"})
	regB := e.mustRegister(RegisterRequest{Code: "acme:b"})
	if _, err := e.reg.Rotate(e.ctx, "admin", "acme:a", KeySource{}, time.Hour, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Rotate(e.ctx, "admin", "acme:b", KeySource{}, 3*time.Hour, 0); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance time.Duration
		want    []string // DIDs revoked in this step
	}{
		{30 * time.Minute, nil},
		{time.Hour, []string{regA.Object.DID}},
		{0, nil},
		{2 * time.Hour, []string{regB.Object.DID}},
		{24 * time.Hour, nil},
	}
	for i, s := range steps {
		e.clock.Advance(s.advance)
		before := e.size()
		e.takeCommits()
		n, err := e.reg.RetireDue(e.ctx)
		if err != nil || n != len(s.want) {
			t.Fatalf("step %d: RetireDue = %d, %v; want %d", i, n, err, len(s.want))
		}
		if got := e.size() - before; got != uint64(len(s.want)) {
			t.Errorf("step %d: audit grew by %d, want %d", i, got, len(s.want))
		}
		commits := e.takeCommits()
		if len(s.want) == 0 {
			if len(commits) != 0 {
				t.Errorf("step %d: OnCommit got %v with nothing due", i, commits)
			}
			continue
		}
		if len(commits) != 1 || len(commits[0]) != len(s.want) {
			t.Fatalf("step %d: OnCommit got %v", i, commits)
		}
		for j, en := range commits[0] {
			if en.Kind != KindKeyRevoked || en.Actor != "system" || en.Index != before+uint64(j) || !strings.Contains(string(en.Data), s.want[j]) {
				t.Errorf("step %d: entry %+v, want key.revoked of %s at %d", i, en, s.want[j], before+uint64(j))
			}
		}
		for _, did := range s.want {
			o, err := e.reg.Resolve(e.ctx, did)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range o.Keys {
				if k.DID == did && (k.Status != KeyRevoked || k.RevokedAt == nil) {
					t.Errorf("step %d: key %+v not revoked", i, k)
				}
			}
		}
	}
}

// TestAdmitExpiredCertificate: once its certificate has expired, a key is
// refused although the object and the key are still active.
func TestAdmitExpiredCertificate(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	// A registry clock a day off the wall clock: the certificate must follow
	// the registry's clock, which is the one Admit checks against.
	e.clock.Advance(24 * time.Hour)
	reg := e.mustRegister(RegisterRequest{Code: "acme:d", Validity: time.Hour})
	k := reg.Object.Keys[0]
	cert, err := ca.ParseCertPEM([]byte(reg.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(k.CertNotAfter) {
		t.Errorf("stored not-after %s, certificate %s", k.CertNotAfter, cert.NotAfter)
	}
	// The certificate's window follows the registry's clock.
	now := e.clock.Now()
	if cert.NotBefore.After(now) || cert.NotAfter.Sub(now) > time.Hour || cert.NotAfter.Sub(now) < 50*time.Minute {
		t.Errorf("certificate window %s–%s for now %s and an hour's validity", cert.NotBefore, cert.NotAfter, now)
	}
	cases := []struct {
		advance    time.Duration
		status     string
		reasonPart string
	}{
		{0, StatusActive, ""},
		{50 * time.Minute, StatusActive, ""},
		{20 * time.Minute, StatusRevoked, "certificate expired"},
	}
	for _, tc := range cases {
		e.clock.Advance(tc.advance)
		for _, p := range []Presented{{DID: k.DID}, {CertSerial: k.CertSerial}} {
			a, err := e.reg.Admit(e.ctx, "acme:d", p)
			if err != nil || a.Status != tc.status || !strings.Contains(a.Reason, tc.reasonPart) {
				t.Errorf("at +%v presenting %+v: %+v, %v; want %s", tc.advance, p, a, err, tc.status)
			}
		}
	}
	// Without a presented key the object itself is still active.
	if a, _ := e.reg.Admit(e.ctx, "acme:d", Presented{}); a.Status != StatusActive {
		t.Errorf("object admission %+v", a)
	}
	// The credential expires with the certificate.
	if _, err := credential.Verify(reg.Credential, e.signer.Public().(ed25519.PublicKey), e.clock.Now()); !errors.Is(err, credential.ErrExpired) {
		t.Errorf("credential after expiry: %v", err)
	}
}

// TestUseClaimRace: eight devices race for the last use of a one-use claim
// token; exactly one gets an identity. Run with -race.
func TestUseClaimRace(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	_, secret, err := e.reg.CreateClaim(e.ctx, "admin", "acme", ClaimSpec{MaxUses: 1, Path: []string{"plant-7"}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	csrs := make([][]byte, n)
	for i := range csrs {
		csrs[i] = makeCSR(t, newKey(t, keys.P256))
	}
	before := e.size()
	e.takeCommits()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	regs := make([]*Registration, n)
	for i := range n {
		wg.Go(func() {
			<-start
			regs[i], errs[i] = e.reg.UseClaim(e.ctx, secret, ClaimRequest{CSR: csrs[i]})
		})
	}
	close(start)
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if won >= 0 {
				t.Errorf("devices %d and %d both claimed the single use", won, i)
			}
			won = i
		case !errors.Is(err, ErrClaim):
			t.Errorf("device %d: %v, want ErrClaim", i, err)
		case !strings.Contains(err.Error(), "used up"):
			t.Errorf("device %d: %v, want used up", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no device claimed the token")
	}
	if got := e.size() - before; got != 3 {
		t.Errorf("audit grew by %d, want 3 (object.registered, credential.issued, claim.used)", got)
	}
	if c := e.takeCommits(); len(c) != 1 {
		t.Errorf("OnCommit called %d times, want once", len(c))
	}
	claims, err := e.reg.Claims(e.ctx, "acme")
	if err != nil || len(claims) != 1 || claims[0].Uses != 1 {
		t.Errorf("claims %+v, %v; want one with 1 use", claims, err)
	}
	list, _, err := e.reg.List(e.ctx, ListFilter{Tenant: "acme"})
	if err != nil || len(list) != 1 || list[0].Code != regs[won].Object.Code {
		t.Errorf("objects %+v, %v; want only the winner", list, err)
	}
}

// TestOnCommit: OnCommit receives exactly the committed entries with their
// log indexes, as stored, and nothing for a change that rolled back.
func TestOnCommit(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	k := newKey(t, keys.P256)
	e.mustRegister(RegisterRequest{Code: "acme:d1", Key: KeySource{PublicKey: k.Public()}})
	// Refused before anything is written.
	if _, err := e.reg.Register(e.ctx, "admin", RegisterRequest{Code: "acme:d2", Key: KeySource{PublicKey: k.Public()}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second registration with the same key: %v", err)
	}
	// Refused late: the object and key rows are written, then the audit
	// append fails (an actor longer than an entry allows); all of it rolls back.
	long := strings.Repeat("a", audit.MaxFieldLen+1)
	if _, err := e.reg.Register(e.ctx, long, RegisterRequest{Code: "acme:d3"}); !errors.Is(err, audit.ErrInvalidEntry) {
		t.Fatalf("registration with an oversized actor: %v", err)
	}
	if _, err := e.reg.Object(e.ctx, "acme:d3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("object of a rolled-back registration exists: %v", err)
	}
	if list, _, _ := e.reg.List(e.ctx, ListFilter{}); len(list) != 1 {
		t.Errorf("%d objects after a rolled-back registration, want 1", len(list))
	}
	if _, err := e.reg.Quarantine(e.ctx, "ops", "acme:d1", "odd traffic"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Quarantine(e.ctx, "ops", "acme:d1", "again"); !errors.Is(err, ErrConflict) {
		t.Fatalf("double quarantine: %v", err)
	}
	commits := e.takeCommits()
	wantKinds := [][]string{
		{KindTenantCreated},
		{KindObjectRegistered, KindCredentialIssued},
		{KindObjectQuarantined},
	}
	if len(commits) != len(wantKinds) {
		t.Fatalf("OnCommit called %d times, want %d: %+v", len(commits), len(wantKinds), commits)
	}
	size := e.size()
	stored, err := e.audit.Entries(e.ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(0)
	for i, c := range commits {
		var kinds []string
		for _, en := range c {
			kinds = append(kinds, en.Kind)
			if en.Index != next {
				t.Errorf("commit %d: entry %s has index %d, want %d", i, en.Kind, en.Index, next)
			}
			if en.Index < uint64(len(stored)) {
				s := stored[en.Index]
				if s.Kind != en.Kind || s.Subject != en.Subject || s.Actor != en.Actor || !s.Time.Equal(en.Time) {
					t.Errorf("commit %d: OnCommit saw %+v, the log holds %+v", i, en, s)
				}
			}
			next++
		}
		if !slices.Equal(kinds, wantKinds[i]) {
			t.Errorf("commit %d: kinds %v, want %v", i, kinds, wantKinds[i])
		}
	}
	if next != size {
		t.Errorf("OnCommit saw %d entries, the log holds %d", next, size)
	}
}

// TestAuditGrowth runs a lifecycle: every successful change appends its
// entries (how many is part of the contract), every refused one appends none.
func TestAuditGrowth(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	ctx := e.ctx
	r := e.reg
	var secret, claimID string
	taken := newKey(t, keys.Ed25519)
	steps := []struct {
		name   string
		do     func() error
		growth uint64 // entries a success appends; 0 = the step must be refused
	}{
		{"tenant", func() error { _, err := r.CreateTenant(ctx, "admin", "acme", "Acme", ""); return err }, 1},
		{"tenant again", func() error { _, err := r.CreateTenant(ctx, "admin", "acme", "", ""); return err }, 0},
		{"model", func() error {
			_, _, err := r.RegisterModel(ctx, "admin", modelDoc("acme:pump", "1.0.0", "P"), nil)
			return err
		}, 1},
		{"model conflict", func() error {
			_, _, err := r.RegisterModel(ctx, "admin", modelDoc("acme:pump", "1.0.0", "Q"), nil)
			return err
		}, 0},
		{"edge", func() error {
			_, err := r.Register(ctx, "admin", RegisterRequest{Code: "acme:edge-1", Kind: KindEdge})
			return err
		}, 2},
		{"device", func() error {
			_, err := r.Register(ctx, "admin", RegisterRequest{Code: "acme:d1", Edge: "acme:edge-1", Model: &ModelRef{ID: "acme:pump", Version: "1.0.0"}, Key: KeySource{PublicKey: taken.Public()}})
			return err
		}, 2},
		{"asset", func() error {
			_, err := r.Register(ctx, "admin", RegisterRequest{Code: "acme:tank", Kind: KindAsset})
			return err
		}, 1},
		{"device behind an asset", func() error {
			_, err := r.Register(ctx, "admin", RegisterRequest{Code: "acme:d2", Edge: "acme:tank"})
			return err
		}, 0},
		{"same key again", func() error {
			_, err := r.Register(ctx, "admin", RegisterRequest{Code: "acme:d3", Key: KeySource{PublicKey: taken.Public()}})
			return err
		}, 0},
		{"rotate", func() error { _, err := r.Rotate(ctx, "admin", "acme:d1", KeySource{}, time.Hour, 0); return err }, 2},
		{"rotate to a taken key", func() error {
			_, err := r.Rotate(ctx, "admin", "acme:edge-1", KeySource{PublicKey: taken.Public()}, 0, 0)
			return err
		}, 0},
		{"rotate unknown", func() error { _, err := r.Rotate(ctx, "admin", "acme:ghost", KeySource{}, 0, 0); return err }, 0},
		{"quarantine", func() error { _, err := r.Quarantine(ctx, "admin", "acme:d1", "odd"); return err }, 1},
		{"reinstate", func() error { _, err := r.Reinstate(ctx, "admin", "acme:d1", ""); return err }, 1},
		{"reinstate active", func() error { _, err := r.Reinstate(ctx, "admin", "acme:d1", ""); return err }, 0},
		{"claim", func() error {
			cl, sec, err := r.CreateClaim(ctx, "admin", "acme", ClaimSpec{MaxUses: 1})
			if err == nil {
				secret, claimID = sec, cl.ID
			}
			return err
		}, 1},
		{"claim for unknown tenant", func() error { _, _, err := r.CreateClaim(ctx, "admin", "nobody", ClaimSpec{}); return err }, 0},
		{"use claim", func() error {
			_, err := r.UseClaim(ctx, secret, ClaimRequest{CSR: makeCSR(t, newKey(t, keys.P256)), Local: "claimed-1"})
			return err
		}, 3},
		{"use claim again", func() error {
			_, err := r.UseClaim(ctx, secret, ClaimRequest{CSR: makeCSR(t, newKey(t, keys.P256))})
			return err
		}, 0},
		{"claim with a bad token", func() error {
			_, err := r.UseClaim(ctx, "wwc_nope", ClaimRequest{CSR: makeCSR(t, newKey(t, keys.P256))})
			return err
		}, 0},
		{"revoke claim of another tenant", func() error { _, err := r.RevokeClaim(ctx, "admin", "beta", claimID, ""); return err }, 0},
		{"revoke claim", func() error { _, err := r.RevokeClaim(ctx, "admin", "", claimID, "batch recalled"); return err }, 1},

		{"token", func() error { _, _, err := r.CreateToken(ctx, "admin", "ops", "operator", "acme"); return err }, 1},
		{"token again", func() error { _, _, err := r.CreateToken(ctx, "admin", "ops", "operator", "acme"); return err }, 0},
		{"revoke token of another tenant", func() error { _, err := r.RevokeToken(ctx, "admin", "ops", "beta"); return err }, 0},
		{"revoke token", func() error { _, err := r.RevokeToken(ctx, "admin", "ops", ""); return err }, 1},
		{"import", func() error {
			s, err := r.Import(ctx, "admin", strings.NewReader("code,kind\nacme:i1,device\nacme:i2,asset\nAcme:bad,device\n"), ImportOptions{})
			if err == nil && (s.Created != 2 || s.Errors != 1) {
				err = fmt.Errorf("import summary %+v", s)
			}
			return err
		}, 3},
		{"revoke", func() error { _, err := r.Revoke(ctx, "admin", "acme:d1", "gone"); return err }, 1},
		{"revoke again", func() error { _, err := r.Revoke(ctx, "admin", "acme:d1", "gone"); return err }, 0},
		{"rotate revoked", func() error { _, err := r.Rotate(ctx, "admin", "acme:d1", KeySource{}, 0, 0); return err }, 0},
		{"quarantine revoked", func() error { _, err := r.Quarantine(ctx, "admin", "acme:d1", ""); return err }, 0},
		{"change without actor", func() error { _, err := r.CreateTenant(ctx, "", "gamma", "", ""); return err }, 0},
	}
	for _, s := range steps {
		before := e.size()
		err := s.do()
		got := e.size() - before
		switch {
		case s.growth == 0 && err == nil:
			t.Errorf("%s: succeeded, want a refusal", s.name)
		case s.growth > 0 && err != nil:
			t.Errorf("%s: %v", s.name, err)
		case got != s.growth:
			t.Errorf("%s: audit grew by %d, want %d", s.name, got, s.growth)
		}
	}
	// Re-importing the same rows succeeds and appends nothing.
	before := e.size()
	sum, err := r.Import(ctx, "admin", strings.NewReader("code,kind\nacme:i1,device\nacme:i2,asset\n"), ImportOptions{})
	if err != nil || sum.Unchanged != 2 || sum.Created != 0 {
		t.Errorf("re-import: %+v, %v", sum, err)
	}
	if got := e.size(); got != before {
		t.Errorf("re-import grew the log %d → %d", before, got)
	}
	// A signed head covers the whole log. against a fresh signed head.
	if _, err := e.audit.Head(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestReopen: the registry keeps nothing in memory that the database does
// not; a reopened one resolves the same records and continues the log.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	e := newTestEnv(t, dir, nil)
	e.mustTenant("acme", "")
	reg := e.mustRegister(RegisterRequest{Code: "acme:d", Path: []string{"s1"}})
	size := e.size()
	e.db.Close()

	e2 := newTestEnv(t, dir, nil)
	for _, key := range []string{"acme:d", reg.Object.Number, reg.Object.DID, reg.Object.DID + "#" + strings.TrimPrefix(reg.Object.DID, "did:key:")} {
		o, err := e2.reg.Resolve(e2.ctx, key)
		if err != nil || o.Code != "acme:d" || o.Number != reg.Object.Number || o.DID != reg.Object.DID {
			t.Errorf("resolve %s after reopen: %+v, %v", key, o, err)
		}
	}
	// The /64 of site s1 is remembered, not re-derived with a new attempt.
	reg2 := e2.mustRegister(RegisterRequest{Code: "acme:d2", Path: []string{"s1"}})
	if subnet64(t, reg2.Object.Number) != subnet64(t, reg.Object.Number) {
		t.Errorf("site s1 got %s after reopen, %s before", reg2.Object.Number, reg.Object.Number)
	}
	if got := e2.size(); got != size+2 {
		t.Errorf("log size %d after reopen and one registration, want %d", got, size+2)
	}
}

func TestResolveRefused(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	unknown := newKey(t, keys.P256)
	unknownDID, _ := keys.DID(unknown.Public())
	cases := []struct {
		key     string
		wantErr error
		field   string
	}{
		{"acme:ghost", ErrNotFound, ""},
		{"fd00::1", ErrNotFound, ""},
		{unknownDID, ErrNotFound, ""},
		{"did:key:zNotAKey", ErrInvalid, "did"},
		{"fd00::zz", ErrInvalid, "number"},
		{"::ffff:10.0.0.1", ErrNotFound, ""},
		{"fe80::1%eth0", ErrInvalid, "number"},
		{"not a code", ErrInvalid, "code"},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			_, err := e.reg.Resolve(e.ctx, tc.key)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Resolve(%q) = %v, want %v", tc.key, err, tc.wantErr)
			}
			if tc.field != "" {
				wantFieldError(t, err, tc.field)
			}
		})
	}
}

// TestClaimRefusals: every way a claim is refused wraps ErrClaim and is
// named by ClaimRefusal; nothing is registered or logged for any of them,
// and a malformed request is refused before the token is looked at.
func TestClaimRefusals(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	e.mustTenant("beta", "")
	mk := func(spec ClaimSpec) (string, string) {
		cl, secret, err := e.reg.CreateClaim(e.ctx, "admin", "acme", spec)
		if err != nil {
			t.Fatal(err)
		}
		return cl.ID, secret
	}
	_, usedUp := mk(ClaimSpec{MaxUses: 1})
	if _, err := e.reg.UseClaim(e.ctx, usedUp, ClaimRequest{PublicKey: newKey(t, keys.Ed25519).Public()}); err != nil {
		t.Fatalf("first use: %v", err)
	}
	_, expired := mk(ClaimSpec{TTL: time.Minute})
	revokedID, revoked := mk(ClaimSpec{MaxUses: 5})
	if _, err := e.reg.RevokeClaim(e.ctx, "admin", "beta", revokedID, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke from another tenant: %v, want ErrNotFound", err)
	}
	cl, err := e.reg.RevokeClaim(e.ctx, "admin", "acme", revokedID, "batch recalled")
	if err != nil || !cl.Revoked || cl.RevokedReason != "batch recalled" {
		t.Fatalf("revoke: %+v, %v", cl, err)
	}
	before := e.size()
	if cl, err := e.reg.RevokeClaim(e.ctx, "admin", "", revokedID, "again"); err != nil || cl.RevokedReason != "batch recalled" || e.size() != before {
		t.Errorf("second revocation: %+v, %v; want no change", cl, err)
	}
	e.clock.Advance(2 * time.Minute)

	csr := makeCSR(t, newKey(t, keys.P256))
	for _, tc := range []struct {
		name, secret string
		req          ClaimRequest
		reason       string // "" = not a refusal: invalid
	}{
		{"unknown", ClaimPrefix + "nope", ClaimRequest{CSR: csr}, "unknown"},
		{"not a claim token", "wwt_x", ClaimRequest{CSR: csr}, "unknown"},
		{"expired", expired, ClaimRequest{CSR: csr}, "expired"},
		{"used up", usedUp, ClaimRequest{CSR: csr}, "used_up"},
		{"revoked", revoked, ClaimRequest{CSR: csr}, "revoked"},
		{"no key, unknown token", ClaimPrefix + "nope", ClaimRequest{}, ""},
		{"no key, expired token", expired, ClaimRequest{}, ""},
		{"both key forms", revoked, ClaimRequest{CSR: csr, PublicKey: newKey(t, keys.P256).Public()}, ""},
		{"bad id", usedUp, ClaimRequest{CSR: csr, Local: "Not Valid"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.size()
			_, err := e.reg.UseClaim(e.ctx, tc.secret, tc.req)
			if got := ClaimRefusal(err); got != tc.reason {
				t.Errorf("refusal %q (%v), want %q", got, err, tc.reason)
			}
			if tc.reason == "" && !errors.Is(err, ErrInvalid) {
				t.Errorf("err %v, want ErrInvalid", err)
			}
			if e.size() != before {
				t.Errorf("a refused claim wrote to the audit log")
			}
		})
	}
	claims, err := e.reg.Claims(e.ctx, "acme")
	if err != nil || len(claims) != 3 {
		t.Fatalf("claims %+v, %v", claims, err)
	}
	if c := claims[0]; c.Uses != 1 || c.LastUsedAt.IsZero() {
		t.Errorf("used claim %+v: want 1 use and a last use time", c)
	}
	if c := claims[1]; c.Uses != 0 || !c.LastUsedAt.IsZero() {
		t.Errorf("unused claim %+v", c)
	}
	for i, want := range []string{"used_up", "expired", "revoked"} {
		if claims[i].State != want {
			t.Errorf("claim %d: state %q, want %q", i, claims[i].State, want)
		}
	}
}

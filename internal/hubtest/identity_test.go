package hubtest

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	_ "modernc.org/sqlite"

	"github.com/wanwu-iot/wanwu/internal/keys"
)

const pumpModel = "../../examples/pump.model.json"

// setupAcme creates tenant acme with the pump model.
func setupAcme(t *testing.T, h *Hub) {
	t.Helper()
	h.MustWanwu("ctl", "tenant", "create", "acme", "--title", "Acme Water")
	out := h.MustWanwu("ctl", "model", "register", pumpModel)
	if !strings.Contains(out, "acme:pump@1.0.0 registered") {
		t.Fatalf("model register said %q", out)
	}
}

type object struct {
	Code   string `json:"code"`
	Tenant string `json:"tenant"`
	Kind   string `json:"kind"`
	Status string `json:"status"`
	Number string `json:"number"`
	DID    string `json:"did"`
	Path   []string
	Tags   map[string]string
	Keys   []struct {
		DID        string `json:"did"`
		Status     string `json:"status"`
		CertSerial string `json:"cert_serial"`
	} `json:"keys"`
}

// TestQuickTour follows the README's tour through the real command line.
func TestQuickTour(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	dev := filepath.Join(t.TempDir(), "pump-0001")
	out := h.MustWanwu("ctl", "object", "register", "acme:pump-0001", "--model", "acme:pump@1.0.0",
		"--path", "plant-1/line-3", "--tag", "zone=north", "--out", dev)
	if !strings.Contains(out, "acme:pump-0001") {
		t.Fatalf("register output: %s", out)
	}
	for _, f := range []string{"cert.pem", "key.pem", "ca.pem", "credential.jwt"} {
		if _, err := os.Stat(filepath.Join(dev, f)); err != nil {
			t.Fatalf("missing %s: %v", f, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dev, "key.pem")); fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem mode %v, want 0600", fi.Mode().Perm())
	}

	// Resolve by code, number and DID: the same record.
	var byCode object
	h.MustAdmin(200, "GET", "/api/v1/resolve/acme:pump-0001", nil).JSON(t, &byCode)
	if byCode.Number == "" || byCode.DID == "" || byCode.Status != "active" {
		t.Fatalf("resolved record incomplete: %+v", byCode)
	}
	if !strings.HasPrefix(byCode.Number, "fd") {
		t.Errorf("number %s is not a ULA", byCode.Number)
	}
	for _, key := range []string{byCode.Number, byCode.DID} {
		out := h.MustWanwu("ctl", "resolve", key)
		if !strings.Contains(out, `"code": "acme:pump-0001"`) || !strings.Contains(out, byCode.Number) {
			t.Errorf("resolve %s gave %s", key, out)
		}
	}

	// The issued certificate chains to the CA and carries code and number.
	certPEM, _ := os.ReadFile(filepath.Join(dev, "cert.pem"))
	caPEM, _ := os.ReadFile(filepath.Join(dev, "ca.pem"))
	cert := parseCert(t, certPEM)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	if len(cert.URIs) == 0 || cert.URIs[0].String() != "wanwu:acme:pump-0001" {
		t.Errorf("URI SANs %v", cert.URIs)
	}
	if len(cert.IPAddresses) != 1 || cert.IPAddresses[0].String() != byCode.Number {
		t.Errorf("IP SANs %v, want %s", cert.IPAddresses, byCode.Number)
	}
	// The key file matches the certificate.
	keyPEM, _ := os.ReadFile(filepath.Join(dev, "key.pem"))
	priv, err := keys.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if did, _ := keys.DID(priv.Public()); did != byCode.DID {
		t.Errorf("key DID %s, object DID %s", did, byCode.DID)
	}

	out = h.MustWanwu("verify", "credential", filepath.Join(dev, "credential.jwt"))
	for _, want := range []string{"valid credential", "acme:pump-0001", byCode.Number, "acme:pump@1.0.0", byCode.DID} {
		if !strings.Contains(out, want) {
			t.Errorf("verify credential output lacks %q:\n%s", want, out)
		}
	}

	head := filepath.Join(t.TempDir(), "head.txt")
	h.MustWanwu("ctl", "audit", "head", "--out", head)
	out = h.MustWanwu("verify", "log", "--head", head)
	if !strings.Contains(out, "ok:") || !strings.Contains(out, "consistent") {
		t.Errorf("verify log: %s", out)
	}
	out = h.MustWanwu("ctl", "audit", "prove", "0")
	if !strings.Contains(out, "is included") {
		t.Errorf("audit prove: %s", out)
	}

	// Offline verification of an export against the saved head.
	export := filepath.Join(t.TempDir(), "log.jsonl")
	h.MustWanwu("ctl", "audit", "entries", "--out", export)
	headSize := countLines(t, export)
	_ = headSize
	h.MustWanwu("verify", "log", "--export", export, "--head", head)

	// Thing Description export.
	td := h.MustWanwu("ctl", "model", "td", "acme:pump@1.0.0")
	if !strings.Contains(td, "https://www.w3.org/2022/wot/td/v1.1") || !strings.Contains(td, "setSpeed") {
		t.Errorf("TD export: %s", td)
	}
}

func countLines(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func parseCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("no PEM in %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func auditSize(t *testing.T, h *Hub) float64 {
	t.Helper()
	return h.MustAdmin(200, "GET", "/api/v1/audit/head", nil).Map(t)["size"].(float64)
}

// TestBadInputChangesNothing sends malformed requests; each gets a 4xx JSON
// error naming the field, and neither the objects nor the audit log change.
func TestBadInputChangesNothing(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	before := auditSize(t, h)
	badModel := `{"id":"acme:bad","version":"1.0","properties":{"t":{"type":"number","unit":"furlongs","minimum":5,"maximum":1}}}`
	csr, _ := makeCSR(t, keys.P256)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		field              string
	}{
		{"bad code", "POST", "/api/v1/objects", map[string]any{"code": "Acme:x"}, 400, "code"},
		{"code with slash", "POST", "/api/v1/objects", map[string]any{"code": "acme:a/b"}, 400, "code"},
		{"code with wildcard", "POST", "/api/v1/objects", map[string]any{"code": "acme:#"}, 400, "code"},
		{"unknown tenant", "POST", "/api/v1/objects", map[string]any{"code": "nobody:x"}, 404, ""},
		{"bad kind", "POST", "/api/v1/objects", map[string]any{"code": "acme:x", "kind": "toaster"}, 400, "kind"},
		{"bad path", "POST", "/api/v1/objects", map[string]any{"code": "acme:x", "path": "a//b"}, 400, "path"},
		{"bad tag", "POST", "/api/v1/objects", map[string]any{"code": "acme:x", "tags": map[string]string{"Bad Key": "v"}}, 400, "tags.Bad Key"},
		{"unknown model", "POST", "/api/v1/objects", map[string]any{"code": "acme:x", "model": map[string]string{"id": "acme:nope", "version": "1.0.0"}}, 404, ""},
		{"bad csr", "POST", "/api/v1/objects", map[string]any{"code": "acme:x", "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}, 400, "csr"},
		{"bad public key", "POST", "/api/v1/objects", map[string]any{"code": "acme:x", "public_key": "did:key:zNotAKey"}, 400, "public_key"},
		{"bad key alg", "POST", "/api/v1/objects", map[string]any{"code": "acme:x", "key_alg": "rsa"}, 400, "key_alg"},
		{"unknown field", "POST", "/api/v1/objects", `{"code":"acme:x","colour":"red"}`, 400, "colour"},
		{"wrong type", "POST", "/api/v1/objects", `{"code":42}`, 400, "code"},
		{"malformed json", "POST", "/api/v1/objects", `{"code":`, 400, "body"},
		{"empty body", "POST", "/api/v1/objects", ``, 400, "body"},
		{"bad validity", "POST", "/api/v1/objects", map[string]any{"code": "acme:x", "validity": "forever"}, 400, "validity"},
		{"oversized", "POST", "/api/v1/objects", `{"code":"` + strings.Repeat("a", 3<<20) + `"}`, 413, ""},
		{"invalid model", "POST", "/api/v1/models", badModel, 400, "model"},
		{"model not json", "POST", "/api/v1/models", `not json`, 400, ""},
		{"model with a mapping that does not compile", "POST", "/api/v1/models", `{"id":"acme:vendor","version":"1.0.0","properties":{"t":{"type":"number"}},"mapping":{"properties":{"t":"payload.t +"}}}`, 400, "model"},
		{"bad tenant name", "POST", "/api/v1/tenants", map[string]any{"name": "ACME"}, 400, "name"},
		{"bad tenant prefix", "POST", "/api/v1/tenants", map[string]any{"name": "beta", "prefix": "10.0.0.0/8"}, 400, "prefix"},
		{"bad role", "POST", "/api/v1/tokens", map[string]any{"name": "x", "role": "god"}, 400, "role"},
		{"bad resolve key", "GET", "/api/v1/resolve/not a code", nil, 400, "code"},
		{"bad number", "GET", "/api/v1/resolve/fd00::zz", nil, 400, "number"},
		{"rotate unknown", "POST", "/api/v1/objects/acme:ghost/rotate", map[string]any{}, 404, ""},
		{"claim without token", "POST", "/api/v1/claim", map[string]any{"csr": string(csr)}, 401, ""},
		{"claim bad token", "POST", "/api/v1/claim", map[string]any{"csr": string(csr)}, 401, ""},
		// A malformed request is refused before the token is looked at.
		{"claim with a bad csr", "POST", "/api/v1/claim", map[string]any{"csr": "x"}, 400, "csr"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.Admin(tc.method, tc.path, tc.body)
			if tc.name == "claim without token" {
				r = h.Do(tc.method, tc.path, "", tc.body)
			}
			if tc.name == "claim bad token" || tc.name == "claim with a bad csr" {
				r = h.Do(tc.method, tc.path, "wwc_nope", tc.body)
			}
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			var e struct {
				Error struct {
					Code, Message, Field string
					Problems             []struct{ Path, Message string }
				}
			}
			r.JSON(t, &e)
			if e.Error.Message == "" || e.Error.Code == "" {
				t.Fatalf("error body lacks code/message: %s", r.Body)
			}
			if tc.field != "" && e.Error.Field != tc.field {
				t.Errorf("field %q, want %q (%s)", e.Error.Field, tc.field, r.Body)
			}
			if tc.name == "invalid model" {
				paths := map[string]bool{}
				for _, p := range e.Error.Problems {
					paths[p.Path] = true
				}
				for _, want := range []string{"$.version", "$.properties.t.unit"} {
					if !paths[want] {
						t.Errorf("problems %v lack %s", e.Error.Problems, want)
					}
				}
			}
		})
	}
	var list struct{ Objects []object }
	h.MustAdmin(200, "GET", "/api/v1/objects", nil).JSON(t, &list)
	if len(list.Objects) != 0 {
		t.Errorf("bad requests registered objects: %+v", list.Objects)
	}
	if after := auditSize(t, h); after != before {
		t.Errorf("audit log grew from %v to %v on bad input", before, after)
	}
	// Rejections are counted.
	metrics := h.Do("GET", "/metrics", "", nil)
	if !strings.Contains(string(metrics.Body), `wanwu_api_rejected_total{reason="invalid_argument"}`) {
		t.Errorf("/metrics lacks the rejection counter")
	}
}

// TestAccessControl checks roles and tenant isolation.
func TestAccessControl(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	h.MustWanwu("ctl", "tenant", "create", "beta")
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:a1"})
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "beta:b1"})

	mint := func(name, role, tenant string) string {
		var out struct{ Secret string }
		h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": name, "role": role, "tenant": tenant}).JSON(t, &out)
		if !strings.HasPrefix(out.Secret, "wwt_") {
			t.Fatalf("token secret %q", out.Secret)
		}
		return out.Secret
	}
	viewer := mint("viewer-1", "viewer", "")
	acmeOp := mint("acme-op", "operator", "acme")
	acmeViewer := mint("acme-viewer", "viewer", "acme")

	check := func(name, token, method, path string, body any, want int) {
		t.Helper()
		if r := h.Do(method, path, token, body); r.Status != want {
			t.Errorf("%s: %s %s = %d, want %d: %s", name, method, path, r.Status, want, r.Body)
		}
	}
	check("no token", "", "GET", "/api/v1/objects", nil, 401)
	check("garbage token", "wwt_garbage", "GET", "/api/v1/objects", nil, 401)
	check("viewer reads", viewer, "GET", "/api/v1/objects/acme:a1", nil, 200)
	check("viewer cannot register", viewer, "POST", "/api/v1/objects", map[string]any{"code": "acme:v"}, 403)
	check("viewer cannot revoke", viewer, "POST", "/api/v1/objects/acme:a1/revoke", nil, 403)
	check("viewer cannot create tokens", viewer, "POST", "/api/v1/tokens", map[string]any{"name": "x", "role": "admin"}, 403)
	check("acme viewer cannot register", acmeViewer, "POST", "/api/v1/objects", map[string]any{"code": "acme:v"}, 403)
	check("acme operator registers in acme", acmeOp, "POST", "/api/v1/objects", map[string]any{"code": "acme:a2"}, 201)
	check("acme operator cannot register in beta", acmeOp, "POST", "/api/v1/objects", map[string]any{"code": "beta:b2"}, 403)
	check("acme operator cannot see beta object", acmeOp, "GET", "/api/v1/objects/beta:b1", nil, 404)
	check("acme operator cannot resolve beta object", acmeOp, "GET", "/api/v1/resolve/beta:b1", nil, 404)
	check("acme operator cannot revoke beta object", acmeOp, "POST", "/api/v1/objects/beta:b1/revoke", nil, 404)
	check("acme operator cannot read beta credential", acmeOp, "GET", "/api/v1/objects/beta:b1/credential", nil, 404)
	check("acme operator cannot create tenants", acmeOp, "POST", "/api/v1/tenants", map[string]any{"name": "gamma"}, 403)
	check("acme operator cannot list beta", acmeOp, "GET", "/api/v1/objects?tenant=beta", nil, 403)

	var list struct{ Objects []object }
	r := h.Do("GET", "/api/v1/objects", acmeViewer, nil)
	r.JSON(t, &list)
	for _, o := range list.Objects {
		if o.Tenant != "acme" {
			t.Errorf("acme token listed %s", o.Code)
		}
	}
	if len(list.Objects) != 2 {
		t.Errorf("acme token sees %d objects, want 2", len(list.Objects))
	}
	// Tenant-bound tokens see only their tenant's audit entries.
	entries := string(h.Do("GET", "/api/v1/audit/entries", acmeViewer, nil).Body)
	if strings.Contains(entries, "beta") {
		t.Errorf("acme token saw beta audit entries")
	}

	// Every write names the token that made it.
	all := string(h.Admin("GET", "/api/v1/audit/entries", nil).Body)
	if !strings.Contains(all, `"actor":"acme-op"`) {
		t.Errorf("audit entries do not name the acme-op token:\n%s", all)
	}
	// A revoked token stops working.
	h.MustAdmin(200, "DELETE", "/api/v1/tokens/acme-op", nil)
	check("revoked token", acmeOp, "GET", "/api/v1/objects", nil, 401)
}

// TestLifecycle covers rotation with overlap, quarantine, reinstatement,
// revocation and the admission answers at each step.
func TestLifecycle(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	h := StartClock(t, clock.Now)
	setupAcme(t, h)

	var reg struct{ Object object }
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:m1", "key_alg": "ed25519"}).JSON(t, &reg)
	oldDID, oldSerial := reg.Object.DID, reg.Object.Keys[0].CertSerial
	admission := func(query string) string {
		t.Helper()
		m := h.MustAdmin(200, "GET", "/api/v1/objects/acme:m1/admission?"+query, nil).Map(t)
		return m["status"].(string)
	}
	if got := admission("did=" + oldDID); got != "active" {
		t.Fatalf("admission %s, want active", got)
	}

	var rot struct{ Object object }
	h.MustAdmin(200, "POST", "/api/v1/objects/acme:m1/rotate", map[string]any{"overlap": "1h"}).JSON(t, &rot)
	if rot.Object.DID == oldDID || len(rot.Object.Keys) != 2 || rot.Object.Keys[0].Status != "retiring" {
		t.Fatalf("after rotation: %+v", rot.Object)
	}
	if rot.Object.Number != reg.Object.Number {
		t.Errorf("rotation changed the number %s → %s", reg.Object.Number, rot.Object.Number)
	}
	if got := admission("did=" + oldDID); got != "active" {
		t.Errorf("old key during overlap: %s, want active", got)
	}
	if got := admission("did=" + rot.Object.DID); got != "active" {
		t.Errorf("new key: %s, want active", got)
	}
	// The old DID still resolves to the object (history), the new one too.
	for _, did := range []string{oldDID, rot.Object.DID} {
		h.MustAdmin(200, "GET", "/api/v1/resolve/"+did, nil)
	}
	clock.Advance(2 * time.Hour)
	if got := admission("did=" + oldDID); got != "revoked" {
		t.Errorf("old key after overlap: %s, want revoked", got)
	}
	n, err := h.Registry().RetireDue(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("RetireDue = %d, %v; want 1", n, err)
	}
	crl := h.Do("GET", "/api/v1/ca/crl", "", nil)
	parsed, err := x509.ParseRevocationList(crl.Body)
	if err != nil {
		t.Fatalf("CRL: %v", err)
	}
	if len(parsed.RevokedCertificateEntries) != 1 || fmt.Sprintf("%x", parsed.RevokedCertificateEntries[0].SerialNumber.Bytes()) != oldSerial {
		t.Errorf("CRL entries %+v, want serial %s", parsed.RevokedCertificateEntries, oldSerial)
	}
	if err := parsed.CheckSignatureFrom(h.CA().Certificate()); err != nil {
		t.Errorf("CRL signature: %v", err)
	}

	h.MustWanwu("ctl", "object", "quarantine", "acme:m1", "--reason", "suspicious traffic")
	if got := admission("did=" + rot.Object.DID); got != "quarantined" {
		t.Errorf("quarantined admission: %s", got)
	}
	if r := h.Admin("POST", "/api/v1/objects/acme:m1/quarantine", nil); r.Status != 409 {
		t.Errorf("double quarantine: %d", r.Status)
	}
	h.MustWanwu("ctl", "object", "reinstate", "acme:m1")
	if got := admission(""); got != "active" {
		t.Errorf("reinstated admission: %s", got)
	}
	h.MustWanwu("ctl", "object", "revoke", "acme:m1", "--reason", "decommissioned", "--yes")
	if got := admission("did=" + rot.Object.DID); got != "revoked" {
		t.Errorf("revoked admission: %s", got)
	}
	if r := h.Admin("POST", "/api/v1/objects/acme:m1/rotate", map[string]any{}); r.Status != 409 {
		t.Errorf("rotating a revoked object: %d", r.Status)
	}
	if r := h.Admin("POST", "/api/v1/objects/acme:m1/reinstate", nil); r.Status != 409 {
		t.Errorf("reinstating a revoked object: %d", r.Status)
	}
	if got := h.MustAdmin(200, "GET", "/api/v1/objects/acme:nobody/admission", nil).Map(t)["status"]; got != "unknown" {
		t.Errorf("unknown device admission: %v", got)
	}
	// Another object's key presented under this code is not admitted.
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:m2"})
	var m2 object
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:m2", nil).JSON(t, &m2)
	if got := h.MustAdmin(200, "GET", "/api/v1/objects/acme:m2/admission?did="+oldDID, nil).Map(t)["status"]; got != "unknown" {
		t.Errorf("foreign key admission: %v", got)
	}
	// The audit log holds the whole story.
	entries := string(h.Admin("GET", "/api/v1/audit/entries", nil).Body)
	for _, kind := range []string{"object.registered", "credential.issued", "key.rotated", "key.revoked", "object.quarantined", "object.reinstated", "object.revoked"} {
		if !strings.Contains(entries, `"kind":"`+kind+`"`) {
			t.Errorf("audit log lacks %s", kind)
		}
	}
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

// TestBulkImport registers good rows, reports bad ones by line, and is
// idempotent when the same file is imported again.
func TestBulkImport(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	k, _ := keys.Generate(keys.P256)
	did, _ := keys.DID(k.Public())
	csv := strings.Join([]string{
		"code,kind,model,path,tags,public_key,key_alg",
		"acme:edge-1,edge,,plant-1,,,",
		"acme:s-1,device,acme:pump@1.0.0,plant-1/line-1,zone=n;crit=yes,,ed25519",
		"acme:s-2,device,,plant-1/line-1,," + did + ",",
		"Acme:bad,device,,,,,",
		"acme:s-3,toaster,,,,,",
		"acme:s-4,device,acme:pump@9.9.9,,,,",
		"acme:s-1,device,,,,,",
		"acme:s-5,device,,plant-2,zone,,",
		"beta:x,device,,,,,",
	}, "\n") + "\n"
	path := filepath.Join(t.TempDir(), "fleet.csv")
	if err := os.WriteFile(path, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	keysDir := filepath.Join(t.TempDir(), "keys")
	out, _, code := h.Wanwu("ctl", "object", "import", path, "--out", keysDir)
	if code == 0 {
		t.Errorf("import with bad rows exited 0")
	}
	for _, want := range []string{
		"line 2: created acme:edge-1", "line 3: created acme:s-1", "line 4: created acme:s-2",
		"line 5: error", "line 6: error", "line 7: error", "line 8: error", "line 9: error", "line 10: error",
		"3 created, 0 unchanged, 6 errors",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(keysDir, "acme_s-1", "key.pem")); err != nil {
		t.Errorf("hub-generated key not written: %v", err)
	}
	var s2 object
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:s-2", nil).JSON(t, &s2)
	if s2.DID != did {
		t.Errorf("s-2 DID %s, want the CSV's %s", s2.DID, did)
	}
	var s1 object
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:s-1", nil).JSON(t, &s1)
	if s1.Tags["crit"] != "yes" || strings.Join(s1.Path, "/") != "plant-1/line-1" {
		t.Errorf("s-1 attributes: %+v", s1)
	}
	sizeBefore := auditSize(t, h)
	out, _, _ = h.Wanwu("ctl", "object", "import", path)
	if !strings.Contains(out, "0 created, 3 unchanged, 6 errors") {
		t.Errorf("re-import is not idempotent:\n%s", out)
	}
	if auditSize(t, h) != sizeBefore {
		t.Errorf("re-import wrote audit entries")
	}
	// A changed attribute for an existing code is an error, not a silent update.
	changed := "code,path\nacme:s-1,plant-9\n"
	r := h.Admin("POST", "/api/v1/objects/import", changed)
	if r.Status != http.StatusMultiStatus || !strings.Contains(string(r.Body), `"field": "path"`) {
		t.Errorf("changed row: %d %s", r.Status, r.Body)
	}
	// Listing by hierarchy and tag.
	var list struct{ Objects []object }
	h.MustAdmin(200, "GET", "/api/v1/objects?under=plant-1/line-1&tag=zone=n", nil).JSON(t, &list)
	if len(list.Objects) != 1 || list.Objects[0].Code != "acme:s-1" {
		t.Errorf("filtered list: %+v", list.Objects)
	}
	h.MustAdmin(200, "GET", "/api/v1/objects?under=plant-1", nil).JSON(t, &list)
	if len(list.Objects) != 3 {
		t.Errorf("under plant-1: %d objects, want 3", len(list.Objects))
	}
	// A header that is not ours rejects the whole file with a reason.
	if r := h.Admin("POST", "/api/v1/objects/import", "name,colour\nx,y\n"); r.Status != 400 {
		t.Errorf("bad header: %d %s", r.Status, r.Body)
	}
}

func makeCSR(t *testing.T, alg keys.Alg) ([]byte, []byte) {
	t.Helper()
	k, err := keys.Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := keys.MarshalPrivateKeyPEM(k)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), keyPEM
}

// TestZeroTouchClaim: a device with a claim token and its own key pair gets
// its identity once; the token's use count, expiry and revocation hold, and
// every refusal is the same answer, counted by reason.
func TestZeroTouchClaim(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	h := StartClock(t, clock.Now)
	setupAcme(t, h)
	token := claimToken(t, h, "--max-uses", "2", "--ttl", "1h", "--model", "acme:pump@1.0.0", "--path", "plant-7", "--tag", "batch=b42")

	dir := t.TempDir()
	out := h.MustWanwu("ctl", "claim", "use", "--claim", token, "--id", "sensor-a", "--out", filepath.Join(dir, "a"))
	if !strings.Contains(out, "acme:sensor-a") {
		t.Fatalf("claim use: %s", out)
	}
	h.MustWanwu("verify", "credential", filepath.Join(dir, "a", "credential.jwt"))
	var a object
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:sensor-a", nil).JSON(t, &a)
	if a.Tags["batch"] != "b42" || strings.Join(a.Path, "/") != "plant-7" {
		t.Errorf("claimed object lacks the template: %+v", a)
	}
	// The same key cannot claim twice.
	_, errs, code := h.Wanwu("ctl", "claim", "use", "--claim", token, "--key", filepath.Join(dir, "a", "key.pem"), "--id", "sensor-a2", "--out", filepath.Join(dir, "a2"))
	if code == 0 || !strings.Contains(errs, "409") {
		t.Errorf("second claim with the same key: exit %d %s", code, errs)
	}
	// Second device, derived id, its public key instead of a CSR.
	k, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	did, _ := keys.DID(k.Public())
	r := h.Do("POST", "/api/v1/claim", token, map[string]any{"public_key": did})
	if r.Status != 201 {
		t.Fatalf("second device: %d %s", r.Status, r.Body)
	}
	var reg struct {
		Object                  struct{ Code, Number, DID string }
		Certificate, Credential string
	}
	r.JSON(t, &reg)
	if reg.Object.DID != did || !strings.HasPrefix(reg.Object.Code, "acme:d-") || reg.Object.Number == "" || reg.Certificate == "" || reg.Credential == "" {
		t.Errorf("claimed by public key: %+v", reg)
	}

	// Refusals: used up, expired, revoked, unknown, none: one answer.
	csr3, _ := makeCSR(t, keys.P256)
	body := map[string]any{"csr": string(csr3)}
	expired := claimToken(t, h, "--ttl", "1m")
	revoked := claimToken(t, h, "--max-uses", "5")
	var list struct {
		Claims []struct{ ID string }
	}
	h.MustAdmin(200, "GET", "/api/v1/claims", nil).JSON(t, &list)
	revokedID := list.Claims[len(list.Claims)-1].ID
	if out := h.MustWanwu("ctl", "claim", "revoke", revokedID, "--reason", "batch recalled"); !strings.Contains(out, revokedID+" revoked") {
		t.Errorf("claim revoke: %s", out)
	}
	clock.Advance(2 * time.Minute)
	want := h.Do("POST", "/api/v1/claim", token, body) // used up
	if want.Status != 401 || !strings.Contains(string(want.Body), `"claim_refused"`) {
		t.Fatalf("used-up token: %d %s", want.Status, want.Body)
	}
	for name, tok := range map[string]string{"expired": expired, "revoked": revoked, "unknown": "wwc_" + strings.Repeat("x", 43), "none": ""} {
		if r := h.Do("POST", "/api/v1/claim", tok, body); r.Status != want.Status || !bytes.Equal(r.Body, want.Body) {
			t.Errorf("%s token: %d %s, want the same answer as a used-up one: %s", name, r.Status, r.Body, want.Body)
		}
	}
	metrics := string(h.Do("GET", "/metrics", "", nil).Body)
	for _, reason := range []string{"used_up", "expired", "revoked", "unknown", "no_token"} {
		if !strings.Contains(metrics, `wanwu_api_claims_refused_total{reason="`+reason+`"} 1`) {
			t.Errorf("metrics lack one refusal for %s", reason)
		}
	}

	table := h.MustWanwu("ctl", "claim", "list")
	for _, w := range []string{"USES", "2/2", "used up", "expired", "revoked"} {
		if !strings.Contains(table, w) {
			t.Errorf("claim list lacks %q:\n%s", w, table)
		}
	}
	entries := string(h.Admin("GET", "/api/v1/audit/entries", nil).Body)
	for kind, n := range map[string]int{"claim.created": 3, "claim.used": 2, "claim.revoked": 1} {
		if got := strings.Count(entries, `"kind":"`+kind+`"`); got != n {
			t.Errorf("%d %s entries, want %d", got, kind, n)
		}
	}
}

// TestClaimRateLimit: refused claims are charged to their source address,
// which is refused with 429 once over its budget, valid token or not.
func TestClaimRateLimit(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	token := claimToken(t, h)
	csr, _ := makeCSR(t, keys.P256)
	body := map[string]any{"csr": string(csr)}
	for i := range 10 {
		if r := h.Do("POST", "/api/v1/claim", "wwc_guess"+fmt.Sprint(i), body); r.Status != 401 {
			t.Fatalf("guess %d: %d %s", i, r.Status, r.Body)
		}
	}
	r := h.Do("POST", "/api/v1/claim", token, body)
	if r.Status != 429 || !strings.Contains(string(r.Body), "rate_limited") {
		t.Errorf("after 10 refusals: %d %s, want 429", r.Status, r.Body)
	}
	if !strings.Contains(string(h.Do("GET", "/metrics", "", nil).Body), `wanwu_api_claims_refused_total{reason="rate_limited"} 1`) {
		t.Error("the rate-limited claim is not counted")
	}
}

// claimToken creates a claim token for acme with ctl and returns its secret.
func claimToken(t *testing.T, h *Hub, flags ...string) string {
	t.Helper()
	out := h.MustWanwu(append([]string{"ctl", "claim", "create", "--tenant", "acme", "--json"}, flags...)...)
	var v struct{ Token string }
	if err := json.Unmarshal([]byte(out), &v); err != nil || !strings.HasPrefix(v.Token, "wwc_") {
		t.Fatalf("claim create: %v: %s", err, out)
	}
	return v.Token
}

// TestRestart: everything registered before a restart still resolves and
// verifies after it, and the log continues consistently.
func TestRestart(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	dev := filepath.Join(t.TempDir(), "d")
	h.MustWanwu("ctl", "object", "register", "acme:r1", "--model", "acme:pump@1.0.0", "--out", dev)
	var before object
	h.MustAdmin(200, "GET", "/api/v1/resolve/acme:r1", nil).JSON(t, &before)
	head := filepath.Join(t.TempDir(), "head.txt")
	h.MustWanwu("ctl", "audit", "head", "--out", head)
	oldToken := h.AdminToken
	caBefore := h.Do("GET", "/api/v1/ca.pem", "", nil).Body

	h.Restart()
	if h.AdminToken != oldToken {
		t.Errorf("admin token changed across restart")
	}
	if got := h.Do("GET", "/api/v1/ca.pem", "", nil).Body; string(got) != string(caBefore) {
		t.Errorf("CA changed across restart")
	}
	for _, key := range []string{"acme:r1", before.Number, before.DID} {
		var o object
		h.MustAdmin(200, "GET", "/api/v1/resolve/"+key, nil).JSON(t, &o)
		if o.Code != "acme:r1" || o.Number != before.Number {
			t.Errorf("after restart resolve %s = %+v", key, o)
		}
	}
	h.MustWanwu("verify", "credential", filepath.Join(dev, "credential.jwt"))
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:r2"})
	out := h.MustWanwu("verify", "log", "--head", head)
	if !strings.Contains(out, "consistent") {
		t.Errorf("verify log after restart: %s", out)
	}
	if r := h.Do("GET", "/readyz", "", nil); r.Status != 200 {
		t.Errorf("readyz after restart: %d %s", r.Status, r.Body)
	}
}

// TestAuditTamper: flipping one byte of a stored entry makes offline
// verification fail loudly.
func TestAuditTamper(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:t1"})
	head := filepath.Join(t.TempDir(), "head.txt")
	h.MustWanwu("ctl", "audit", "head", "--out", head)
	h.MustWanwu("verify", "log", "--head", head)
	h.Stop()

	db, err := sql.Open("sqlite", filepath.Join(h.Dir, "wanwu.db"))
	if err != nil {
		t.Fatal(err)
	}
	var leaf []byte
	if err := db.QueryRow(`SELECT leaf FROM audit_leaves WHERE idx = 2`).Scan(&leaf); err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(leaf), "acme")
	if i < 0 {
		t.Fatalf("leaf %q does not mention acme", leaf)
	}
	leaf[i] = 'A' // acme → Acme: still valid JSON, different bytes
	if _, err := db.Exec(`UPDATE audit_leaves SET leaf = ? WHERE idx = 2`, leaf); err != nil {
		t.Fatal(err)
	}
	db.Close()

	out, errs, code := h.Wanwu("verify", "log", "--head", head)
	if code == 0 {
		t.Fatalf("verify log passed a tampered log: %s", out)
	}
	if !strings.Contains(errs, "TAMPERED") {
		t.Errorf("verify log error does not say TAMPERED: %s", errs)
	}
	// A head signed by another key is refused as well.
	forged := strings.Replace(mustRead(t, head), "\n\n", "\n\n", 1)
	other := filepath.Join(t.TempDir(), "other.pub")
	k, _, _ := keys.LoadOrCreateEd25519(filepath.Join(t.TempDir(), "k"))
	pub, _ := keys.MarshalPublicKeyPEM(k.Public())
	os.WriteFile(other, pub, 0o644)
	os.WriteFile(head, []byte(forged), 0o644)
	if _, _, code := h.Wanwu("verify", "log", "--head", head, "--hub-key", other); code == 0 {
		t.Errorf("verify log accepted heads under a foreign key")
	}
}

func mustRead(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAuditRewriteWithoutHeads: an entry edited offline, with the tree
// recomputed from the edited leaves and the stored heads deleted, is
// internally consistent. 'wanwu verify log' must not call it ok: only the
// hub's signed checkpoints (which the hub stores itself) or a head saved
// elsewhere tie the tree to the hub.
func TestAuditRewriteWithoutHeads(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:w1"})
	h.Stop()

	// The hub signed its own checkpoint; no head had to be fetched.
	out := h.MustWanwu("verify", "log")
	if !strings.Contains(out, "ok:") || strings.Contains(out, " 0 signed heads") {
		t.Fatalf("verify log of an untouched log: %s", out)
	}

	db, err := sql.Open("sqlite", filepath.Join(h.Dir, "wanwu.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT leaf FROM audit_leaves ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	var leaves [][]byte
	for rows.Next() {
		var leaf []byte
		if err := rows.Scan(&leaf); err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, leaf)
	}
	rows.Close()
	edited := false
	for i, leaf := range leaves {
		if j := strings.Index(string(leaf), "acme:w1"); j >= 0 {
			leaves[i][j] = 'A'
			edited = true
		}
	}
	if !edited {
		t.Fatal("no leaf mentions acme:w1")
	}
	// Recompute every node and the state from the edited leaves, as
	// audit.AppendTx would have stored them.
	fact := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := fact.NewEmptyRange(0)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DELETE FROM audit_nodes`, `DELETE FROM audit_heads`} {
		if _, err := tx.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for i, leaf := range leaves {
		if _, err := tx.Exec(`UPDATE audit_leaves SET leaf = ? WHERE idx = ?`, leaf, i); err != nil {
			t.Fatal(err)
		}
		err := r.Append(rfc6962.DefaultHasher.HashLeaf(leaf), func(id compact.NodeID, hash []byte) {
			if _, err := tx.Exec(`INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)`, id.Level, id.Index, hash); err != nil {
				t.Fatal(err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var state []byte
	for _, hash := range r.Hashes() {
		state = append(state, hash...)
	}
	if _, err := tx.Exec(`UPDATE audit_state SET size = ?, range = ?`, len(leaves), state); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	out, errs, code := h.Wanwu("verify", "log")
	if code == 0 {
		t.Fatalf("verify log passed a rewritten log without heads: %s", out)
	}
	if !strings.Contains(errs, "no signed checkpoint") {
		t.Errorf("verify log does not say why: %s", errs)
	}
	out, errs, code = h.Wanwu("verify", "log", "--allow-unsigned")
	if code != 0 || !strings.Contains(out, "warning: no signed checkpoint") {
		t.Errorf("verify log --allow-unsigned: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
}

// TestModelFileErrors: ctl says where a model file stops being JSON, and
// says each problem of an invalid model once.
func TestModelFileErrors(t *testing.T) {
	h := Start(t)
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.json")
	os.WriteFile(broken, []byte("{\"id\": \"acme:x\",\n \"version\": \"1.0.0\",\n \"properties\": {\n"), 0o644)
	_, stderr, code := h.Wanwu("ctl", "model", "register", broken)
	if code == 0 || !strings.Contains(stderr, "line 4, column 1") {
		t.Errorf("broken JSON: exit %d, %q; want the line and column", code, stderr)
	}
	h.MustWanwu("ctl", "tenant", "create", "acme")
	invalid := filepath.Join(dir, "invalid.json")
	os.WriteFile(invalid, []byte(`{"id":"acme:bad","version":"1.0.0","properties":{"t":{"type":"number","unit":"furlongs"}}}`), 0o644)
	_, stderr, code = h.Wanwu("ctl", "model", "register", invalid)
	if code == 0 || strings.Count(stderr, "furlongs") != 1 {
		t.Errorf("invalid model: exit %d, %q; want the problem said once", code, stderr)
	}
}

// TestImportKeepsGeneratedKeys: an import without --out still writes the
// private keys the hub generated (they are shown once), to a directory it
// names.
func TestImportKeepsGeneratedKeys(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	t.Chdir(t.TempDir())
	os.WriteFile("devices.csv", []byte("code\nacme:kept-1\n"), 0o644)
	_, stderr, code := h.Wanwu("ctl", "object", "import", "devices.csv")
	if code != 0 || !strings.Contains(stderr, "writing the keys the hub generated to wanwu-keys-") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
	keys, _ := filepath.Glob("wanwu-keys-*/acme_kept-1/key.pem")
	if len(keys) != 1 {
		t.Fatalf("no key file written: %v", keys)
	}
}

package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/keys"
)

func newCA(t *testing.T) (*CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	c, created, err := LoadOrCreate(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatal("new directory: created = false")
	}
	return c, dir
}

func genKey(t *testing.T, alg keys.Alg) crypto.Signer {
	t.Helper()
	k, err := keys.Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLoadOrCreate(t *testing.T) {
	c, dir := newCA(t)
	cert := c.Certificate()
	if cert.Subject.CommonName != "wanwu hub CA test" {
		t.Errorf("CN = %q", cert.Subject.CommonName)
	}
	if !cert.IsCA || cert.MaxPathLen != 0 || !cert.MaxPathLenZero || !cert.BasicConstraintsValid {
		t.Errorf("basic constraints: IsCA=%v MaxPathLen=%d zero=%v", cert.IsCA, cert.MaxPathLen, cert.MaxPathLenZero)
	}
	if cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("KeyUsage = %v", cert.KeyUsage)
	}
	if alg, _ := keys.AlgOf(cert.PublicKey); alg != keys.P256 {
		t.Errorf("CA key alg %q", alg)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life != Lifetime {
		t.Errorf("lifetime %v", life)
	}
	if len(cert.SubjectKeyId) != 20 {
		t.Errorf("SubjectKeyId %x", cert.SubjectKeyId)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	for name, mode := range map[string]os.FileMode{KeyFile: 0o600, CertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2 (temporary files left?)", len(entries))
	}

	again, created, err := LoadOrCreate(dir, "other name")
	if err != nil || created {
		t.Fatalf("reload: created=%v err=%v", created, err)
	}
	if !bytes.Equal(again.Certificate().Raw, cert.Raw) || !bytes.Equal(again.CertPEM(), c.CertPEM()) {
		t.Fatal("reload gave a different CA")
	}
	// A certificate from the first instance verifies against the second.
	leaf := issue(t, c, IssueRequest{Code: "acme:pump-1", PublicKey: genKey(t, keys.P256).Public(), Validity: time.Hour})
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: again.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("cert from first instance does not verify with the reloaded CA: %v", err)
	}
}

func TestLoadOrCreateRefusesInsecureKey(t *testing.T) {
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644, 0o700} {
		_, dir := newCA(t)
		keyPath := filepath.Join(dir, KeyFile)
		if err := os.Chmod(keyPath, mode); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadOrCreate(dir, "test")
		if mode&0o077 != 0 {
			if !errors.Is(err, ErrInsecureKey) || !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("mode %04o: err = %v, want ErrInsecureKey with advice", mode, err)
			}
		} else if err != nil {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	// Stricter than 0600 is fine.
	_, dir := newCA(t)
	os.Chmod(filepath.Join(dir, KeyFile), 0o400)
	if _, _, err := LoadOrCreate(dir, "test"); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestLoadOrCreateBrokenStates(t *testing.T) {
	t.Run("cert without key", func(t *testing.T) {
		_, dir := newCA(t)
		os.Remove(filepath.Join(dir, KeyFile))
		if _, _, err := LoadOrCreate(dir, "test"); err == nil || !strings.Contains(err.Error(), "restore the key") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("key without cert", func(t *testing.T) {
		c, dir := newCA(t)
		os.Remove(filepath.Join(dir, CertFile))
		c2, created, err := LoadOrCreate(dir, "test")
		if err != nil || !created {
			t.Fatalf("created=%v err=%v", created, err)
		}
		if keys.Fingerprint(c2.Certificate().PublicKey) != keys.Fingerprint(c.Certificate().PublicKey) {
			t.Fatal("recreated certificate has a different key")
		}
	})
	t.Run("cert of another key", func(t *testing.T) {
		_, dir := newCA(t)
		_, other := newCA(t)
		b, _ := os.ReadFile(filepath.Join(other, CertFile))
		os.WriteFile(filepath.Join(dir, CertFile), b, 0o644)
		if _, _, err := LoadOrCreate(dir, "test"); err == nil || !strings.Contains(err.Error(), "does not belong") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("garbage key", func(t *testing.T) {
		_, dir := newCA(t)
		os.WriteFile(filepath.Join(dir, KeyFile), []byte("junk"), 0o600)
		if _, _, err := LoadOrCreate(dir, "test"); !errors.Is(err, keys.ErrInvalidKey) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("leaf as CA cert", func(t *testing.T) {
		c, dir := newCA(t)
		leaf, err := c.IssueServer([]string{"hub"}, time.Hour, c.key.Public())
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, CertFile), EncodeCertPEM(leaf), 0o644)
		if _, _, err := LoadOrCreate(dir, "test"); err == nil || !strings.Contains(err.Error(), "not a CA") {
			t.Fatalf("err = %v", err)
		}
	})
}

func issue(t *testing.T, c *CA, r IssueRequest) *x509.Certificate {
	t.Helper()
	cert, err := c.Issue(r)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestIssue(t *testing.T) {
	c, _ := newCA(t)
	for _, alg := range []keys.Alg{keys.P256, keys.Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			k := genKey(t, alg)
			did, _ := keys.DID(k.Public())
			number := netip.MustParseAddr("fd33:da2a:df1e:41a6:38e1:8884:397f:547c")
			before := time.Now()
			cert := issue(t, c, IssueRequest{
				Code: "acme:pump-1", DID: did + "#key-1", Number: number, PublicKey: k.Public(),
				Validity: 24 * time.Hour, Tenant: "acme",
			})

			chains, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			if err != nil || len(chains) != 1 {
				t.Fatalf("Verify: %v", err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
				t.Error("client certificate verifies for server auth")
			}
			if cert.Subject.CommonName != "acme:pump-1" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "acme" {
				t.Errorf("subject %v", cert.Subject)
			}
			wantURIs := []string{"wanwu:acme:pump-1", did}
			if len(cert.URIs) != 2 || cert.URIs[0].String() != wantURIs[0] || cert.URIs[1].String() != wantURIs[1] {
				t.Errorf("URIs %v, want %v", cert.URIs, wantURIs)
			}
			if len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.IP(number.AsSlice())) {
				t.Errorf("IPs %v", cert.IPAddresses)
			}
			if cert.KeyUsage != x509.KeyUsageDigitalSignature || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
				t.Errorf("usage %v %v", cert.KeyUsage, cert.ExtKeyUsage)
			}
			if cert.IsCA {
				t.Error("leaf is a CA")
			}
			if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 || cert.SerialNumber.BitLen() < 64 {
				t.Errorf("serial %x", cert.SerialNumber)
			}
			if !bytes.Equal(cert.AuthorityKeyId, c.Certificate().SubjectKeyId) || len(cert.SubjectKeyId) == 0 {
				t.Errorf("key ids: AKID %x SKID %x", cert.AuthorityKeyId, cert.SubjectKeyId)
			}
			skew := before.Sub(cert.NotBefore)
			if skew < ClockSkew-time.Second || skew > ClockSkew+time.Minute {
				t.Errorf("NotBefore %v is %v before now", cert.NotBefore, skew)
			}
			if got := cert.NotAfter.Sub(cert.NotBefore); got != 24*time.Hour {
				t.Errorf("validity %v", got)
			}
			if keys.Fingerprint(cert.PublicKey) != keys.Fingerprint(k.Public()) {
				t.Error("wrong public key in certificate")
			}
			if got, err := CodeFromCert(cert); err != nil || got != "acme:pump-1" {
				t.Errorf("CodeFromCert = %q, %v", got, err)
			}
			back, err := ParseCertPEM(EncodeCertPEM(cert))
			if err != nil || !bytes.Equal(back.Raw, cert.Raw) {
				t.Errorf("PEM round trip: %v", err)
			}
		})
	}
}

func TestIssueMinimalAndCapped(t *testing.T) {
	c, _ := newCA(t)
	k := genKey(t, keys.P256)
	cert := issue(t, c, IssueRequest{Code: "acme:x", PublicKey: k.Public(), Validity: 2 * Lifetime})
	if !cert.NotAfter.Equal(c.Certificate().NotAfter) {
		t.Errorf("NotAfter %v not capped at CA's %v", cert.NotAfter, c.Certificate().NotAfter)
	}
	if len(cert.URIs) != 1 || len(cert.IPAddresses) != 0 || len(cert.Subject.Organization) != 0 {
		t.Errorf("optional fields present: %v %v %v", cert.URIs, cert.IPAddresses, cert.Subject.Organization)
	}
	nb := time.Now().Add(time.Hour).Truncate(time.Second)
	cert = issue(t, c, IssueRequest{Code: "acme:x", PublicKey: k.Public(), Validity: time.Hour, NotBefore: nb})
	if !cert.NotBefore.Equal(nb) || !cert.NotAfter.Equal(nb.Add(time.Hour)) {
		t.Errorf("window %v–%v", cert.NotBefore, cert.NotAfter)
	}
	// Serials differ between certificates for the same request.
	other := issue(t, c, IssueRequest{Code: "acme:x", PublicKey: k.Public(), Validity: time.Hour, NotBefore: nb})
	if other.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Error("two certificates share a serial")
	}
}

func TestIssueRejects(t *testing.T) {
	c, _ := newCA(t)
	k := genKey(t, keys.P256)
	otherDID, _ := keys.DID(genKey(t, keys.Ed25519).Public())
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ok := IssueRequest{Code: "acme:pump-1", PublicKey: k.Public(), Validity: time.Hour}
	tests := []struct {
		name string
		mod  func(*IssueRequest)
	}{
		{"bad code", func(r *IssueRequest) { r.Code = "acme:pump/1" }},
		{"no code", func(r *IssueRequest) { r.Code = "" }},
		{"no key", func(r *IssueRequest) { r.PublicKey = nil }},
		{"rsa key", func(r *IssueRequest) { r.PublicKey = rsaKey.Public() }},
		{"p384 key", func(r *IssueRequest) { r.PublicKey = p384.Public() }},
		{"zero validity", func(r *IssueRequest) { r.Validity = 0 }},
		{"negative validity", func(r *IssueRequest) { r.Validity = -time.Hour }},
		{"did of another key", func(r *IssueRequest) { r.DID = otherDID }},
		{"bad did", func(r *IssueRequest) { r.DID = "did:web:example.com" }},
		{"zoned number", func(r *IssueRequest) { r.Number = netip.MustParseAddr("fe80::1%eth0") }},
		{"window after CA expiry", func(r *IssueRequest) { r.NotBefore = c.Certificate().NotAfter.Add(time.Hour) }},
		{"window in the past", func(r *IssueRequest) { r.NotBefore = time.Now().Add(-48 * time.Hour) }},
	}
	for _, tt := range tests {
		r := ok
		tt.mod(&r)
		if _, err := c.Issue(r); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: err = %v, want ErrInvalidRequest", tt.name, err)
		}
	}
}

func TestIssueServer(t *testing.T) {
	c, _ := newCA(t)
	k := genKey(t, keys.P256)
	cert, err := c.IssueServer([]string{"hub.example.com", "*.edge.example.com", "127.0.0.1", "::1"}, 24*time.Hour, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "hub.example.com" || len(cert.DNSNames) != 2 || len(cert.IPAddresses) != 2 {
		t.Errorf("names: CN %q DNS %v IP %v", cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses)
	}
	for _, host := range []string{"hub.example.com", "a.edge.example.com", "127.0.0.1", "::1"} {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server certificate verifies for client auth")
	}
	if _, err := CodeFromCert(cert); !errors.Is(err, ErrNoCode) {
		t.Errorf("CodeFromCert(server cert) = %v", err)
	}
	for _, bad := range [][]string{nil, {""}, {"hub:8883"}, {"https://hub"}, {"a..b"}, {"fe80::1%eth0"}, {strings.Repeat("a", 64) + ".com"}} {
		if _, err := c.IssueServer(bad, time.Hour, k.Public()); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("IssueServer(%q) = %v", bad, err)
		}
	}
	if _, err := c.IssueServer([]string{"hub"}, 0, k.Public()); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("zero validity: %v", err)
	}
}

func TestCodeFromCert(t *testing.T) {
	mk := func(uris ...string) *x509.Certificate {
		cert := &x509.Certificate{}
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			cert.URIs = append(cert.URIs, u)
		}
		return cert
	}
	tests := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"one", mk("wanwu:acme:pump-1"), "acme:pump-1"},
		{"with did", mk("did:key:z6Mk", "wanwu:acme:pump-1"), "acme:pump-1"},
		{"upper scheme", mk("WANWU:acme:pump-1"), "acme:pump-1"},
		{"nil", nil, ""},
		{"none", mk("did:key:z6Mk"), ""},
		{"two", mk("wanwu:acme:a", "wanwu:acme:b"), ""},
		{"invalid code", mk("wanwu:acme:a.b"), ""},
		{"hierarchical", mk("wanwu://acme/pump"), ""},
	}
	for _, tt := range tests {
		got, err := CodeFromCert(tt.cert)
		if got != tt.want || (tt.want == "") != (err != nil) {
			t.Errorf("%s: CodeFromCert = %q, %v; want %q", tt.name, got, err, tt.want)
		}
		if err != nil && !errors.Is(err, ErrNoCode) {
			t.Errorf("%s: error %v does not wrap ErrNoCode", tt.name, err)
		}
	}
}

func TestCRL(t *testing.T) {
	c, _ := newCA(t)
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	revoked := []Revoked{{Serial: big.NewInt(42), At: at}, {Serial: new(big.Int).Lsh(big.NewInt(1), 127), At: at}}
	der, err := c.CRL(revoked, big.NewInt(7), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(c.Certificate()); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	if crl.Number.Cmp(big.NewInt(7)) != 0 || len(crl.RevokedCertificateEntries) != 2 {
		t.Fatalf("number %v entries %d", crl.Number, len(crl.RevokedCertificateEntries))
	}
	if e := crl.RevokedCertificateEntries[0]; e.SerialNumber.Cmp(big.NewInt(42)) != 0 || !e.RevocationTime.Equal(at) {
		t.Errorf("entry %v %v", e.SerialNumber, e.RevocationTime)
	}
	if d := crl.NextUpdate.Sub(crl.ThisUpdate); d < 24*time.Hour-time.Second || d > 24*time.Hour+time.Second {
		t.Errorf("next update after %v", d)
	}
	if !bytes.Equal(crl.AuthorityKeyId, c.Certificate().SubjectKeyId) {
		t.Error("CRL AKID does not match CA")
	}
	if _, err := c.CRL(nil, big.NewInt(8), time.Hour); err != nil {
		t.Errorf("empty CRL: %v", err)
	}
	for name, f := range map[string]func() error{
		"nil number":      func() error { _, err := c.CRL(nil, nil, time.Hour); return err },
		"negative number": func() error { _, err := c.CRL(nil, big.NewInt(-1), time.Hour); return err },
		"zero interval":   func() error { _, err := c.CRL(nil, big.NewInt(1), 0); return err },
		"nil serial":      func() error { _, err := c.CRL([]Revoked{{At: at}}, big.NewInt(1), time.Hour); return err },
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseCertPEM(t *testing.T) {
	c, _ := newCA(t)
	if _, err := ParseCertPEM(c.CertPEM()); err != nil {
		t.Fatal(err)
	}
	// Callers may not modify the CA through CertPEM's result.
	p := c.CertPEM()
	p[30] ^= 0xff
	if bytes.Equal(p, c.CertPEM()) {
		t.Error("CertPEM returns shared memory")
	}
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, genKey(t, keys.P256))
	for name, b := range map[string][]byte{
		"empty":   nil,
		"junk":    []byte("junk"),
		"csr":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}),
		"bad der": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		if _, err := ParseCertPEM(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestFromCertificate: an edge's copy of the hub CA verifies what the hub
// issued and refuses to sign anything.
func TestFromCertificate(t *testing.T) {
	hub, _ := newCA(t)
	k := genKey(t, keys.P256)
	cert := issue(t, hub, IssueRequest{Code: "acme:pump-1", PublicKey: k.Public(), Validity: time.Hour})

	c, err := FromCertificate(hub.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	if c.CanSign() || !hub.CanSign() {
		t.Fatalf("CanSign: copy %v, hub %v", c.CanSign(), hub.CanSign())
	}
	if !bytes.Equal(c.CertPEM(), hub.CertPEM()) {
		t.Error("CertPEM differs from the hub's")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("a certificate the hub issued does not verify against the copy: %v", err)
	}
	for name, f := range map[string]func() error{
		"issue": func() error {
			_, err := c.Issue(IssueRequest{Code: "acme:x", PublicKey: k.Public(), Validity: time.Hour})
			return err
		},
		"issue server": func() error { _, err := c.IssueServer([]string{"localhost"}, time.Hour, k.Public()); return err },
		"crl":          func() error { _, err := c.CRL(nil, big.NewInt(1), time.Hour); return err },
	} {
		if err := f(); !errors.Is(err, ErrNoKey) {
			t.Errorf("%s: %v, want ErrNoKey", name, err)
		}
	}

	leaf := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	for name, b := range map[string][]byte{
		"empty":            nil,
		"junk":             []byte("junk"),
		"end-entity cert":  leaf,
		"truncated the CA": hub.CertPEM()[:100],
	} {
		if _, err := FromCertificate(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

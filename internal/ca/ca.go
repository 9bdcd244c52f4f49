// Package ca is the hub's certificate authority. It issues the X.509 client
// certificates devices present for mutual TLS (subject: the object's code;
// SANs: "wanwu:<code>", the device's did:key and its IPv6 number), server
// certificates for the hub's own listeners, and certificate revocation lists.
//
// The CA is deliberately plain: one ECDSA P-256 key in a PKCS#8 file the hub
// refuses to use if anyone but its owner can read it, one self-signed
// certificate that may only sign end-entity certificates (MaxPathLen 0), and
// no intermediate. Anything fancier (HSMs, an offline root) can replace
// LoadOrCreate later without changing Issue's callers.
package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// File names inside the CA directory.
const (
	KeyFile  = "ca.key"
	CertFile = "ca.crt"
)

// Lifetime of a newly created CA certificate. Long, because replacing the CA
// means re-enrolling every device; the key file's protection, not expiry, is
// what keeps it safe.
const Lifetime = 20 * 365 * 24 * time.Hour

// ClockSkew is how far back NotBefore is set by default, so that a device
// whose clock runs slightly behind accepts a certificate issued just now.
const ClockSkew = 5 * time.Minute

// URIScheme is the scheme of the URI SAN that carries an object's code:
// "wanwu:acme:pump-1".
const URIScheme = "wanwu"

var (
	// ErrInsecureKey means ca.key is readable or writable by group or others;
	// the CA refuses to use a key that may already be copied.
	ErrInsecureKey = errors.New("CA key file is accessible to group or others")
	// ErrInvalidRequest means an issue request was rejected; the wrapping
	// error names the field.
	ErrInvalidRequest = errors.New("invalid certificate request")
	// ErrNoCode means a certificate carries no valid wanwu code.
	ErrNoCode = errors.New("certificate has no wanwu code")
	// ErrNoKey means the CA holds only its certificate (FromCertificate:
	// an edge's copy of the hub's CA) and cannot sign certificates or CRLs.
	ErrNoKey = errors.New("CA holds no key")
)

// CA is a loaded certificate authority. It is safe for concurrent use.
type CA struct {
	key     crypto.Signer // nil for a CA made by FromCertificate
	cert    *x509.Certificate
	certPEM []byte
	now     func() time.Time // replaced in tests
}

// LoadOrCreate loads the CA from dir (ca.key, ca.crt), or creates both if
// neither exists, naming the new CA "wanwu hub CA <name>". created reports
// whether a new certificate was made.
//
// ca.key must have mode 0600 (or stricter); with any group or other bit set
// it is refused with ErrInsecureKey. A key without its certificate, which is
// what a crash during creation leaves, gets a fresh self-signed certificate;
// a certificate without its key is an error, since the CA could no longer
// sign and silently replacing it would orphan every device.
func LoadOrCreate(dir, name string) (*CA, bool, error) {
	keyPath := filepath.Join(dir, KeyFile)
	certPath := filepath.Join(dir, CertFile)

	key, err := loadKey(keyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, err := os.Stat(certPath); err == nil {
			return nil, false, fmt.Errorf("ca: %s exists but %s does not; restore the key or remove both to start a new CA", certPath, keyPath)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, fmt.Errorf("ca: %w", err)
		}
		s, err := keys.Generate(keys.P256)
		if err != nil {
			return nil, false, fmt.Errorf("ca: generate key: %w", err)
		}
		b, err := keys.MarshalPrivateKeyPEM(s)
		if err != nil {
			return nil, false, fmt.Errorf("ca: %w", err)
		}
		if err := keys.WriteNewFile(keyPath, b, 0o600); err != nil {
			if errors.Is(err, fs.ErrExist) {
				// Another process created the CA first; use its.
				return LoadOrCreate(dir, name)
			}
			return nil, false, fmt.Errorf("ca: %w", err)
		}
		key = s
	case err != nil:
		return nil, false, err
	}

	c := &CA{key: key, now: time.Now}
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		cert, err := c.selfSign(name)
		if err != nil {
			return nil, false, err
		}
		if err := keys.WriteNewFile(certPath, EncodeCertPEM(cert), 0o644); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return LoadOrCreate(dir, name)
			}
			return nil, false, fmt.Errorf("ca: %w", err)
		}
		c.setCert(cert)
		return c, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, false, fmt.Errorf("ca: %s: %w", certPath, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, false, fmt.Errorf("ca: %s is not a CA certificate", certPath)
	}
	if keys.Fingerprint(cert.PublicKey) != keys.Fingerprint(key.Public()) {
		return nil, false, fmt.Errorf("ca: %s does not belong to %s", certPath, keyPath)
	}
	c.setCert(cert)
	return c, false, nil
}

// FromCertificate returns a CA that holds only the CA certificate in
// certPEM and no key: what an edge, which must never hold the hub's CA key,
// uses to verify the client certificates of its devices (Pool) and to hand
// the trust anchor on (CertPEM). Issue, IssueServer and CRL fail with
// ErrNoKey.
func FromCertificate(certPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("ca: not a CA certificate")
	}
	c := &CA{now: time.Now}
	c.setCert(cert)
	return c, nil
}

// CanSign reports whether the CA holds its key (false for FromCertificate).
func (c *CA) CanSign() bool { return c.key != nil }

func loadKey(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("ca: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("ca: %s has mode %04o: %w; run chmod 600 %s", path, perm, ErrInsecureKey, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	k, err := keys.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", path, err)
	}
	return k, nil
}

func (c *CA) selfSign(name string) (*x509.Certificate, error) {
	cn := "wanwu hub CA"
	if name != "" {
		cn += " " + name
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(c.key.Public())
	if err != nil {
		return nil, err
	}
	notBefore := c.now().Add(-ClockSkew)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(Lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, c.key.Public(), c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: self-sign: %w", err)
	}
	return x509.ParseCertificate(der)
}

func (c *CA) setCert(cert *x509.Certificate) {
	c.cert = cert
	c.certPEM = EncodeCertPEM(cert)
}

// Certificate returns the CA certificate. Callers must not modify it.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// CertPEM returns the CA certificate in PEM form, as devices install it.
func (c *CA) CertPEM() []byte { return bytes.Clone(c.certPEM) }

// Pool returns a new pool holding only the CA certificate, for verifying
// client certificates. A fresh pool each call, so no caller can add trust
// anchors behind another's back.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// IssueRequest describes a client certificate to issue.
type IssueRequest struct {
	Code      string           // goes into Subject CN and a URI SAN "wanwu:<code>"
	DID       string           // a second URI SAN (did:key:...), optional; must name PublicKey
	Number    netip.Addr       // IP SAN, optional (zero = none)
	PublicKey crypto.PublicKey // the device's key; P-256 or Ed25519
	Validity  time.Duration    // > 0, capped at the CA's remaining lifetime
	NotBefore time.Time        // zero = now minus ClockSkew
	Tenant    string           // Subject O, optional
}

// Issue returns a client certificate for r: ExtKeyUsage ClientAuth, KeyUsage
// DigitalSignature, a random positive 128-bit serial, and key identifiers
// linking it to the CA. Invalid requests fail with ErrInvalidRequest.
func (c *CA) Issue(r IssueRequest) (*x509.Certificate, error) {
	if _, err := code.Parse(r.Code); err != nil {
		return nil, fmt.Errorf("%w: Code: %w", ErrInvalidRequest, err)
	}
	if _, err := keys.AlgOf(r.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: PublicKey: %w", ErrInvalidRequest, err)
	}
	uris := []*url.URL{{Scheme: URIScheme, Opaque: r.Code}}
	if r.DID != "" {
		// A DID naming a different key than the certificate's would bind
		// the code to someone else's identity, so it must match.
		didKey, err := keys.ParseDID(r.DID)
		if err != nil {
			return nil, fmt.Errorf("%w: DID: %w", ErrInvalidRequest, err)
		}
		if keys.Fingerprint(didKey) != keys.Fingerprint(r.PublicKey) {
			return nil, fmt.Errorf("%w: DID %s does not name PublicKey", ErrInvalidRequest, r.DID)
		}
		did, _, _ := strings.Cut(r.DID, "#")
		u, err := url.Parse(did)
		if err != nil {
			return nil, fmt.Errorf("%w: DID: %w", ErrInvalidRequest, err)
		}
		uris = append(uris, u)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: r.Code},
		URIs:        uris,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if r.Tenant != "" {
		tmpl.Subject.Organization = []string{r.Tenant}
	}
	if r.Number.IsValid() {
		if r.Number.Zone() != "" {
			return nil, fmt.Errorf("%w: Number %s has a zone", ErrInvalidRequest, r.Number)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, r.Number.AsSlice())
	}
	if r.Validity <= 0 {
		return nil, fmt.Errorf("%w: Validity %v must be positive", ErrInvalidRequest, r.Validity)
	}
	return c.sign(tmpl, r.PublicKey, r.NotBefore, r.Validity)
}

// IssueServer returns a server certificate for the hub's TLS listeners, with
// each host as an IP SAN if it parses as an address and a DNS SAN otherwise.
func (c *CA) IssueServer(hosts []string, validity time.Duration, pub crypto.PublicKey) (*x509.Certificate, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%w: no hosts", ErrInvalidRequest)
	}
	if _, err := keys.AlgOf(pub); err != nil {
		return nil, fmt.Errorf("%w: public key: %w", ErrInvalidRequest, err)
	}
	if validity <= 0 {
		return nil, fmt.Errorf("%w: validity %v must be positive", ErrInvalidRequest, validity)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil {
			if a.Zone() != "" {
				return nil, fmt.Errorf("%w: host %q has a zone", ErrInvalidRequest, h)
			}
			tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
			continue
		}
		if err := validDNSName(h); err != nil {
			return nil, fmt.Errorf("%w: host %q: %w", ErrInvalidRequest, h, err)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	return c.sign(tmpl, pub, time.Time{}, validity)
}

// validDNSName accepts the names a listener may be reached by, including a
// leading wildcard label; its purpose is to catch typos such as a URL or a
// host:port pasted where a host name belongs.
func validDNSName(h string) error {
	if h == "" || len(h) > 253 {
		return errors.New("DNS name must be 1–253 bytes")
	}
	for i, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "*" && i == 0 {
			continue
		}
		if label == "" || len(label) > 63 {
			return errors.New("DNS label must be 1–63 bytes")
		}
		for j := 0; j < len(label); j++ {
			b := label[j]
			ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_'
			if !ok {
				return fmt.Errorf("invalid character %q", b)
			}
		}
	}
	return nil
}

// sign fills in the fields every issued certificate shares and signs it.
func (c *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey, notBefore time.Time, validity time.Duration) (*x509.Certificate, error) {
	if c.key == nil {
		return nil, ErrNoKey
	}
	now := c.now()
	if notBefore.IsZero() {
		notBefore = now.Add(-ClockSkew)
	}
	notAfter := notBefore.Add(validity)
	// A certificate outliving its issuer would fail verification at the end
	// anyway; capping makes the real expiry visible in the certificate.
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	if !notAfter.After(notBefore) || !notAfter.After(now) {
		return nil, fmt.Errorf("%w: validity window %s–%s is empty (CA expires %s)", ErrInvalidRequest,
			notBefore.Format(time.RFC3339), notAfter.Format(time.RFC3339), c.cert.NotAfter.Format(time.RFC3339))
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = notBefore
	tmpl.NotAfter = notAfter
	tmpl.BasicConstraintsValid = true
	tmpl.SubjectKeyId = skid
	tmpl.AuthorityKeyId = c.cert.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign: %w", err)
	}
	return x509.ParseCertificate(der)
}

// serialLimit is 2^128: serials are 128 random bits, well above the 64 that
// CA/Browser rules ask for, so they are unpredictable and never collide.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("ca: serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID is RFC 7093 §2 method 1: the leftmost 160 bits of the
// SHA-256 of the subjectPublicKey bits, the method Go itself uses for CA
// certificates.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := keys.SPKI(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("ca: parse SPKI: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// EncodeCertPEM returns cert as a PEM "CERTIFICATE" block.
func EncodeCertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// ParseCertPEM parses the first PEM "CERTIFICATE" block in b, so that a
// chain file yields its leaf.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("ca: no PEM block")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("ca: PEM block %q, want \"CERTIFICATE\"", block.Type)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return cert, nil
}

// CodeFromCert returns the code in cert's "wanwu:" URI SAN. It fails with
// ErrNoCode if there is none, more than one, or it is not a valid code: the
// caller is about to treat the connection as that object, so anything
// ambiguous is refused.
func CodeFromCert(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", fmt.Errorf("%w: no certificate", ErrNoCode)
	}
	var found string
	n := 0
	for _, u := range cert.URIs {
		if !strings.EqualFold(u.Scheme, URIScheme) {
			continue
		}
		n++
		found = u.Opaque
	}
	switch n {
	case 0:
		return "", ErrNoCode
	case 1:
	default:
		return "", fmt.Errorf("%w: %d wanwu URIs", ErrNoCode, n)
	}
	if _, err := code.Parse(found); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoCode, err)
	}
	return found, nil
}

// Revoked is one entry of a CRL.
type Revoked struct {
	Serial *big.Int
	At     time.Time
}

// CRL returns a DER certificate revocation list signed by the CA, valid from
// now until now+nextUpdate. number must increase with every CRL issued
// (RFC 5280 §5.2.3); the caller keeps it, since it must survive restarts.
func (c *CA) CRL(revoked []Revoked, number *big.Int, nextUpdate time.Duration) ([]byte, error) {
	if c.key == nil {
		return nil, ErrNoKey
	}
	if number == nil || number.Sign() < 0 {
		return nil, fmt.Errorf("ca: CRL number must be non-negative")
	}
	if nextUpdate <= 0 {
		return nil, fmt.Errorf("ca: CRL nextUpdate %v must be positive", nextUpdate)
	}
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for i, r := range revoked {
		if r.Serial == nil || r.Serial.Sign() <= 0 {
			return nil, fmt.Errorf("ca: CRL entry %d: serial must be positive", i)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: r.Serial, RevocationTime: r.At.UTC()})
	}
	now := c.now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                now.Add(nextUpdate),
		RevokedCertificateEntries: entries,
	}, c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: CRL: %w", err)
	}
	return der, nil
}

package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// Identity is what a device is known by: its code and number, its key pair,
// and what the hub issued for the key (a certificate, the hub CA's
// certificate, a signed credential).
type Identity struct {
	// Code is the device's code, "<tenant>:<id>".
	Code string `json:"code"`
	// Number is the device's IPv6 address, derived from its key.
	Number string `json:"number"`
	// DID is the did:key of the device's public key.
	DID string `json:"did"`
	// Certificate is the device's X.509 client certificate (PEM), for MQTT
	// over TLS and CoAP over DTLS.
	Certificate string `json:"certificate"`
	// CACertificate is the hub CA's certificate (PEM): the trust anchor for
	// the hub's TLS and DTLS endpoints.
	CACertificate string `json:"ca_certificate"`
	// Credential is the hub-signed credential binding code, DID, number,
	// model and tenant (a JWT anyone can verify with the hub's public key).
	Credential string `json:"credential"`
	// Key is the device's private key; it never leaves the device.
	Key crypto.Signer `json:"-"`
}

// Files of an identity directory (SaveIdentity, LoadIdentity). key.pem is
// the only secret (mode 0600); cert.pem and ca.pem are copies of what
// identity.json holds, for tools such as mosquitto_pub.
const (
	IdentityFile = "identity.json"
	KeyFile      = "key.pem"
	CertFile     = "cert.pem"
	CAFile       = "ca.pem"
)

// ErrClaimRefused is returned by Claim when the hub refused the claim token:
// unknown, expired, used up or revoked (the hub does not say which).
var ErrClaimRefused = errors.New("device: claim refused")

// HubError is an error answer of the hub's HTTP API.
type HubError struct {
	Status  int    // the HTTP status
	Code    string // the hub's error code, e.g. "conflict", "invalid_argument"
	Field   string // the request field it names, if any
	Message string
}

func (e *HubError) Error() string {
	s := fmt.Sprintf("device: hub answered %d %s", e.Status, e.Code)
	if e.Field != "" {
		s += " (" + e.Field + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// ClaimOptions tune Claim.
type ClaimOptions struct {
	// ID is the local part of the code to ask for ("pump-7" becomes
	// "<tenant>:pump-7"); empty lets the hub derive one from the key.
	ID string
	// HTTPClient makes the request (default: a client with a 30 s timeout).
	// For an https:// hub whose certificate the hub CA issued, give it a
	// transport that trusts that CA.
	HTTPClient *http.Client
}

// GenerateKey makes a new P-256 key pair, the default for devices (secure
// elements support it).
func GenerateKey() (crypto.Signer, error) {
	k, err := keys.Generate(keys.P256)
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	return k, nil
}

// Claim trades a claim token for an identity: it sends a certificate signing
// request made with key (P-256 or Ed25519) to hubURL's POST /api/v1/claim and
// returns what the hub registered. The key stays here; only the CSR, which
// proves that the caller holds it, is sent. A refused token is
// ErrClaimRefused; other refusals are *HubError (a key claimed before is a
// 409 conflict).
func Claim(ctx context.Context, hubURL, claimToken string, key crypto.Signer, opts ClaimOptions) (*Identity, error) {
	if key == nil {
		return nil, errors.New("device: claim: a key is required")
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: opts.ID}}, key)
	if err != nil {
		return nil, fmt.Errorf("device: claim: make CSR: %w", err)
	}
	body, _ := json.Marshal(map[string]string{
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		"id":  opts.ID,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(hubURL, "/")+"/api/v1/claim", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("device: claim: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+claimToken)
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("device: claim: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("device: claim: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		var e struct {
			Error struct{ Code, Field, Message string }
		}
		_ = json.Unmarshal(raw, &e)
		if resp.StatusCode == http.StatusUnauthorized && e.Error.Code == "claim_refused" {
			return nil, ErrClaimRefused
		}
		return nil, &HubError{Status: resp.StatusCode, Code: e.Error.Code, Field: e.Error.Field, Message: e.Error.Message}
	}
	id, err := ParseRegistration(raw, key)
	if err != nil {
		return nil, fmt.Errorf("device: claim: the hub's answer: %w", err)
	}
	return id, nil
}

// ParseRegistration reads what the hub answers a registration (a claim, a
// registration or a row of a bulk import through the API, a key rotation):
// the object's code, number and DID, the certificate, the hub CA's
// certificate and the credential. key is the device's key; nil takes the
// private key the hub made and returned ("private_key", factory
// provisioning). The identity's key must be the one the hub registered.
func ParseRegistration(raw []byte, key crypto.Signer) (*Identity, error) {
	var reg struct {
		Object struct {
			Code   string `json:"code"`
			Number string `json:"number"`
			DID    string `json:"did"`
		} `json:"object"`
		Certificate   string `json:"certificate"`
		CACertificate string `json:"ca_certificate"`
		Credential    string `json:"credential"`
		PrivateKey    string `json:"private_key"`
	}
	if err := json.Unmarshal(raw, &reg); err != nil {
		return nil, err
	}
	if key == nil {
		if reg.PrivateKey == "" {
			return nil, errors.New("no key given and none in the registration")
		}
		k, err := keys.ParsePrivateKeyPEM([]byte(reg.PrivateKey))
		if err != nil {
			return nil, fmt.Errorf("the registration's private key: %w", err)
		}
		key = k
	}
	id := &Identity{Code: reg.Object.Code, Number: reg.Object.Number, DID: reg.Object.DID,
		Certificate: reg.Certificate, CACertificate: reg.CACertificate, Credential: reg.Credential, Key: key}
	if err := id.check(); err != nil {
		return nil, err
	}
	return id, nil
}

// check makes sure the identity is whole and its key is the one it names.
func (id *Identity) check() error {
	if id.Code == "" || id.Key == nil {
		return errors.New("identity without a code or a key")
	}
	did, err := keys.DID(id.Key.Public())
	if err != nil {
		return err
	}
	if did != id.DID {
		return fmt.Errorf("the key is %s, but the identity names %s", did, id.DID)
	}
	return nil
}

// Save writes the identity into dir (created with mode 0700): key.pem (mode
// 0600), identity.json, cert.pem and ca.pem. Each file is written to a
// temporary name and renamed, so a crash leaves the old file or the new one.
func (id *Identity) Save(dir string) error {
	if err := id.check(); err != nil {
		return fmt.Errorf("device: save identity: %w", err)
	}
	keyPEM, err := keys.MarshalPrivateKeyPEM(id.Key)
	if err != nil {
		return fmt.Errorf("device: save identity: %w", err)
	}
	doc, _ := json.MarshalIndent(id, "", "  ")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("device: save identity: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{KeyFile, keyPEM, 0o600},
		{IdentityFile, append(doc, '\n'), 0o644},
		{CertFile, []byte(id.Certificate), 0o644},
		{CAFile, []byte(id.CACertificate), 0o644},
	} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("device: save identity: %w", err)
		}
	}
	return nil
}

// LoadIdentity reads an identity that Save wrote into dir. An error wrapping
// fs.ErrNotExist means there is none yet (claim one).
func LoadIdentity(dir string) (*Identity, error) {
	doc, err := os.ReadFile(filepath.Join(dir, IdentityFile))
	if err != nil {
		return nil, fmt.Errorf("device: load identity: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("device: load identity: %w", err)
	}
	var id Identity
	if err := json.Unmarshal(doc, &id); err != nil {
		return nil, fmt.Errorf("device: load identity: %s: %w", IdentityFile, err)
	}
	if id.Key, err = keys.ParsePrivateKeyPEM(keyPEM); err != nil {
		return nil, fmt.Errorf("device: load identity: %s: %w", KeyFile, err)
	}
	if err := id.check(); err != nil {
		return nil, fmt.Errorf("device: load identity: %w", err)
	}
	return &id, nil
}

// Token signs a device token (docs/PROTOCOL.md §4) valid from now for ttl
// (at most 24 h): the MQTT password, the CoAP "t=" query and the HTTP bearer
// token of a device without a client certificate.
func (id *Identity) Token(now time.Time, ttl time.Duration) (string, error) {
	tok, err := devtoken.Sign(id.Key, id.Code, now, ttl)
	if err != nil {
		return "", fmt.Errorf("device: %w", err)
	}
	return tok, nil
}

// TLSConfig is a client configuration for the hub's TLS endpoints: the
// device's certificate and key, and the hub CA as the only trust anchor.
func (id *Identity) TLSConfig(serverName string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(id.CACertificate)) {
		return nil, errors.New("device: the identity has no CA certificate")
	}
	block, _ := pem.Decode([]byte(id.Certificate))
	if block == nil {
		return nil, errors.New("device: the identity has no certificate")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{block.Bytes}, PrivateKey: id.Key}},
		RootCAs:      pool,
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, synced before the rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, nothing is there
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

package edge

// Provisioning: an edge's identity, claimed from the hub with a claim token
// (or placed in its identity directory), and the hub's signing key, which
// verifies the identity snapshots.

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/node"
)

// ProvisionOptions say how an edge gets its identity.
type ProvisionOptions struct {
	// Dir is the identity directory.
	Dir string
	// Hub is the hub's API URL; https needs CAFile (the hub CA's
	// certificate, from the hub's data directory or `ctl`), http is for a
	// hub on the same trusted network.
	Hub    string
	CAFile string
	// ClaimToken is a claim token whose claims are edges (ctl claim
	// create --kind edge); ID the local part of the code to ask for.
	ClaimToken, ID string
}

// Provision claims an identity from the hub and saves it in o.Dir, with
// the hub's signing key beside it. An identity already there is kept.
func Provision(ctx context.Context, o ProvisionOptions) (*device.Identity, error) {
	if id, err := device.LoadIdentity(o.Dir); err == nil {
		return id, nil
	}
	if o.ClaimToken == "" {
		return nil, fmt.Errorf("edge: no identity in %s: claim one with --claim TOKEN (ctl claim create --kind edge), or place one there", o.Dir)
	}
	hc, err := bootstrapClient(o.Hub, o.CAFile)
	if err != nil {
		return nil, err
	}
	key, err := device.GenerateKey()
	if err != nil {
		return nil, err
	}
	id, err := device.Claim(ctx, o.Hub, o.ClaimToken, key, device.ClaimOptions{ID: o.ID, HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("edge: claim: %w", err)
	}
	if err := id.Save(o.Dir); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	return id, nil
}

// bootstrapClient is the client of the claim: https trusting the given CA
// file.
func bootstrapClient(hub, caFile string) (*http.Client, error) {
	if !strings.HasPrefix(hub, "https://") {
		return &http.Client{Timeout: 30 * time.Second}, nil
	}
	if caFile == "" {
		return nil, errors.New("edge: an https hub needs its CA certificate to claim an identity (--hub-ca FILE, the hub's ca.crt)")
	}
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("edge: hub CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("edge: hub CA: no certificate in %s", caFile)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
	}}, nil
}

// HubKeyFile is the hub's signing key (PEM) in the edge's data directory:
// learned once over the authenticated link, it verifies every identity
// snapshot after.
const HubKeyFile = "hub-signing.pub"

// hubKey reads the hub's signing key from the data directory or, the first
// time, from the hub's /api/v1/info over the link (whose server
// certificate the hub CA in the identity verifies), and keeps it.
func hubKey(ctx context.Context, dir string, hc *http.Client, hub string) (ed25519.PublicKey, error) {
	path := filepath.Join(dir, HubKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		return parseEd25519(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, hub+"/api/v1/info", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("edge: the hub's signing key: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("edge: the hub's signing key: %s %v", resp.Status, err)
	}
	var info struct {
		SigningKey string `json:"signing_key"`
	}
	if err := json.Unmarshal(body, &info); err != nil || info.SigningKey == "" {
		return nil, errors.New("edge: the hub's /api/v1/info has no signing_key")
	}
	k, err := parseEd25519([]byte(info.SigningKey))
	if err != nil {
		return nil, err
	}
	if err := node.WriteFileAtomic(path, []byte(info.SigningKey), 0o644); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	return k, nil
}

func parseEd25519(b []byte) (ed25519.PublicKey, error) {
	pub, err := keys.ParsePublicKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("edge: hub signing key: %w", err)
	}
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("edge: hub signing key is not Ed25519")
	}
	return k, nil
}

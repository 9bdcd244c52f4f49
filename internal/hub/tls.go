package hub

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/node"
)

// Server certificate files in the data directory.
const (
	ServerKeyFile  = "server.key"
	ServerCertFile = "server.crt"
)

// serverTLS returns the TLS configuration of the hub's MQTT and HTTPS
// listeners: a server certificate from the hub's own CA (issued on first
// start, and again when it nears expiry or the host list changes) and
// optional client certificates verified against the same CA.
func serverTLS(dir string, c *ca.CA, hosts []string) (*tls.Config, error) {
	keyPath, certPath := filepath.Join(dir, ServerKeyFile), filepath.Join(dir, ServerCertFile)
	cert, err := loadServerCert(keyPath, certPath, c, hosts)
	if err != nil {
		k, err := keys.Generate(keys.P256)
		if err != nil {
			return nil, fmt.Errorf("hub: server key: %w", err)
		}
		leaf, err := c.IssueServer(hosts, 397*24*time.Hour, k.Public())
		if err != nil {
			return nil, fmt.Errorf("hub: server certificate: %w", err)
		}
		keyPEM, err := keys.MarshalPrivateKeyPEM(k)
		if err != nil {
			return nil, fmt.Errorf("hub: server key: %w", err)
		}
		if err := node.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		if err := node.WriteFileAtomic(certPath, ca.EncodeCertPEM(leaf), 0o644); err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		if cert, err = loadServerCert(keyPath, certPath, c, hosts); err != nil {
			return nil, err
		}
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    c.Pool(),
		// Devices may prove themselves with a certificate or, inside the
		// protocol, with a device token.
		ClientAuth: tls.VerifyClientCertIfGiven,
	}, nil
}

func loadServerCert(keyPath, certPath string, c *ca.CA, hosts []string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate not from this CA: %w", err)
	}
	if time.Until(leaf.NotAfter) < 30*24*time.Hour {
		return tls.Certificate{}, fmt.Errorf("server certificate expires %s", leaf.NotAfter)
	}
	var have []string
	have = append(have, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		have = append(have, ip.String())
	}
	for _, h := range hosts {
		if !slices.Contains(have, h) {
			return tls.Certificate{}, fmt.Errorf("server certificate lacks host %s", h)
		}
	}
	cert.Leaf = leaf
	return cert, nil
}

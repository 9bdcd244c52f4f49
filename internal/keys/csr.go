package keys

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// MaxCSRSize bounds a CSR in any encoding. A P-256 CSR is under 1 KiB; the
// limit leaves room for extensions while keeping an unauthenticated claimant
// from making the hub parse megabytes.
const MaxCSRSize = 16 << 10

// ParseCSR parses a certificate signing request sent as PEM "CERTIFICATE
// REQUEST", raw DER, or base64 of DER, and checks its self-signature, which
// proves the sender holds the private key. Only supported key algorithms are
// accepted. Every error wraps ErrInvalidCSR and says why.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) > MaxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidCSR, len(b), MaxCSRSize)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidCSR)
	}
	der := b
	// DER is tested before trimming whitespace: trailing bytes of a binary
	// encoding may well be 0x20 or 0x0a.
	if b[0] != 0x30 {
		text := bytes.TrimSpace(b)
		if bytes.HasPrefix(text, []byte("-----BEGIN")) {
			block, rest := pem.Decode(text)
			if block == nil {
				return nil, fmt.Errorf("%w: malformed PEM", ErrInvalidCSR)
			}
			if len(bytes.TrimSpace(rest)) != 0 {
				return nil, fmt.Errorf("%w: data after the PEM block", ErrInvalidCSR)
			}
			// "NEW CERTIFICATE REQUEST" is what older tools (Windows certreq,
			// Java keytool) still write.
			if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
				return nil, fmt.Errorf("%w: PEM block %q, want \"CERTIFICATE REQUEST\"", ErrInvalidCSR, block.Type)
			}
			der = block.Bytes
		} else {
			d, err := decodeBase64(string(text))
			if err != nil {
				return nil, fmt.Errorf("%w: not PEM, DER or base64: %w", ErrInvalidCSR, err)
			}
			der = d
		}
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCSR, err)
	}
	if _, err := AlgOf(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrInvalidCSR, err)
	}
	return csr, nil
}

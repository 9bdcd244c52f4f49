package registry

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

var (
	// ErrDeviceAuth: a device's certificate or token does not prove its identity.
	ErrDeviceAuth = errors.New("device authentication failed")
	// ErrNoCredentials: neither a certificate nor a token was presented; it
	// comes wrapped together with ErrDeviceAuth.
	ErrNoCredentials = errors.New("no certificate and no device token")
)

// AuthenticateDevice is the one check every protocol adapter makes when a
// device connects or sends: with a client certificate (already chain-verified
// by TLS against the hub CA) or a device token (package devtoken) for the
// claimed code. It returns the admission answer; callers accept "active" and
// limit "quarantined" to remediation.
func (r *Registry) AuthenticateDevice(ctx context.Context, cert *x509.Certificate, claimed, token string) (Admission, error) {
	if cert != nil {
		c, err := ca.CodeFromCert(cert)
		if err != nil {
			return Admission{}, fmt.Errorf("%w: %w", ErrDeviceAuth, err)
		}
		if claimed != "" && claimed != c {
			return Admission{}, fmt.Errorf("%w: certificate is for %s, not %s", ErrDeviceAuth, c, claimed)
		}
		return r.Admit(ctx, c, Presented{CertSerial: hex.EncodeToString(cert.SerialNumber.Bytes())})
	}
	if token == "" {
		return Admission{}, fmt.Errorf("%w: %w", ErrDeviceAuth, ErrNoCredentials)
	}
	if claimed == "" {
		sub, err := devtoken.Subject(token)
		if err != nil {
			return Admission{}, fmt.Errorf("%w: %w", ErrDeviceAuth, err)
		}
		claimed = sub
	}
	if _, err := code.Parse(claimed); err != nil {
		return Admission{}, fmt.Errorf("%w: %w", ErrDeviceAuth, err)
	}
	o, err := r.Object(ctx, claimed)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Admission{}, err
	}
	now := r.now()
	var pubs []crypto.PublicKey
	if o != nil {
		for _, k := range o.Keys {
			if ok, _ := KeyUsable(k, now); ok {
				if pub, err := keys.ParseDID(k.DID); err == nil {
					pubs = append(pubs, pub)
				}
			}
		}
	}
	if len(pubs) == 0 {
		// An unknown code, or a device without a usable key (revoked): check
		// the token against a key nobody holds, so that the answer takes
		// about as long as for a known device and a wrong signature, and
		// timing does not tell a caller which codes exist.
		_, verr := verifyToken(token, func(string) ([]crypto.PublicKey, error) { return decoyKeys(), nil }, now, r.opts.TokenSkew)
		if o == nil {
			return Admission{Status: StatusUnknown, Reason: "no object with this code"}, nil
		}
		if errors.Is(verr, devtoken.ErrSignature) && ended(o.Status) {
			return Admission{Status: StatusRevoked, Reason: "object " + o.Status, Object: o}, nil
		}
		if verr == nil || errors.Is(verr, devtoken.ErrSignature) {
			verr = fmt.Errorf("%w: %s", devtoken.ErrUnknownDevice, claimed)
		}
		return Admission{}, fmt.Errorf("%w: %w", ErrDeviceAuth, verr)
	}
	sub, err := verifyToken(token, func(string) ([]crypto.PublicKey, error) { return pubs, nil }, now, r.opts.TokenSkew)
	if err != nil {
		return Admission{}, fmt.Errorf("%w: %w", ErrDeviceAuth, err)
	}
	if sub != claimed {
		return Admission{}, fmt.Errorf("%w: token is for %s, not %s", ErrDeviceAuth, sub, claimed)
	}
	// Usable keys verified the token; the object's own state decides the rest.
	return r.Admit(ctx, claimed, Presented{})
}

// ModelOf returns the thing model an object references (nil when none),
// from a cache: model versions are immutable.
func (r *Registry) ModelOf(ctx context.Context, o *Object) (*thingmodel.Model, error) {
	if o == nil || o.Model == nil {
		return nil, nil
	}
	key := o.Model.ID + "@" + o.Model.Version
	if m, ok := r.models.Load(key); ok {
		return m.(*thingmodel.Model), nil
	}
	m, err := r.Model(ctx, o.Model.ID, o.Model.Version)
	if err != nil {
		return nil, err
	}
	r.models.Store(key, m)
	return m, nil
}

// verifyToken checks a device token's signature; a variable so that a test
// can count that every failed authentication does the same work.
var verifyToken = devtoken.VerifySkew

// decoyKeys returns one key of each token algorithm, made once and never
// held by a device: AuthenticateDevice verifies against them where no real
// key exists.
var decoyKeys = sync.OnceValue(func() []crypto.PublicKey {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("registry: decoy key: %v", err))
	}
	ed, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("registry: decoy key: %v", err))
	}
	return []crypto.PublicKey{&ec.PublicKey, ed}
})

package registry

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// ErrDeviceAuth: a device's certificate or token does not prove its identity.
var ErrDeviceAuth = errors.New("device authentication failed")

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
		return Admission{}, fmt.Errorf("%w: no certificate and no device token", ErrDeviceAuth)
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
	if errors.Is(err, ErrNotFound) {
		return Admission{Status: StatusUnknown, Reason: "no object with this code"}, nil
	}
	if err != nil {
		return Admission{}, err
	}
	now := r.now()
	var pubs []crypto.PublicKey
	for _, k := range o.Keys {
		if ok, _ := KeyUsable(k, now); ok {
			if pub, err := keys.ParseDID(k.DID); err == nil {
				pubs = append(pubs, pub)
			}
		}
	}
	sub, err := devtoken.Verify(token, func(string) ([]crypto.PublicKey, error) { return pubs, nil }, now)
	if err != nil {
		if errors.Is(err, devtoken.ErrUnknownDevice) && o.Status == StatusRevoked {
			return Admission{Status: StatusRevoked, Reason: "object revoked", Object: o}, nil
		}
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

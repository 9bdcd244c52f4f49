package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

// Zero-touch provisioning (docs/PROTOCOL.md §9): operators create claim
// tokens, devices trade one for an identity.

type claimBody struct {
	Tenant  string             `json:"tenant"`
	Name    string             `json:"name,omitempty"`
	MaxUses int                `json:"max_uses,omitempty"`
	TTL     string             `json:"ttl,omitempty"`
	Kind    string             `json:"kind,omitempty"`
	Model   *registry.ModelRef `json:"model,omitempty"`
	Path    string             `json:"path,omitempty"`
	Tags    map[string]string  `json:"tags,omitempty"`
	Edge    string             `json:"edge,omitempty"`
	Network string             `json:"network,omitempty"`
}

func (s *server) createClaim(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b claimBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	if b.Tenant == "" {
		b.Tenant = p.Tenant
	}
	if b.Tenant == "" {
		return badRequest("tenant", "which tenant the claimed devices join is required")
	}
	if err := p.Allows(auth.Operator, b.Tenant); err != nil {
		return err
	}
	spec := registry.ClaimSpec{Name: b.Name, MaxUses: b.MaxUses, Kind: b.Kind, Model: b.Model, Tags: b.Tags, Edge: b.Edge, Network: b.Network}
	var err error
	if spec.TTL, err = parseDuration("ttl", b.TTL); err != nil {
		return err
	}
	if b.Path != "" {
		if spec.Path, err = code.ParsePath(b.Path); err != nil {
			return badRequest("path", "%v", err)
		}
	}
	cl, secret, err := s.Registry.CreateClaim(r.Context(), p.Name, b.Tenant, spec)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"claim": cl, "token": secret})
	return nil
}

func (s *server) listClaims(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	cls, err := s.Registry.Claims(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"claims": nonNil(cls)})
	return nil
}

func (s *server) revokeClaim(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b reasonBody
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &b); err != nil {
			return err
		}
	}
	cl, err := s.Registry.RevokeClaim(r.Context(), p.Name, p.Tenant, r.PathValue("id"), b.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cl)
	return nil
}

type useClaimBody struct {
	CSR       string `json:"csr,omitempty"`
	PublicKey string `json:"public_key,omitempty"`
	ID        string `json:"id,omitempty"`
}

// errClaimRefused is the one answer to every refused claim: an unknown,
// expired, used-up or revoked token, or none, all look alike, so that
// nobody learns which tokens exist by trying them.
var errClaimRefused = &Error{Status: http.StatusUnauthorized, Code: "claim_refused", Message: "claim refused"}

// useClaim is the device's side: POST /api/v1/claim with the claim token as
// the bearer and its key in the body; it answers what registration answers.
// Every request and every refusal is charged to the source address.
func (s *server) useClaim(w http.ResponseWriter, r *http.Request) error {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	now := time.Now()
	if s.claimFailures.Blocked(host, now) || !s.claimAddr.Allow(host, now) {
		s.claimsRefused.WithLabelValues("rate_limited").Inc()
		return &Error{Status: http.StatusTooManyRequests, Code: string(ingest.RateLimited),
			Message: "too many claim requests from this address; retry later", RetryAfter: 10}
	}
	var b useClaimBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	req := registry.ClaimRequest{CSR: []byte(b.CSR), Local: b.ID}
	if b.PublicKey != "" {
		pub, err := keys.ParsePublicKey(b.PublicKey)
		if err != nil {
			return badRequest("public_key", "%v", err)
		}
		req.PublicKey = pub
	}
	secret, ok := bearer(r)
	if !ok {
		secret = "" // refused below as unknown, after the request was checked
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	reg, err := s.Registry.UseClaim(ctx, secret, req)
	if errors.Is(err, registry.ErrClaim) {
		reason := registry.ClaimRefusal(err)
		if !ok {
			reason = "no_token"
		}
		s.claimFailures.Allow(host, now)
		s.claimsRefused.WithLabelValues(reason).Inc()
		s.Logger.Info("claim refused", "reason", reason, "remote", r.RemoteAddr)
		return errClaimRefused
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, reg)
	return nil
}

package api

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

// Device data over HTTP(S) (docs/PROTOCOL.md §6), authenticated by the
// client certificate of an HTTPS connection or a device token.
func (s *server) ingestRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/ingest/{code}/telemetry", s.handle(s.ingest(false)))
	mux.HandleFunc("POST /api/v1/ingest/{code}/events/{event}", s.handle(s.ingest(true)))
}

// ingestError answers in the protocol's reason vocabulary.
func ingestError(rej *ingest.Rejection) *Error {
	return &Error{Status: rej.Reason.HTTPStatus(), Code: string(rej.Reason), Message: rej.Message, RetryAfter: rej.Reason.RetryAfter()}
}

func (s *server) ingest(event bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		codeStr := r.PathValue("code")
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		now := time.Now()
		if !s.ingestAddr.Allow(host, now) {
			return ingestError(&ingest.Rejection{Reason: ingest.RateLimited, Message: "over the per-address request rate"})
		}
		var cert *x509.Certificate
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			cert = r.TLS.PeerCertificates[0]
		}
		token, _ := bearer(r)
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		// Authenticate whoever the certificate or token names, not the code
		// in the path: a device sending for another code is then told
		// not_authorized, and the path never decides which keys are tried.
		adm, err := s.Registry.AuthenticateDevice(ctx, cert, "", token)
		if err != nil {
			if errors.Is(err, registry.ErrDeviceAuth) {
				return s.deviceAuthFailed(r, authFailureReason(err), err.Error())
			}
			return err
		}
		switch adm.Status {
		case registry.StatusActive:
		case registry.StatusQuarantined:
			if adm.Object.Code == codeStr {
				return ingestError(&ingest.Rejection{Reason: ingest.NotAuthorized, Message: "device is quarantined: remediation only"})
			}
		default:
			return s.deviceAuthFailed(r, adm.Status, adm.Reason)
		}
		o := adm.Object
		if o.Code != codeStr {
			return ingestError(&ingest.Rejection{Reason: ingest.NotAuthorized, Message: "a device may only send its own data"})
		}
		if !s.ingestDevice.Allow(o.Code, now) {
			return ingestError(&ingest.Rejection{Reason: ingest.RateLimited, Message: "over the per-device publish rate"})
		}
		payload, err := readBody(w, r, int64(s.Intake.Decoder().MaxPayload())+1)
		if err != nil {
			var ae *Error
			if errors.As(err, &ae) {
				return err
			}
			return ingestError(&ingest.Rejection{Reason: ingest.TooLarge, Message: err.Error()})
		}
		m, err := s.Registry.ModelOf(ctx, o)
		if err != nil {
			return err
		}
		up := adapter.Upload{
			Device: ingest.Device{Code: o.Code, Tenant: o.Tenant, Model: m},
			Source: "http", Topic: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Payload: payload,
		}
		if event {
			up.Event = r.PathValue("event")
		}
		if rej, _ := s.Intake.AcceptWait(ctx, &up); rej != nil {
			return ingestError(rej)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// errDeviceAuth is the one answer to every failed device authentication:
// whether the code exists, is revoked, or the signature is wrong is not the
// caller's to learn (docs/PROTOCOL.md §6).
var errDeviceAuth = &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "device authentication failed"}

// deviceAuthFailed counts and logs why a device failed to authenticate and
// returns the uniform answer.
func (s *server) deviceAuthFailed(r *http.Request, reason, detail string) error {
	s.authFailures.WithLabelValues(reason).Inc()
	s.Logger.Info("http ingest: device authentication failed", "reason", reason, "detail", detail,
		"code", r.PathValue("code"), "remote", r.RemoteAddr)
	return errDeviceAuth
}

// authFailureReason names, for the log and the counter, why a certificate
// or token was refused.
func authFailureReason(err error) string {
	switch {
	case errors.Is(err, devtoken.ErrSignature):
		return "bad_signature"
	case errors.Is(err, devtoken.ErrExpired):
		return "expired"
	case errors.Is(err, devtoken.ErrMalformed):
		return "malformed_token"
	case errors.Is(err, devtoken.ErrUnknownDevice):
		return "no_usable_key"
	case errors.Is(err, registry.ErrNoCredentials):
		return "no_credentials"
	}
	return "bad_credentials"
}

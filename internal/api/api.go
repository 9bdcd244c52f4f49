// Package api serves the hub's HTTP API under /api/v1, plus /healthz,
// /readyz and /metrics, and hands every other path to the web console
// (Options.Console) when there is one.
//
// Handlers return errors instead of writing them: one place maps an error to
// a status and a JSON body that names the offending field, logs the details,
// and counts the rejection. Internal errors reach the client only as
// "internal error".
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/csvimport"
	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/diskguard"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/loop"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
	"github.com/wanwu-iot/wanwu/internal/netuse"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/ratelimit"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/rollout"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
	"github.com/wanwu-iot/wanwu/internal/twin"
	"github.com/wanwu-iot/wanwu/internal/webhook"
	"golang.org/x/time/rate"
)

// Info is what GET /api/v1/info tells anyone: enough to verify credentials
// and audit heads offline.
type Info struct {
	Version          string `json:"version"`
	DeploymentID     string `json:"deployment_id"`
	SigningDID       string `json:"signing_did"`
	SigningKeyPEM    string `json:"signing_key"` // Ed25519 public key that signs credentials and tree heads
	AuditOrigin      string `json:"audit_origin"`
	AuditVerifierKey string `json:"audit_verifier_key"`
	// Device endpoints, "" when off.
	MQTT    string `json:"mqtt,omitempty"`
	MQTTTLS string `json:"mqtt_tls,omitempty"`
	HTTPS   string `json:"https,omitempty"`
	// CoAP is plain UDP (development), CoAPDTLS CoAP over DTLS.
	CoAP     string `json:"coap,omitempty"`
	CoAPDTLS string `json:"coap_dtls,omitempty"`
	// Role is "hub" or "edge"; Code is an edge's code.
	Role string `json:"role,omitempty"`
	Code string `json:"code,omitempty"`
}

// Options wire the API to the hub's components.
type Options struct {
	Registry *registry.Registry
	Audit    *audit.Log
	CA       *ca.CA
	Info     Info
	Logger   *slog.Logger
	// Metrics is where request and rejection counters register; Gatherer serves /metrics.
	Metrics  prometheus.Registerer
	Gatherer prometheus.Gatherer
	// Ready reports whether the hub can serve (bus and database up).
	Ready func() error

	// The telemetry side; when TSDB is nil the telemetry, ingest and
	// Prometheus routes are not served.
	TSDB     *tsdb.Store
	Events   *eventstore.Store
	Pipeline *pipeline.Pipeline // dead letters
	// Intake accepts HTTP ingest, as it does every adapter's.
	Intake *adapter.Intake
	// Presence serves devices' online state when set.
	Presence *presence.Service
	// Webhooks serves the webhook routes when set.
	Webhooks *webhook.Service
	// Usage serves devices' bytes per day and the network routes when
	// set; Profile is a network profile with the deployment's overrides
	// (default netprofile.Lookup).
	Usage   *netuse.Accountant
	Profile func(name string) (netprofile.Profile, bool)
	// Loops serves the loop, evidence, approval and bypass routes when
	// set; Alarms the alarm routes.
	Loops  *loop.Engine
	Alarms *alarm.Service
	// MLModels serves the model registry's routes when set.
	MLModels *mlreg.Registry
	// Rollouts, with MLModels, serves the rollouts of model versions;
	// RolloutChanged is told after a change (the hub wakes its
	// controller).
	Rollouts       *rollout.Store
	RolloutChanged func()
	// Datasets serves the captured windows, labels and dataset versions;
	// CaptureNow takes a window of an object's data now (an operator's
	// request).
	Datasets   *dataset.Store
	CaptureNow func(ctx context.Context, object, ref string, from, to time.Time) (*dataset.Window, error)
	// MLStats gives a model version's figures by node (the hub's own),
	// served with the version.
	MLStats func(tenant, id, version string) map[string]*mlreg.VersionStats
	// Twins and Commands serve the twin and command routes when set.
	Twins    *twin.Service
	Commands *command.Service
	// Edges serves the edge link (forwarding) and the edge routes when set.
	Edges EdgeLink
	// EdgeSnapshot answers an edge's request for the signed identity
	// snapshot newer than a version, waiting up to wait; nil: none newer.
	EdgeSnapshot func(ctx context.Context, edge string, after uint64, wait time.Duration) ([]byte, error)
	// EdgeCommands answers an edge's poll for the commands issued at the
	// hub for its devices, waiting up to wait; EdgeCommandsAck records that
	// the edge holds them.
	EdgeCommands    func(ctx context.Context, edge string, wait time.Duration) (*EdgeDownlink, error)
	EdgeCommandsAck func(ctx context.Context, edge string, ids []string, twins map[string]int64) error
	// SignDownlink signs what goes down an edge's link (the hub's Ed25519
	// key).
	SignDownlink func(msg []byte) []byte
	// RelayVote sends a vote on an action waiting for approval at an edge
	// (an evidence record the hub keeps from it) down that edge's link.
	RelayVote func(ctx context.Context, ev *loop.Evidence, by string, approve bool, note string) error
	// EdgeLoops answers an edge's long poll for its loop bundle
	// (package loop's Bundle, as JSON): nil when the digest is still
	// after once wait passed.
	EdgeLoops func(ctx context.Context, edge, after string, wait time.Duration) ([]byte, error)
	// EdgeML answers an edge's long poll for the list of model versions
	// its loops use (EdgeModels, as JSON): nil when the list's digest is
	// still after once wait passed. With MLModels, it serves the edge's
	// model routes (the list and the versions' bytes).
	EdgeML func(ctx context.Context, edge, after string, wait time.Duration) ([]byte, error)
	// EdgeStatus, on an edge's own API, serves GET /api/v1/edge/status.
	EdgeStatus func(ctx context.Context) (any, error)
	// PSK returns the CoAP/DTLS pre-shared key a PSK identity names, and
	// PSKIdentity the identity of a device's active key; nil = no PSK route.
	PSK         func(ctx context.Context, identity string) ([]byte, error)
	PSKIdentity func(ctx context.Context, code string) (string, error)
	// IngestLimits are the HTTP ingest rate limits (per device, per source address).
	IngestPerDevice, IngestPerAddr           rate.Limit
	IngestPerDeviceBurst, IngestPerAddrBurst int
	// ImportMaxRows is the row limit of one bulk CSV import (default
	// csvimport.MaxRows).
	ImportMaxRows int
	// DecommissionReleaseCodes is the default of a decommission's
	// release_code (config identity.decommission_release_codes).
	DecommissionReleaseCodes bool
	// Console, when set, serves every path no other route does: the web
	// console (package console) at / and its pages. The /api/ paths stay
	// the API's, unknown ones answered with the API's JSON 404.
	Console http.Handler
	// Claim limits, per source address: claim requests (default 5 per
	// second, burst 50) and refused claims (default one per 10 s, burst 10),
	// over which the address is answered 429 until its budget refills.
	ClaimPerAddr, ClaimFailuresPerAddr           rate.Limit
	ClaimPerAddrBurst, ClaimFailuresPerAddrBurst int
}

// Body limits: models may be up to 1 MiB, bulk CSV up to 64 MiB.
const (
	maxJSONBody = 2 << 20
	maxCSVBody  = 64 << 20
)

type server struct {
	Options
	ingestDevice, ingestAddr *ratelimit.Keyed[string]
	claimAddr, claimFailures *ratelimit.Keyed[string]
	claimsRefused            *prometheus.CounterVec
	requests                 *prometheus.CounterVec
	rejected                 *prometheus.CounterVec
	authFailures             *prometheus.CounterVec
	latency                  *prometheus.HistogramVec
}

// New returns the handler for the whole HTTP surface.
func New(opts Options) (http.Handler, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &server{
		Options: opts,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_api_requests_total", Help: "API requests by route and status code.",
		}, []string{"route", "code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_api_rejected_total", Help: "API requests rejected, by reason.",
		}, []string{"reason"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_api_device_auth_failed_total",
			Help: "HTTP ingest requests whose device authentication failed, by reason (the caller is told only 'unauthenticated').",
		}, []string{"reason"}),
		claimsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_api_claims_refused_total",
			Help: "Device claims (POST /api/v1/claim) refused, by reason (the caller is told only 'claim refused', or 429 when rate limited).",
		}, []string{"reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wanwu_api_request_duration_seconds", Help: "API request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"route"}),
	}
	if opts.Metrics != nil {
		for _, c := range []prometheus.Collector{s.requests, s.rejected, s.authFailures, s.claimsRefused, s.latency} {
			if err := opts.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("api: metrics: %w", err)
			}
		}
	}
	if opts.TSDB != nil && (opts.Events == nil || opts.Pipeline == nil || opts.Intake == nil) {
		return nil, errors.New("api: telemetry needs TSDB, Events, Pipeline and Intake together")
	}
	if opts.IngestPerDevice == 0 {
		opts.IngestPerDevice, opts.IngestPerDeviceBurst = 100, 200
	}
	if opts.ImportMaxRows <= 0 {
		opts.ImportMaxRows = csvimport.MaxRows
	}
	if opts.IngestPerAddr == 0 {
		opts.IngestPerAddr, opts.IngestPerAddrBurst = 500, 1000
	}
	if opts.ClaimPerAddr == 0 {
		opts.ClaimPerAddr, opts.ClaimPerAddrBurst = 5, 50
	}
	if opts.ClaimFailuresPerAddr == 0 {
		opts.ClaimFailuresPerAddr, opts.ClaimFailuresPerAddrBurst = 0.1, 10
	}
	s.Options = opts
	s.claimAddr = ratelimit.New[string](opts.ClaimPerAddr, opts.ClaimPerAddrBurst)
	s.claimFailures = ratelimit.New[string](opts.ClaimFailuresPerAddr, opts.ClaimFailuresPerAddrBurst)
	s.ingestDevice = ratelimit.New[string](opts.IngestPerDevice, opts.IngestPerDeviceBurst)
	s.ingestAddr = ratelimit.New[string](opts.IngestPerAddr, opts.IngestPerAddrBurst)
	mux := http.NewServeMux()
	s.routes(mux)
	if opts.TSDB != nil {
		s.telemetryRoutes(mux)
		s.ingestRoutes(mux)
	}
	s.downlinkRoutes(mux)
	if opts.Presence != nil {
		s.presenceRoutes(mux)
	}
	if opts.Webhooks != nil {
		s.webhookRoutes(mux)
	}
	if opts.Usage != nil {
		s.networkRoutes(mux)
	}
	if opts.Edges != nil {
		s.edgeRoutes(mux)
	}
	if opts.Loops != nil {
		s.loopRoutes(mux)
	}
	if opts.Alarms != nil {
		s.alarmRoutes(mux)
	}
	if opts.MLModels != nil {
		s.mlRoutes(mux)
	}
	if opts.MLModels != nil && opts.Rollouts != nil {
		s.rolloutRoutes(mux)
	}
	if opts.Datasets != nil {
		s.datasetRoutes(mux)
	}
	if opts.EdgeStatus != nil {
		mux.HandleFunc("GET /api/v1/edge/status", s.authed(auth.Viewer, func(w http.ResponseWriter, r *http.Request, _ auth.Principal) error {
			st, err := opts.EdgeStatus(r.Context())
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, st)
			return nil
		}))
	}
	if opts.Console != nil {
		mux.Handle("/", opts.Console)
	}
	return s.instrument(mux), nil
}

// Error is an API error with the status and the safe message for the client.
type Error struct {
	Status  int
	Code    string // machine-readable: invalid_argument, not_found, ...
	Field   string
	Message string
	// Problems lists every problem of an invalid thing model, with JSON paths.
	Problems []thingmodel.Problem
	// Current is the current version after a version conflict.
	Current *int64
	// RetryAfter, in seconds, is sent as Retry-After when positive.
	RetryAfter int
}

func (e *Error) Error() string { return e.Message }

func badRequest(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Field: field, Message: fmt.Sprintf(format, args...)}
}

// toAPIError maps domain errors to statuses; unknown errors are internal.
func toAPIError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var ve *thingmodel.ValidationError
	if errors.As(err, &ve) {
		// The problems travel as a list; the message only counts them, so
		// that a client printing both does not say everything twice.
		msg := fmt.Sprintf("the thing model has %d problems", len(ve.Problems))
		if len(ve.Problems) == 1 {
			msg = "the thing model has a problem"
		}
		return &Error{Status: http.StatusBadRequest, Code: "invalid_model", Field: "model", Message: msg, Problems: ve.Problems}
	}
	var fe *registry.FieldError
	if errors.As(err, &fe) {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Field: fe.Field, Message: fe.Error()}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("request body over %d bytes", mbe.Limit)}
	}
	switch {
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, auth.ErrInvalid), errors.Is(err, thingmodel.ErrInvalid), errors.Is(err, webhook.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Message: err.Error()}
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, auth.ErrNotFound), errors.Is(err, webhook.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, registry.ErrConflict), errors.Is(err, auth.ErrExists):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	case errors.Is(err, registry.ErrClaim):
		return errClaimRefused // which refusal it was is not the caller's to learn
	case errors.Is(err, auth.ErrUnauthenticated):
		return &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: err.Error()}
	case errors.Is(err, auth.ErrForbidden):
		return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: err.Error()}
	case errors.Is(err, audit.ErrBadProof):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Message: err.Error()}
	case diskguard.IsNoSpace(err):
		// The metadata database (or a store) met a full disk: say so,
		// rather than "internal error", and when to try again.
		return &Error{Status: http.StatusInsufficientStorage, Code: string(ingest.StorageFull),
			Message: "the hub's disk is full; retry later", RetryAfter: ingest.StorageFull.RetryAfter()}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle adapts an error-returning handler.
func (s *server) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		ae := toAPIError(err)
		if ae.Status >= 500 && ae.Status != http.StatusInsufficientStorage {
			// A full disk is logged once, by the disk guard, not per request.
			s.Logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		} else {
			s.Logger.Debug("api request rejected", "method", r.Method, "path", r.URL.Path, "status", ae.Status, "err", err)
			s.rejected.WithLabelValues(ae.Code).Inc()
		}
		body := map[string]any{"code": ae.Code, "message": ae.Message}
		if ae.Field != "" {
			body["field"] = ae.Field
		}
		if len(ae.Problems) > 0 {
			body["problems"] = ae.Problems
		}
		if ae.Current != nil {
			body["current_version"] = *ae.Current
		}
		if ae.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="wanwu"`)
		}
		if ae.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(ae.RetryAfter))
		}
		writeJSON(w, ae.Status, map[string]any{"error": body})
	}
}

// authed requires a token of at least role min.
func (s *server) authed(min auth.Role, h func(w http.ResponseWriter, r *http.Request, p auth.Principal) error) http.HandlerFunc {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		secret, ok := bearer(r)
		if !ok {
			return &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "missing bearer token (Authorization: Bearer wwt_...)"}
		}
		p, err := s.Registry.Authenticate(r.Context(), secret)
		if err != nil {
			return err
		}
		if err := p.Allows(min, p.Tenant); err != nil {
			return err
		}
		return h(w, r, p)
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func (s *server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		s.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
		s.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (Flush, full
// duplex) through the recorder.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeJSON reads a JSON body strictly; errors name the field.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return err
		case errors.As(err, &te):
			return badRequest(te.Field, "%s: want %s, got %s", te.Field, te.Type, te.Value)
		case errors.As(err, &se):
			return badRequest("body", "malformed JSON at byte %d: %v", se.Offset, err)
		case errors.Is(err, io.EOF):
			return badRequest("body", "empty body, want a JSON object")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return badRequest(f, "unknown field %q", f)
		}
		return badRequest("body", "malformed JSON: %v", err)
	}
	if dec.More() {
		return badRequest("body", "trailing data after the JSON object")
	}
	return nil
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, badRequest("body", "reading body: %v", err)
	}
	return b, nil
}

// parseDuration reads an optional duration field.
func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, badRequest(field, "%q is not a duration like 720h", s)
	}
	return d, nil
}

func queryUint(r *http.Request, name string, def uint64) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, badRequest(name, "%q is not a non-negative integer", v)
	}
	return n, nil
}

// promHandler serves /metrics from the hub's own registry.
func (s *server) promHandler() http.Handler {
	if s.Gatherer == nil {
		return promhttp.Handler()
	}
	return promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{})
}

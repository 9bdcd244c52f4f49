package api

// Edge nodes: their link to the hub (forwarding with high-water marks) and
// what the hub knows of each.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

// EdgeLink is the hub's side of edge links (forward.Receiver).
type EdgeLink interface {
	State(ctx context.Context, e forward.Edge, epoch string) (*forward.State, error)
	Forward(ctx context.Context, e forward.Edge, u *forward.Uplink) (*forward.Ack, error)
	Edges(ctx context.Context, tenant string) ([]forward.EdgeInfo, error)
}

func (s *server) edgeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/edge/forward", s.handle(s.edgeState))
	mux.HandleFunc("POST /api/v1/edge/forward", s.handle(s.edgeForward))
	mux.HandleFunc("GET /api/v1/edge/snapshot", s.handle(s.edgeSnapshot))
	if s.EdgeLoops != nil {
		mux.HandleFunc("GET /api/v1/edge/loops", s.handle(s.edgeLoops))
	}
	if s.EdgeML != nil && s.MLModels != nil {
		mux.HandleFunc("GET /api/v1/edge/ml", s.handle(s.edgeML))
		mux.HandleFunc("GET /api/v1/edge/ml/{id}/versions/{version}/onnx", s.handle(s.edgeMLONNX))
	}
	mux.HandleFunc("GET /api/v1/edge/commands", s.handle(s.edgeCommands))
	mux.HandleFunc("POST /api/v1/edge/commands/ack", s.handle(s.edgeCommandsAck))
	mux.HandleFunc("GET /api/v1/edges", s.authed(auth.Viewer, s.listEdges))
	mux.HandleFunc("GET /api/v1/edges/{code}", s.authed(auth.Viewer, s.getEdge))
}

// errEdgeAuth is the one answer to every failed edge authentication.
var errEdgeAuth = &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "edge authentication failed"}

// authenticateEdge admits an active edge or gateway by its TLS client
// certificate (the link is mutually authenticated TLS): nothing else is
// taken, and why it failed is only counted and logged.
func (s *server) authenticateEdge(r *http.Request) (forward.Edge, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		s.authFailures.WithLabelValues("edge_no_certificate").Inc()
		return forward.Edge{}, errEdgeAuth
	}
	cert := r.TLS.PeerCertificates[0]
	adm, err := s.Registry.AuthenticateDevice(r.Context(), cert, "", "")
	if err != nil {
		if errors.Is(err, registry.ErrDeviceAuth) {
			s.authFailures.WithLabelValues("edge_" + authFailureReason(err)).Inc()
			s.Logger.Info("edge link: authentication failed", "reason", authFailureReason(err), "remote", r.RemoteAddr)
			return forward.Edge{}, errEdgeAuth
		}
		return forward.Edge{}, err
	}
	o := adm.Object
	if adm.Status != registry.StatusActive || o == nil || (o.Kind != registry.KindEdge && o.Kind != registry.KindGateway) {
		reason := "edge_" + adm.Status
		if o != nil && adm.Status == registry.StatusActive {
			reason = "edge_not_an_edge"
		}
		s.authFailures.WithLabelValues(reason).Inc()
		s.Logger.Info("edge link: authentication failed", "reason", reason, "remote", r.RemoteAddr)
		return forward.Edge{}, errEdgeAuth
	}
	return forward.Edge{Code: o.Code, Tenant: o.Tenant, Key: cert.PublicKey}, nil
}

// edgeState is GET /api/v1/edge/forward?epoch=E: the hub's high-water
// marks of the calling edge's epoch.
func (s *server) edgeState(w http.ResponseWriter, r *http.Request) error {
	e, err := s.authenticateEdge(r)
	if err != nil {
		return err
	}
	st, err := s.Edges.State(r.Context(), e, r.URL.Query().Get("epoch"))
	if err != nil {
		if errors.Is(err, forward.ErrUplink) {
			return badRequest("epoch", "%v", err)
		}
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// edgeForward is POST /api/v1/edge/forward: one uplink (CBOR), answered
// with the class's high-water mark once what it carries is durable.
func (s *server) edgeForward(w http.ResponseWriter, r *http.Request) error {
	e, err := s.authenticateEdge(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r, forward.MaxUplinkBytes)
	if err != nil {
		return err
	}
	u, err := forward.DecodeUplink(body)
	if err != nil {
		return badRequest("body", "%v", err)
	}
	ack, err := s.Edges.Forward(r.Context(), e, u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ack)
	return nil
}

// maxEdgePoll bounds how long an edge's long poll is held.
const maxEdgePoll = 30 // seconds

// edgePoll authenticates an edge's long poll and reads its wait=S.
func (s *server) edgePoll(r *http.Request) (forward.Edge, time.Duration, error) {
	e, err := s.authenticateEdge(r)
	if err != nil {
		return e, 0, err
	}
	wait, err := queryUint(r, "wait", 0)
	if err != nil {
		return e, 0, err
	}
	if wait > maxEdgePoll {
		return e, 0, badRequest("wait", "at most %d seconds", maxEdgePoll)
	}
	return e, time.Duration(wait) * time.Second, nil
}

// edgeSnapshot is GET /api/v1/edge/snapshot?after=V&wait=S: the signed
// identity snapshot of the calling edge when the identities behind it
// changed since version V, else 204 once S seconds (at most 30) passed.
func (s *server) edgeSnapshot(w http.ResponseWriter, r *http.Request) error {
	e, wait, err := s.edgePoll(r)
	if err != nil {
		return err
	}
	after, err := queryUint(r, "after", 0)
	if err != nil {
		return err
	}
	data, err := s.EdgeSnapshot(r.Context(), e.Code, after, wait)
	if err != nil {
		return err
	}
	if data == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
	return nil
}

// edgeCommands is GET /api/v1/edge/commands?wait=S: the commands issued
// at the hub for devices behind the calling edge that it does not hold
// yet, and the desired states it has not taken, at once or within S
// seconds (at most 30).
func (s *server) edgeCommands(w http.ResponseWriter, r *http.Request) error {
	e, wait, err := s.edgePoll(r)
	if err != nil {
		return err
	}
	out, err := s.EdgeCommands(r.Context(), e.Code, wait)
	if err != nil {
		return err
	}
	if out.Commands == nil {
		out.Commands = []*command.Command{}
	}
	if out.Twins == nil {
		out.Twins = []EdgeTwin{}
	}
	if out.Votes == nil {
		out.Votes = []EdgeVote{}
	}
	body, err := json.Marshal(out)
	if err != nil {
		return err
	}
	// Signed by the hub's key: the edge acts on nothing else.
	w.Header().Set(DownlinkSignatureHeader, base64.StdEncoding.EncodeToString(s.SignDownlink(append([]byte(DownlinkSigningContext), body...))))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// edgeLoops is GET /api/v1/edge/loops?after=DIGEST&wait=S: the signed
// bundle of loops, kill switches and bypasses for the calling edge when
// its digest is not DIGEST, else 204 once S seconds (at most 30) passed.
// The signature is over LoopsSigningContext and the body.
func (s *server) edgeLoops(w http.ResponseWriter, r *http.Request) error {
	e, wait, err := s.edgePoll(r)
	if err != nil {
		return err
	}
	body, err := s.EdgeLoops(r.Context(), e.Code, r.URL.Query().Get("after"), wait)
	if err != nil {
		return err
	}
	if body == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	w.Header().Set(DownlinkSignatureHeader, base64.StdEncoding.EncodeToString(s.SignDownlink(append([]byte(LoopsSigningContext), body...))))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// EdgeModels is the answer to GET /api/v1/edge/ml: the records (without
// their bytes) of the model versions the loops an edge may run use, by
// tenant, id and version, and the digest of that list. Each record
// carries the hub's signature, which the edge checks with the bytes it
// downloads before it stores the version (mlreg.Registry.Import).
//
// Rollouts are the plans that stage versions of those models at the edge
// (every state, the newest 20 per model): the edge moves its own stage in
// each by their gates, and takes the hub's changes (an operator's
// promotion or rollback, a rollback after a gate failed elsewhere) by
// their revision. Models then also lists each plan's candidate and
// baseline versions.
type EdgeModels struct {
	Digest   string          `json:"digest"`
	Models   []*mlreg.Record `json:"models"`
	Rollouts []*rollout.Plan `json:"rollouts,omitempty"`
}

// edgeML is GET /api/v1/edge/ml?after=DIGEST&wait=S: the list of model
// versions the calling edge's loops use when its digest is not DIGEST,
// else 204 once S seconds (at most 30) passed.
func (s *server) edgeML(w http.ResponseWriter, r *http.Request) error {
	e, wait, err := s.edgePoll(r)
	if err != nil {
		return err
	}
	body, err := s.EdgeML(r.Context(), e.Code, r.URL.Query().Get("after"), wait)
	if err != nil {
		return err
	}
	if body == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// edgeMLONNX is GET /api/v1/edge/ml/{id}/versions/{version}/onnx: a model
// version's bytes, of the calling edge's tenant only.
func (s *server) edgeMLONNX(w http.ResponseWriter, r *http.Request) error {
	e, err := s.authenticateEdge(r)
	if err != nil {
		return err
	}
	rec, err := s.MLModels.Get(r.Context(), e.Tenant, r.PathValue("id"), r.PathValue("version"))
	if err != nil {
		return mlErr(err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", `"sha256:`+rec.ONNXSHA256+`"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rec.ONNX)
	return nil
}

// LoopsSigningContext precedes a loop bundle's body under the hub's
// signature: a signed downlink of another kind is not taken for one.
const LoopsSigningContext = "wanwu edge loops v1\n"

// The hub signs what goes down an edge's link with its Ed25519 signing key:
// the signature, base64 in DownlinkSignatureHeader, is over
// DownlinkSigningContext followed by the exact body.
const (
	DownlinkSignatureHeader = "Wanwu-Signature"
	DownlinkSigningContext  = "wanwu edge downlink v1\n"
)

// EdgeDownlink is what goes down an edge's link: commands issued at the
// hub for its devices, and their desired states.
type EdgeDownlink struct {
	Commands []*command.Command `json:"commands"`
	Twins    []EdgeTwin         `json:"twins"`
	// Votes are approvals and rejections given at the hub for actions a
	// loop at the edge holds waiting for approval.
	Votes []EdgeVote `json:"votes"`
}

// EdgeVote is a vote on an action waiting at an edge: Evidence is the
// record's id at the edge.
type EdgeVote struct {
	ID       string `json:"id"`
	Evidence int64  `json:"evidence"`
	By       string `json:"by"`
	Approve  bool   `json:"approve"`
	Note     string `json:"note,omitempty"`
}

// EdgeTwin is a device's desired state at the hub.
type EdgeTwin struct {
	Code    string         `json:"code"`
	Desired map[string]any `json:"desired"`
	Version int64          `json:"version"`
}

// edgeCommandsAck is POST /api/v1/edge/commands/ack {"ids": [...],
// "twins": {code: version}}: the edge holds these commands (issued on its
// own command service), which the hub records delivered, and took these
// desired states.
func (s *server) edgeCommandsAck(w http.ResponseWriter, r *http.Request) error {
	e, err := s.authenticateEdge(r)
	if err != nil {
		return err
	}
	var req struct {
		IDs   []string         `json:"ids"`
		Twins map[string]int64 `json:"twins"`
		Votes []string         `json:"votes"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if len(req.IDs) > 10000 || len(req.Twins) > 100000 || len(req.Votes) > 10000 {
		return badRequest("ids", "at most 10000 commands, 100000 twins and 10000 votes")
	}
	if err := s.EdgeCommandsAck(r.Context(), e.Code, append(req.IDs, req.Votes...), req.Twins); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listEdges is GET /api/v1/edges: every edge that ever forwarded (of the
// caller's tenant), with its link's last word: marks, backlog, devices.
func (s *server) listEdges(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant := r.URL.Query().Get("tenant")
	if p.Tenant != "" {
		tenant = p.Tenant
	}
	edges, err := s.Edges.Edges(r.Context(), tenant)
	if err != nil {
		return err
	}
	if edges == nil {
		edges = []forward.EdgeInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"edges": edges})
	return nil
}

// getEdge is GET /api/v1/edges/{code}.
func (s *server) getEdge(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.visible(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	edges, err := s.Edges.Edges(r.Context(), o.Tenant)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(edges, func(e forward.EdgeInfo) bool { return e.Code == o.Code })
	if i < 0 {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no edge link from " + o.Code + " yet"}
	}
	writeJSON(w, http.StatusOK, edges[i])
	return nil
}

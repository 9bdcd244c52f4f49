package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// Twins, commands and device PSKs: what flows from operators down to devices.
func (s *server) downlinkRoutes(mux *http.ServeMux) {
	if s.Twins != nil {
		mux.HandleFunc("GET /api/v1/objects/{code}/twin", s.authed(auth.Viewer, s.getTwin))
		mux.HandleFunc("PATCH /api/v1/objects/{code}/twin/desired", s.authed(auth.Operator, s.patchDesired))
		mux.HandleFunc("GET /api/v1/twins", s.authed(auth.Viewer, s.listTwins))
	}
	if s.Commands != nil {
		mux.HandleFunc("POST /api/v1/objects/{code}/commands", s.authed(auth.Operator, s.issueCommand))
		mux.HandleFunc("GET /api/v1/objects/{code}/commands", s.authed(auth.Viewer, s.listCommands))
		mux.HandleFunc("GET /api/v1/commands/{id}", s.authed(auth.Viewer, s.getCommand))
		mux.HandleFunc("POST /api/v1/commands/{id}/cancel", s.authed(auth.Operator, s.cancelCommand))
	}
	if s.PSK != nil {
		mux.HandleFunc("GET /api/v1/objects/{code}/psk", s.authed(auth.Operator, s.devicePSK))
	}
}

// downlinkError maps twin and command errors to statuses.
func downlinkError(err error) error {
	var ce *twin.ConflictError
	switch {
	case errors.As(err, &ce):
		return &Error{Status: http.StatusConflict, Code: "version_conflict", Field: "version", Message: err.Error(), Current: &ce.Current}
	case errors.Is(err, twin.ErrTooLarge):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: err.Error()}
	case errors.Is(err, twin.ErrInvalid), errors.Is(err, command.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Message: err.Error()}
	case errors.Is(err, twin.ErrNotFound), errors.Is(err, command.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, command.ErrIDConflict):
		return &Error{Status: http.StatusConflict, Code: "conflict", Field: "id", Message: err.Error()}
	case errors.Is(err, command.ErrFinished):
		return &Error{Status: http.StatusConflict, Code: "finished", Message: err.Error()}
	}
	return err
}

func (s *server) getTwin(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.visible(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	t, err := s.Twins.Get(r.Context(), o.Code)
	if err != nil {
		return downlinkError(err)
	}
	writeTwin(w, http.StatusOK, t)
	return nil
}

// TwinOut is a twin with its delta, as the API shows it.
type TwinOut struct {
	*twin.Twin
	Delta map[string]any `json:"delta"`
}

func writeTwin(w http.ResponseWriter, status int, t *twin.Twin) {
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(t.Version, 10)))
	writeJSON(w, status, TwinOut{Twin: t, Delta: t.Delta()})
}

// patchDesired merges a JSON merge patch (RFC 7386) into the desired state.
// The expected version comes from If-Match (the ETag of a GET) or the
// version query parameter; without either the update is unconditional.
func (s *server) patchDesired(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.operable(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	ifVersion := int64(-1)
	v := strings.Trim(r.Header.Get("If-Match"), `"`)
	if v == "" {
		v = r.URL.Query().Get("version")
	}
	if v != "" && v != "*" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return badRequest("version", "%q is not a twin version", v)
		}
		ifVersion = n
	}
	patch, err := readBody(w, r, maxJSONBody)
	if err != nil {
		return err
	}
	t, err := s.Twins.SetDesired(r.Context(), p.Name, o.Code, patch, ifVersion)
	if err != nil {
		return downlinkError(err)
	}
	writeTwin(w, http.StatusOK, t)
	return nil
}

// listTwins returns the twins of the objects a filter selects (tenant,
// hierarchy path, tags: the same filter as the object list).
func (s *server) listTwins(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	f, err := objectFilter(r, p)
	if err != nil {
		return err
	}
	f.Status, f.After = r.URL.Query().Get("status"), r.URL.Query().Get("after")
	n, err := queryUint(r, "limit", 100)
	if err != nil {
		return err
	}
	f.Limit = int(min(max(n, 1), 1000))
	objs, next, err := s.Registry.List(r.Context(), f)
	if err != nil {
		return err
	}
	codes := make([]string, len(objs))
	for i, o := range objs {
		codes[i] = o.Code
	}
	twins, err := s.Twins.List(r.Context(), codes)
	if err != nil {
		return downlinkError(err)
	}
	out := make([]TwinOut, len(twins))
	for i, t := range twins {
		out[i] = TwinOut{Twin: t, Delta: t.Delta()}
	}
	writeJSON(w, http.StatusOK, map[string]any{"twins": out, "next": next})
	return nil
}

// CommandRequest is the body of POST /api/v1/objects/{code}/commands.
type CommandRequest struct {
	ID            string          `json:"id,omitempty"`
	Action        string          `json:"action"`
	Args          json.RawMessage `json:"args,omitempty"`
	TTL           string          `json:"ttl,omitempty"`
	ResultTimeout string          `json:"result_timeout,omitempty"`
}

func (s *server) issueCommand(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req CommandRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	o, err := s.operable(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	if req.Action == "" {
		return badRequest("action", "an action is required")
	}
	ttl, err := parseDuration("ttl", req.TTL)
	if err != nil {
		return err
	}
	rt, err := parseDuration("result_timeout", req.ResultTimeout)
	if err != nil {
		return err
	}
	c, created, err := s.Commands.Issue(r.Context(), p.Name, command.IssueRequest{
		Code: o.Code, Action: req.Action, Args: req.Args, ID: req.ID, TTL: ttl, ResultTimeout: rt,
	})
	if err != nil {
		return downlinkError(err)
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/api/v1/commands/"+c.ID)
	writeJSON(w, status, c)
	return nil
}

func (s *server) listCommands(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.visible(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	n, err := queryUint(r, "limit", 100)
	if err != nil {
		return err
	}
	cmds, err := s.Commands.List(r.Context(), o.Code, command.Status(r.URL.Query().Get("status")), int(min(max(n, 1), 1000)))
	if err != nil {
		return downlinkError(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"commands": nonNil(cmds)})
	return nil
}

// command loads a command and hides other tenants' (404).
func (s *server) command(r *http.Request, p auth.Principal) (*command.Command, error) {
	c, err := s.Commands.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, downlinkError(err)
	}
	if !p.Sees(c.Tenant) {
		return nil, downlinkError(fmt.Errorf("%w: %q", command.ErrNotFound, c.ID))
	}
	return c, nil
}

func (s *server) getCommand(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	c, err := s.command(r, p)
	if err != nil {
		return err
	}
	events, err := s.Commands.Events(r.Context(), c.ID)
	if err != nil {
		return downlinkError(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"command": c, "events": nonNil(events)})
	return nil
}

func (s *server) cancelCommand(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	c, err := s.command(r, p)
	if err != nil {
		return err
	}
	if err := p.Allows(auth.Operator, c.Tenant); err != nil {
		return err
	}
	c, err = s.Commands.Cancel(r.Context(), p.Name, c.ID)
	if err != nil {
		return downlinkError(err)
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

// PSKOut is a device's DTLS pre-shared key. The identity is the device's
// code and the key is the text itself (its ASCII bytes are the PSK), so
// tools that take both as strings, like libcoap's `coap-client -u -k`, use
// them unchanged.
type PSKOut struct {
	Identity string `json:"identity"`
	Key      string `json:"key"`
}

// devicePSK returns the device's CoAP/DTLS pre-shared key, derived from the
// hub's PSK secret and the device's active key: rotating the key changes it.
func (s *server) devicePSK(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.operable(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	id, err := s.PSKIdentity(r.Context(), o.Code)
	if err != nil {
		return err
	}
	key, err := s.PSK(r.Context(), id)
	if err != nil {
		return err
	}
	s.Logger.Info("device PSK read", "device", o.Code, "by", p.Name, "at", time.Now().UTC())
	writeJSON(w, http.StatusOK, PSKOut{Identity: id, Key: string(key)})
	return nil
}

package api

import (
	"net/http"
	"strconv"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/presence"
)

// presenceRoutes serve devices' online state and their session events.
func (s *server) presenceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/presence", s.authed(auth.Viewer, s.listPresence))
	mux.HandleFunc("GET /api/v1/presence/events", s.authed(auth.Viewer, s.presenceEvents))
	mux.HandleFunc("GET /api/v1/objects/{code}/presence", s.authed(auth.Viewer, s.objectPresence))
}

// objectPresence answers a device's state and its newest session events.
func (s *server) objectPresence(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.visible(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	st, err := s.Presence.Get(r.Context(), o.Code)
	if err != nil {
		return err
	}
	st.Tenant = o.Tenant
	evs, err := s.Presence.Events(r.Context(), presence.Filter{Device: o.Code, Limit: 20})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"presence": st, "events": evs})
	return nil
}

// listPresence answers the states of a tenant's (or every visible)
// devices that have connected at least once, by code; ?online=true|false
// selects.
func (s *server) listPresence(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q := r.URL.Query()
	var f presence.Filter
	var err error
	if f.Tenant, err = scopeTenant(p, q.Get("tenant")); err != nil {
		return err
	}
	if v := q.Get("online"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badRequest("online", "want true or false, got %q", v)
		}
		f.Online = &b
	}
	n, err := queryUint(r, "limit", 100)
	if err != nil {
		return err
	}
	f.Limit = int(min(n, 1000))
	states, err := s.Presence.List(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"presence": states})
	return nil
}

// presenceEvents answers the newest session events of a device, a tenant
// or all, oldest first; ?since accepts relative times (-10m).
func (s *server) presenceEvents(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q := r.URL.Query()
	var f presence.Filter
	var err error
	if f.Tenant, err = scopeTenant(p, q.Get("tenant")); err != nil {
		return err
	}
	if d := q.Get("device"); d != "" {
		o, err := s.visible(r.Context(), p, d)
		if err != nil {
			return err
		}
		f.Device = o.Code
	}
	if v := q.Get("since"); v != "" {
		if f.Since, err = parseTime("since", v); err != nil {
			return err
		}
	}
	n, err := queryUint(r, "limit", 100)
	if err != nil {
		return err
	}
	f.Limit = int(min(n, 1000))
	evs, err := s.Presence.Events(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
	return nil
}

package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/loop"
)

// loopRoutes serve closed loops: definitions, modes, kill switches,
// evidence, approvals and bypasses.
func (s *server) loopRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/loops", s.authed(auth.Operator, s.defineLoop))
	mux.HandleFunc("GET /api/v1/loops", s.authed(auth.Viewer, s.listLoops))
	mux.HandleFunc("GET /api/v1/loops/{key}", s.authed(auth.Viewer, s.getLoop))
	mux.HandleFunc("GET /api/v1/loops/{key}/versions", s.authed(auth.Viewer, s.loopVersions))
	mux.HandleFunc("POST /api/v1/loops/{key}/mode", s.authed(auth.Operator, s.loopMode))
	mux.HandleFunc("POST /api/v1/loops/{key}/kill", s.authed(auth.Operator, s.killLoop))
	mux.HandleFunc("DELETE /api/v1/loops/{key}/kill", s.authed(auth.Operator, s.releaseLoop))
	mux.HandleFunc("GET /api/v1/loops/{key}/compare", s.authed(auth.Viewer, s.compareLoops))
	mux.HandleFunc("POST /api/v1/loops/{key}/bypasses", s.authed(auth.Operator, s.requestBypass))
	mux.HandleFunc("POST /api/v1/sites/{site}/kill", s.authed(auth.Operator, s.killSite))
	mux.HandleFunc("DELETE /api/v1/sites/{site}/kill", s.authed(auth.Operator, s.releaseSite))
	mux.HandleFunc("GET /api/v1/evidence", s.authed(auth.Viewer, s.listEvidence))
	mux.HandleFunc("GET /api/v1/evidence/{id}", s.authed(auth.Viewer, s.getEvidence))
	mux.HandleFunc("POST /api/v1/evidence/{id}/approve", s.authed(auth.Operator, s.voteEvidence(true)))
	mux.HandleFunc("POST /api/v1/evidence/{id}/reject", s.authed(auth.Operator, s.voteEvidence(false)))
	mux.HandleFunc("GET /api/v1/approvals", s.authed(auth.Viewer, s.listApprovals))
	mux.HandleFunc("GET /api/v1/bypasses", s.authed(auth.Viewer, s.listBypasses))
	mux.HandleFunc("POST /api/v1/bypasses/{id}/approve", s.authed(auth.Operator, s.voteBypass(true)))
	mux.HandleFunc("POST /api/v1/bypasses/{id}/reject", s.authed(auth.Operator, s.voteBypass(false)))
	mux.HandleFunc("POST /api/v1/bypasses/{id}/end", s.authed(auth.Operator, s.endBypass))
}

// alarmRoutes serve alarms: list, history, acknowledge, shelve.
func (s *server) alarmRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/alarms", s.authed(auth.Viewer, s.listAlarms))
	mux.HandleFunc("GET /api/v1/alarms/{id}", s.authed(auth.Viewer, s.getAlarm))
	mux.HandleFunc("POST /api/v1/alarms/{id}/ack", s.authed(auth.Operator, s.ackAlarm))
	mux.HandleFunc("POST /api/v1/alarms/{id}/shelve", s.authed(auth.Operator, s.shelveAlarm))
	mux.HandleFunc("POST /api/v1/alarms/{id}/unshelve", s.authed(auth.Operator, s.unshelveAlarm))
}

// loopErr maps the loop and alarm packages' errors.
func loopErr(err error) error {
	var probs loop.Problems
	switch {
	case err == nil:
		return nil
	case errors.As(err, &probs):
		msg := fmt.Sprintf("the loop definition has %d problems", len(probs))
		if len(probs) == 1 {
			msg = "the loop definition has a problem"
		}
		return &Error{Status: http.StatusBadRequest, Code: "invalid_loop", Field: "definition", Message: msg, Problems: probs}
	case errors.Is(err, loop.ErrInvalid), errors.Is(err, alarm.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Message: err.Error()}
	case errors.Is(err, loop.ErrNotFound), errors.Is(err, alarm.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, loop.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	}
	return err
}

// visibleLoop returns a loop the principal may see (another tenant's is
// not found, as objects are).
func (s *server) visibleLoop(r *http.Request, p auth.Principal, role auth.Role) (*loop.Info, error) {
	key := r.PathValue("key")
	tenant, _, ok := loop.SplitKey(key)
	if !ok || !p.Sees(tenant) {
		return nil, loopErr(fmt.Errorf("loop %s: %w", key, loop.ErrNotFound))
	}
	version := 0
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, badRequest("version", "must be a positive integer")
		}
		version = n
	}
	info, err := s.Loops.Get(r.Context(), key, version)
	if err != nil {
		return nil, loopErr(err)
	}
	return info, p.Allows(role, info.Tenant)
}

func (s *server) defineLoop(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	doc, err := readBody(w, r, loop.MaxDefinitionSize)
	if err != nil {
		return err
	}
	tenant := p.Tenant
	if t := r.URL.Query().Get("tenant"); t != "" {
		tenant = t
	}
	if tenant != "" {
		if err := p.Allows(auth.Operator, tenant); err != nil {
			return err
		}
	} else {
		// The definition names its tenant; the principal must operate it.
		d, err := loop.Parse(doc)
		if err != nil {
			return loopErr(err)
		}
		if d.Tenant != "" {
			if err := p.Allows(auth.Operator, d.Tenant); err != nil {
				return err
			}
		}
	}
	info, changed, err := s.Loops.Define(r.Context(), p.Name, tenant, doc)
	if err != nil {
		return loopErr(err)
	}
	if err := p.Allows(auth.Operator, info.Tenant); err != nil {
		return err
	}
	status := http.StatusOK
	if changed {
		status = http.StatusCreated
	}
	writeJSON(w, status, map[string]any{"loop": info, "changed": changed})
	return nil
}

func (s *server) listLoops(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := scopeTenant(p, r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	infos, err := s.Loops.List(r.Context(), tenant)
	if err != nil {
		return err
	}
	stats := map[string]loop.LoopStats{}
	for _, st := range s.Loops.Stats() {
		stats[st.Key] = st
	}
	counts, err := s.Loops.Store().Counts(r.Context(), tenant)
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(infos))
	for _, info := range infos {
		c := counts[info.Key]
		if c == nil {
			c = &loop.Counts{States: map[string]int{}}
		}
		out = append(out, map[string]any{"loop": info, "stats": stats[info.Key], "evidence": c})
	}
	kills, err := s.Loops.Store().Kills(r.Context())
	if err != nil {
		return err
	}
	sites := map[string]string{}
	for k, v := range kills.Sites {
		if t, _, _ := strings.Cut(k, ":"); tenant == "" || t == tenant {
			sites[k] = v
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"loops": out, "site_kills": sites})
	return nil
}

func (s *server) getLoop(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	info, err := s.visibleLoop(r, p, auth.Viewer)
	if err != nil {
		return err
	}
	var stats *loop.LoopStats
	for _, st := range s.Loops.Stats() {
		if st.Key == info.Key {
			stats = &st
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"loop": info, "stats": stats})
	return nil
}

func (s *server) loopVersions(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	info, err := s.visibleLoop(r, p, auth.Viewer)
	if err != nil {
		return err
	}
	vs, err := s.Loops.Store().Versions(r.Context(), info.Key)
	if err != nil {
		return loopErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": vs})
	return nil
}

func (s *server) loopMode(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b struct {
		Mode string `json:"mode"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	info, err := s.visibleLoop(r, p, auth.Operator)
	if err != nil {
		return err
	}
	info, err = s.Loops.SetMode(r.Context(), p.Name, info.Key, loop.Mode(b.Mode))
	if err != nil {
		return loopErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"loop": info})
	return nil
}

type killBody struct {
	Reason string `json:"reason"`
	Tenant string `json:"tenant"`
}

func (s *server) killLoop(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b killBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	info, err := s.visibleLoop(r, p, auth.Operator)
	if err != nil {
		return err
	}
	if err := s.Loops.Store().Kill(r.Context(), p.Name, "loop", info.Key, info.Tenant, b.Reason); err != nil {
		return loopErr(err)
	}
	s.Loops.Reload()
	writeJSON(w, http.StatusOK, map[string]any{"loop": info.Key, "killed": b.Reason})
	return nil
}

func (s *server) releaseLoop(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	info, err := s.visibleLoop(r, p, auth.Operator)
	if err != nil {
		return err
	}
	released, err := s.Loops.Store().Release(r.Context(), p.Name, "loop", info.Key, info.Tenant)
	if err != nil {
		return err
	}
	s.Loops.Reload()
	writeJSON(w, http.StatusOK, map[string]any{"loop": info.Key, "released": released})
	return nil
}

// siteKey checks a site reference, tenant:site.
func siteKey(r *http.Request, p auth.Principal) (string, string, error) {
	key := r.PathValue("site")
	tenant, site, ok := strings.Cut(key, ":")
	if !ok || site == "" || strings.Contains(site, "/") {
		return "", "", badRequest("site", "a site is tenant:site, the first segment of its objects' hierarchy path")
	}
	return key, tenant, p.Allows(auth.Operator, tenant)
}

func (s *server) killSite(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b killBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	key, tenant, err := siteKey(r, p)
	if err != nil {
		return err
	}
	if err := s.Loops.Store().Kill(r.Context(), p.Name, "site", key, tenant, b.Reason); err != nil {
		return loopErr(err)
	}
	s.Loops.Reload()
	writeJSON(w, http.StatusOK, map[string]any{"site": key, "killed": b.Reason})
	return nil
}

func (s *server) releaseSite(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	key, tenant, err := siteKey(r, p)
	if err != nil {
		return err
	}
	released, err := s.Loops.Store().Release(r.Context(), p.Name, "site", key, tenant)
	if err != nil {
		return err
	}
	s.Loops.Reload()
	writeJSON(w, http.StatusOK, map[string]any{"site": key, "released": released})
	return nil
}

func (s *server) compareLoops(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	info, err := s.visibleLoop(r, p, auth.Viewer)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	with := q.Get("with")
	if t, _, ok := loop.SplitKey(with); !ok || !p.Sees(t) {
		return badRequest("with", "the loop to compare with, as tenant:id")
	}
	since := time.Now().Add(-24 * time.Hour)
	if v := q.Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return badRequest("since", "a duration back from now, such as 24h")
		}
		since = time.Now().Add(-d)
	}
	window := time.Minute
	if v := q.Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return badRequest("window", "a duration such as 1m")
		}
		window = d
	}
	c, err := s.Loops.Store().Compare(r.Context(), info.Key, with, since, window)
	if err != nil {
		return loopErr(err)
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (s *server) listEvidence(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q := r.URL.Query()
	tenant, err := scopeTenant(p, q.Get("tenant"))
	if err != nil {
		return err
	}
	f := loop.EvidenceFilter{Tenant: tenant, Loop: q.Get("loop"), Object: q.Get("object")}
	if st := q.Get("state"); st != "" {
		f.States = strings.Split(st, ",")
	}
	if v := q.Get("before"); v != "" {
		if f.Before, err = strconv.ParseInt(v, 10, 64); err != nil {
			return badRequest("before", "an evidence id")
		}
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 {
			return badRequest("limit", "a positive integer")
		}
	}
	evs, err := s.Loops.Store().ListEvidence(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"evidence": nonNil(evs)})
	return nil
}

func (s *server) listApprovals(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := scopeTenant(p, r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	evs, err := s.Loops.Store().ListEvidence(r.Context(), loop.EvidenceFilter{Tenant: tenant, States: []string{loop.StateAwaiting}, Limit: 1000})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": nonNil(evs)})
	return nil
}

func (s *server) visibleEvidence(r *http.Request, p auth.Principal) (*loop.Evidence, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil, badRequest("id", "an evidence id")
	}
	ev, err := s.Loops.Store().GetEvidence(r.Context(), id)
	if err != nil {
		return nil, loopErr(err)
	}
	if !p.Sees(ev.Tenant) {
		return nil, loopErr(fmt.Errorf("evidence %d: %w", id, loop.ErrNotFound))
	}
	return ev, nil
}

func (s *server) getEvidence(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ev, err := s.visibleEvidence(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"evidence": ev})
	return nil
}

type noteBody struct {
	Note string `json:"note"`
}

func (s *server) voteEvidence(approve bool) authedFunc {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
		var b noteBody
		if err := decodeJSONOptional(w, r, &b); err != nil {
			return err
		}
		ev, err := s.visibleEvidence(r, p)
		if err != nil {
			return err
		}
		if err := p.Allows(auth.Operator, ev.Tenant); err != nil {
			return err
		}
		if ev.Origin != "" {
			// The action waits at the edge whose loop decided: the vote
			// goes down its link, and the record here changes when the
			// edge's comes back up.
			if ev.State != loop.StateAwaiting {
				return loopErr(fmt.Errorf("evidence %d is %s, not waiting for approval: %w", ev.ID, ev.State, loop.ErrConflict))
			}
			if s.RelayVote == nil || len(b.Note) > 1024 {
				return loopErr(fmt.Errorf("evidence %d waits at edge %s: vote on its API: %w", ev.ID, ev.Origin, loop.ErrConflict))
			}
			if err := s.RelayVote(r.Context(), ev, p.Name, approve, b.Note); err != nil {
				return loopErr(err)
			}
			writeJSON(w, http.StatusAccepted, map[string]any{"evidence": ev, "relayed_to": ev.Origin})
			return nil
		}
		ev, err = s.Loops.Vote(r.Context(), p.Name, ev.ID, approve, b.Note)
		if err != nil {
			return loopErr(err)
		}
		writeJSON(w, http.StatusOK, map[string]any{"evidence": ev})
		return nil
	}
}

func (s *server) requestBypass(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b struct {
		Guard    string `json:"guard"`
		Object   string `json:"object"`
		Duration string `json:"duration"`
		Reason   string `json:"reason"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	info, err := s.visibleLoop(r, p, auth.Operator)
	if err != nil {
		return err
	}
	d, err := time.ParseDuration(b.Duration)
	if err != nil {
		return badRequest("duration", "a duration such as 30m")
	}
	if b.Object != "" {
		if _, err := s.visible(r.Context(), p, b.Object); err != nil {
			return err
		}
	}
	bp, err := s.Loops.Store().RequestBypass(r.Context(), p.Name, loop.Bypass{Loop: info.Key, Tenant: info.Tenant, Object: b.Object, Guard: b.Guard, Reason: b.Reason, Duration: d})
	if err != nil {
		return loopErr(err)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"bypass": bp})
	return nil
}

func (s *server) listBypasses(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := scopeTenant(p, r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	bs, err := s.Loops.Store().Bypasses(r.Context(), tenant, r.URL.Query().Get("all") == "true")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"bypasses": nonNil(bs)})
	return nil
}

func (s *server) visibleBypass(r *http.Request, p auth.Principal) (*loop.Bypass, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil, badRequest("id", "a bypass id")
	}
	b, err := s.Loops.Store().GetBypass(r.Context(), id)
	if err != nil {
		return nil, loopErr(err)
	}
	if !p.Sees(b.Tenant) {
		return nil, loopErr(fmt.Errorf("bypass %d: %w", id, loop.ErrNotFound))
	}
	return b, p.Allows(auth.Operator, b.Tenant)
}

func (s *server) voteBypass(approve bool) authedFunc {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
		var b noteBody
		if err := decodeJSONOptional(w, r, &b); err != nil {
			return err
		}
		bp, err := s.visibleBypass(r, p)
		if err != nil {
			return err
		}
		bp, err = s.Loops.Store().VoteBypass(r.Context(), p.Name, bp.ID, approve, b.Note)
		if err != nil {
			return loopErr(err)
		}
		s.Loops.Reload()
		writeJSON(w, http.StatusOK, map[string]any{"bypass": bp})
		return nil
	}
}

func (s *server) endBypass(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	bp, err := s.visibleBypass(r, p)
	if err != nil {
		return err
	}
	bp, err = s.Loops.Store().EndBypass(r.Context(), p.Name, bp.ID)
	if err != nil {
		return loopErr(err)
	}
	s.Loops.Reload()
	writeJSON(w, http.StatusOK, map[string]any{"bypass": bp})
	return nil
}

func (s *server) listAlarms(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q := r.URL.Query()
	tenant, err := scopeTenant(p, q.Get("tenant"))
	if err != nil {
		return err
	}
	f := alarm.Filter{Tenant: tenant, Object: q.Get("object"), Source: q.Get("source")}
	if st := q.Get("state"); st != "" {
		for _, x := range strings.Split(st, ",") {
			f.States = append(f.States, alarm.State(x))
		}
	}
	if v := q.Get("severity"); v != "" {
		sev, err := alarm.ParseSeverity(v)
		if err != nil {
			return badRequest("severity", "%v", err)
		}
		f.MinSeverity = sev
	}
	if v := q.Get("shelved"); v != "" {
		b := v == "true"
		f.Shelved = &b
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 {
			return badRequest("limit", "a positive integer")
		}
	}
	as, err := s.Alarms.List(r.Context(), f)
	if err != nil {
		return loopErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"alarms": nonNil(as), "flooding": tenant != "" && s.Alarms.Flooding(tenant)})
	return nil
}

func (s *server) visibleAlarm(r *http.Request, p auth.Principal, role auth.Role) (*alarm.Alarm, error) {
	a, err := s.Alarms.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, loopErr(err)
	}
	if !p.Sees(a.Tenant) {
		return nil, loopErr(fmt.Errorf("alarm %s: %w", r.PathValue("id"), alarm.ErrNotFound))
	}
	return a, p.Allows(role, a.Tenant)
}

func (s *server) getAlarm(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	a, err := s.visibleAlarm(r, p, auth.Viewer)
	if err != nil {
		return err
	}
	hist, err := s.Alarms.History(r.Context(), a.ID, 200)
	if err != nil {
		return loopErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"alarm": a, "history": nonNil(hist)})
	return nil
}

func (s *server) ackAlarm(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b noteBody
	if err := decodeJSONOptional(w, r, &b); err != nil {
		return err
	}
	a, err := s.visibleAlarm(r, p, auth.Operator)
	if err != nil {
		return err
	}
	a, err = s.Alarms.Ack(r.Context(), p.Name, a.ID, b.Note)
	if err != nil {
		return loopErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"alarm": a})
	return nil
}

func (s *server) shelveAlarm(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b struct {
		Reason   string `json:"reason"`
		Duration string `json:"duration"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	d, err := time.ParseDuration(b.Duration)
	if err != nil || d <= 0 {
		return badRequest("duration", "how long to shelve, such as 1h")
	}
	a, err := s.visibleAlarm(r, p, auth.Operator)
	if err != nil {
		return err
	}
	a, err = s.Alarms.Shelve(r.Context(), p.Name, a.ID, b.Reason, time.Now().Add(d))
	if err != nil {
		return loopErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"alarm": a})
	return nil
}

func (s *server) unshelveAlarm(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	a, err := s.visibleAlarm(r, p, auth.Operator)
	if err != nil {
		return err
	}
	a, err = s.Alarms.Unshelve(r.Context(), p.Name, a.ID)
	if err != nil {
		return loopErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"alarm": a})
	return nil
}

type authedFunc = func(w http.ResponseWriter, r *http.Request, p auth.Principal) error

// decodeJSONOptional is decodeJSON for a body that may be empty.
func decodeJSONOptional(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return decodeJSON(w, r, v)
}

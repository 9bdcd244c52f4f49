package console

// The closed loops' pages: /loops (every loop the token sees, its counts,
// the site kill switches), /loops/{key} (the definition, versions, mode,
// kill switch, bypasses and the evidence timeline) and the forms that
// change them. Everything is read and changed through the node's API
// (/api/v1/loops, /api/v1/evidence, /api/v1/bypasses, /api/v1/sites).

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wanwu-iot/wanwu/internal/guard"
	"github.com/wanwu-iot/wanwu/internal/loop"
)

// stateOrder is the evidence states in the order of a decision's life.
var stateOrder = []string{loop.StateAwaiting, loop.StateSent, loop.StateVerify, loop.StateDone, loop.StateFailed,
	loop.StateRefused, loop.StateRejected, loop.StateExpired, loop.StateShadow, loop.StateRecorded, loop.StateError}

// loopModes are the modes a loop may be set to.
var loopModes = []string{string(loop.Active), string(loop.Shadow), string(loop.Disabled)}

// evidencePage is how many evidence records the loop page shows at once.
const evidencePage = 50

// doneMessages are what a page says after a change sent it back there
// (Post/Redirect/Get: the page is given ?done=CODE).
var doneMessages = map[string]string{
	"mode":            "The loop's mode was changed.",
	"killed":          "The loop's kill switch is engaged: every action of it is refused until it is released.",
	"released":        "The loop's kill switch is released.",
	"not-killed":      "The loop's kill switch was not engaged.",
	"site-killed":     "The site's kill switch is engaged: every loop's actions on its objects are refused until it is released.",
	"site-released":   "The site's kill switch is released.",
	"site-not-killed": "That site's kill switch was not engaged.",
	"bypass":          "The bypass was requested. It is in force only once someone other than you approves it.",
	"bypass-approve":  "Your approval of the bypass was recorded.",
	"bypass-reject":   "The bypass was rejected.",
	"bypass-end":      "The bypass was ended.",
	"approve":         "Your approval was recorded.",
	"reject":          "The action was rejected.",
	"relayed":         "Your vote was sent to the edge whose loop decided; the record here changes when the edge answers.",
	"ack":             "The alarm was acknowledged.",
	"shelve":          "The alarm was shelved.",
	"unshelve":        "The alarm was unshelved.",
	// the device page
	"desired":    "Desired state saved. The device receives it when it is connected; the delta shows what it has not reported yet.",
	"command":    "Command issued. It is listed below; the list refreshes itself until the command is final.",
	"canceled":   "Command canceled.",
	"quarantine": "The object is quarantined.",
	"reinstate":  "The object is active again.",
	"revoke":     "The object is revoked.",
	// rollouts
	"deployed":    "The version is deployed in shadow: each target starts at its next evaluation, and moves on by the gates.",
	"promoted":    "The stage is forced: the targets move to it at their next evaluation.",
	"rolled-back": "The rollout is rolled back: the targets go back to the baseline at their next evaluation.",
	// datasets and labels
	"built":       "The dataset version is built: its windows and their labels as they are now, with its quality scores.",
	"captured":    "The window is captured. Label it below, or leave it in the queue.",
	"labelled":    "Your label is saved. This is the next unlabelled window of the queue.",
	"queue-empty": "Your label is saved. No unlabelled window is left in the queue.",
}

// doneMessage is the message for the page's ?done= code.
func doneMessage(r *http.Request) string { return doneMessages[r.URL.Query().Get("done")] }

// refusal returns the API's refusal of a change, to be shown beside the
// form; ok is false for any other error and for "not found" (which the
// error page answers).
func refusal(err error) (*apiError, bool) {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusNotFound && ae.Status != http.StatusUnauthorized && ae.Status < 500 {
		return ae, true
	}
	return nil, false
}

// refusalText is a refusal's message with its problems.
func refusalText(ae *apiError) string { return apiPageError(ae).Message }

// num writes a number as a person reads it: at most six significant
// digits.
func num(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

// numbersText lists named numbers, by name.
func numbersText(vals map[string]float64) string {
	parts := make([]string, 0, len(vals))
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		parts = append(parts, k+"="+num(vals[k]))
	}
	return strings.Join(parts, " ")
}

// fieldsText lists named values, by name.
func fieldsText(vals map[string]any) string {
	parts := make([]string, 0, len(vals))
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		switch v := vals[k].(type) {
		case float64:
			parts = append(parts, k+"="+num(v))
		case string:
			parts = append(parts, k+"="+strconv.Quote(v))
		default:
			b, _ := json.Marshal(v)
			parts = append(parts, k+"="+string(b))
		}
	}
	return strings.Join(parts, " ")
}

// short cuts s to n bytes (on a rune boundary), with an ellipsis.
func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:runeCut(s, n)] + "…"
}

// runeCut is the largest index ≤ n (n < len(s)) that starts a rune.
func runeCut(s string, n int) int {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return n
}

// stateCounts are counts by state in the order of a decision's life
// (others after, by name), without zeros.
func stateCounts(m map[string]int) []countRow {
	var out []countRow
	for _, st := range stateOrder {
		if m[st] > 0 {
			out = append(out, countRow{st, m[st]})
		}
	}
	for _, st := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(stateOrder, st) && m[st] > 0 {
			out = append(out, countRow{st, m[st]})
		}
	}
	return out
}

// selectorText says which objects a loop runs on.
func selectorText(s loop.Selector) string {
	parts := []string{"model " + s.Model}
	if len(s.Tags) > 0 {
		var tags []string
		for _, k := range slices.Sorted(maps.Keys(s.Tags)) {
			tags = append(tags, k+"="+s.Tags[k])
		}
		parts = append(parts, "tags "+strings.Join(tags, ", "))
	}
	if s.Under != "" {
		parts = append(parts, "under "+s.Under)
	}
	if len(s.Objects) > 0 {
		parts = append(parts, "objects "+strings.Join(s.Objects, ", "))
	}
	return strings.Join(parts, "; ")
}

// loopRoutes are the routes of the loops', approvals' and alarms' pages.
func (c *Console) loopRoutes() {
	c.mux.HandleFunc("GET /loops", c.page(c.loops))
	c.mux.HandleFunc("POST /loops/site-kill", c.page(c.siteKill(true)))
	c.mux.HandleFunc("POST /loops/site-release", c.page(c.siteKill(false)))
	c.mux.HandleFunc("GET /loops/{key}", c.page(c.loopPage))
	c.mux.HandleFunc("POST /loops/{key}/mode", c.page(c.loopChange(c.loopMode, nil)))
	c.mux.HandleFunc("POST /loops/{key}/kill", c.page(c.loopChange(c.loopKill, func(v *loopView, r *http.Request) {
		v.KillReason = r.PostFormValue("reason")
	})))
	c.mux.HandleFunc("POST /loops/{key}/release", c.page(c.loopChange(c.loopRelease, nil)))
	c.mux.HandleFunc("POST /loops/{key}/bypasses", c.page(c.loopChange(c.loopBypass, func(v *loopView, r *http.Request) {
		v.Bypass = bypassFormOf(r)
	})))
	c.mux.HandleFunc("POST /loops/{key}/bypasses/{id}/{action}", c.page(c.loopChange(c.bypassAction, nil)))
	c.mux.HandleFunc("GET /evidence/{id}", c.page(c.evidence))
	c.mux.HandleFunc("POST /evidence/{id}/approve", c.page(c.vote(true)))
	c.mux.HandleFunc("POST /evidence/{id}/reject", c.page(c.vote(false)))
	c.mux.HandleFunc("GET /approvals", c.page(c.approvals))
	c.mux.HandleFunc("GET /alarms", c.page(c.alarms))
	c.mux.HandleFunc("GET /alarms/{id}", c.page(c.alarmPage))
	c.mux.HandleFunc("POST /alarms/{id}/ack", c.page(c.alarmChange("ack")))
	c.mux.HandleFunc("POST /alarms/{id}/shelve", c.page(c.alarmChange("shelve")))
	c.mux.HandleFunc("POST /alarms/{id}/unshelve", c.page(c.alarmChange("unshelve")))
}

// jsonUnescaper undoes the API's escaping of <, > and & in JSON strings
// (the page escapes what it shows): a definition's CEL reads band > 1.0.
var jsonUnescaper = strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&")

// prettyJSON is a JSON document indented for people.
func prettyJSON(raw []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return jsonUnescaper.Replace(b.String())
}

// loopPath is a loop's path in the API.
func loopPath(key, suffix string) string { return "/api/v1/loops/" + url.PathEscape(key) + suffix }

// consoleLoopPath is a loop's page.
func consoleLoopPath(key string) string { return "/loops/" + url.PathEscape(key) }

// loopEntry is one loop of the API's list.
type loopEntry struct {
	Loop     loop.Info      `json:"loop"`
	Stats    loop.LoopStats `json:"stats"`
	Evidence loop.Counts    `json:"evidence"`
}

// loopsView is the loops page's data.
type loopsView struct {
	Scope     string
	Loops     []loopRow
	SiteKills []countText
	Approvals int
	Done      string
	Error     string
	// Site and Reason are put back in the site kill form after a refusal.
	Site, Reason string
}

type loopRow struct {
	Key, Title, Mode, Placement, Killed, Selector string
	Version                                       int
	Objects, On                                   int // at this node
	States, Refusals                              []countRow
}

// countText is a name with a text.
type countText struct{ Name, Text string }

func (c *Console) loopsData(r *http.Request, q *request) (*loopsView, error) {
	var out struct {
		Loops     []loopEntry       `json:"loops"`
		SiteKills map[string]string `json:"site_kills"`
	}
	if err := c.call(r, q, "GET", "/api/v1/loops", nil, nil, &out); err != nil {
		return nil, err
	}
	var ap struct {
		Approvals []json.RawMessage `json:"approvals"`
	}
	if err := c.call(r, q, "GET", "/api/v1/approvals", nil, nil, &ap); err != nil {
		return nil, err
	}
	v := &loopsView{Scope: q.p.Tenant, Approvals: len(ap.Approvals)}
	for _, l := range out.Loops {
		row := loopRow{Key: l.Loop.Key, Mode: string(l.Loop.Mode), Killed: l.Loop.Killed, Version: l.Loop.Version,
			Objects: l.Stats.Objects, On: l.Stats.On, States: stateCounts(l.Evidence.States), Refusals: sorted(l.Evidence.Refusals)}
		if d := l.Loop.Def; d != nil {
			row.Title, row.Placement, row.Selector = d.Title, string(d.Placement), selectorText(d.On)
		}
		if row.Placement == "" {
			row.Placement = "auto"
		}
		v.Loops = append(v.Loops, row)
	}
	slices.SortFunc(v.Loops, func(a, b loopRow) int { return cmp.Compare(a.Key, b.Key) })
	for _, site := range slices.Sorted(maps.Keys(out.SiteKills)) {
		v.SiteKills = append(v.SiteKills, countText{site, out.SiteKills[site]})
	}
	return v, nil
}

// loops lists the loops.
func (c *Console) loops(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.loopsData(r, q)
	if err != nil {
		return err
	}
	v.Done = doneMessage(r)
	c.render(w, r, q, http.StatusOK, "loops", view{Title: "Loops", Nav: "loops", Data: v})
	return nil
}

// siteKill engages (kill true) or releases a site's kill switch.
func (c *Console) siteKill(kill bool) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, q *request) error {
		site := strings.TrimSpace(r.PostFormValue("site"))
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		method, body, done := "DELETE", any(nil), "site-released"
		if kill {
			method, body, done = "POST", map[string]string{"reason": reason}, "site-killed"
		}
		var out struct {
			Released *bool `json:"released"`
		}
		var err error
		if site == "" {
			err = &apiError{Status: http.StatusBadRequest, Message: "name the site, as tenant:site"}
		} else {
			err = c.call(r, q, method, "/api/v1/sites/"+url.PathEscape(site)+"/kill", nil, body, &out)
		}
		if ae, ok := refusal(err); ok {
			v, err := c.loopsData(r, q)
			if err != nil {
				return err
			}
			v.Error, v.Site, v.Reason = refusalText(ae), site, reason
			c.render(w, r, q, ae.Status, "loops", view{Title: "Loops", Nav: "loops", Data: v})
			return nil
		}
		if err != nil {
			return err
		}
		if out.Released != nil && !*out.Released {
			done = "site-not-killed"
		}
		http.Redirect(w, r, "/loops?done="+done, http.StatusSeeOther)
		return nil
	}
}

// loopView is a loop's page.
type loopView struct {
	Key, Title, Description, Mode, Placement, Killed, Selector string
	Version                                                    int
	Digest                                                     string
	UpdatedAt                                                  time.Time
	Definition                                                 string // indented JSON
	// Stats is this node's engine's view; nil where the loop does not run.
	Stats       *loop.LoopStats
	StatsStates []countRow
	LastAt      time.Time
	Versions    []versionRow
	Bypasses    []bypassRow
	Evidence    []evidenceRow
	Filter      evidenceFilter
	States      []string
	Modes       []string
	// Older is the query of the next, older page; Paged says this is not
	// the newest page.
	Older string
	Paged bool
	Done  string
	Error string
	// Bypass and KillReason put a refused form's values back.
	Bypass     bypassForm
	KillReason string
}

type versionRow struct {
	Version             int
	Mode, Actor, Digest string
	DigestShort         string
	CreatedAt           time.Time
}

type bypassRow struct {
	ID                                int64
	Object, Guard, State, Reason, For string
	RequestedBy, Votes                string
	CreatedAt, Until                  time.Time
	Pending, Active                   bool
}

type evidenceFilter struct{ Object, State string }

type bypassForm struct{ Guard, Object, Duration, Reason string }

// evidenceRow is one record of a timeline or of the approval queue.
type evidenceRow struct {
	ID                              int64
	At                              time.Time
	Loop, Object, Kind, State, Mode string
	Version                         int
	// Action is the command or desired state proposed, Values the numbers
	// after the guards, Detail the refusal, error or outcome.
	Action, Values, Detail string
	Refused                bool
	Origin                 string // the edge whose loop decided, "" for this node
	// Approval: "N of M", who may approve, until when.
	Approval, Approvers string
	Expires             time.Time
	Awaiting            bool
	Guards              []guardRow
	// For a row rendered alone (the approval queue's fragment): the
	// session's CSRF token, whether the user may vote, and what became of
	// the vote.
	CSRF         string
	Operate      bool
	Message      string
	MessageError bool
}

type voteRow struct {
	By, Vote, Note string
	At             time.Time
}

type guardRow struct{ Guard, Outcome, Detail string }

type stepRow struct {
	At            time.Time
	State, Detail string
}

// actionText is the action a record proposed.
func actionText(a *loop.Action) string {
	switch {
	case a == nil:
		return ""
	case a.Command != "":
		return strings.TrimSpace(a.Command + " " + fieldsText(a.Args))
	case len(a.Desired) > 0:
		return "desired " + fieldsText(a.Desired)
	}
	return ""
}

// evidenceDetail is a record's refusal, error or outcome, short.
func evidenceDetail(ev *loop.Evidence) string { return short(ev.Summary(), 120) }

// approvalCount is the approving votes of a record.
func approvalCount(ap *loop.ApprovalState) int {
	n := 0
	for _, v := range ap.Votes {
		if v.Approve {
			n++
		}
	}
	return n
}

func newEvidenceRow(ev *loop.Evidence) evidenceRow {
	row := evidenceRow{ID: ev.ID, At: ev.At, Loop: ev.Loop, Object: ev.Object, Kind: ev.Kind, State: ev.State, Mode: string(ev.Mode),
		Version: ev.Version, Action: actionText(ev.Action), Detail: evidenceDetail(ev), Origin: ev.Origin,
		Refused: ev.State == loop.StateRefused, Awaiting: ev.State == loop.StateAwaiting}
	for _, g := range ev.Guards {
		row.Guards = append(row.Guards, guardRow{Guard: g.Guard, Outcome: string(g.Outcome), Detail: g.Detail})
	}
	if ev.Action != nil && len(ev.Action.Values) > 0 {
		row.Values = numbersText(ev.Action.Values)
	}
	if ap := ev.Approval; ap != nil {
		row.Approval = fmt.Sprintf("%d of %d", approvalCount(ap), ap.Required)
		row.Approvers = "any operator"
		if len(ap.Approvers) > 0 {
			row.Approvers = strings.Join(ap.Approvers, ", ")
		}
		row.Expires = ap.Expires
	}
	return row
}

func voteText(v guard.Vote) string {
	if v.Approve {
		return "approve"
	}
	return "reject"
}

// loopData reads a loop's page: the loop, its versions, bypasses and a
// page of its evidence as the request's query selects.
func (c *Console) loopData(r *http.Request, q *request, key string) (*loopView, error) {
	var out struct {
		Loop struct {
			loop.Info
			Def json.RawMessage `json:"definition"`
		} `json:"loop"`
		Stats *loop.LoopStats `json:"stats"`
	}
	if err := c.call(r, q, "GET", loopPath(key, ""), nil, nil, &out); err != nil {
		return nil, err
	}
	l := out.Loop
	v := &loopView{Key: l.Key, Mode: string(l.Mode), Killed: l.Killed, Version: l.Version, Digest: l.Digest,
		UpdatedAt: l.UpdatedAt, Stats: out.Stats, States: stateOrder, Modes: loopModes, Placement: "auto"}
	var def loop.Definition
	if err := json.Unmarshal(l.Def, &def); err == nil {
		v.Title, v.Description, v.Selector = def.Title, def.Description, selectorText(def.On)
		if def.Placement != "" {
			v.Placement = string(def.Placement)
		}
	}
	v.Definition = prettyJSON(l.Def)
	if s := out.Stats; s != nil {
		v.StatsStates = stateCounts(s.Outcomes)
		if s.LastAt != nil {
			v.LastAt = *s.LastAt
		}
	}

	var vs struct {
		Versions []loop.Version `json:"versions"`
	}
	if err := c.call(r, q, "GET", loopPath(key, "/versions"), nil, nil, &vs); err != nil {
		return nil, err
	}
	for _, ver := range slices.Backward(vs.Versions) {
		row := versionRow{Version: ver.Version, Actor: ver.Actor, Digest: ver.Digest, DigestShort: short(ver.Digest, 16), CreatedAt: ver.CreatedAt}
		if ver.Def != nil {
			row.Mode = string(ver.Def.Mode)
		}
		v.Versions = append(v.Versions, row)
	}
	slices.SortFunc(v.Versions, func(a, b versionRow) int { return cmp.Compare(b.Version, a.Version) })

	var bs struct {
		Bypasses []*loop.Bypass `json:"bypasses"`
	}
	if err := c.call(r, q, "GET", "/api/v1/bypasses", url.Values{"all": {"true"}}, nil, &bs); err != nil {
		return nil, err
	}
	for _, b := range bs.Bypasses {
		if b.Loop != l.Key {
			continue
		}
		row := bypassRow{ID: b.ID, Object: b.Object, Guard: b.Guard, State: b.State, Reason: b.Reason, RequestedBy: b.RequestedBy,
			For: time.Duration(b.DurationS * float64(time.Second)).Round(time.Second).String(), CreatedAt: b.CreatedAt,
			Pending: b.State == "pending", Active: b.State == "active"}
		if b.Until != nil {
			row.Until = *b.Until
		}
		var votes []string
		for _, vt := range b.Votes {
			votes = append(votes, vt.By+" "+voteText(vt))
		}
		row.Votes = strings.Join(votes, ", ")
		v.Bypasses = append(v.Bypasses, row)
	}

	qs := r.URL.Query()
	v.Filter = evidenceFilter{Object: strings.TrimSpace(qs.Get("object")), State: qs.Get("state")}
	eq := url.Values{"loop": {l.Key}, "limit": {strconv.Itoa(evidencePage)}}
	if v.Filter.Object != "" {
		eq.Set("object", v.Filter.Object)
	}
	if v.Filter.State != "" {
		eq.Set("state", v.Filter.State)
	}
	if b := qs.Get("before"); b != "" {
		if n, err := strconv.ParseInt(b, 10, 64); err == nil && n > 0 {
			eq.Set("before", b)
			v.Paged = true
		}
	}
	var evs struct {
		Evidence []*loop.Evidence `json:"evidence"`
	}
	if err := c.call(r, q, "GET", "/api/v1/evidence", eq, nil, &evs); err != nil {
		return nil, err
	}
	for _, ev := range evs.Evidence {
		v.Evidence = append(v.Evidence, newEvidenceRow(ev))
	}
	if n := len(evs.Evidence); n == evidencePage {
		older := url.Values{"before": {strconv.FormatInt(evs.Evidence[n-1].ID, 10)}}
		if v.Filter.Object != "" {
			older.Set("object", v.Filter.Object)
		}
		if v.Filter.State != "" {
			older.Set("state", v.Filter.State)
		}
		v.Older = older.Encode()
	}
	return v, nil
}

// loopPage shows a loop.
func (c *Console) loopPage(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.loopData(r, q, r.PathValue("key"))
	if err != nil {
		return err
	}
	v.Done = doneMessage(r)
	c.render(w, r, q, http.StatusOK, "loop", view{Title: v.Key, Nav: "loops", Data: v})
	return nil
}

// loopChange sends a change of a loop to the API and goes back to the
// loop's page: with ?done= after it, or with the API's refusal beside the
// forms. send returns the done code.
func (c *Console) loopChange(send func(r *http.Request, q *request, key string) (string, error), keep func(v *loopView, r *http.Request)) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, q *request) error {
		key := r.PathValue("key")
		done, err := send(r, q, key)
		if ae, ok := refusal(err); ok {
			v, err := c.loopData(r, q, key)
			if err != nil {
				return err
			}
			v.Error = refusalText(ae)
			if keep != nil {
				keep(v, r)
			}
			c.render(w, r, q, ae.Status, "loop", view{Title: v.Key, Nav: "loops", Data: v})
			return nil
		}
		if err != nil {
			return err
		}
		http.Redirect(w, r, consoleLoopPath(key)+"?done="+done, http.StatusSeeOther)
		return nil
	}
}

func (c *Console) loopMode(r *http.Request, q *request, key string) (string, error) {
	return "mode", c.call(r, q, "POST", loopPath(key, "/mode"), nil, map[string]string{"mode": r.PostFormValue("mode")}, nil)
}

func (c *Console) loopKill(r *http.Request, q *request, key string) (string, error) {
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		// The API takes an empty reason; the command line and the console
		// ask for one, as a kill switch is for people to read.
		return "", &apiError{Status: http.StatusBadRequest, Field: "reason", Message: "say why the loop is killed"}
	}
	return "killed", c.call(r, q, "POST", loopPath(key, "/kill"), nil, map[string]string{"reason": reason}, nil)
}

func (c *Console) loopRelease(r *http.Request, q *request, key string) (string, error) {
	var out struct {
		Released bool `json:"released"`
	}
	if err := c.call(r, q, "DELETE", loopPath(key, "/kill"), nil, nil, &out); err != nil {
		return "", err
	}
	if !out.Released {
		return "not-killed", nil
	}
	return "released", nil
}

func (c *Console) loopBypass(r *http.Request, q *request, key string) (string, error) {
	f := bypassFormOf(r)
	return "bypass", c.call(r, q, "POST", loopPath(key, "/bypasses"), nil,
		map[string]string{"guard": f.Guard, "object": f.Object, "duration": f.Duration, "reason": f.Reason}, nil)
}

func bypassFormOf(r *http.Request) bypassForm {
	return bypassForm{Guard: strings.TrimSpace(r.PostFormValue("guard")), Object: strings.TrimSpace(r.PostFormValue("object")),
		Duration: strings.TrimSpace(r.PostFormValue("duration")), Reason: strings.TrimSpace(r.PostFormValue("reason"))}
}

// bypassAction approves, rejects or ends a bypass of the loop.
func (c *Console) bypassAction(r *http.Request, q *request, key string) (string, error) {
	action := r.PathValue("action")
	if action != "approve" && action != "reject" && action != "end" {
		return "", &pageError{Status: http.StatusNotFound, Title: "Not found", Message: "A bypass is approved, rejected or ended; not " + quote(action) + "."}
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return "", &pageError{Status: http.StatusNotFound, Title: "Not found", Message: "No bypass has the id " + quote(r.PathValue("id")) + "."}
	}
	var body any
	if action != "end" {
		body = map[string]string{"note": strings.TrimSpace(r.PostFormValue("note"))}
	}
	return "bypass-" + action, c.call(r, q, "POST", "/api/v1/bypasses/"+strconv.FormatInt(id, 10)+"/"+action, nil, body, nil)
}

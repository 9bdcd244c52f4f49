package console

// Alarms: /alarms (the alarms that need attention, by severity, refreshed
// with htmx; the shelved ones; the history of cleared ones) and
// /alarms/{id} (one alarm with its history), with acknowledge, shelve and
// unshelve (ISA-18.2). Read and changed through the node's API
// (/api/v1/alarms).

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/alarm"
)

// alarmViews are the tabs of the alarms page: what each asks the API for.
var alarmViews = []struct{ Key, Label, State, Shelved string }{
	{"active", "Needs attention", "unack_active,ack_active,unack_cleared", "false"},
	{"shelved", "Shelved", "", "true"},
	{"history", "Cleared", "cleared", ""},
}

// alarmsView is the alarms page's data.
type alarmsView struct {
	Scope      string
	View       string // a key of alarmViews
	Tabs       []tabView
	Severity   string
	Severities []alarm.Severity
	Alarms     []alarmRow
	Flooding   bool
	// Refresh is the fragment's URL, which the page reloads every 10 s.
	Refresh string
	At      time.Time
	Done    string
}

type tabView struct {
	Key, Label, Path string
	Current          bool
}

type alarmRow struct {
	ID, Object, Source, Loop, Name, Severity, State, Message string
	Count                                                    int
	RaisedAt, UpdatedAt, ClearedAt                           time.Time
	Shelved                                                  *alarm.Shelve
	Suppressed, Origin                                       string
	Acked                                                    bool
}

// sourceLoop is the key of the loop that raised an alarm ("" when no loop
// did).
func sourceLoop(a *alarm.Alarm) string {
	if key, ok := strings.CutPrefix(a.Source, "loop:"); ok && key != "" {
		if !strings.Contains(key, ":") {
			key = a.Tenant + ":" + key
		}
		return key
	}
	return ""
}

func newAlarmRow(a *alarm.Alarm) alarmRow {
	row := alarmRow{ID: a.ID, Object: a.Object, Source: a.Source, Loop: sourceLoop(a), Name: a.Name, Severity: string(a.Severity),
		State: string(a.State), Message: a.Message, Count: a.Count, RaisedAt: a.RaisedAt, UpdatedAt: a.UpdatedAt,
		Shelved: a.Shelved, Suppressed: a.Suppressed, Origin: a.Origin, Acked: a.Acked}
	if a.ClearedAt != nil {
		row.ClearedAt = *a.ClearedAt
	}
	return row
}

func (c *Console) alarmsData(r *http.Request, q *request) (*alarmsView, error) {
	qs := r.URL.Query()
	v := &alarmsView{Scope: q.p.Tenant, View: "active", Severity: qs.Get("severity"), Severities: alarm.Severities, At: q.now}
	if _, err := alarm.ParseSeverity(v.Severity); err != nil {
		v.Severity = ""
	}
	sel := alarmViews[0]
	for _, av := range alarmViews {
		if av.Key == qs.Get("view") {
			sel = av
		}
	}
	v.View = sel.Key
	for _, av := range alarmViews {
		v.Tabs = append(v.Tabs, tabView{Key: av.Key, Label: av.Label, Path: alarmsPath(av.Key, v.Severity), Current: av.Key == sel.Key})
	}
	v.Refresh = alarmsPath(sel.Key, v.Severity)
	aq := url.Values{"limit": {"500"}}
	if sel.State != "" {
		aq.Set("state", sel.State)
	}
	if sel.Shelved != "" {
		aq.Set("shelved", sel.Shelved)
	}
	if v.Severity != "" {
		aq.Set("severity", v.Severity)
	}
	var out struct {
		Alarms   []*alarm.Alarm `json:"alarms"`
		Flooding bool           `json:"flooding"`
	}
	if err := c.call(r, q, "GET", "/api/v1/alarms", aq, nil, &out); err != nil {
		return nil, err
	}
	v.Flooding = out.Flooding
	as := out.Alarms
	if sel.Key == "history" {
		// Newest first.
		slices.SortStableFunc(as, func(a, b *alarm.Alarm) int { return b.UpdatedAt.Compare(a.UpdatedAt) })
	} else {
		// The most severe first; within a severity, unacknowledged, then
		// the newest.
		slices.SortStableFunc(as, func(a, b *alarm.Alarm) int {
			if c := cmp.Compare(b.Severity.Rank(), a.Severity.Rank()); c != 0 {
				return c
			}
			if a.Acked != b.Acked {
				if !a.Acked {
					return -1
				}
				return 1
			}
			return b.RaisedAt.Compare(a.RaisedAt)
		})
	}
	for _, a := range as {
		v.Alarms = append(v.Alarms, newAlarmRow(a))
	}
	return v, nil
}

func alarmsPath(view, severity string) string {
	q := url.Values{}
	if view != "" && view != "active" {
		q.Set("view", view)
	}
	if severity != "" {
		q.Set("severity", severity)
	}
	if len(q) == 0 {
		return "/alarms"
	}
	return "/alarms?" + q.Encode()
}

// alarms lists alarms; an htmx request gets the list alone (the page
// reloads it every 10 s).
func (c *Console) alarms(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.alarmsData(r, q)
	if err != nil {
		return err
	}
	v.Done = doneMessage(r)
	c.render(w, r, q, http.StatusOK, "alarms", view{Title: "Alarms", Nav: "alarms", Data: v})
	return nil
}

// alarmView is one alarm's page.
type alarmView struct {
	A       alarmRow
	AckedAt time.Time
	AckedBy string
	AckNote string
	Data    string
	History []alarmEventRow
	Done    string
	Error   string
	// Note, Duration and Reason put a refused form's values back.
	Note, Duration, Reason string
}

type alarmEventRow struct {
	Time               time.Time
	Kind, Actor, State string
	Detail             string
}

func alarmAPIPath(id, suffix string) string { return "/api/v1/alarms/" + url.PathEscape(id) + suffix }

func (c *Console) alarmData(r *http.Request, q *request, id string) (*alarmView, error) {
	var out struct {
		Alarm   alarm.Alarm   `json:"alarm"`
		History []alarm.Event `json:"history"`
	}
	if err := c.call(r, q, "GET", alarmAPIPath(id, ""), nil, nil, &out); err != nil {
		return nil, err
	}
	a := &out.Alarm
	v := &alarmView{A: newAlarmRow(a), AckedBy: a.AckedBy, AckNote: a.AckNote}
	if a.AckedAt != nil {
		v.AckedAt = *a.AckedAt
	}
	if len(a.Data) > 0 {
		v.Data = prettyJSON(a.Data)
	}
	for _, ev := range slices.Backward(out.History) {
		v.History = append(v.History, alarmEventRow{Time: ev.Time, Kind: ev.Kind, Actor: ev.Actor, State: string(ev.Alarm.State), Detail: ev.Detail(200)})
	}
	slices.SortStableFunc(v.History, func(a, b alarmEventRow) int { return b.Time.Compare(a.Time) })
	return v, nil
}

// alarmPage shows one alarm with its history.
func (c *Console) alarmPage(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.alarmData(r, q, r.PathValue("id"))
	if err != nil {
		return err
	}
	v.Done = doneMessage(r)
	c.render(w, r, q, http.StatusOK, "alarm", view{Title: "Alarm " + v.A.Name, Nav: "alarms", Data: v})
	return nil
}

// alarmChange acknowledges, shelves or unshelves an alarm, then goes back
// to the page the form was on (back=list: the alarms page; otherwise the
// alarm's), or shows the alarm's page with the API's refusal beside the
// form.
func (c *Console) alarmChange(action string) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, q *request) error {
		id := r.PathValue("id")
		note := strings.TrimSpace(r.PostFormValue("note"))
		duration := strings.TrimSpace(r.PostFormValue("duration"))
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		var body any
		switch action {
		case "ack":
			body = map[string]string{"note": note}
		case "shelve":
			body = map[string]string{"duration": duration, "reason": reason}
		}
		err := c.call(r, q, "POST", alarmAPIPath(id, "/"+action), nil, body, nil)
		if ae, ok := refusal(err); ok {
			v, err := c.alarmData(r, q, id)
			if err != nil {
				return err
			}
			v.Error, v.Note, v.Duration, v.Reason = refusalText(ae), note, duration, reason
			q.partial = false
			c.render(w, r, q, ae.Status, "alarm", view{Title: "Alarm " + v.A.Name, Nav: "alarms", Data: v})
			return nil
		}
		if err != nil {
			return err
		}
		back := "/alarms/" + url.PathEscape(id)
		if b := r.PostFormValue("back"); strings.HasPrefix(b, "/alarms") {
			back = localPath(b)
		}
		sep := "?"
		if strings.Contains(back, "?") {
			sep = "&"
		}
		http.Redirect(w, r, back+sep+"done="+action, http.StatusSeeOther)
		return nil
	}
}

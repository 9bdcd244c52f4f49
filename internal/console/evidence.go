package console

// A loop's decisions: /evidence/{id} (one decision's whole story, as
// `wanwu ctl loop explain` tells it) and /approvals (the actions waiting
// for a person), with the votes on them. Read and voted through the
// node's API (/api/v1/evidence, /api/v1/approvals).

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/loop"
)

// evidenceView is one decision's page.
type evidenceView struct {
	Row evidenceRow
	// Story is what kind of decision it was.
	Story    string
	Digest   string
	OriginID int64
	Features []countText
	Detector []countText
	// Model is the model whose scores the decision took (nil for a loop
	// without one).
	Model             *loop.ModelUse
	ModelScores       []countText
	ModelTenant       string
	Current           []countText
	InputsDigest      string
	Guards            []guardRow
	RefusedBy         string
	Command, Desired  string
	CommandID         string
	TwinVersion       int64
	SentAt, VerifyBy  time.Time
	Alarm             string
	AlarmLink         bool
	Event             string
	Approval          *approvalView
	Steps             []stepRow
	Outcome           string
	Done, Error, Note string
}

type approvalView struct {
	Required int
	Given    int
	Who      string
	Expires  time.Time
	Votes    []voteRow
}

// namedNumbers are named numbers, by name.
func namedNumbers(m map[string]float64) []countText {
	out := make([]countText, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, countText{k, num(m[k])})
	}
	return out
}

func (c *Console) evidenceData(r *http.Request, q *request, id int64) (*evidenceView, error) {
	var out struct {
		Evidence loop.Evidence `json:"evidence"`
	}
	if err := c.call(r, q, "GET", "/api/v1/evidence/"+strconv.FormatInt(id, 10), nil, nil, &out); err != nil {
		return nil, err
	}
	ev := &out.Evidence
	v := &evidenceView{Row: newEvidenceRow(ev), Story: loop.KindText(ev.Kind), Digest: ev.Digest, OriginID: ev.OriginID,
		Features: namedNumbers(ev.Features), Detector: namedNumbers(ev.Detector), Current: namedNumbers(ev.Current),
		Model:        ev.Model,
		InputsDigest: ev.InputsDigest, Alarm: ev.Alarm, AlarmLink: alarm.IsID(ev.Alarm), Event: ev.Event}
	if ev.Model != nil {
		v.ModelScores = namedNumbers(ev.Model.Scores)
		v.ModelTenant, _, _ = strings.Cut(ev.Loop, ":") // a loop's models are its tenant's
	}
	for _, g := range ev.Guards {
		d := g.Detail
		if len(g.Inputs) > 0 {
			d += " (inputs: " + fieldsText(g.Inputs) + ")"
		}
		v.Guards = append(v.Guards, guardRow{g.Guard, string(g.Outcome), d})
	}
	if ev.Refusal != "" && ev.State != loop.StateAwaiting {
		v.RefusedBy = ev.Refusal
	}
	if a := ev.Action; a != nil {
		if a.Command != "" {
			v.Command = strings.TrimSpace(a.Command + " " + fieldsText(a.Args))
		} else {
			v.Desired = fieldsText(a.Desired)
		}
		v.CommandID, v.TwinVersion = a.CommandID, a.Version
		if a.SentAt != nil {
			v.SentAt = *a.SentAt
		}
		if a.VerifyBy != nil {
			v.VerifyBy = *a.VerifyBy
		}
	}
	if ap := ev.Approval; ap != nil {
		av := &approvalView{Required: ap.Required, Given: approvalCount(ap), Who: "any operator", Expires: ap.Expires}
		if len(ap.Approvers) > 0 {
			av.Who = strings.Join(ap.Approvers, ", ")
		}
		for _, vt := range ap.Votes {
			av.Votes = append(av.Votes, voteRow{By: vt.By, Vote: voteText(vt), Note: vt.Note, At: vt.At})
		}
		v.Approval = av
	}
	for _, s := range ev.Steps {
		v.Steps = append(v.Steps, stepRow{s.At, s.State, s.Detail})
	}
	switch {
	case ev.Error != "":
		v.Outcome = ev.State + ", " + ev.Error
	case ev.Outcome != "":
		v.Outcome = ev.State + ", " + ev.Outcome
	case !loop.Final(ev.State):
		v.Outcome = "not yet (" + ev.State + ")"
	default:
		v.Outcome = ev.State
	}
	return v, nil
}

// evidenceID is the path's evidence id.
func evidenceID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, &pageError{Status: http.StatusNotFound, Title: "Not found",
			Message: "No decision has the id " + quote(r.PathValue("id")) + ".", Next: "An evidence record's id is a number; the loop's page lists them."}
	}
	return id, nil
}

// evidence shows one decision.
func (c *Console) evidence(w http.ResponseWriter, r *http.Request, q *request) error {
	id, err := evidenceID(r)
	if err != nil {
		return err
	}
	v, err := c.evidenceData(r, q, id)
	if err != nil {
		return err
	}
	v.Done = doneMessage(r)
	c.render(w, r, q, http.StatusOK, "evidence", view{Title: fmt.Sprintf("Decision %d", id), Nav: "loops", Data: v})
	return nil
}

// approvalsView is the approval queue.
type approvalsView struct {
	Scope string
	Rows  []evidenceRow
	Done  string
	Error string
}

func (c *Console) approvalsData(r *http.Request, q *request) (*approvalsView, error) {
	var out struct {
		Approvals []*loop.Evidence `json:"approvals"`
	}
	if err := c.call(r, q, "GET", "/api/v1/approvals", nil, nil, &out); err != nil {
		return nil, err
	}
	v := &approvalsView{Scope: q.p.Tenant}
	operate := q.p.Allows(auth.Operator, q.p.Tenant) == nil
	for _, ev := range out.Approvals {
		row := newEvidenceRow(ev)
		row.CSRF, row.Operate = q.s.csrf, operate
		v.Rows = append(v.Rows, row)
	}
	// The soonest to expire first.
	slices.SortStableFunc(v.Rows, func(a, b evidenceRow) int { return a.Expires.Compare(b.Expires) })
	return v, nil
}

// approvals shows the queue.
func (c *Console) approvals(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.approvalsData(r, q)
	if err != nil {
		return err
	}
	v.Done = doneMessage(r)
	q.partial = false
	c.render(w, r, q, http.StatusOK, "approvals", view{Title: "Approvals", Nav: "approvals", Data: v})
	return nil
}

// vote approves or rejects an action waiting for approval. From the
// approval queue with htmx, the answer is the queue's row, showing what
// became of the vote (a refusal too: htmx swaps only a 2xx answer, so the
// row with the API's message is sent as 200); otherwise it goes back to
// the page the form was on (back=approvals, or the decision's page), with
// the API's refusal beside the form.
func (c *Console) vote(approve bool) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, q *request) error {
		id, err := evidenceID(r)
		if err != nil {
			return err
		}
		verb, noun := "approve", "approval"
		if !approve {
			verb, noun = "reject", "rejection"
		}
		note := strings.TrimSpace(r.PostFormValue("note"))
		a, err := c.apiRaw(r, q, "POST", "/api/v1/evidence/"+strconv.FormatInt(id, 10)+"/"+verb, nil, map[string]string{"note": note})
		if err != nil {
			return err
		}
		var callErr error
		if a.Status >= 400 {
			callErr = decodeAPIError(a)
		}
		relayed := a.Status == http.StatusAccepted
		toQueue := r.PostFormValue("back") == "approvals"

		if q.partial && toQueue {
			ae, refused := refusal(callErr)
			if callErr != nil && !refused {
				return callErr
			}
			ev, err := c.evidenceData(r, q, id)
			if err != nil {
				return err
			}
			row := ev.Row
			row.CSRF, row.Operate = q.s.csrf, q.p.Allows(auth.Operator, q.p.Tenant) == nil
			switch {
			case refused:
				row.Message, row.MessageError = refusalText(ae), true
			case relayed:
				row.Message = "Sent to the edge " + row.Origin + ": the edge's loop acts on the vote, and this record changes when the edge answers."
			case row.Awaiting:
				row.Message = "Your " + noun + " was recorded; it waits for more approvals (" + row.Approval + ")."
			default:
				row.Message = "Your " + noun + " was recorded: the action is now " + row.State + "."
			}
			c.render(w, r, q, http.StatusOK, "approvals", view{Title: "Approvals", Nav: "approvals", Data: &approvalsView{Rows: []evidenceRow{row}}})
			return nil
		}

		done := verb
		if relayed {
			done = "relayed"
		}
		if ae, ok := refusal(callErr); ok {
			if toQueue {
				v, err := c.approvalsData(r, q)
				if err != nil {
					return err
				}
				for i := range v.Rows {
					if v.Rows[i].ID == id {
						v.Rows[i].Message, v.Rows[i].MessageError = refusalText(ae), true
					}
				}
				v.Error = fmt.Sprintf("Decision %d: %s", id, refusalText(ae))
				q.partial = false
				c.render(w, r, q, ae.Status, "approvals", view{Title: "Approvals", Nav: "approvals", Data: v})
				return nil
			}
			v, err := c.evidenceData(r, q, id)
			if err != nil {
				return err
			}
			v.Error, v.Note = refusalText(ae), note
			c.render(w, r, q, ae.Status, "evidence", view{Title: fmt.Sprintf("Decision %d", id), Nav: "loops", Data: v})
			return nil
		}
		if callErr != nil {
			return callErr
		}
		back := fmt.Sprintf("/evidence/%d", id)
		if toQueue {
			back = "/approvals"
		}
		http.Redirect(w, r, back+"?done="+done, http.StatusSeeOther)
		return nil
	}
}

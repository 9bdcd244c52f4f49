package console

// device.go serves the operations of the device page, /objects/{code}: the
// identity's certificate and credential, the twin with its "edit desired"
// form, the commands (a form per action of the thing model, the list htmx
// refreshes while a command is pending, cancel), the events and dead
// letters, and the lifecycle actions (rotate, quarantine, reinstate,
// revoke) behind a confirmation step. Everything is read and changed
// through the node's API with the signed-in user's token: roles, tenant
// binding, validation and messages are the API's.

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wanwu-iot/wanwu/internal/credential"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Bounds of the device page's lists.
const (
	deviceListDefault = 50   // events and dead letters shown at first
	deviceListMax     = 1000 // the most "show more" goes to
	commandsShown     = 20   // the newest commands listed, each with its events
)

func (c *Console) deviceRoutes() {
	c.mux.HandleFunc("POST /objects/{code}/twin", c.page(c.editDesired))
	c.mux.HandleFunc("GET /objects/{code}/commands", c.page(c.commandList))
	c.mux.HandleFunc("POST /objects/{code}/commands", c.page(c.issueCommand))
	c.mux.HandleFunc("POST /objects/{code}/commands/{id}/cancel", c.page(c.cancelCommand))
	c.mux.HandleFunc("GET /objects/{code}/confirm/{action}", c.page(c.confirmPage))
	c.mux.HandleFunc("POST /objects/{code}/confirm/{action}", c.page(c.lifecycleAction))
}

// deviceView is the device page's operations, beside the identity that
// objectView carries.
type deviceView struct {
	Code, Kind, Status string
	// Downlink: the object may have a twin and commands (not an asset).
	Downlink bool
	// Done says what the last change did (after its redirect).
	Done string

	Cert     *certView
	CertNote string
	Cred     *credView
	CredNote string

	Model     *thingmodel.Model
	ModelRef  *registry.ModelRef
	ModelNote string

	Twin     *twinView
	TwinNote string
	// Desired is the "edit desired" form: one field per writable property.
	Desired        []fieldView
	DesiredVersion int64
	DesiredError   string
	Conflict       bool

	Actions  []actionView
	Commands commandsView

	Limit           int
	Events          []eventRow
	EventsNote      string
	MoreEvents      bool
	DeadLetters     []deadRow
	DeadLettersNote string
	MoreDead        bool
	NextLimit       int

	Lifecycle []lifecycleLink
	Ended     bool
}

type certView struct {
	Serial, Subject, Issuer string
	NotBefore, NotAfter     time.Time
	State                   string // valid, expired, not yet valid
}

type credView struct {
	ID, Issuer, Subject           string
	IssuedAt, NotBefore, Expires  time.Time
	State                         string
	ModelID, ModelVersion, Number string
}

type twinView struct {
	Version, ReportedVersion int64
	UpdatedAt                time.Time
	Rows                     []twinRow
	DeltaCount               int
}

type twinRow struct {
	Name, Unit                  string
	Desired, Reported           string
	HasDesired, HasReported     bool
	Delta                       bool
	DesiredAt, ReportedAt       time.Time
	DesiredVer, ReportedVersion int64
}

// fieldView is one input of a generated form.
type fieldView struct {
	Name, ID, Label string
	// Input is number, boolean, enum, text or json.
	Input                      string
	Type, Unit, Min, Max, Step string
	Description                string
	Options                    []string
	Value                      string // what the user sent, kept after a refusal
	Current                    string // the current desired value
	Required                   bool
}

type actionView struct {
	Name, Description  string
	Args               []fieldView
	TTL, ResultTimeout string
	Error              string
	Open               bool // the form that was just refused
}

type commandsView struct {
	Code string
	Rows []commandRow
	// Poll: some command is not final, so the list reloads itself.
	Poll bool
	Note string
}

type commandRow struct {
	ID, Action, Args, Status, Reason, Output, Actor string
	Final                                           bool
	CreatedAt, ExpiresAt, DeliveredAt, DoneAt       time.Time
	Events                                          []commandEvent
}

type commandEvent struct {
	Kind string
	Time time.Time
	Data string
}

type eventRow struct {
	Name           string
	Time, Received time.Time
	Data           string
}

type deadRow struct {
	Time                                                 time.Time
	Source, Topic, ContentType, Reason, Message, Payload string
}

type lifecycleLink struct{ Action, Label, Hint string }

// deviceForm is a refused form, shown again with the user's values.
type deviceForm struct {
	Twin    bool
	Action  string // the command form's action
	Values  url.Values
	Message string
	// Conflict: the desired state changed since the form was loaded;
	// Version is the version the form is shown with.
	Conflict bool
	Version  int64
}

// apiObject is what GET /api/v1/objects/{code} answers, as far as the
// device page needs it.
type apiObject struct {
	Code   string             `json:"code"`
	Kind   string             `json:"kind"`
	Status string             `json:"status"`
	Model  *registry.ModelRef `json:"model"`
}

func objectPath(code string, rest ...string) string {
	p := "/api/v1/objects/" + url.PathEscape(code)
	for _, s := range rest {
		p += "/" + s
	}
	return p
}

// refusalNote turns an API refusal into a section's note; other errors stay
// errors (the page fails).
func refusalNote(err error) (string, error) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Error(), nil
	}
	return "", err
}

// deviceData reads the device page's sections through the API.
func (c *Console) deviceData(r *http.Request, q *request, o *registry.Object, f *deviceForm) (*deviceView, error) {
	if c.api.h.Load() == nil {
		return nil, nil // no API (the console's own tests): the identity alone
	}
	d := &deviceView{Code: o.Code, Kind: o.Kind, Status: o.Status, Downlink: o.Kind != registry.KindAsset, ModelRef: o.Model}
	d.Done = doneMessages[r.URL.Query().Get("done")]
	d.Limit = listLimit(r)
	d.NextLimit = min(d.Limit*4, deviceListMax)
	var err error
	if o.Kind != registry.KindAsset {
		if d.CertNote, err = refusalNote(c.certificate(r, q, d)); err != nil {
			return nil, err
		}
		if d.CredNote, err = refusalNote(c.credential(r, q, d)); err != nil {
			return nil, err
		}
	}
	if o.Model != nil {
		m, err := c.model(r, q, o.Model)
		if d.ModelNote, err = refusalNote(err); err != nil {
			return nil, err
		}
		d.Model = m
	}
	if d.Downlink {
		if d.TwinNote, err = refusalNote(c.twin(r, q, d, f)); err != nil {
			return nil, err
		}
		d.Actions = actionForms(d.Model, f)
		if d.Commands, err = c.commands(r, q, o.Code); err != nil {
			return nil, err
		}
	}
	if d.EventsNote, err = refusalNote(c.events(r, q, d)); err != nil {
		return nil, err
	}
	if d.DeadLettersNote, err = refusalNote(c.deadLetters(r, q, d)); err != nil {
		return nil, err
	}
	d.Lifecycle, d.Ended = lifecycleLinks(o)
	return d, nil
}

func listLimit(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || n <= 0 {
		return deviceListDefault
	}
	return min(n, deviceListMax)
}

func (c *Console) certificate(r *http.Request, q *request, d *deviceView) error {
	a, err := c.apiRaw(r, q, http.MethodGet, objectPath(d.Code, "certificate"), nil, nil)
	if err != nil {
		return err
	}
	if a.Status >= 400 {
		return decodeAPIError(a)
	}
	b, _ := pem.Decode(a.Body)
	if b == nil {
		return &apiError{Status: http.StatusBadGateway, Message: "the certificate is not PEM"}
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return &apiError{Status: http.StatusBadGateway, Message: "the certificate could not be read: " + err.Error()}
	}
	d.Cert = &certView{Serial: fmt.Sprintf("%X", cert.SerialNumber), Subject: cert.Subject.String(), Issuer: cert.Issuer.String(),
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, State: validity(q.now, cert.NotBefore, cert.NotAfter)}
	return nil
}

func validity(now, from, until time.Time) string {
	switch {
	case now.Before(from):
		return "not yet valid"
	case !until.IsZero() && now.After(until):
		return "expired"
	}
	return "valid"
}

func (c *Console) credential(r *http.Request, q *request, d *deviceView) error {
	var out struct {
		Credential string `json:"credential"`
	}
	if err := c.call(r, q, http.MethodGet, objectPath(d.Code, "credential"), nil, nil, &out); err != nil {
		return err
	}
	cl, err := credential.Decode(out.Credential)
	if err != nil {
		return &apiError{Status: http.StatusBadGateway, Message: "the credential could not be read: " + err.Error()}
	}
	d.Cred = &credView{ID: cl.ID, Issuer: cl.Issuer, Subject: cl.Subject, IssuedAt: cl.IssuedAt, NotBefore: cl.NotBefore, Expires: cl.ExpiresAt,
		State: validity(q.now, cl.NotBefore, cl.ExpiresAt), ModelID: cl.ModelID, ModelVersion: cl.ModelVersion, Number: cl.Number}
	return nil
}

func (c *Console) model(r *http.Request, q *request, ref *registry.ModelRef) (*thingmodel.Model, error) {
	var m thingmodel.Model
	err := c.call(r, q, http.MethodGet, "/api/v1/models/"+url.PathEscape(ref.ID)+"/versions/"+url.PathEscape(ref.Version), nil, nil, &m)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// apiTwin is GET /api/v1/objects/{code}/twin's answer.
type apiTwin struct {
	Desired         map[string]any `json:"desired"`
	Reported        map[string]any `json:"reported"`
	Delta           map[string]any `json:"delta"`
	Version         int64          `json:"version"`
	ReportedVersion int64          `json:"reported_version"`
	Metadata        struct {
		Desired  map[string]fieldMeta `json:"desired"`
		Reported map[string]fieldMeta `json:"reported"`
	} `json:"metadata"`
	UpdatedAt time.Time `json:"updated_at"`
}

type fieldMeta struct {
	Updated time.Time `json:"updated"`
	Version int64     `json:"version"`
}

// metaOf is the newest change of a top-level member: its own leaf or one
// under it.
func metaOf(m map[string]fieldMeta, name string) fieldMeta {
	var out fieldMeta
	for k, v := range m {
		if (k == name || strings.HasPrefix(k, name+".")) && v.Updated.After(out.Updated) {
			out = v
		}
	}
	return out
}

func (c *Console) twin(r *http.Request, q *request, d *deviceView, f *deviceForm) error {
	var t apiTwin
	if err := c.call(r, q, http.MethodGet, objectPath(d.Code, "twin"), nil, nil, &t); err != nil {
		return err
	}
	tv := &twinView{Version: t.Version, ReportedVersion: t.ReportedVersion, UpdatedAt: t.UpdatedAt, DeltaCount: len(t.Delta)}
	names := map[string]bool{}
	for k := range t.Desired {
		names[k] = true
	}
	for k := range t.Reported {
		names[k] = true
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		row := twinRow{Name: n}
		if d.Model != nil && d.Model.Properties[n] != nil {
			row.Unit = d.Model.Properties[n].Unit
		}
		if v, ok := t.Desired[n]; ok {
			m := metaOf(t.Metadata.Desired, n)
			row.Desired, row.HasDesired, row.DesiredAt, row.DesiredVer = show(v), true, m.Updated, m.Version
		}
		if v, ok := t.Reported[n]; ok {
			m := metaOf(t.Metadata.Reported, n)
			row.Reported, row.HasReported, row.ReportedAt, row.ReportedVersion = show(v), true, m.Updated, m.Version
		}
		_, row.Delta = t.Delta[n]
		tv.Rows = append(tv.Rows, row)
	}
	d.Twin = tv
	d.DesiredVersion = t.Version
	if d.Model == nil {
		return nil
	}
	for _, n := range slices.Sorted(maps.Keys(d.Model.Properties)) {
		p := d.Model.Properties[n]
		if p == nil || p.ReadOnly {
			continue
		}
		fv := fieldFor("p.", n, &p.Schema)
		if v, ok := t.Desired[n]; ok {
			fv.Current = show(v)
		}
		if f != nil && f.Twin {
			fv.Value = f.Values.Get("p." + n)
		}
		d.Desired = append(d.Desired, fv)
	}
	if f != nil && f.Twin {
		d.DesiredError, d.Conflict = f.Message, f.Conflict
		if !f.Conflict {
			d.DesiredVersion = f.Version // a refusal keeps the version the user read
		}
	}
	return nil
}

// show is a value as the page writes it: a string as it is, anything else
// as JSON.
func show(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func number(f *float64) string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(*f, 'g', -1, 64)
}

// fieldFor is the input of a value of schema s, named prefix+name.
func fieldFor(prefix, name string, s *thingmodel.Schema) fieldView {
	fv := fieldView{Name: prefix + name, Label: name, ID: strings.ReplaceAll(prefix, ".", "-") + name, Type: s.Type, Unit: s.Unit, Description: s.Description}
	switch {
	case s.Type == thingmodel.TypeNumber || s.Type == thingmodel.TypeInteger:
		fv.Input, fv.Min, fv.Max, fv.Step = "number", number(s.Minimum), number(s.Maximum), "any"
		if s.Type == thingmodel.TypeInteger {
			fv.Step = "1"
		}
	case s.Type == thingmodel.TypeBoolean:
		fv.Input, fv.Options = "enum", []string{"true", "false"}
	case s.Type == thingmodel.TypeString && len(s.Enum) > 0:
		fv.Input, fv.Options = "enum", s.Enum
	case s.Type == thingmodel.TypeString:
		fv.Input = "text"
	default: // position, object, array: JSON
		fv.Input = "json"
	}
	return fv
}

// formValue turns a form's text into the JSON value of its schema. A text
// that is not of the type is sent as a string, so that the API refuses it
// with its own message.
func formValue(s *thingmodel.Schema, text string) any {
	switch s.Type {
	case thingmodel.TypeNumber, thingmodel.TypeInteger:
		f, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return text
		}
		if s.Type == thingmodel.TypeInteger && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f)
		}
		return f
	case thingmodel.TypeBoolean:
		if b, err := strconv.ParseBool(strings.TrimSpace(text)); err == nil {
			return b
		}
		return text
	case thingmodel.TypeString:
		return text
	}
	if json.Valid([]byte(text)) {
		return json.RawMessage(text)
	}
	return text
}

func actionForms(m *thingmodel.Model, f *deviceForm) []actionView {
	if m == nil {
		return nil
	}
	var out []actionView
	for _, n := range slices.Sorted(maps.Keys(m.Actions)) {
		a := m.Actions[n]
		if a == nil {
			continue
		}
		av := actionView{Name: n, Description: a.Description}
		refused := f != nil && !f.Twin && f.Action == n
		for _, arg := range slices.Sorted(maps.Keys(a.Input)) {
			fv := fieldFor("a.", arg, a.Input[arg])
			fv.ID = "a-" + n + "-" + arg
			fv.Required = true // every declared argument is required
			if refused {
				fv.Value = f.Values.Get("a." + arg)
			}
			av.Args = append(av.Args, fv)
		}
		if refused {
			av.Error, av.Open = f.Message, true
			av.TTL, av.ResultTimeout = f.Values.Get("ttl"), f.Values.Get("result_timeout")
		}
		out = append(out, av)
	}
	return out
}

// apiCommand is a command as the API answers it.
type apiCommand struct {
	ID          string          `json:"id"`
	Action      string          `json:"action"`
	Args        json.RawMessage `json:"args"`
	Status      string          `json:"status"`
	Reason      string          `json:"reason"`
	Output      json.RawMessage `json:"output"`
	Actor       string          `json:"actor"`
	CreatedAt   time.Time       `json:"created_at"`
	ExpiresAt   time.Time       `json:"expires_at"`
	DeliveredAt *time.Time      `json:"delivered_at"`
	DoneAt      *time.Time      `json:"done_at"`
}

// compact is JSON on one line ("" for none or null).
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil || b.String() == "null" {
		return ""
	}
	return shorten(b.String(), maxShownJSON)
}

// maxShownJSON bounds the JSON a list shows of one value (a command's
// arguments or output, an event's data): a raw capture's samples are
// for the API, not the page.
const maxShownJSON = 240

// shorten cuts s to at most n bytes on a rune boundary, saying so.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:runeCut(s, n)] + fmt.Sprintf("… (%d bytes in all)", len(s))
}

func final(status string) bool { return status != "queued" && status != "delivered" }

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// commands lists the object's newest commands, each with its events.
func (c *Console) commands(r *http.Request, q *request, code string) (commandsView, error) {
	cv := commandsView{Code: code}
	var list struct {
		Commands []apiCommand `json:"commands"`
	}
	err := c.call(r, q, http.MethodGet, objectPath(code, "commands"), url.Values{"limit": {strconv.Itoa(commandsShown)}}, nil, &list)
	if cv.Note, err = refusalNote(err); err != nil || cv.Note != "" {
		return cv, err
	}
	for _, ac := range list.Commands {
		row := commandRow{ID: ac.ID, Action: ac.Action, Args: compact(ac.Args), Status: ac.Status, Reason: ac.Reason, Output: compact(ac.Output),
			Actor: ac.Actor, Final: final(ac.Status), CreatedAt: ac.CreatedAt, ExpiresAt: ac.ExpiresAt, DeliveredAt: deref(ac.DeliveredAt), DoneAt: deref(ac.DoneAt)}
		if row.Args == "{}" {
			row.Args = ""
		}
		var one struct {
			Events []struct {
				Kind string          `json:"kind"`
				Time time.Time       `json:"time"`
				Data json.RawMessage `json:"data"`
			} `json:"events"`
		}
		if err := c.call(r, q, http.MethodGet, "/api/v1/commands/"+url.PathEscape(ac.ID), nil, nil, &one); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				return cv, err
			}
		}
		for _, e := range one.Events {
			row.Events = append(row.Events, commandEvent{Kind: e.Kind, Time: e.Time, Data: compact(e.Data)})
		}
		cv.Poll = cv.Poll || !row.Final
		cv.Rows = append(cv.Rows, row)
	}
	return cv, nil
}

func (c *Console) events(r *http.Request, q *request, d *deviceView) error {
	var out struct {
		Events []struct {
			Name     string          `json:"name"`
			Time     time.Time       `json:"time"`
			Data     json.RawMessage `json:"data"`
			Received time.Time       `json:"received"`
		} `json:"events"`
	}
	if err := c.call(r, q, http.MethodGet, "/api/v1/events", url.Values{"device": {d.Code}, "limit": {strconv.Itoa(d.Limit)}}, nil, &out); err != nil {
		return err
	}
	for _, e := range slices.Backward(out.Events) { // the API answers oldest first
		d.Events = append(d.Events, eventRow{Name: e.Name, Time: e.Time, Received: e.Received, Data: compact(e.Data)})
	}
	d.MoreEvents = len(out.Events) >= d.Limit && d.Limit < deviceListMax
	return nil
}

func (c *Console) deadLetters(r *http.Request, q *request, d *deviceView) error {
	var out struct {
		DeadLetters []struct {
			Time        time.Time `json:"time"`
			Source      string    `json:"source"`
			Topic       string    `json:"topic"`
			ContentType string    `json:"content_type"`
			Reason      string    `json:"reason"`
			Message     string    `json:"message"`
			Payload     []byte    `json:"payload"`
		} `json:"dead_letters"`
	}
	if err := c.call(r, q, http.MethodGet, "/api/v1/deadletters", url.Values{"device": {d.Code}, "limit": {strconv.Itoa(d.Limit)}}, nil, &out); err != nil {
		return err
	}
	for _, dl := range slices.Backward(out.DeadLetters) { // oldest first from the API
		d.DeadLetters = append(d.DeadLetters, deadRow{Time: dl.Time, Source: dl.Source, Topic: dl.Topic, ContentType: dl.ContentType,
			Reason: dl.Reason, Message: dl.Message, Payload: payloadText(dl.Payload)})
	}
	d.MoreDead = len(out.DeadLetters) >= d.Limit && d.Limit < deviceListMax
	return nil
}

// payloadText shows a payload as text, cut to 300 bytes, or says how long
// a binary one is.
func payloadText(b []byte) string {
	if !utf8.Valid(b) {
		return fmt.Sprintf("(%d bytes, binary)", len(b))
	}
	return shorten(string(b), 300)
}

// lifecycle actions, what each does, and whether it needs a reason.
var lifecycleActions = map[string]struct {
	Label, Hint, What string
	Reason            bool
}{
	"rotate": {"Rotate credentials", "new key, certificate and credential",
		"The hub issues a new key pair (or signs the certificate request you paste), a new certificate and a new credential. The old key keeps working during the overlap (the hub's default unless you set one), or stops at once if you revoke it now. The new private key is shown once, on the next page: store it on the device.", false},
	"quarantine": {"Quarantine", "refuse the device until reinstated",
		"The object is quarantined: the hub refuses its connections and messages until it is reinstated. Its identity, keys, twin and history are kept.", true},
	"reinstate": {"Reinstate", "make it active again",
		"The object becomes active again: the hub accepts its connections and messages with its current keys.", false},
	"revoke": {"Revoke", "permanent: keys revoked",
		"The object is revoked for good: its keys are revoked and its certificates listed on the CRL, so it can never connect again. It cannot be reinstated; a replacement must be registered anew.", true},
}

func lifecycleLinks(o *registry.Object) ([]lifecycleLink, bool) {
	var names []string
	switch o.Status {
	case registry.StatusActive:
		names = []string{"rotate", "quarantine", "revoke"}
	case registry.StatusQuarantined:
		names = []string{"reinstate", "rotate", "revoke"}
	default:
		return nil, true
	}
	var out []lifecycleLink
	for _, n := range names {
		if n == "rotate" && o.Kind == registry.KindAsset {
			continue // assets have no keys
		}
		a := lifecycleActions[n]
		out = append(out, lifecycleLink{Action: n, Label: a.Label, Hint: a.Hint})
	}
	return out, false
}

// visibleObject reads the object through the API (a 404 for one the token
// does not see).
func (c *Console) visibleObject(r *http.Request, q *request) (*apiObject, error) {
	var o apiObject
	if err := c.call(r, q, http.MethodGet, objectPath(r.PathValue("code")), nil, nil, &o); err != nil {
		return nil, err
	}
	return &o, nil
}

// backTo redirects to a section of the object's page after a change.
func backTo(w http.ResponseWriter, r *http.Request, code, done, section string) {
	http.Redirect(w, r, "/objects/"+url.PathEscape(code)+"?done="+done+"#"+section, http.StatusSeeOther)
}

// formRefusal is an API refusal a form shows inline (the user can correct
// it); other refusals (403, 404, …) become the error page.
func formRefusal(err error) (*apiError, bool) {
	var ae *apiError
	if !errors.As(err, &ae) {
		return nil, false
	}
	switch ae.Status {
	case http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return ae, true
	}
	return nil, false
}

// editDesired PATCHes the desired state with the fields filled in, at the
// version the form was read at.
func (c *Console) editDesired(w http.ResponseWriter, r *http.Request, q *request) error {
	o, err := c.visibleObject(r, q)
	if err != nil {
		return err
	}
	version, _ := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
	form := &deviceForm{Twin: true, Values: r.PostForm, Version: version}
	if o.Model == nil {
		return &pageError{Status: http.StatusBadRequest, Title: "No thing model", Message: "The object has no thing model, so the console has no form for its desired state.",
			Next: "Give it a model (wanwu ctl object update CODE --model ID@VERSION) or set desired state with wanwu ctl twin set."}
	}
	m, err := c.model(r, q, o.Model)
	if err != nil {
		return err
	}
	patch := map[string]any{}
	for n, p := range m.Properties {
		if p == nil || p.ReadOnly {
			continue
		}
		if text := r.PostFormValue("p." + n); strings.TrimSpace(text) != "" {
			patch[n] = formValue(&p.Schema, text)
		}
	}
	if len(patch) == 0 {
		form.Message = "Nothing to change: fill in at least one field (an empty field leaves its value as it is)."
		return c.showObject(w, r, q, http.StatusBadRequest, form)
	}
	err = c.call(r, q, http.MethodPatch, objectPath(o.Code, "twin", "desired"), url.Values{"version": {strconv.FormatInt(version, 10)}}, patch, nil)
	if err != nil {
		ae, ok := formRefusal(err)
		if !ok {
			return err
		}
		form.Message = refusalText(ae)
		if ae.Code == "version_conflict" {
			form.Conflict = true
			form.Message = "Someone changed the desired state since you loaded it (you read version " + strconv.FormatInt(version, 10) +
				"). The current desired state is shown above; your values are kept below: check them and save again."
		}
		return c.showObject(w, r, q, ae.Status, form)
	}
	c.log.Info("console: desired state changed", "object", o.Code, "token", q.p.Name)
	backTo(w, r, o.Code, "desired", "twin")
	return nil
}

// issueCommand sends a command built from an action's form.
func (c *Console) issueCommand(w http.ResponseWriter, r *http.Request, q *request) error {
	o, err := c.visibleObject(r, q)
	if err != nil {
		return err
	}
	action := r.PostFormValue("action")
	form := &deviceForm{Action: action, Values: r.PostForm}
	body := map[string]any{"action": action}
	args := map[string]any{}
	var schema map[string]*thingmodel.Schema
	if o.Model != nil {
		m, err := c.model(r, q, o.Model)
		if err != nil {
			return err
		}
		if a := m.Actions[action]; a != nil {
			schema = a.Input
		}
	}
	for k, vs := range r.PostForm {
		name, ok := strings.CutPrefix(k, "a.")
		if !ok || len(vs) == 0 || strings.TrimSpace(vs[0]) == "" {
			continue // a missing argument: the API names it
		}
		s := schema[name]
		if s == nil {
			s = &thingmodel.Schema{Type: thingmodel.TypeString}
		}
		args[name] = formValue(s, vs[0])
	}
	if len(args) > 0 {
		body["args"] = args
	}
	for _, k := range []string{"ttl", "result_timeout"} {
		if v := strings.TrimSpace(r.PostFormValue(k)); v != "" {
			body[k] = v
		}
	}
	var out apiCommand
	if err := c.call(r, q, http.MethodPost, objectPath(o.Code, "commands"), nil, body, &out); err != nil {
		ae, ok := formRefusal(err)
		if !ok {
			return err
		}
		form.Message = refusalText(ae)
		return c.showObject(w, r, q, ae.Status, form)
	}
	c.log.Info("console: command issued", "object", o.Code, "command", out.ID, "action", out.Action, "token", q.p.Name)
	if q.partial {
		return c.renderCommands(w, r, q, o.Code)
	}
	backTo(w, r, o.Code, "command", "commands")
	return nil
}

// commandList is the command list alone: the fragment htmx reloads while
// a command is pending. A browser without htmx goes to the page.
func (c *Console) commandList(w http.ResponseWriter, r *http.Request, q *request) error {
	code := r.PathValue("code")
	if !q.partial {
		http.Redirect(w, r, "/objects/"+url.PathEscape(code)+"#commands", http.StatusSeeOther)
		return nil
	}
	return c.renderCommands(w, r, q, code)
}

func (c *Console) renderCommands(w http.ResponseWriter, r *http.Request, q *request, code string) error {
	if _, err := c.visibleObject(r, q); err != nil {
		return err // another tenant's object is not there for this token
	}
	cv, err := c.commands(r, q, code)
	if err != nil {
		return err
	}
	q.partial = true
	c.render(w, r, q, http.StatusOK, "object", view{Title: code, Nav: "fleet",
		Data: objectView{Fragment: "commands", Device: &deviceView{Code: code, Downlink: true, Commands: cv}}})
	return nil
}

// cancelCommand cancels a pending command.
func (c *Console) cancelCommand(w http.ResponseWriter, r *http.Request, q *request) error {
	code, id := r.PathValue("code"), r.PathValue("id")
	if err := c.call(r, q, http.MethodPost, "/api/v1/commands/"+url.PathEscape(id)+"/cancel", nil, nil, nil); err != nil {
		return err
	}
	c.log.Info("console: command canceled", "object", code, "command", id, "token", q.p.Name)
	if q.partial {
		return c.renderCommands(w, r, q, code)
	}
	backTo(w, r, code, "canceled", "commands")
	return nil
}

// confirmView is a lifecycle action's confirmation step.
type confirmView struct {
	Code, Status, Kind   string
	Action, Label, What  string
	NeedReason, Rotate   bool
	Reason, Overlap, CSR string
	RevokeOldNow         bool
	Error                string
}

func (c *Console) confirmData(r *http.Request, q *request) (*confirmView, error) {
	action := r.PathValue("action")
	a, ok := lifecycleActions[action]
	if !ok {
		return nil, &pageError{Status: http.StatusNotFound, Title: "Not found", Message: "There is no lifecycle action " + quote(action) + ".",
			Next: "The actions are rotate, quarantine, reinstate and revoke."}
	}
	o, err := c.visibleObject(r, q)
	if err != nil {
		return nil, err
	}
	return &confirmView{Code: o.Code, Status: o.Status, Kind: o.Kind, Action: action, Label: a.Label, What: a.What, NeedReason: a.Reason, Rotate: action == "rotate"}, nil
}

// confirmPage shows what a lifecycle action will do, with its form.
func (c *Console) confirmPage(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.confirmData(r, q)
	if err != nil {
		return err
	}
	c.render(w, r, q, http.StatusOK, "confirm", view{Title: v.Label + " " + v.Code, Nav: "fleet", Data: v})
	return nil
}

// rotatedView is the new key material, shown once.
type rotatedView struct {
	Code                                               string
	Certificate, Credential, PrivateKey, CACertificate string
	DID                                                string
}

// lifecycleAction does a confirmed lifecycle action.
func (c *Console) lifecycleAction(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.confirmData(r, q)
	if err != nil {
		return err
	}
	v.Reason = strings.TrimSpace(r.PostFormValue("reason"))
	v.Overlap, v.CSR, v.RevokeOldNow = strings.TrimSpace(r.PostFormValue("overlap")), strings.TrimSpace(r.PostFormValue("csr")), r.PostFormValue("revoke_old_now") != ""
	refuse := func(status int, msg string) error {
		v.Error = msg
		c.render(w, r, q, status, "confirm", view{Title: v.Label + " " + v.Code, Nav: "fleet", Data: v})
		return nil
	}
	if r.PostFormValue("confirm") == "" {
		return refuse(http.StatusBadRequest, "Tick the box to confirm.")
	}
	if v.NeedReason && v.Reason == "" {
		return refuse(http.StatusBadRequest, "Give a reason: it is recorded with the change and shown on the object.")
	}
	path := objectPath(v.Code, v.Action)
	if v.Rotate {
		body := map[string]any{}
		if v.Overlap != "" {
			body["overlap"] = v.Overlap
		}
		if v.RevokeOldNow {
			body["revoke_old_now"] = true
		}
		if v.CSR != "" {
			body["csr"] = v.CSR
		}
		var reg struct {
			Object        *registry.Object `json:"object"`
			Certificate   string           `json:"certificate"`
			Credential    string           `json:"credential"`
			PrivateKey    string           `json:"private_key"`
			CACertificate string           `json:"ca_certificate"`
		}
		if err := c.call(r, q, http.MethodPost, path, nil, body, &reg); err != nil {
			if ae, ok := formRefusal(err); ok {
				return refuse(ae.Status, refusalText(ae))
			}
			return err
		}
		c.log.Info("console: credentials rotated", "object", v.Code, "token", q.p.Name)
		rv := rotatedView{Code: v.Code, Certificate: reg.Certificate, Credential: reg.Credential, PrivateKey: reg.PrivateKey, CACertificate: reg.CACertificate}
		if reg.Object != nil {
			rv.DID = reg.Object.DID
		}
		c.render(w, r, q, http.StatusOK, "rotated", view{Title: "New credentials for " + v.Code, Nav: "fleet", Data: rv})
		return nil
	}
	var body any
	if v.Reason != "" {
		body = map[string]string{"reason": v.Reason}
	}
	if err := c.call(r, q, http.MethodPost, path, nil, body, nil); err != nil {
		if ae, ok := formRefusal(err); ok {
			return refuse(ae.Status, refusalText(ae))
		}
		return err
	}
	c.log.Info("console: lifecycle changed", "object", v.Code, "action", v.Action, "token", q.p.Name)
	backTo(w, r, v.Code, v.Action, "lifecycle")
	return nil
}

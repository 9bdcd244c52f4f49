package alarm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/wanwu-iot/wanwu/internal/code"
)

// RaiseRequest is what a source reports when its condition holds.
type RaiseRequest struct {
	Source   string // [A-Za-z0-9_.:-]{1,128}, e.g. "loop:chatter-feed"
	Object   string // the object's code; its namespace is the tenant
	Name     string // [A-Za-z0-9_.-]{1,64}
	Severity Severity
	Message  string          // at most MaxMessageBytes of UTF-8
	Data     json.RawMessage // a JSON object of at most MaxDataBytes compact, or empty
	At       time.Time       // when the condition was detected; zero: now
}

// idBytes is how much of the SHA-256 an id keeps (hex: twice as many characters).
const idBytes = 12

// ID returns the id of the alarm that source raises for object under name:
// 24 hex digits of SHA-256 over the three, so that the same condition maps
// to the same alarm on every node. It does not validate its arguments.
func ID(source, object, name string) string {
	h := sha256.New()
	for _, p := range []string{source, object, name} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:idBytes])
}

// checkID checks an id's form (not that it exists).
func checkID(id string) error {
	if len(id) != 2*idBytes {
		return invalid("id", "%q is not an alarm id (%d hex digits)", truncate(id), 2*idBytes)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return invalid("id", "%q is not an alarm id (%d hex digits)", truncate(id), 2*idBytes)
		}
	}
	return nil
}

// maxQuoted bounds how much of a rejected input an error quotes.
const maxQuoted = 80

func truncate(s string) string {
	if len(s) > maxQuoted {
		return s[:maxQuoted] + "..."
	}
	return s
}

// token checks s against [A-Za-z0-9_.-]{1,max}, plus ':' when colon.
func token(field, s string, max int, colon bool) error {
	pattern := "[A-Za-z0-9_.-]"
	if colon {
		pattern = "[A-Za-z0-9_.:-]"
	}
	if s == "" || len(s) > max {
		return invalid(field, "%q must match %s{1,%d}", truncate(s), pattern, max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		case c == ':' && colon:
		default:
			return invalid(field, "%q must match %s{1,%d} (byte %d)", truncate(s), pattern, max, i)
		}
	}
	return nil
}

func checkName(name string) error     { return token("name", name, 64, false) }
func checkSource(source string) error { return token("source", source, 128, true) }

// checkObject parses the object's code and returns its tenant.
func checkObject(object string) (string, error) {
	c, err := code.Parse(object)
	if err != nil {
		return "", invalid("object", "%v", err)
	}
	return c.Namespace, nil
}

// checkKey checks source, object and name and returns the tenant.
func checkKey(source, object, name string) (string, error) {
	if err := checkSource(source); err != nil {
		return "", err
	}
	tenant, err := checkObject(object)
	if err != nil {
		return "", err
	}
	return tenant, checkName(name)
}

// checkText checks free text: valid UTF-8 of at most max bytes.
func checkText(field, s string, max int) error {
	if len(s) > max {
		return invalid(field, "%d bytes, the limit is %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	return nil
}

// checkActor checks who performs an operator action.
func checkActor(actor string) error {
	if actor == "" {
		return invalid("actor", "required")
	}
	return checkText("actor", actor, MaxActorBytes)
}

// checkData returns data as a compact JSON object, nil for empty data.
func checkData(data json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	if len(data) > 4*MaxDataBytes {
		return nil, invalid("data", "%d bytes, the limit is %d as compact JSON", len(data), MaxDataBytes)
	}
	if !utf8.Valid(data) {
		return nil, invalid("data", "not valid UTF-8")
	}
	if !json.Valid(data) {
		return nil, invalid("data", "not valid JSON")
	}
	if bytes.TrimSpace(data)[0] != '{' {
		return nil, invalid("data", "must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, invalid("data", "%v", err)
	}
	if buf.Len() > MaxDataBytes {
		return nil, invalid("data", "%d bytes as compact JSON, the limit is %d", buf.Len(), MaxDataBytes)
	}
	return json.RawMessage(buf.Bytes()), nil
}

// request is a validated RaiseRequest.
type request struct {
	RaiseRequest
	id, tenant string
}

// validate checks a RaiseRequest and returns it with its data compacted,
// its time in UTC at millisecond precision (now when zero), its id and tenant.
func (r RaiseRequest) validate(now time.Time) (request, error) {
	tenant, err := checkKey(r.Source, r.Object, r.Name)
	if err != nil {
		return request{}, err
	}
	if r.Severity.Rank() == 0 {
		if _, err := ParseSeverity(string(r.Severity)); err != nil {
			return request{}, err
		}
	}
	if err := checkText("message", r.Message, MaxMessageBytes); err != nil {
		return request{}, err
	}
	if r.Data, err = checkData(r.Data); err != nil {
		return request{}, err
	}
	if r.At.IsZero() {
		r.At = now
	} else {
		r.At = r.At.UTC().Truncate(time.Millisecond)
	}
	return request{RaiseRequest: r, id: ID(r.Source, r.Object, r.Name), tenant: tenant}, nil
}

// checkImported checks an alarm forwarded by an edge: its key, id, tenant,
// fields and the consistency of its state.
func checkImported(a *Alarm) error {
	tenant, err := checkKey(a.Source, a.Object, a.Name)
	if err != nil {
		return err
	}
	if a.ID != ID(a.Source, a.Object, a.Name) {
		return invalid("id", "%q is not the id of source %q, object %q, name %q", truncate(a.ID), a.Source, a.Object, a.Name)
	}
	if a.Tenant != tenant {
		return invalid("tenant", "%q is not the namespace of object %q", truncate(a.Tenant), a.Object)
	}
	if _, err := ParseSeverity(string(a.Severity)); err != nil {
		return err
	}
	if err := checkText("message", a.Message, MaxMessageBytes); err != nil {
		return err
	}
	if a.Data, err = checkData(a.Data); err != nil {
		return err
	}
	active, acked, ok := a.State.flags()
	if !ok {
		return invalid("state", "%q is not an ISA-18.2 state", truncate(string(a.State)))
	}
	if active != a.Active || acked != a.Acked {
		return invalid("state", "%s contradicts active=%t, acked=%t", a.State, a.Active, a.Acked)
	}
	if a.Version < 1 {
		return invalid("version", "%d: must be ≥ 1", a.Version)
	}
	if a.Count < 1 {
		return invalid("count", "%d: must be ≥ 1", a.Count)
	}
	if a.RaisedAt.IsZero() {
		return invalid("raised_at", "required")
	}
	if a.Suppressed != "" {
		if err := token("suppressed", a.Suppressed, 64, false); err != nil {
			return err
		}
	}
	if err := checkText("acked_by", a.AckedBy, MaxActorBytes); err != nil {
		return err
	}
	return checkText("ack_note", a.AckNote, MaxMessageBytes)
}

package alarm

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzRaiseRequest feeds arbitrary fields through RaiseRequest validation.
// It must never panic; a rejected request must be a *FieldError naming one
// of the request's fields; an accepted one must have a compact JSON object
// of at most MaxDataBytes (or no data), its id and tenant derived from the
// key, its time at millisecond precision, and Raise must store exactly it.
func FuzzRaiseRequest(f *testing.F) {
	f.Add("loop:feed", "acme:pump-1", "overheat", "high", "too hot", []byte(`{"temp": 97.5}`), int64(0))
	f.Add("loop:feed", "acme:pump-1", "overheat", "critical", "", []byte(``), int64(1740830400123))
	f.Add("loop:feed", "acme:pump-1", "over heat", "high", "", []byte(`{}`), int64(0))
	f.Add("", "acme:pump-1", "x", "low", "", []byte(`{}`), int64(0))
	f.Add("loop/x", "acme", "x", "medium", "\xff", []byte(`[1,2]`), int64(-1))
	f.Add("loop:feed", "Acme:p", "x", "High", "m", []byte(`{"a":{"b":[1,{"c":null}]}}`), int64(0))
	f.Add("loop:feed", "acme:p", "x", "low", "m", []byte(`{"a":1} {"b":2}`), int64(0))
	f.Add("loop:feed", "acme:p", "x", "low", "m", []byte(`null`), int64(0))
	f.Add("loop:feed", "acme:p", "x", "low", "m", []byte(" \n{\"s\":\"\\u00e9\\ud800\"}\t"), int64(0))
	f.Add(strings.Repeat("s", 129), "acme:p", strings.Repeat("n", 64), "low", strings.Repeat("é", 600), []byte(`{}`), int64(0))
	fields := map[string]bool{"source": true, "object": true, "name": true, "severity": true, "message": true, "data": true}
	e := newEnv(f, func(o *Options) { o.Chatter.Count, o.Flood.Count = -1, -1 })
	f.Fuzz(func(t *testing.T, source, object, name, severity, message string, data []byte, atMs int64) {
		var at time.Time
		if atMs != 0 {
			at = time.UnixMilli(atMs).Add(456 * time.Microsecond)
		}
		r := RaiseRequest{Source: source, Object: object, Name: name, Severity: Severity(severity),
			Message: message, Data: data, At: at}
		now := e.clock.Now()
		v, err := r.validate(now)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !fields[fe.Field] || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not a FieldError on a request field", err)
			}
			if _, _, err2 := e.svc.Raise(e.ctx, r); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("Raise error %v, validate error %v", err2, err)
			}
			return
		}
		if v.Data != nil {
			if len(v.Data) > MaxDataBytes || !json.Valid(v.Data) || v.Data[0] != '{' {
				t.Fatalf("accepted data %q", v.Data)
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, v.Data); err != nil || !bytes.Equal(buf.Bytes(), v.Data) {
				t.Fatalf("accepted data %q is not compact", v.Data)
			}
		} else if len(bytes.TrimSpace(data)) != 0 {
			t.Fatalf("data %q dropped", data)
		}
		if v.id != ID(source, object, name) || checkID(v.id) != nil {
			t.Fatalf("id %q", v.id)
		}
		if !strings.HasPrefix(object, v.tenant+":") {
			t.Fatalf("tenant %q of object %q", v.tenant, object)
		}
		if v.At.Location() != time.UTC || v.At.Nanosecond()%int(time.Millisecond) != 0 || (at.IsZero() && !v.At.Equal(now)) {
			t.Fatalf("time %v from %v", v.At, at)
		}
		a, _, err := e.svc.Raise(e.ctx, r)
		if err != nil {
			t.Fatalf("Raise of a valid request: %v", err)
		}
		got, err := e.svc.Get(e.ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Data, v.Data) || got.Message != message || got.Severity != r.Severity || !got.Active {
			t.Fatalf("stored %s for request %+v", js(t, got), v)
		}
	})
}

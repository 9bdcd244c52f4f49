package command

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

func FuzzDecodeResult(f *testing.F) {
	f.Add([]byte(`{"status":"succeeded"}`))
	f.Add([]byte(`{"status":"failed","reason":"motor jammed","output":{"rpm":0,"codes":[1,2]}}`))
	f.Add([]byte(`{"status":"succeeded","output":{"n":1e400}}`))
	f.Add([]byte(`{"status":"succeeded","status":"failed"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeResult(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if r.Status != "succeeded" && r.Status != "failed" {
			t.Fatalf("accepted status %q", r.Status)
		}
		if len(r.Output) > 0 && r.Output[0] != '{' {
			t.Fatalf("accepted output %s", r.Output)
		}
		// What was accepted re-encodes to something accepted and equal.
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal accepted result: %v", err)
		}
		r2, err := DecodeResult(b)
		if err != nil {
			t.Fatalf("re-encoded result %s rejected: %v", b, err)
		}
		if r2.Status != r.Status || r2.Reason != r.Reason || string(r2.Output) != string(r.Output) {
			t.Fatalf("round trip changed %+v into %+v", r, r2)
		}
	})
}

// FuzzCommandArgs feeds operator-supplied arguments through what Issue does
// with them before anything is stored: canonical JSON within the size limit,
// then the action's input schema. Whatever is accepted is a JSON object that
// canonicalizes to itself and still validates.
func FuzzCommandArgs(f *testing.F) {
	model, err := thingmodel.Parse([]byte(pumpModel))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		`{"rpm":1200,"ramp":"soft"}`, `{"rpm":1e400,"ramp":"soft"}`, `{"rpm":-1,"ramp":"x"}`,
		`{"rpm":1200}`, `null`, ``, `[]`, `{"rpm":1200,"ramp":"soft","extra":{}}`,
		`{"rpm":1200,"ramp":"soft"} {}`, `{"rpm":12.5,"ramp":"hard"}`, `{"rpm":"1200","ramp":"soft"}`,
	} {
		f.Add("setSpeed", []byte(s))
	}
	f.Add("stop", []byte(`{}`))
	f.Add("explode", []byte(`{}`))
	f.Fuzz(func(t *testing.T, action string, raw []byte) {
		canon, decoded, err := canonicalObject(raw, MaxArgsBytes)
		if err != nil {
			return
		}
		if len(canon) > MaxArgsBytes || canon[0] != '{' {
			t.Fatalf("accepted %q as %q", raw, canon)
		}
		if err := model.ValidateArgs(action, decoded); err != nil {
			if !errors.Is(err, thingmodel.ErrUnknownAction) && !errors.Is(err, thingmodel.ErrInvalidArgs) {
				t.Fatalf("ValidateArgs error %v is neither unknown action nor invalid args", err)
			}
			return
		}
		again, decoded2, err := canonicalObject(canon, MaxArgsBytes)
		if err != nil || string(again) != string(canon) {
			t.Fatalf("canonical form %q is not stable: %q, %v", canon, again, err)
		}
		if err := model.ValidateArgs(action, decoded2); err != nil {
			t.Fatalf("canonical form %q no longer validates: %v", canon, err)
		}
	})
}

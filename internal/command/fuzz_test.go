package command

import (
	"encoding/json"
	"errors"
	"testing"
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

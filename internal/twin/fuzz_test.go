package twin

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// FuzzMergePatch feeds arbitrary bytes as a merge patch into a small
// document under tight limits. It must never panic; a rejected patch must be
// ErrInvalid or ErrTooLarge; an accepted one must yield a section within the
// limits whose stored form decodes back to the merged value, and applying the
// same patch again must change nothing (RFC 7386 patches are idempotent).
func FuzzMergePatch(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":null}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"n":{"x":null,"y":{"z":1e3}}}`,
		`[]`, `{"a":1,"a":2}`, `{"a.b":1}`, `{"a":{"b":{"c":{"d":{"e":1}}}}}`, `{"s":"\u00e9\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	lim := Limits{MaxDocBytes: 256, MaxDepth: 4}
	base := `{"a":1,"n":{"x":true,"y":{"z":"s"}},"l":[1,{"k":null}]}`
	f.Fuzz(func(t *testing.T, patch []byte) {
		var doc map[string]any
		if err := json.Unmarshal([]byte(base), &doc); err != nil {
			t.Fatal(err)
		}
		merged, parsed, stored, err := applyPatch("desired", doc, patch, lim)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v is neither ErrInvalid nor ErrTooLarge", err)
			}
			return
		}
		if len(stored) > lim.MaxDocBytes {
			t.Fatalf("stored %d bytes, limit %d", len(stored), lim.MaxDocBytes)
		}
		if d := depth(merged); d > lim.MaxDepth {
			t.Fatalf("merged nests %d levels, limit %d", d, lim.MaxDepth)
		}
		var back map[string]any
		if err := json.Unmarshal(stored, &back); err != nil {
			t.Fatalf("stored form %s does not decode: %v", stored, err)
		}
		if !equal(back, merged) {
			t.Fatalf("stored form %s does not decode to the merged value", stored)
		}
		again := mergePatch(merged, parsed).(map[string]any)
		if !equal(again, merged) {
			t.Fatalf("patch %s is not idempotent", patch)
		}
		// What the service does with an accepted section must not panic either.
		meta := updateMeta(doc, merged, nil, time.Unix(0, 0), 1)
		if len(meta) != len(leaves(merged)) {
			t.Fatalf("metadata has %d entries for %d leaves", len(meta), len(leaves(merged)))
		}
		tw := &Twin{Desired: merged, Reported: doc}
		_ = tw.Delta()
	})
}

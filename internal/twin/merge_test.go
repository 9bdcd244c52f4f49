package twin

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func mustJSON(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return v
}

func encode(t testing.TB, v any) string {
	t.Helper()
	b, err := compact(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var testLimits = Limits{MaxDocBytes: DefaultMaxDocBytes, MaxDepth: DefaultMaxDepth}

// TestMergePatchRFC7386 runs the examples of RFC 7386 Appendix A whose
// patch is an object (a twin patch must be), plus nested cases.
func TestMergePatchRFC7386(t *testing.T) {
	tests := []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		// nested merge keeps siblings at every level
		{`{"cfg":{"x":1,"y":{"p":1,"q":2}}}`, `{"cfg":{"y":{"q":3,"r":4}}}`, `{"cfg":{"x":1,"y":{"p":1,"q":3,"r":4}}}`},
		// deleting an absent member is a no-op
		{`{"a":1}`, `{"zz":null}`, `{"a":1}`},
		// an object replaces a scalar, and a scalar an object
		{`{"a":1,"b":{"c":1}}`, `{"a":{"x":null,"y":2},"b":5}`, `{"a":{"y":2},"b":5}`},
		{`{"a":1}`, `{}`, `{"a":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.patch, func(t *testing.T) {
			target := mustJSON(t, tc.target).(map[string]any)
			before := encode(t, target)
			merged, _, _, err := applyPatch("desired", target, []byte(tc.patch), testLimits)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := encode(t, merged), encode(t, mustJSON(t, tc.want)); got != want {
				t.Errorf("merge %s into %s = %s, want %s", tc.patch, tc.target, got, want)
			}
			if encode(t, target) != before {
				t.Errorf("target modified: %s", encode(t, target))
			}
		})
	}
}

func TestParsePatchRejects(t *testing.T) {
	small := Limits{MaxDocBytes: 64, MaxDepth: 3}
	tests := []struct {
		name  string
		patch string
		err   error
		want  []string // substrings of the message
	}{
		{"empty", ``, ErrInvalid, []string{"patch"}},
		{"not json", `{`, ErrInvalid, nil},
		{"array", `[1]`, ErrInvalid, []string{"must be a JSON object, not an array"}},
		{"null", `null`, ErrInvalid, []string{"not null"}},
		{"string", `"x"`, ErrInvalid, []string{"not a string"}},
		{"trailing data", `{} {}`, ErrInvalid, []string{"after the JSON object"}},
		{"duplicate", `{"a":1,"a":2}`, ErrInvalid, []string{"a: duplicate member name"}},
		{"nested duplicate", `{"a":{"b":1,"b":1}}`, ErrInvalid, []string{"a.b: duplicate"}},
		{"dotted key", `{"a.b":1}`, ErrInvalid, []string{`"a.b" contains "."`}},
		{"empty key", `{"a":{"":1}}`, ErrInvalid, []string{"a.: member name is empty"}},
		{"huge number", `{"a":1e400}`, ErrInvalid, []string{"a: number 1e400 is out of range"}},
		{"bad utf8", "{\"a\":\"\xff\"}", ErrInvalid, []string{"UTF-8"}},
		{"too deep", `{"a":{"b":{"c":{}}}}`, ErrInvalid, []string{"nests 4 levels deep, the limit is 3"}},
		{"too deep array", `{"a":[[[]]]}`, ErrInvalid, []string{"nests 4 levels"}},
		{"too large", `{"a":"` + strings.Repeat("x", 300) + `"}`, ErrTooLarge, []string{"patch is 308 bytes, the limit is 256"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePatch([]byte(tc.patch), small)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestSectionLimits(t *testing.T) {
	lim := Limits{MaxDocBytes: 40, MaxDepth: 3}
	base := map[string]any{"a": map[string]any{"b": map[string]any{"c": 1.0}}} // depth 3, 19 bytes
	tests := []struct {
		name  string
		patch string
		err   error
		want  string
	}{
		{"fits", `{"x":"0123456789"}`, nil, ""},
		{"too large after merge", `{"x":"0123456789abcdef"}`, ErrTooLarge, "desired would be 42 bytes as compact JSON, the limit is 40"},
		{"too deep after merge", `{"a":{"b":{"c":{}}}}`, ErrInvalid, "nests 4 levels deep, the limit is 3"},
		{"shrinking is fine", `{"a":null,"y":[1,2,3]}`, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, stored, err := applyPatch("desired", base, []byte(tc.patch), lim)
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if err == nil && len(stored) > lim.MaxDocBytes {
				t.Errorf("stored %d bytes", len(stored))
			}
		})
	}
}

func TestDelta(t *testing.T) {
	tests := []struct {
		name              string
		desired, reported string
		want              string
	}{
		{"all match", `{"a":1,"b":"x"}`, `{"a":1,"b":"x","c":true}`, `{}`},
		{"numbers by value", `{"a":1,"b":[1,2.0]}`, `{"a":1.0,"b":[1.0,2]}`, `{}`},
		{"number differs", `{"a":1.5}`, `{"a":1}`, `{"a":1.5}`},
		{"missing in reported", `{"a":1}`, `{}`, `{"a":1}`},
		{"type differs", `{"a":"1"}`, `{"a":1}`, `{"a":"1"}`},
		{"nested only the differing leaf", `{"cfg":{"x":1,"y":{"p":1,"q":2}}}`, `{"cfg":{"x":1,"y":{"p":1,"q":3}}}`, `{"cfg":{"y":{"q":2}}}`},
		{"nested object vs scalar", `{"cfg":{"x":1}}`, `{"cfg":7}`, `{"cfg":{"x":1}}`},
		{"array compared whole", `{"l":[1,2]}`, `{"l":[1,2,3]}`, `{"l":[1,2]}`},
		{"empty desired object", `{"o":{}}`, `{"o":{"x":1}}`, `{}`},
		{"reported extra ignored", `{}`, `{"a":1}`, `{}`},
		{"bool", `{"on":true}`, `{"on":false}`, `{"on":true}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := &Twin{
				Desired:  mustJSON(t, tc.desired).(map[string]any),
				Reported: mustJSON(t, tc.reported).(map[string]any),
			}
			got := tw.Delta()
			if got == nil {
				t.Fatal("Delta returned nil")
			}
			if g, w := encode(t, got), encode(t, mustJSON(t, tc.want)); g != w {
				t.Errorf("Delta = %s, want %s", g, w)
			}
		})
	}

	// The delta does not share values with the twin.
	tw := &Twin{Desired: map[string]any{"o": map[string]any{"x": 1.0}}, Reported: map[string]any{}}
	d := tw.Delta()
	d["o"].(map[string]any)["x"] = 2.0
	if tw.Desired["o"].(map[string]any)["x"] != 1.0 {
		t.Error("Delta shares values with Desired")
	}
}

func TestDeltaAfterRemovingDesired(t *testing.T) {
	desired := map[string]any{}
	for _, p := range []string{`{"a":1,"b":{"c":2,"d":3}}`, `{"a":null,"b":{"c":null}}`} {
		m, _, _, err := applyPatch("desired", desired, []byte(p), testLimits)
		if err != nil {
			t.Fatal(err)
		}
		desired = m
	}
	tw := &Twin{Desired: desired, Reported: map[string]any{}}
	if got, want := encode(t, tw.Delta()), `{"b":{"d":3}}`; got != want {
		t.Errorf("Delta = %s, want %s", got, want)
	}
}

func TestLeaves(t *testing.T) {
	doc := mustJSON(t, `{"a":1,"b":{"c":[1,{"x":1}],"d":{},"e":{"f":null}}}`).(map[string]any)
	got := leaves(doc)
	want := []string{"a", "b.c", "b.d", "b.e.f"}
	if keys := sortedKeys(got); strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("leaves = %v, want %v", keys, want)
	}
}

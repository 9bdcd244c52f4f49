package console

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// FuzzFormValue: whatever a form field holds, formValue gives a value that
// encodes as JSON (the API then judges it), of the schema's type when the
// text is one; shorten keeps text valid and bounded.
func FuzzFormValue(f *testing.F) {
	for _, seed := range []string{"", "1", "-2.5", "1e400", "NaN", "true", "0x10", `{"lat":1,"lon":2}`, "[1,2", "é", strings.Repeat("x", 500)} {
		f.Add(seed)
	}
	types := []string{thingmodel.TypeNumber, thingmodel.TypeInteger, thingmodel.TypeBoolean, thingmodel.TypeString, "object", "array", "position"}
	f.Fuzz(func(t *testing.T, text string) {
		for _, typ := range types {
			v := formValue(&thingmodel.Schema{Type: typ}, text)
			b, err := json.Marshal(v)
			if err != nil {
				if _, raw := v.(json.RawMessage); !raw {
					t.Fatalf("%s %q: %v gives no JSON: %v", typ, text, v, err)
				}
				continue
			}
			if typ == thingmodel.TypeString && string(b) != mustJSON(t, text) {
				t.Fatalf("a string field changed %q into %s", text, b)
			}
		}
		out := shorten(text, 40)
		if len(text) <= 40 && out != text {
			t.Fatalf("shorten changed a short text: %q → %q", text, out)
		}
		if len(text) > 40 && (!strings.HasPrefix(text, strings.SplitN(out, "…", 2)[0]) || len(strings.SplitN(out, "…", 2)[0]) > 40) {
			t.Fatalf("shorten(%q) = %q", text, out)
		}
		if utf8.ValidString(text) && !utf8.ValidString(out) {
			t.Fatalf("shorten broke a rune: %q", out)
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

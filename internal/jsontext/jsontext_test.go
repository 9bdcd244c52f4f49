package jsontext

import (
	"encoding/json"
	"testing"
)

func TestAppendEscape(t *testing.T) {
	cases := []struct {
		in, want, reason string
	}{
		{`\n`, "\n", ""},
		{`\"`, `"`, ""},
		{`\/`, "/", ""},
		{`\u00e9`, "é", ""},
		{`\ud83d\ude00`, "😀", ""},
		{`\ud83d`, "", `unpaired UTF-16 surrogate in a \u escape`},
		{`\ude00\ud83d`, "", `unpaired UTF-16 surrogate in a \u escape`},
		{`\u12`, "", `invalid \u escape`},
		{`\x`, "", "invalid escape"},
		{`\`, "", "unterminated string"},
	}
	for _, tc := range cases {
		out, next, err := AppendEscape(nil, tc.in, 0)
		if tc.reason != "" {
			if err == nil || err.Reason != tc.reason {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.reason)
			}
			continue
		}
		if err != nil || string(out) != tc.want || next != len(tc.in) {
			t.Errorf("%q = %q, %d, %v; want %q, %d", tc.in, out, next, err, tc.want, len(tc.in))
		}
	}
}

func TestAppendStringRoundTrips(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "ctl\x01\x1f\n\r\t", "ünïcødé 😀"} {
		var got string
		if err := json.Unmarshal(AppendString(nil, s), &got); err != nil || got != s {
			t.Errorf("AppendString(%q) does not round-trip: %q, %v", s, got, err)
		}
	}
}

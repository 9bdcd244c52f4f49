package loadgen

import (
	"encoding/json"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, size := range []int{0, 50, 100, 101, 256, 1024} {
		for _, seq := range []int{0, 7, 123456789} {
			p := appendPayload(nil, "bench:dev-42", seq, 1_760_000_000_007, size)
			if min := PayloadLen("bench:dev-42", seq); size > min && len(p) != size {
				t.Errorf("size %d seq %d: %d bytes", size, seq, len(p))
			}
			var recs []map[string]any
			if err := json.Unmarshal(p, &recs); err != nil {
				t.Fatalf("not JSON: %v: %s", err, p)
			}
			if len(recs) != 2 || recs[0]["bn"] != "bench:dev-42/" || recs[0]["n"] != "temperature" ||
				recs[0]["t"] != 1760000000.007 || recs[1]["n"] != "seq" || recs[1]["v"] != float64(seq) {
				t.Errorf("records %v", recs)
			}
			code, got, ok := parsePayload(p)
			if !ok || code != "bench:dev-42" || got != seq {
				t.Errorf("parsePayload(%s) = %q, %d, %v", p, code, got, ok)
			}
		}
	}
}

func TestParsePayloadReencoded(t *testing.T) {
	tests := []struct {
		in   string
		code string
		seq  int
		ok   bool
	}{
		// Another encoder's spacing and order: the JSON path.
		{`[ {"n":"temperature","bn":"acme:p-1/","v":1}, {"v":9,"n":"seq"} ]`, "acme:p-1", 9, true},
		{`[{"bn":"acme:p-1:","n":"seq","v":3}]`, "acme:p-1", 3, true},
		{`[{"n":"acme:p-1/seq","v":4}]`, "", 0, false}, // no base name
		{`[{"bn":"acme:p-1/","n":"temperature","v":1}]`, "", 0, false},
		{`not json`, "", 0, false},
		{`[{"bn":"x/","n":"t"},{"n":"seq","v":12a}]`, "", 0, false},
	}
	for _, tc := range tests {
		code, seq, ok := parsePayload([]byte(tc.in))
		if code != tc.code || seq != tc.seq || ok != tc.ok {
			t.Errorf("parsePayload(%s) = %q, %d, %v; want %q, %d, %v", tc.in, code, seq, ok, tc.code, tc.seq, tc.ok)
		}
	}
}

func TestTopics(t *testing.T) {
	if got := DeviceTopic("bench:dev-3"); got != "wanwu/v1/bench/dev-3/telemetry" {
		t.Errorf("DeviceTopic = %q", got)
	}
	if got := codeFromTopic("wanwu/v1/bench/dev-3/telemetry"); got != "bench:dev-3" {
		t.Errorf("codeFromTopic = %q", got)
	}
	if got := codeFromTopic("other/topic"); got != "" {
		t.Errorf("codeFromTopic(other) = %q", got)
	}
}

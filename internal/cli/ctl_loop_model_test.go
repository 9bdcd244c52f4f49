package cli

import (
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/loop"
)

// TestExplainModel: the explanation of a decision made with a model
// names the model, the version that scored and the scores, or why there
// were none.
func TestExplainModel(t *testing.T) {
	cases := []struct {
		name  string
		model *loop.ModelUse
		want  string
	}{
		{"scores", &loop.ModelUse{ID: "pca8", Version: "3", Scores: map[string]float64{"score": 4.5, "anomaly": 1}}, "  model       pca8@3: anomaly=1 score=4.5\n"},
		{"error", &loop.ModelUse{ID: "pca8", Error: "decide.model pca8: context deadline exceeded"}, "  model       pca8: no scores: decide.model pca8: context deadline exceeded\n"},
		{"skipped", &loop.ModelUse{ID: "pca8", Version: "2", Skipped: "the feature fft has no value yet"}, "  model       pca8@2: not called: the feature fft has no value yet\n"},
		{"none", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b strings.Builder
			writeExplain(&b, &loop.Evidence{ID: 7, Loop: "demo:x", Kind: loop.KindAction, State: loop.StateRecorded, Model: c.model})
			out := b.String()
			if c.want == "" {
				if strings.Contains(out, "  model ") {
					t.Fatalf("a decision without a model shows one:\n%s", out)
				}
				return
			}
			if !strings.Contains(out, c.want) {
				t.Fatalf("want %q in\n%s", c.want, out)
			}
		})
	}
}

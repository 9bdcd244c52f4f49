package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/hubtest"
)

// TestMLCtl registers the ml package's reference model with ctl ml
// register, lists and shows it; a model the runtime refuses fails with
// the runtime's reason.
func TestMLCtl(t *testing.T) {
	h := hubtest.Start(t)
	h.MustWanwu("ctl", "tenant", "create", "demo")
	meta := filepath.Join("..", "ml", "testdata", "pca8.meta.json")
	model := filepath.Join("..", "ml", "testdata", "pca8.onnx")

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"ctl", "ml", "register", "--meta", meta, "--onnx", model, "--tenant", "demo"},
			[]string{"model demo/pca8-reference version 1 (registered)", "onnx  1070 bytes, sha256 "}},
		{[]string{"ctl", "ml", "register", "--meta", meta, "--onnx", model, "--tenant", "demo"},
			[]string{"version 1 (unchanged"}},
		{[]string{"ctl", "ml", "list"}, []string{"TENANT", "demo", "pca8-reference", "1070"}},
		{[]string{"ctl", "ml", "show", "pca8-reference"},
			[]string{"model      demo/pca8-reference version 1", "signature  ", "latency    ", "id: pca8-reference", "max_model_bytes: 65536"}},
		{[]string{"ctl", "ml", "show", "pca8-reference", "--version", "1", "--tenant", "demo"}, []string{"version 1"}},
	} {
		out := h.MustWanwu(tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("wanwu %s: want %q in\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
	}

	var show struct {
		Model struct {
			Version    string `json:"version"`
			ONNXSHA256 string `json:"onnx_sha256"`
		} `json:"model"`
	}
	if err := json.Unmarshal([]byte(h.MustWanwu("ctl", "ml", "show", "pca8-reference", "--json")), &show); err != nil {
		t.Fatal(err)
	}
	if show.Model.Version != "1" || len(show.Model.ONNXSHA256) != 64 {
		t.Fatalf("show --json: %+v", show)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ctl", "ml", "register", "--meta", meta, "--onnx", meta, "--tenant", "demo"}, "not an ONNX model"},
		{[]string{"ctl", "ml", "register", "--meta", model, "--onnx", model, "--tenant", "demo"}, "not JSON"},
		{[]string{"ctl", "ml", "register", "--meta", meta}, "--onnx FILE are required"},
		{[]string{"ctl", "ml", "show", "nope"}, "not found"},
		{[]string{"ctl", "ml", "show", "pca8-reference", "--version", "7"}, "not found"},
	} {
		out, errs, code := h.Wanwu(tc.args...)
		if code == 0 || !strings.Contains(out+errs, tc.want) {
			t.Errorf("wanwu %s: exit %d, want %q in\n%s%s", strings.Join(tc.args, " "), code, tc.want, out, errs)
		}
	}

	// Staging: version 2 in shadow at the hub, promoted to canary by
	// hand, then rolled back; every step in the rollout's view.
	m2, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	meta2 := filepath.Join(t.TempDir(), "v2.meta.json")
	if err := os.WriteFile(meta2, []byte(strings.Replace(string(m2), `"version": 1`, `"version": 2`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	h.MustWanwu("ctl", "ml", "register", "--meta", meta2, "--onnx", model, "--tenant", "demo")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"ctl", "ml", "deploy", "pca8-reference", "--version", "2", "--at-hub", "--tenant", "demo", "--shadow-for", "1h", "--gate", "disagreement=0.1"},
			[]string{"rollout ro-1: pca8-reference version 2 (baseline 1) in shadow at the hub", "wanwu ctl ml rollout ro-1"}},
		{[]string{"ctl", "ml", "rollouts"}, []string{"ROLLOUT", "ro-1", "pca8-reference", "running", "the hub"}},
		{[]string{"ctl", "ml", "promote", "ro-1", "--to", "canary", "--reason", "looks fine"}, []string{"rollout ro-1: canary at every target", "running"}},
		{[]string{"ctl", "ml", "rollout", "ro-1"}, []string{"state      running (revision 2)", "forced     canary by ", "looks fine", "gates      disagreement ≤ 0.1", "NODE", "STAGE"}},
		{[]string{"ctl", "ml", "rollback", "ro-1", "--reason", "wrong data"}, []string{"rollout ro-1: rolled_back at every target", "rolled_back"}},
		{[]string{"ctl", "ml", "show", "pca8-reference", "--version", "2"}, []string{"figures    none yet", "rollout    ro-1 (candidate, rolled_back)"}},
	} {
		out := h.MustWanwu(tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("wanwu %s: want %q in\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ctl", "ml", "deploy", "pca8-reference", "--version", "2", "--at-hub", "--gate", "speed=1"}, "gates.speed: unknown figure"},
		{[]string{"ctl", "ml", "deploy", "pca8-reference", "--version", "2", "--gate", "x"}, "want FIGURE=MAX"},
		{[]string{"ctl", "ml", "deploy", "pca8-reference", "--version", "9", "--at-hub"}, "not found"},
		{[]string{"ctl", "ml", "deploy", "pca8-reference", "--version", "2"}, "targets: name the hub"},
		{[]string{"ctl", "ml", "promote", "ro-1"}, "conflict"},
		{[]string{"ctl", "ml", "rollout", "ro-9"}, "not found"},
	} {
		out, errs, code := h.Wanwu(tc.args...)
		if code == 0 || !strings.Contains(out+errs, tc.want) {
			t.Errorf("wanwu %s: exit %d, want %q in\n%s%s", strings.Join(tc.args, " "), code, tc.want, out, errs)
		}
	}
}

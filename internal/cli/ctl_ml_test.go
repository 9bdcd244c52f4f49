package cli_test

import (
	"encoding/json"
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
			[]string{"model      demo/pca8-reference version 1", "signature  ", "id: pca8-reference", "max_model_bytes: 65536"}},
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
}

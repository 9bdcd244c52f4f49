package cli_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCtlRoughEdges: what a new user met in ctl (issue 16).
func TestCtlRoughEdges(t *testing.T) {
	// A hub stand-in that refuses requests without a token, as the hub does,
	// and answers admission with a status and its restatement.
	var sawToken []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawToken = append(sawToken, r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") == "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			w.Write([]byte(`{"error":{"code":"unauthenticated","message":"missing bearer token (Authorization: Bearer wwt_...)"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/admission"):
			w.Write([]byte(`{"status":"revoked","reason":"object revoked"}`))
		default:
			w.Write([]byte(`{"tenants":[]}`))
		}
	}))
	defer srv.Close()
	dataDir := t.TempDir()
	os.WriteFile(filepath.Join(dataDir, "admin.token"), []byte("wwt_test\n"), 0o600)
	os.WriteFile(filepath.Join(dataDir, "hub.url"), []byte(srv.URL+"\n"), 0o600)
	empty := t.TempDir()

	cases := []struct {
		name      string
		args      []string
		code      int
		stdout    string // substring
		stderr    string // substring
		notStderr string
	}{
		{"partial command names its verbs, not the whole help", []string{"ctl", "tenant"}, 2, "",
			"wanwu ctl: tenant: which command? create, list", "Commands:"},
		{"a typo in a group gets a suggestion", []string{"ctl", "tenat", "list"}, 2, "", `did you mean "tenant"?`, ""},
		{"a typo in a verb gets a suggestion", []string{"ctl", "object", "regster", "acme:x"}, 2, "", `did you mean "object register"?`, ""},
		{"global flags before the command words", []string{"ctl", "--data-dir", dataDir, "tenant", "list"}, 0, "tenants", "", ""},
		{"global flags with = before the command words", []string{"ctl", "--data-dir=" + dataDir, "tenant", "list"}, 0, "tenants", "", ""},
		{"no token file says where it looked", []string{"ctl", "tenant", "list", "--data-dir", empty, "--hub", srv.URL}, 1, "",
			"no token file at " + filepath.Join(empty, "admin.token"), ""},
		{"revoke without --yes says it is final", []string{"ctl", "object", "revoke", "acme:x", "--data-dir", dataDir}, 2, "",
			"is final", ""},
		{"admission says the state once", []string{"ctl", "object", "admission", "acme:x", "--data-dir", dataDir}, 0, "revoked\n", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(tc.args...)
			if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) ||
				tc.notStderr != "" && strings.Contains(stderr, tc.notStderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q (and not %q)",
					code, stdout, stderr, tc.code, tc.stdout, tc.stderr, tc.notStderr)
			}
		})
	}
	if stdout, _, _ := run("ctl", "object", "admission", "acme:x", "--data-dir", dataDir); stdout != "revoked\n" {
		t.Errorf("admission printed %q", stdout)
	}
}

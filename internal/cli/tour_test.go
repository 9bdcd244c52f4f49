package cli

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInvocation(t *testing.T) {
	for _, tc := range []struct{ arg0, want string }{
		{"/tmp/go-build2967011501/b001/exe/wanwu", "go run ./cmd/wanwu"},  // go run
		{"/root/.cache/go-build/4f/4f3a0c-d/wanwu", "go run ./cmd/wanwu"}, // go run from the build cache
		{"", "go run ./cmd/wanwu"},
		{"./wanwu", "./wanwu"},
		{"wanwu", "wanwu"}, // from $PATH
		{"/usr/local/bin/wanwu", "/usr/local/bin/wanwu"},
		{"dist/wanwu-v1.2.3-linux-amd64", "dist/wanwu-v1.2.3-linux-amd64"},
		{"/opt/my tools/wanwu", "'/opt/my tools/wanwu'"},
	} {
		if got := invocation(tc.arg0); got != tc.want {
			t.Errorf("invocation(%q) = %q, want %q", tc.arg0, got, tc.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"wanwu-data":   "wanwu-data",
		"/srv/wanwu":   "/srv/wanwu",
		"my data":      "'my data'",
		"it's":         `'it'\''s'`,
		"$HOME/x":      "'$HOME/x'",
		"":             "''",
		"a:b@c+d=e,f%": "a:b@c+d=e,f%",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTourCommands: every hint the hub prints at start-up is accepted by
// the command it names, with --data-dir where that command takes it. Each
// is run (without the program name) against a data directory whose hub.url
// names a closed port: it must fail reaching the hub or reading files, never
// as a usage error (exit 2), as 'ctl --data-dir X tenant ...' did.
func TestTourCommands(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	t.Setenv("WANWU_HUB", "")
	t.Setenv("WANWU_TOKEN", "")

	// Run where a user would: a directory with the tour's model file in it.
	model, err := os.ReadFile(filepath.Join("..", "..", tourModel))
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	t.Chdir(work)
	if err := os.MkdirAll(filepath.Dir(tourModel), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tourModel, model, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(work, "hub-data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"hub.url": closed + "\n", "admin.token": "wwt_test\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name, prog, dataDir string
		wantDataDir         bool
	}{
		{"go run, default data dir", "go run ./cmd/wanwu", "wanwu-data", false},
		{"built binary, default data dir spelled differently", "./wanwu", "./wanwu-data/", false},
		{"built binary, another data dir", "./wanwu", dir, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := tourCommands(tc.prog, tc.dataDir)
			if len(lines) == 0 {
				t.Fatal("no commands")
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, tc.prog+" ") {
					t.Errorf("%q does not start with %q", l, tc.prog)
				}
				if got := strings.Contains(l, "--data-dir"); got != tc.wantDataDir {
					t.Errorf("%q: --data-dir given: %v, want %v", l, got, tc.wantDataDir)
				}
				if !tc.wantDataDir {
					continue
				}
				args := strings.Fields(strings.TrimPrefix(l, tc.prog+" "))
				var stdout, stderr bytes.Buffer
				code := Main(args, &stdout, &stderr)
				if code == 0 || code == 2 {
					t.Errorf("%s: exit %d, want a failure to reach the hub or read a file (1)\nstderr: %s", l, code, stderr.String())
				}
				if args[0] == "ctl" && !strings.Contains(stderr.String(), "cannot reach the hub at "+closed) {
					t.Errorf("%s: ctl did not use %s/hub.url:\n%s", l, dir, stderr.String())
				}
			}
		})
	}
}

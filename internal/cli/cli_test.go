package cli_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/cli"
)

// run calls the command line in-process.
func run(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = cli.Main(args, &out, &errb)
	return out.String(), errb.String(), code
}

// writeConfig writes a YAML configuration file and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "wanwu.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestCommandLine runs the command line without a hub and checks exit codes
// and what it says.
func TestCommandLine(t *testing.T) {
	full := writeConfig(t, "http:\n  listen: 127.0.0.1:9911\nbus:\n  sync: 2s\nlog:\n  level: warn\n")
	empty := writeConfig(t, "")
	unknownTop := writeConfig(t, "colour: red\n")
	unknownNested := writeConfig(t, "http:\n  listn: 127.0.0.1:1\n")
	badSync := writeConfig(t, "bus:\n  sync: sometimes\n")
	badLevel := writeConfig(t, "log:\n  level: loud\n")
	badDuration := writeConfig(t, "identity:\n  cert_validity: forever\n")
	notYAML := writeConfig(t, "http: [\n")
	nowhere := "http://" + closedPort(t)
	noDataDir := filepath.Join(t.TempDir(), "none")
	badProfiles := writeConfig(t, "profiles:\n  - name: nb-iot\n    base: nb-iot\n    loss: {good: 2}\n")
	badScenario := writeConfig(t, "name: bad\nclasses:\n  - {name: x, kind: cnc, count: 0, network: carrier-pigeon}\n")

	cases := []struct {
		name string
		args []string
		code int
		// Substrings each stream must contain, and must not contain.
		stdout, stderr []string
		notStdout      []string
	}{
		{name: "no arguments", args: nil, code: 2,
			stdout: []string{"Usage: wanwu <command>", "hub", "ctl", "verify", "Planned"}},
		{name: "help", args: []string{"help"}, code: 0, stdout: []string{"Usage: wanwu <command>"}},
		{name: "-h", args: []string{"-h"}, code: 0, stdout: []string{"Usage: wanwu <command>"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2,
			stderr: []string{`unknown command "frobnicate"`, "Usage: wanwu <command>"}},
		{name: "edge without a hub", args: []string{"edge"}, code: 2, stderr: []string{"wanwu edge needs --hub URL"}},
		{name: "sim against no hub", args: []string{"sim", "--devices", "10", "--hub", nowhere, "--token", "x", "--state", filepath.Join(noDataDir, "sim.json")}, code: 1,
			stderr: []string{"wanwu sim: sim: provision:", "connection refused"}},
		{name: "sim unknown scenario", args: []string{"sim", "--scenario", "atlantis"}, code: 2,
			stderr: []string{"--scenario atlantis: neither a file nor a built-in scenario (city, demo, factory)"}},
		{name: "sim malformed profile file", args: []string{"sim", "--profiles", badProfiles}, code: 1,
			stderr: []string{"profiles[0].loss.good: must be in [0,1]"}},
		{name: "sim malformed scenario", args: []string{"sim", "--scenario", badScenario}, code: 1,
			stderr: []string{"classes[0].count: must be between 1 and 100000", "classes[0].network"}},
		{name: "bench without a mode", args: []string{"bench"}, code: 2, stderr: []string{"wanwu bench: missing mode"}},
		{name: "demo print-config", args: []string{"demo", "--print-config"}, code: 0, stdout: []string{"data_dir: wanwu-demo\n"}},
		{name: "demo with a ctl flag", args: []string{"demo", "--token", "x"}, code: 2,
			stderr: []string{"flag --token does not apply to 'wanwu demo'"}},
		{name: "version", args: []string{"version"}, code: 0, stdout: []string{"wanwu ", "\ncommit  ", "\ngo      go1."}},
		{name: "version with an argument", args: []string{"version", "now"}, code: 2, stderr: []string{"unexpected arguments"}},
		{name: "version with an argument flag", args: []string{"version", "--hub", "x"}, code: 2,
			stderr: []string{"flag --hub does not apply to 'wanwu version'", "'wanwu ctl'"}},

		// Flags given to the wrong command name the command they belong to.
		{name: "hub flag to ctl", args: []string{"ctl", "tenant", "list", "--http.listen", ":1"}, code: 2,
			stderr: []string{"flag --http.listen does not apply to 'wanwu ctl tenant list'", "it belongs to 'wanwu demo', 'wanwu edge', 'wanwu hub'"}},
		{name: "ctl flag to hub", args: []string{"hub", "--hub", "http://x"}, code: 2,
			stderr: []string{"flag --hub does not apply to 'wanwu hub'", "'wanwu ctl'"}},
		{name: "hub flag to verify", args: []string{"verify", "log", "--print-config"}, code: 2,
			stderr: []string{"flag --print-config does not apply to 'wanwu verify log'", "'wanwu hub'"}},
		{name: "verify flag to hub", args: []string{"hub", "--head", "h.txt"}, code: 2,
			stderr: []string{"flag --head does not apply to 'wanwu hub'", "'wanwu verify log'"}},
		{name: "flag of no command", args: []string{"hub", "--colour", "red"}, code: 2,
			stderr: []string{"unknown flag --colour"}},
		{name: "unknown ctl command", args: []string{"ctl", "tenant", "explode"}, code: 2,
			stderr: []string{`unknown ctl command "tenant explode"`}},
		{name: "ctl without a command", args: []string{"ctl"}, code: 2, stdout: []string{"Usage: wanwu ctl"}},
		{name: "verify without a target", args: []string{"verify"}, code: 2},
		{name: "verify unknown target", args: []string{"verify", "everything"}, code: 2, stderr: []string{`unknown verify target "everything"`}},
		{name: "hub positional argument", args: []string{"hub", "now"}, code: 2, stderr: []string{"unexpected arguments"}},

		// Configuration: defaults < file < flags.
		{name: "print-config defaults", args: []string{"hub", "--print-config"}, code: 0,
			stdout: []string{"data_dir: wanwu-data\n", "  listen: 127.0.0.1:8080\n", "  sync: always\n",
				"  cert_validity: 8760h0m0s\n", "  rotation_overlap: 168h0m0s\n", "  level: info\n", "  format: text\n"}},
		{name: "print-config empty file", args: []string{"hub", "--config", empty, "--print-config"}, code: 0,
			stdout: []string{"  listen: 127.0.0.1:8080\n", "  sync: always\n"}},
		{name: "print-config file and flags", args: []string{"hub", "--config", full, "--log.level", "debug", "--print-config"}, code: 0,
			stdout:    []string{"  listen: 127.0.0.1:9911\n", "  sync: 2s\n", "  level: debug\n", "data_dir: wanwu-data\n", "  format: text\n"},
			notStdout: []string{"level: warn", "level: info", "8080", "always"}},
		{name: "flag before --config still wins", args: []string{"hub", "--http.listen", "127.0.0.1:7000", "--config", full, "--print-config"}, code: 0,
			stdout: []string{"  listen: 127.0.0.1:7000\n", "  sync: 2s\n", "  level: warn\n"}},
		{name: "duration flags", args: []string{"hub", "--identity.cert-validity", "720h", "--print-config"}, code: 0,
			stdout: []string{"  cert_validity: 720h0m0s\n"}},
		{name: "tls hosts flag", args: []string{"hub", "--tls-hosts", "hub.example.com, 192.0.2.7,,2001:db8::7", "--print-config"}, code: 0,
			stdout:    []string{"tls_hosts:\n  - hub.example.com\n  - 192.0.2.7\n  - 2001:db8::7\n"},
			notStdout: []string{"localhost"}},
		{name: "tls hosts flag empty", args: []string{"hub", "--tls-hosts", "", "--print-config"}, code: 1, stderr: []string{"tls_hosts"}},
		{name: "unknown key", args: []string{"hub", "--config", unknownTop, "--print-config"}, code: 1, stderr: []string{`line 1: unknown key "colour"; at the top level the keys are: data_dir, http,`}},
		{name: "unknown nested key", args: []string{"hub", "--config", unknownNested, "--print-config"}, code: 1, stderr: []string{`line 2: unknown key "http.listn"; under http the keys are: listen, tls_listen`}},
		{name: "invalid bus.sync", args: []string{"hub", "--config", badSync, "--print-config"}, code: 1, stderr: []string{"bus.sync", "sometimes"}},
		{name: "invalid log.level", args: []string{"hub", "--config", badLevel, "--print-config"}, code: 1, stderr: []string{"log.level", "loud"}},
		{name: "invalid log.level flag", args: []string{"hub", "--log.level", "loud", "--print-config"}, code: 1, stderr: []string{"log.level", "loud"}},
		{name: "invalid duration", args: []string{"hub", "--config", badDuration, "--print-config"}, code: 1, stderr: []string{"forever"}},
		{name: "invalid duration flag", args: []string{"hub", "--identity.cert-validity", "forever"}, code: 2, stderr: []string{"identity.cert-validity"}},
		{name: "invalid listen address", args: []string{"hub", "--http.listen", "nonsense", "--print-config"}, code: 1, stderr: []string{"http.listen"}},
		{name: "missing config file", args: []string{"hub", "--config", filepath.Join(noDataDir, "x.yaml")}, code: 1, stderr: []string{"x.yaml"}},
		{name: "config not YAML", args: []string{"hub", "--config", notYAML}, code: 1, stderr: []string{notYAML}},

		// ctl and verify without a hub.
		{name: "ctl with no hub listening", args: []string{"ctl", "tenant", "list", "--hub", nowhere, "--data-dir", noDataDir}, code: 1,
			stderr: []string{"cannot reach the hub at " + nowhere, "is 'wanwu hub' running?"}},
		{name: "ctl flags after arguments", args: []string{"ctl", "object", "get", "acme:x", "--hub", nowhere, "--data-dir", noDataDir}, code: 1,
			stderr: []string{"cannot reach the hub at " + nowhere}},
		{name: "ctl token file missing", args: []string{"ctl", "tenant", "list", "--hub", nowhere, "--token-file", filepath.Join(noDataDir, "tok")}, code: 1,
			stderr: []string{"token file"}},
		{name: "verify log without a data dir", args: []string{"verify", "log", "--data-dir", noDataDir}, code: 1,
			stderr: []string{noDataDir}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WANWU_HUB", "")
			t.Setenv("WANWU_TOKEN", "")
			stdout, stderr, code := run(tc.args...)
			if code != tc.code {
				t.Errorf("wanwu %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, tc.code, stdout, stderr)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			for _, bad := range tc.notStdout {
				if strings.Contains(stdout, bad) {
					t.Errorf("stdout has %q:\n%s", bad, stdout)
				}
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if code != 0 && tc.stderr != nil && stderr == "" {
				t.Errorf("failed without a message on stderr")
			}
		})
	}
}

// TestPrintConfigRoundTrip: what --print-config prints is a valid
// configuration file that gives the same configuration back.
func TestPrintConfigRoundTrip(t *testing.T) {
	first, errs, code := run("hub", "--data-dir", "/srv/wanwu", "--bus.sync", "500ms", "--log.format", "json", "--identity.rotation-overlap", "1h", "--print-config")
	if code != 0 {
		t.Fatalf("print-config: exit %d: %s", code, errs)
	}
	path := writeConfig(t, first)
	second, errs, code := run("hub", "--config", path, "--print-config")
	if code != 0 {
		t.Fatalf("print-config from its own output: exit %d: %s", code, errs)
	}
	if first != second {
		t.Errorf("round trip changed the configuration:\n%s\n---\n%s", first, second)
	}
}

// TestHelpFlags: -h on each command prints its flags and exits 0.
func TestHelpFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"hub", "-h"}, []string{"-http.listen", "-config", "-print-config", "-bus.sync"}},
		{[]string{"ctl", "tenant", "list", "-h"}, []string{"-hub", "-token", "-data-dir"}},
		{[]string{"ctl", "help"}, []string{"tenant create", "object register", "audit head"}},
		{[]string{"verify", "log", "-h"}, []string{"-head", "-export"}},
		{[]string{"version", "-h"}, nil},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, code := run(tc.args...)
			if code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(stdout, want) {
					t.Errorf("help lacks %q:\n%s", want, stdout)
				}
			}
		})
	}
}

// TestUnknownKeysNameNoGoTypes: an unknown configuration key is named with
// its path and the keys allowed there, never with Go struct types.
func TestUnknownKeysNameNoGoTypes(t *testing.T) {
	path := writeConfig(t, "mqtt:\n  limits:\n    publish_per_devise: 5\n")
	_, stderr, code := run("hub", "--config", path, "--print-config")
	if code != 1 || strings.Contains(stderr, "struct") || !strings.Contains(stderr, `"mqtt.limits.publish_per_devise"; under mqtt.limits the keys are: connect_per_device`) {
		t.Errorf("exit %d, %q", code, stderr)
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseByteSize(t *testing.T) {
	cases := []struct {
		in   string
		want ByteSize
		err  bool
	}{
		{"0", 0, false},
		{"4096", 4096, false},
		{"256MiB", 256 << 20, false},
		{"1GiB", 1 << 30, false},
		{"500MB", 500e6, false},
		{" 10 kB ", 10e3, false},
		{"12XB", 0, true},
		{"MiB", 0, true},
		{"-1", 0, true},
		{"99999999999TiB", 0, true},
	}
	for _, tc := range cases {
		got, err := ParseByteSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	for _, b := range []ByteSize{0, 1000, 256 << 20, 3 << 30} {
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Errorf("%d -> %q -> %d, %v", b, b.String(), back, err)
		}
	}
}

func TestStorageMinFreeFromFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hub.yaml")
	c := DefaultHub()
	if c.Storage.MinFree != 256<<20 {
		t.Fatalf("default min_free = %s", c.Storage.MinFree)
	}
	os.WriteFile(path, []byte("storage:\n  min_free: 1GiB\n"), 0o600)
	if err := c.LoadFile(path); err != nil || c.Storage.MinFree != 1<<30 {
		t.Fatalf("min_free = %s, %v", c.Storage.MinFree, err)
	}
	os.WriteFile(path, []byte("storage:\n  min_free: lots\n"), 0o600)
	if err := c.LoadFile(path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad min_free: %v, want an error naming line 2", err)
	}
	out, err := c.YAML()
	if err != nil || !strings.Contains(string(out), "min_free: 1GiB") {
		t.Fatalf("YAML() = %s, %v", out, err)
	}
}

// TestNetworks: profile overrides from a file change only the figures
// they set, print back, and are checked: an unknown profile, an unknown
// key, a negative timer or a PSM profile without an active timer.
func TestNetworks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.yaml")
	load := func(yaml string) (Hub, error) {
		c := DefaultHub()
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.LoadFile(path); err != nil {
			return c, err
		}
		return c, c.Validate()
	}
	c, err := load("networks:\n  flush_every: 2s\n  profiles:\n    nb-iot:\n      daily_budget: 32KiB\n      active_timer: 500ms\n    wlan:\n      daily_budget: 1GB\n")
	if err != nil {
		t.Fatal(err)
	}
	nb, ok := c.Networks.Profile("nb-iot")
	if !ok || nb.DailyBudget != 32<<10 || nb.Sleep.ActiveTimer != 500*time.Millisecond || !nb.Sleep.PSM || nb.Sleep.PeriodicUpdate != 24*time.Hour {
		t.Errorf("nb-iot %+v", nb)
	}
	if w, _ := c.Networks.Profile("wlan"); w.DailyBudget != 1e9 {
		t.Errorf("wlan budget %d", w.DailyBudget)
	}
	if cat1, _ := c.Networks.Profile("lte-cat1"); cat1.DailyBudget != 20<<20 {
		t.Errorf("lte-cat1 budget %d, want the built-in one", cat1.DailyBudget)
	}
	if _, ok := c.Networks.Profile("lora"); ok {
		t.Error("an unknown profile")
	}
	out, err := c.YAML()
	if err != nil || !strings.Contains(string(out), "daily_budget: 32KiB") || !strings.Contains(string(out), "active_timer: 500ms") {
		t.Errorf("YAML() = %s, %v", out, err)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"networks:\n  profiles:\n    lora:\n      daily_budget: 1KiB\n", `"lora" is not a network profile; want one of nb-iot`},
		{"networks:\n  profiles:\n    nb-iot:\n      budget: 1KiB\n", "budget"},
		{"networks:\n  profiles:\n    nb-iot:\n      active_timer: -1s\n", "networks.profiles.nb-iot.active_timer: -1s: must not be negative"},
		{"networks:\n  profiles:\n    nb-iot:\n      active_timer: 0s\n", "a PSM profile needs a positive active timer"},
		{"networks:\n  flush_every: 1ms\n", "networks.flush_every"},
	} {
		if _, err := load(tt.yaml); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %q", tt.yaml, err, tt.want)
		}
	}
}

// TestConsole: the console's keys from a file, printed back, and their
// bounds, each refusal naming its key.
func TestConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.yaml")
	c := DefaultHub()
	if c.Console.SessionLifetime != Duration(8*time.Hour) || c.Console.SecureCookies || c.Console.LiveEvery != Duration(time.Second) || c.Console.MaxLiveStreams != 256 {
		t.Fatalf("defaults: %+v", c.Console)
	}
	os.WriteFile(path, []byte("console:\n  session_lifetime: 12h\n  secure_cookies: true\n  live_every: 2s\n  max_live_streams: 64\n"), 0o600)
	if err := c.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"session_lifetime: 12h0m0s", "secure_cookies: true", "live_every: 2s", "max_live_streams: 64"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("YAML() lacks %q:\n%s", want, out)
		}
	}
	for _, tc := range []struct {
		edit func(*Console)
		key  string
	}{
		{func(c *Console) { c.SessionLifetime = Duration(10 * time.Second) }, "console.session_lifetime"},
		{func(c *Console) { c.SessionLifetime = Duration(31 * 24 * time.Hour) }, "console.session_lifetime"},
		{func(c *Console) { c.LiveEvery = 0 }, "console.live_every"},
		{func(c *Console) { c.LiveEvery = Duration(2 * time.Minute) }, "console.live_every"},
		{func(c *Console) { c.MaxLiveStreams = 0 }, "console.max_live_streams"},
	} {
		bad := DefaultHub()
		tc.edit(&bad.Console)
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%+v: %v, want an error naming %s", bad.Console, err, tc.key)
		}
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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

package web

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"regexp"
	"testing"
)

// TestREADMEHashes: every embedded file has a row in README.md whose
// SHA-256 is the file's, and every row names an embedded file, so the
// README says truly what is vendored.
func TestREADMEHashes(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|.*\\| `([0-9a-f]{64})` \\|$").FindAllStringSubmatch(string(readme), -1)
	want := map[string]string{}
	for _, r := range rows {
		want[r[1]] = r[2]
	}
	if len(want) == 0 {
		t.Fatal("README.md has no file rows")
	}
	seen := map[string]bool{}
	err = fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(FS, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		seen[path] = true
		switch h, ok := want[path]; {
		case !ok:
			t.Errorf("%s is embedded but has no row in README.md", path)
		case h != hex.EncodeToString(sum[:]):
			t.Errorf("%s: SHA-256 %x, README.md says %s", path, sum, h)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for path := range want {
		if !seen[path] {
			t.Errorf("README.md names %s, which is not embedded", path)
		}
	}
}

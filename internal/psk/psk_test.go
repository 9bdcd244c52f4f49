package psk

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "psk.key")
	d1, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	d2, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d1.Derive("acme:d1", "fp"), d2.Derive("acme:d1", "fp")) {
		t.Error("a reloaded master key derives different PSKs")
	}
}

func TestLoadOrCreateRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "psk.key")
	var wg sync.WaitGroup
	out := make([][]byte, 8)
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := LoadOrCreate(path)
			if err != nil {
				t.Error(err)
				return
			}
			out[i] = d.Derive("acme:d1", "fp")
		}()
	}
	wg.Wait()
	for i := range out {
		if !bytes.Equal(out[i], out[0]) {
			t.Fatal("racing creators disagree on the master key")
		}
	}
}

func TestBadKeyFile(t *testing.T) {
	for _, content := range []string{"", "zz", "00112233", string(bytes.Repeat([]byte("ab"), 33))} {
		path := filepath.Join(t.TempDir(), "psk.key")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreate(path); !errors.Is(err, ErrBadKeyFile) {
			t.Errorf("%q: err %v, want ErrBadKeyFile", content, err)
		}
	}
}

func TestDerive(t *testing.T) {
	master := bytes.Repeat([]byte{7}, KeySize)
	d, err := New(master)
	if err != nil {
		t.Fatal(err)
	}
	// The documented construction, computed independently.
	m := hmac.New(sha256.New, master)
	m.Write([]byte("wanwu-psk-v1\x00acme:d1\x00fp-1"))
	want := m.Sum(nil)[:16]
	if got := d.Derive("acme:d1", "fp-1"); !bytes.Equal(got, want) {
		t.Fatalf("Derive = %x, want %x", got, want)
	}
	cases := []struct{ code, fp string }{
		{"acme:d2", "fp-1"},     // another device
		{"acme:d1", "fp-2"},     // a rotated key
		{"acme:d1\x00fp", "-1"}, // the separator keeps fields apart
	}
	for _, c := range cases {
		if bytes.Equal(d.Derive(c.code, c.fp), want) {
			t.Errorf("Derive(%q, %q) collides with acme:d1/fp-1", c.code, c.fp)
		}
	}
	if len(want) != PSKSize {
		t.Errorf("PSK is %d bytes", len(want))
	}
	if _, err := New(master[:31]); err == nil {
		t.Error("New accepted a 31-byte key")
	}
}

// Package testfs gives tests a small filesystem of their own to fill: a
// tmpfs mounted on a temporary directory (Linux, with the privilege to
// mount; elsewhere the test is skipped), and a filler that takes its space
// and gives it back.
package testfs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Filler holds space on a filesystem in a file of its own.
type Filler struct {
	t    testing.TB
	path string
	f    *os.File
}

// NewFiller creates the filler file in dir.
func NewFiller(t testing.TB, dir string) *Filler {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatalf("testfs: filler: %v", err)
	}
	fl := &Filler{t: t, path: path, f: f}
	t.Cleanup(func() { f.Close() })
	return fl
}

// FillTo grows the filler until the filesystem has at most leave bytes
// free (0: until a write fails with ENOSPC).
func (fl *Filler) FillTo(leave uint64) {
	fl.t.Helper()
	chunk := make([]byte, 64<<10)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(filepath.Dir(fl.path), &st); err != nil {
			fl.t.Fatalf("testfs: statfs: %v", err)
		}
		free := uint64(st.Bavail) * uint64(st.Bsize)
		if leave > 0 && free <= leave {
			return
		}
		n := uint64(len(chunk))
		if leave > 0 && free-leave < n {
			n = free - leave
		}
		if _, err := fl.f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			fl.t.Fatalf("testfs: fill: %v", err)
		}
	}
}

// Free gives the filler's space back.
func (fl *Filler) Free() {
	fl.t.Helper()
	if err := fl.f.Truncate(0); err != nil {
		fl.t.Fatalf("testfs: free: %v", err)
	}
	if _, err := fl.f.Seek(0, 0); err != nil {
		fl.t.Fatalf("testfs: free: %v", err)
	}
}

package node

// The data directory: its lock, its disk guard, and files written whole or
// not at all.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/diskguard"
)

// LockFile is held while a process runs on a data directory.
const LockFile = "LOCK"

// DataDirOptions configure OpenDataDir.
type DataDirOptions struct {
	Path string
	// Role names the process in the message a second one gets ("hub",
	// "edge").
	Role string
	// MinFree is the free space the disk guard keeps (0: no threshold).
	MinFree uint64
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// DataDir is an open, locked data directory and the guard that watches
// its filesystem's free space.
type DataDir struct {
	Path string
	Disk *diskguard.Guard
	lock *os.File
}

// OpenDataDir creates the directory if needed, locks it so that no second
// process shares it, and starts its disk guard.
func OpenDataDir(o DataDirOptions) (*DataDir, error) {
	if err := os.MkdirAll(o.Path, 0o700); err != nil {
		return nil, fmt.Errorf("%s: data dir: %w", o.Role, err)
	}
	lock, err := lockDir(o.Path, o.Role)
	if err != nil {
		return nil, err
	}
	disk, err := diskguard.New(diskguard.Options{Dir: o.Path, MinFree: o.MinFree, Logger: o.Logger, Metrics: o.Metrics})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("%s: %w", o.Role, err)
	}
	disk.Start()
	return &DataDir{Path: o.Path, Disk: disk, lock: lock}, nil
}

// File is the path of a file in the directory.
func (d *DataDir) File(name string) string { return filepath.Join(d.Path, name) }

// Close stops the disk guard and releases the lock.
func (d *DataDir) Close() error {
	d.Disk.Shutdown()
	return d.lock.Close()
}

// lockDir takes an exclusive lock so two processes never share a data
// directory.
func lockDir(dir, role string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: lock: %w", role, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: data dir %s is in use by another %s: %w", role, dir, role, err)
	}
	return f, nil
}

// RandomID is 16 random bytes in hex: deployment and node ids.
func RandomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("node: crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// WriteFileAtomic writes through a temporary file and a rename, so a crash
// leaves the old or the new content, never a torn file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

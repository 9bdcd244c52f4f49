//go:build !linux

package testfs

import "testing"

// Mount skips the test: mounting a tmpfs needs Linux.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	t.Skip("testfs: mounting a tmpfs needs Linux")
	return ""
}

//go:build linux || darwin || freebsd

package diskguard

import "syscall"

// statfs asks the kernel for the space available to unprivileged writers
// (f_bavail: the root reserve of ext4 is not ours to count on).
func statfs(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), uint64(st.Blocks) * uint64(st.Bsize), nil
}

//go:build !(linux || darwin || freebsd)

package diskguard

import "errors"

// statfs is not implemented here: the threshold stays off, and stores that
// meet a full disk still report it.
func statfs(string) (free, total uint64, err error) {
	return 0, 0, errors.New("diskguard: free space is not measured on this platform")
}

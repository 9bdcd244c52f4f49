//go:build !linux

package loadgen

import "syscall"

func dialControl(network, address string, c syscall.RawConn) error { return nil }

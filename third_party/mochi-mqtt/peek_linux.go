package mqtt

import (
	"syscall"
	"unsafe"
)

// canPeek says socketReadable works here (wanwu patch).
const canPeek = true

// socketReadable reports whether the socket has data or an error (or its
// end) waiting: a one-byte MSG_PEEK that does not block (wanwu patch). It is
// a syscall.RawConn.Read callback: false means "wait for readability".
func socketReadable(fd uintptr) bool {
	var b [1]byte
	_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno != syscall.EAGAIN
}

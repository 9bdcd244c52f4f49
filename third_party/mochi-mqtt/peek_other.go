//go:build !linux

package mqtt

// canPeek says socketReadable works here (wanwu patch): not on this
// platform, so connections keep their read buffers.
const canPeek = false

func socketReadable(uintptr) bool { return true }

// Package runtime reports facts of the host the TSDB runs on: file
// system type and free space, resource limits, the kernel (wanwu patch:
// package comment).
package runtime

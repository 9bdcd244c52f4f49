// Package pool is the pooled, mutable CoAP message that connections read into and write from.
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package pool

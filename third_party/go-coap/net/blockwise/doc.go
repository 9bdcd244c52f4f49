// Package blockwise implements block-wise transfers (RFC 7959) for CoAP connections.
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package blockwise

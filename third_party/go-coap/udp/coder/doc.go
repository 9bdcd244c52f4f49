// Package coder encodes and decodes CoAP messages for UDP (RFC 7252 §3).
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package coder

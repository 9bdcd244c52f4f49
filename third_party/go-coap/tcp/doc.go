// Package tcp dials and serves CoAP over TCP (RFC 8323).
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package tcp

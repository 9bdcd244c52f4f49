// Package udp dials and serves CoAP over UDP (RFC 7252).
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package udp

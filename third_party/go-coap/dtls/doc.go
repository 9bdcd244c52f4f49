// Package dtls dials and serves CoAP over DTLS (RFC 7252 §9) with pion/dtls.
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package dtls

// Package codes names the CoAP request methods and response codes (RFC 7252 §12.1).
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package codes

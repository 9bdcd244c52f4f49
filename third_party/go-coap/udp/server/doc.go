// Package server is the CoAP server for UDP endpoints.
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package server

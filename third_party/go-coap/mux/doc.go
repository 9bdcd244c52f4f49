// Package mux routes CoAP requests by path to handlers.
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package mux

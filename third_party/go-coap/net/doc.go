// Package net wraps UDP, TCP and DTLS sockets for CoAP, with control messages and timeouts.
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package net

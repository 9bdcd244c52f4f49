// Package client is a CoAP connection over UDP or DTLS: deduplication, retransmission and observation (patched for wanwu: see PATCHES.md at the module root).
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package client

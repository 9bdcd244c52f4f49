// Package client is the request/response machinery that UDP and TCP connections share.
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package client

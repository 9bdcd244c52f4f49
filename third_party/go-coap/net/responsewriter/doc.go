// Package responsewriter is the writer a CoAP handler answers a request with.
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package responsewriter

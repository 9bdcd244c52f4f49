// Package message holds the CoAP message model: types, options, content formats and their encoding.
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package message

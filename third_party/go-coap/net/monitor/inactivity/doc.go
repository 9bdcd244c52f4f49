// Package inactivity closes or pings connections that stay idle.
//
// It is part of go-coap v3.5.5, copied into wanwu's tree; see
// third_party/go-coap/PATCHES.md.
package inactivity

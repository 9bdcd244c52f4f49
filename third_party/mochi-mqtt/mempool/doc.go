// Package mempool is part of mochi-mqtt v2.7.9 as vendored by wanwu (see PATCHES.md at
// the module root); this doc comment is wanwu's addition.
package mempool

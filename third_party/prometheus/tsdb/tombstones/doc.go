// Package tombstones records the deleted time ranges of series, in memory
// and in a block's tombstones file (wanwu patch: package comment).
package tombstones

// Package chunks reads and writes chunk files: the head's memory-mapped
// chunks and the segment files of persisted blocks (wanwu patch: package comment).
package chunks

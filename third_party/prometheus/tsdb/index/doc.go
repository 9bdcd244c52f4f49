// Package index reads and writes a block's index: symbols, series, label
// indexes and postings lists (wanwu patch: package comment).
package index

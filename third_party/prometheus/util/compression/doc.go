// Package compression encodes and decodes the TSDB's write-ahead log
// records (Snappy, Zstandard) with reusable buffers (wanwu patch: package
// comment).
package compression

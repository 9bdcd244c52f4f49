// Package encoding holds the byte encoders and decoders (varints, big
// endian integers, CRC-checked buffers) the TSDB's files are written with (wanwu patch: package comment).
package encoding

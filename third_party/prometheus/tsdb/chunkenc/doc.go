// Package chunkenc encodes samples into chunks: XOR-compressed floats,
// histograms and float histograms, with their iterators (wanwu patch: package comment).
package chunkenc

// Package histogram holds Prometheus' native histograms (integer and float)
// and their bucket iterators (wanwu patch: package comment).
package histogram

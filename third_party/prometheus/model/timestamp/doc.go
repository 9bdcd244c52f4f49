// Package timestamp converts between time.Time and Prometheus' millisecond
// timestamps (wanwu patch: package comment).
package timestamp

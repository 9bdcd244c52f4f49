// Package wlog is the TSDB's write-ahead log: segmented records, their
// readers, checkpoints and the watcher that follows a log (wanwu patch:
// package comment).
package wlog

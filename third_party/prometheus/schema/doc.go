// Package schema holds the metadata labels (type and unit of a series) that
// Prometheus reads from and writes to label sets (wanwu patch: package comment).
package schema

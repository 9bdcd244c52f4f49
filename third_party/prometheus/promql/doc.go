// Package promql evaluates PromQL queries over a storage.Queryable: wanwu's
// Prometheus-compatible API runs on it (wanwu patch: package comment).
package promql

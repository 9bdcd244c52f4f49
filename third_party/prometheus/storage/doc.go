// Package storage defines Prometheus's storage interfaces (queriers,
// appenders, series sets) and the helpers that merge and buffer them (wanwu patch: package comment).
package storage

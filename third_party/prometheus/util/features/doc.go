// Package features registers the optional features a Prometheus build
// has, for its API to list (wanwu patch: package comment).
package features

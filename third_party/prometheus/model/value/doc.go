// Package value holds the special sample values, such as the stale marker
// (wanwu patch: package comment).
package value

// Package kahansum adds floating-point numbers with Kahan compensation,
// for PromQL's sums and averages (wanwu patch: package comment).
package kahansum

// Package almost compares floating-point numbers for near equality, as
// PromQL's tests and functions need (wanwu patch: package comment).
package almost

// Package labels holds label sets, their builders, and the matchers (equal,
// regexp and their optimised forms) selectors use (wanwu patch: package
// comment).
package labels

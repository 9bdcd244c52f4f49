// Package annotations carries the warnings and informational notes a
// PromQL query returns beside its result (wanwu patch: package comment).
package annotations

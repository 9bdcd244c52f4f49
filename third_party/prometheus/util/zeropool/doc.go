// Package zeropool is a type-safe sync.Pool that does not allocate on Put
// (wanwu patch: package comment; upstream's comment in pool.go is not
// attached to the package clause).
package zeropool

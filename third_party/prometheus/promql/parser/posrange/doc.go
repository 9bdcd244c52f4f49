// Package posrange holds the position ranges PromQL's parser records in its
// expressions, for error messages that point into the query (wanwu patch: package comment).
package posrange

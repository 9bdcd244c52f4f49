// Package stats times the phases of a PromQL query and counts the samples
// it touched, for the query statistics the API returns (wanwu patch:
// package comment).
package stats

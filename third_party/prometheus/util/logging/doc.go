// Package logging has the slog helpers of the TSDB and PromQL: a
// deduplicating handler and a JSON file logger for the query log (wanwu
// patch: package comment).
package logging

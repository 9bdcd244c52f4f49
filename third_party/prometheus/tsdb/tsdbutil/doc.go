// Package tsdbutil holds helpers of the TSDB: the data directory lock,
// removal of temporary directories, and histogram test data generators
// (wanwu patch: package comment).
package tsdbutil

// Package metadata holds a series' metadata: its type, unit and help text
// (wanwu patch: package comment).
package metadata

// Package exemplar holds the Exemplar type: a sample with labels that points
// at a trace (wanwu patch: package comment).
package exemplar

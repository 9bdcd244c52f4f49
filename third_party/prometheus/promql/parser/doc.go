// Package parser parses PromQL expressions into syntax trees and prints them
// back (wanwu patch: package comment).
package parser

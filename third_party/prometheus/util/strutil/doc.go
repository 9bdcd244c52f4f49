// Package strutil holds the string helpers of PromQL and its parser:
// quoting, label-name sanitising, similarity for suggestions (wanwu patch:
// package comment).
package strutil

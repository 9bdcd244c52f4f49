// Package web holds the browser libraries the console vendors, byte for byte
// as their npm packages ship them, with their licences: htmx (partial page
// updates) and uPlot (time-series charts). README.md says where each file
// came from, its version, its licence and its SHA-256; a test keeps the two
// in step.
//
// The files are embedded here, beside their licences and README, rather
// than copied into the console package: a go:embed pattern cannot reach
// outside its package's directory, and one copy cannot drift from another.
package web

import "embed"

// FS holds the vendored files under their folders: htmx/htmx.min.js,
// uplot/uPlot.iife.min.js and uplot/uPlot.min.css, each with its LICENSE.
//
//go:embed htmx/htmx.min.js htmx/LICENSE uplot/uPlot.iife.min.js uplot/uPlot.min.css uplot/LICENSE
var FS embed.FS

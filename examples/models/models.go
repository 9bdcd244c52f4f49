// Package models embeds the thing models of wanwu's simulated devices (the
// kinds of package internal/scenario, which `wanwu sim` runs): one
// <name>.model.json per kind, in the demo tenant. The files here are the
// only copies; the simulator reads them through FS.
package models

import "embed"

// FS holds the *.model.json files of this directory.
//
//go:embed *.model.json
var FS embed.FS

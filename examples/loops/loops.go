// Package loops holds the closed loops the demo runs over the simulator's
// scenarios (`wanwu demo` defines them; `wanwu ctl loop apply -f` takes
// any of these files): chatter-feed (spindle chatter lowers the feed
// override), chatter-feed-early (a shadow candidate for it), bearing-wear
// (a maintenance alarm and a work order), pump-start (a pump started on a
// high well level, interlocked on the downstream level), chiller-peak (a
// setpoint shift at peak, approved by a person), vibration-capture (a raw
// window captured when vibration rises, its chatter band through an FFT)
// and spindle-anomaly (in shadow, at the hub: an alarm when the spindle
// model the demo trains at its start, spindle-normal, flags a report).
package loops

import "embed"

// FS holds the loop definitions, one YAML file each.
//
//go:embed *.yaml
var FS embed.FS

// Package loop runs closed loops: perception (windowed features of the
// objects' properties) → decision (CEL conditions, streaming detectors,
// on/off delays and a deadband) → actuation through one state machine and
// the guards, with an evidence record for every decision.
//
// A loop is a versioned definition (Parse, Compile; YAML or JSON):
//
//	id: chatter-feed
//	mode: active             # active | shadow | disabled (default shadow)
//	placement: auto          # auto | edge | hub
//	on: {model: demo:cnc-spindle, tags: {class: cnc-a}}
//	perceive:
//	  band: {property: vibBandHigh, fn: mean, window: 15s}
//	  feed: {property: feedRate, fn: last}
//	decide:
//	  when: band > 1.0
//	  clear: band < 0.6      # deadband
//	  on_delay: 10s
//	  repeat: 1m
//	act:
//	  command: setFeedRate
//	  args: {feedRate: "feed * 0.8"}
//	  verify: {expect: "band < 1.0", within: 2m}
//	guard:
//	  bounds: {feedRate: [40, 120]}
//	  max_step: {feedRate: 20}
//	  cooldown: 30s
//
// Compile checks it against the thing model (properties, actions, their
// argument types and ranges) and refuses, with the path of every problem,
// unknown names, wrong types, CEL that does not compile or whose
// estimated cost exceeds MaxCost, and windows that would hold more than
// MaxObjectBytes per object at the model's sampling. Each feature is a
// CEL variable of type double; expressions also see twin (reported,
// desired, version), object (code, tenant, tags, path, edge, network),
// now, state (the decision), current (the latest value of each property),
// score (model scores; see below), detector (score, alarm, ready, hi, lo)
// and, in guards, values (the proposed action).
//
// # Models
//
// decide.model ({id, version, features: {modelInput: feature}}) names a
// registered model (version: when absent, the version in effect at the node:
// the model's first, until a rollout makes another active). At each decision
// the engine gives it the loop's current features (the mapped ones under
// their input names, or else all under their own) through
// Options.Scorer, within Options.ScoreTimeout (DefaultScoreTimeout), and
// CEL sees what it gives as score (package ml's Result.Scores: outputs
// and thresholds by name). The model is asked once per decision, its
// guards included (guards that run again at an approval ask again). A model that gives no
// scores (an error, a timeout, a missing version or input, no Scorer on
// the node) fails the decision safe: it neither turns on nor off, and an
// error record says why. A NaN feature (an optional one without a value)
// keeps the model from being called: score is empty for that decision.
// The evidence keeps the model's id, the version that scored and the
// scores (ModelUse).
//
// # The engine
//
// An Engine is a consumer of the node's ingest log (pipeline.Consumer). It
// keeps the windows of every (loop, object) in memory (package feature:
// samples are placed by their own timestamps; one older than the newest
// minus the window's lateness is refused as late and counted), and after
// each batch evaluates the loops of the objects that got data, and every
// Tick all of them (delays, repeats, deadlines). A loop runs at the hub for
// the objects not behind an edge (placement auto) and at an edge for the
// objects behind it. After a restart the windows fill again from new data:
// the engine does not act on data older than its start. The twin is read
// (at most once a second per object) only for loops whose expressions
// read it. The evidence a batch, a tick or a vote produces is written in
// one transaction at its end, shared with the node's other writes of the
// moment; the record of an action about to be sent is written at once,
// before its command, whose id it gives.
//
// A decision that turns on proposes the action: the arguments or desired
// fields are computed by CEL, then package guard checks kill switches,
// permissives, interlocks, bounds (the loop's within the model's), step,
// rate of change, rate limit, cooldown and approval, each with its result.
// Then the record moves through proposed → (awaiting_approval) → sent →
// (verifying) → done | failed, or ends refused, rejected, expired, shadow
// or recorded. Commands go through the command service and desired state
// through the twin service, so sleeping and offline devices are served as
// for any operator. A loop that fails at run time is counted
// (wanwu_loop_errors_total) and writes an error record at most once a
// minute per object; the other loops go on.
//
// Store keeps the definitions (every version), the kill switches (per
// loop and per site, the first segment of the hierarchy path), the
// bypasses (time-boxed, with a reason, in force once someone other than
// the requester approves) and the evidence. Definitions, modes, kill
// switches, bypasses, actions sent and votes are appended to the audit
// log in the transaction that makes them.
package loop

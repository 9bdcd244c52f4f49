// Package rollout stages artifact versions at the nodes that run them:
// shadow, then canary, then active, each promotion on passing gates after
// a minimum of samples and time, and a rollback as soon as a judged gate
// fails. Model versions (kind ml-model, package mlreg) are the first kind
// of artifact; firmware and other artifacts are to become kinds of the
// same plans, with their own figures.
//
// A Plan names the candidate version and the baseline it replaces, its
// targets (the hub, edges by code, or every edge whose loops use the
// artifact), the canary (listed objects and a stable share of the others,
// InCanary), each stage's minimum samples and duration, and the gates: a
// bound (Max) per figure. The model figures are the candidate's error
// rate, its p99 latency, the shift of its scores against the baseline's
// on the same inputs (PSI, each relative to its threshold), the share of
// decisions whose threshold flags disagree with the baseline's, and its
// false-alarm rate against operators' labels. ParsePlan reads a plan as an
// operator writes it (strict JSON, defaults, every problem with its
// field).
//
// Evaluate is the stage machine as a pure function of the plan, the
// node's stage and since when, and the figures of that stage: a stage
// forced by an operator (Plan.Force, Plan.NodeForce) wins; a plan rolled
// back elsewhere rolls the node back; a gate whose figure is measured and
// whose stage has JudgeAfter samples fails the stage when over its bound;
// otherwise the node moves on once the stage has its minimum of samples and
// time. A figure not measured (no baseline to disagree with) neither fails
// nor holds a promotion.
//
// Store keeps plans (hub: created by operators; edge: put as the hub sent
// them, by revision), each node's stage and the Records of every stage
// change, with the figures and each gate's result: the evidence of a
// rollout. Every change is audited in its transaction (rollout.created,
// rollout.forced, rollout.stage, rollout.state). An edge's records reach
// the hub (Import) with the edge as actor.
//
// A Controller runs at each node: every Every it reads the plans, starts
// those that target the node in shadow, evaluates the running ones on its
// Meter's figures (package mlreg's Scorer measures the candidate) and
// commits each change; Lookup tells the node's scorer what it runs of an
// artifact (the version in effect, and the plan staging a candidate with
// the node's stage in it).
package rollout

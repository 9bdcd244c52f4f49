// Package guard owns the guardrails a closed loop's proposed action must pass
// before it is sent to an actuator: the pure, deterministic evaluation of one
// Proposal against a Policy, a History of earlier actions, the bypasses in
// force and the kill switches, giving a Decision that records the result of
// every check it made. It does no I/O: the loop engine evaluates the CEL
// conditions, keeps the History, stores the Decision as evidence and sends
// (or queues for approval) what it allows. The package also owns the tally of
// approval votes (Approval.Tally), used for pending actions and for bypass
// requests.
//
// # Vocabulary (IEC 61511)
//
//   - An interlock is a condition that must hold for the action to be sent at
//     all (for example "the downstream valve is open"); if it does not, the
//     action is refused with the result "interlock:<name>".
//   - A permissive is a condition that must hold for the action to start (for
//     example "the spindle is at speed"); its effect is the same as an
//     interlock's, but it is recorded under its own name,
//     "permissive:<name>", so that the evidence says which kind stopped it.
//   - A limit (bounds, max_step, max_rate) keeps a numeric target within an
//     allowed range, within a step of the current value, and within a rate of
//     change from the last value sent. With Policy.Clamp the value is moved to
//     the nearest allowed value ("clamped") instead of being refused.
//   - A rate limit and a cooldown space actions out in time, per object and
//     per actuator of that object.
//   - A bypass (an override, in 61511's words) is a time-limited, approved
//     exception that lets one named failing guard pass: the result says
//     "bypassed" with the bypass's reason. It applies only while the
//     proposal's time is before its Until and only when someone other than
//     its requester approved it; otherwise it is ignored and the failing
//     result says why. A Bypass.Guard names a result ("interlock:downstream")
//     or a kind of guard ("bounds", every value's bounds).
//   - The kill switch (all loops, one loop, or one site) is not a guard: it
//     cannot be bypassed, and while it is engaged every action is refused
//     with Refusal "killed".
//   - Approval (N of M approvers) is asked for only when every other guard
//     allows the action; until it is given the Decision has NeedsApproval.
//     The engine tallies the votes with Approval.Tally and, once approved,
//     evaluates the action again with Proposal.ApprovedBy before sending it,
//     so that the guards hold when it is sent, not only when it was asked.
//
// # Order of checks
//
// Every check runs, even after one has failed, so the Decision records all of
// them; the Results come in a fixed order and the Refusal is the first
// failing one: kill, permissives, interlocks, bounds, max_step, max_rate,
// rate_limit (object, then actuator), cooldown, approval. Within a kind the
// conditions come in the Policy's order and the values in name order. With
// Clamp, each value is clamped to its bounds, then to its step around the
// current value, then to its rate against the last value sent; the value
// that results must still meet every limit it was clamped for, and when it
// cannot (the step's range lies outside the bounds, say) the first limit it
// breaks (bounds before max_step) refuses the action.
//
// # Fail-safe
//
// Whatever cannot be established counts as failing: a condition that the
// engine did not evaluate, or whose evaluation returned an error, does not
// hold; a value that is not a finite number is refused (and cannot be
// bypassed or clamped); a limit that is not a number, empty bounds, a
// misconfigured rate limit, a missing History when one is needed, or a
// History too short to count a rate limit's window all refuse the action.
// Policy.Validate reports such policies before they are used.
package guard

// Package alarm keeps alarms (issue 19, closed loops and alarms): the
// abnormal conditions that closed loops detect on objects, with the
// ISA-18.2 alarm lifecycle, operator acknowledgement and shelving, chattering
// suppression and flood detection, and a bounded history of events for every
// alarm. It owns the tables alarms and alarm_events of the node's SQLite
// metadata database (migration owner "alarm").
//
// # Identity
//
// An alarm is a condition (Name) that a source (Source, e.g.
// "loop:chatter-feed") detects on an object (Object, an object code whose
// namespace is the alarm's Tenant). Its ID is derived from the three (ID: 24
// hex digits of a SHA-256), so raising the same condition again, on any
// node, finds the same alarm: Raise is idempotent per key, and an alarm an
// edge forwards to the hub keeps its id there.
//
// # Lifecycle
//
// The state says whether the condition is active and whether an operator
// acknowledged its latest activation:
//
//	state          active  acked   meaning
//	unack_active   yes     no      a new alarm: the condition holds, nobody acknowledged it
//	ack_active     yes     yes     acknowledged, the condition still holds
//	unack_cleared  no      no      returned to normal before anybody acknowledged it
//	cleared        no      yes     normal: cleared and acknowledged
//
// The transitions:
//
//	from            Raise                 Clear          Ack
//	(none)          unack_active (1)      ErrNotFound    ErrNotFound
//	unack_active    updated (2)           unack_cleared  ack_active
//	ack_active      updated (2)           cleared        (no change)
//	unack_cleared   unack_active (1)      (no change)    cleared
//	cleared         unack_active (1)      (no change)    (no change)
//
//	(1) a new activation: Count+1, RaisedAt = the request's time, the
//	    previous acknowledgement and ClearedAt are dropped; event raised.
//	(2) severity, message or data changed: event updated, no new
//	    activation; the same values again change nothing.
//
// Every change increases Version and records an event (Event, kinds
// raised, updated, cleared, acked, shelved, unshelved, suppressed,
// unsuppressed, flood_started, flood_ended) carrying a snapshot of the
// alarm, its time and its actor. The events of each alarm (and the flood
// events of each tenant) are kept up to the last MaxHistory; History reads
// one alarm's, EventsAfter all of them in Seq order. Options.OnEvent receives
// every event after its commit, in Seq order: the loop engine publishes them
// and forwards an edge's alarms to the hub, whose Import applies them.
//
// # Operators
//
// Ack acknowledges; acknowledging twice is no change. Shelve hides an alarm
// from the "needs attention" view (Filter.Attention, Alarm.NeedsAttention)
// and from notifications (Alarm.Silenced) until a time at most MaxShelve (7
// days) ahead, with a reason; the alarm keeps its lifecycle and its events
// while shelved, and Sweep ends the shelving when it expires (event
// unshelved, actor "system"; reads treat an expired shelving as gone at
// once). Unshelve ends it early. Each of the three appends an audit entry
// ("alarm.ack", "alarm.shelve", "alarm.unshelve", subject: the alarm id) in
// the transaction of the change; an operation that fails or changes nothing
// appends none.
//
// # Chattering and floods
//
// An alarm activated Chatter.Count times within Chatter.Window (default 5
// in 10 minutes) is chattering: Suppressed becomes "chattering" (event
// suppressed) and notifications stop, until it has had no activation for
// Chatter.Quiet (default 10 minutes): Sweep, or the next activation after
// that, ends the suppression (event unsuppressed) and the count starts again.
//
// A tenant whose alarms had Flood.Count annunciated activations (neither
// shelved nor suppressed) within Flood.Window (default 10 in 10 minutes,
// ISA-18.2's flood threshold for one operator) is in a flood: event
// flood_started (Flooding reports it); when the count in the window falls
// below Flood.Count again, Sweep records flood_ended. Flood state is kept as
// those events, so it survives a restart.
//
// # Edges and the hub
//
// An alarm raised on an edge is forwarded to the hub and Imported there:
// by version (an older or repeated one changes nothing), with Origin set to
// the edge and the edge's version kept as OriginVersion. Only the edge raises
// and clears it (Raise and Clear on the hub fail with ErrConflict); the hub's
// operators may acknowledge and shelve it there, and an import does not undo
// an acknowledgement of the same activation made on the hub, nor a shelving
// made on the hub.
//
// # Limits
//
// Name matches [A-Za-z0-9_.-]{1,64}, Source [A-Za-z0-9_.:-]{1,128}; Message,
// ack notes and shelve reasons are UTF-8 of at most 1 KiB; Data is a JSON
// object of at most 8 KiB as compact JSON. Validation errors are
// *FieldError values that name the field and match ErrInvalid.
package alarm

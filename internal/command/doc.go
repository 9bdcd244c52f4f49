// Package command is the hub's durable per-device command queue (capability C5):
// thing-model actions with validated arguments go to a device over whatever
// transport it uses (MQTT, CoAP), in order, and come back with a result.
//
// # Life cycle
//
//	            Issue
//	              │
//	              ▼         TTL passed              ┌──────────┐
//	          ┌────────┐ ─────────────────────────▶ │ expired  │
//	          │ queued │  MaxAttempts unconfirmed   ├──────────┤
//	          │        │ ─────────────────────────▶ │ failed   │ reason "undeliverable"
//	          └────────┘                            └──────────┘
//	   Delivered │  (or a result arrives first)
//	             ▼        no result in ResultTimeout ┌───────────┐
//	        ┌───────────┐ ─────────────────────────▶ │ timed_out │
//	        │ delivered │                            └───────────┘
//	        └───────────┘ ── Result ──▶ succeeded | failed (reason, output)
//
//	queued or delivered ── Cancel ──▶ canceled
//
// Issue checks the action and its arguments against the device's thing model
// (a device without a model cannot take commands), stores the command with
// the next sequence number of its device and returns. An id given by the
// client makes Issue idempotent: the same id with the same device, action
// and arguments returns the stored command; with anything else ErrIDConflict.
//
// # Delivery and order
//
// An adapter Attaches a Sink while its device can receive. The service hands
// the device's oldest queued command to the sink and waits for the adapter's
// Delivered (the transport's confirmation: MQTT PUBACK, CoAP ACK) before it
// offers the next one: at most one command per device is handed out and
// unconfirmed at a time, so devices receive their commands in Seq order.
// Confirmed commands wait for their results independently. Pending serves
// devices that poll instead.
//
// # Retries
//
// A command not confirmed within AckTimeout is handed out again after an
// extra backoff of RetryBackoff·2^(n-1) after the n-th attempt (capped at
// MaxBackoff, jittered into [d/2, d]). A device that attaches again gets
// the unconfirmed command at once. After MaxAttempts hand-outs without a
// confirmation within AckTimeout it fails with reason "undeliverable". A
// device that is not attached costs no attempts: its commands wait until
// they expire. Devices must tolerate a repeated command (same id).
//
// # Results
//
// A device reports succeeded or failed, with a reason and an output object
// (DecodeResult parses the payload). The first result finishes the command;
// the same result again is accepted and changes nothing; a different one
// after the command finished (say, after it timed out) is recorded as a
// late_result event and refused with ErrFinished. A device can only report
// on its own commands.
//
// # Durability
//
// Commands live in the metadata database (tables commands and
// command_events); every change is one SQLite transaction that also appends
// the command's event and, for command.issued and command.canceled, its
// audit entry. OnEvent and OnAudit run after the commit. The first attempt
// to hand a command to an attached device is recorded in the transaction
// that issues it, and the next command's in the one that records a
// confirmation, so a command costs three commits on its way (issued and
// sent, delivered, result) rather than four. Deadlines (expiry,
// result timeout, redelivery) are stored with the command, and one timer
// goroutine sleeps until the earliest; after a restart (Open, Start) queued
// commands wait as before, and commands handed out but never confirmed are
// handed out again when their device attaches.
package command

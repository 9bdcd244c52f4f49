// Package twin keeps device twins (capability C5): for every device, the state it
// last reported and the state operators want it in, and the difference
// between the two that the device still has to act on.
//
// # Model
//
// A twin has two sections, each a JSON object:
//
//   - reported: what the device says it is (firmware, current set points,
//     ...). Only the device writes it (Report).
//   - desired: what operators and automations want (SetDesired). The device
//     reads it, acts, and reports the result.
//
// Both are changed with RFC 7386 JSON merge patches: members of the patch
// replace members of the section, objects merge recursively, a null removes
// the member, arrays and scalars are replaced whole. Twin.Delta is the part
// of desired that reported does not match yet (numbers compare by value, so
// 1 and 1.0 are equal); it is what the hub pushes to a device when it
// connects and after each desired change.
//
// Without a thing model any JSON object is accepted. With one, a desired
// patch may only set declared properties that are not read-only, a report
// only declared properties, and every value set must fit the property's
// schema (type, minimum, maximum, enum; object members that are present must
// be declared, missing ones are allowed because a twin holds partial state).
// A null, which deletes, is always allowed, so values left behind by an
// older model version can be cleaned up. Errors name the field:
// "desired.setpoint: 300 above maximum 125".
//
// # Versions
//
// Version counts desired changes and ReportedVersion accepted reports, both
// from 0 (never written). A patch that leaves its section exactly as it was
// is accepted but writes nothing: no version step, no audit entry, no
// OnChange, so a device repeating the same report does not cost a database
// write. SetDesired takes ifVersion: a version ≥ 0 must equal the current
// Version, otherwise the update is refused with a *ConflictError carrying
// the current version (HTTP 409; the caller re-reads and retries); -1 applies
// the patch unconditionally.
//
// Metadata keeps, for every leaf (a scalar, an array or an empty object,
// named by its dotted path such as "config.limits.rpm"), when it last changed
// and at which section version. A patch moves only the leaves whose value it
// actually changes. Because paths are dotted, member names must be non-empty
// and must not contain ".".
//
// # Limits
//
// Each section, serialised as compact JSON after the merge, is at most
// Limits.MaxDocBytes (default 8 KiB) and nests at most Limits.MaxDepth
// levels (default 8; the section object itself is level 1). A patch is at
// most 4 × MaxDocBytes bytes as sent (room for whitespace and deletions) and
// nests no deeper than MaxDepth. Violations fail with ErrTooLarge (bytes) or
// ErrInvalid (depth), and the message names the limit and the actual size.
// The bounds keep a twin small enough to travel in one MQTT message or a few
// CoAP blocks, and every operation on it cheap.
//
// # Storage
//
// Twins live in the hub's SQLite metadata database, table twins (one row per
// device that has ever had a twin written). SQLite rather than a KV store
// because:
//
//   - it is durable: a write is acknowledged only after it is synced, so a
//     restarted hub (or device) resumes exactly the committed state;
//   - it is transactional with the audit log: a desired change and its
//     "twin.desired" audit entry commit together or not at all, and the
//     read-modify-write that a merge patch and a version check need is one
//     transaction on the single writer connection, so concurrent updates
//     serialise instead of losing each other;
//   - it is queryable: twins join with the registry's objects table on code,
//     so "twins of devices under plant-1/line-2 with tag fw=1.2" is one SQL
//     query, and json_extract reaches into the stored sections.
//
// Reads (Get, List) use the read pool, which WAL lets run beside the writer.
package twin

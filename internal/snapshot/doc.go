// Package snapshot is the signed identity snapshot a hub issues to an edge:
// everything the edge needs to authenticate the devices behind it with the
// hub's own admission rules while the hub is unreachable, for any length of
// time and across the edge's restarts.
//
// A Snapshot holds the hub's deployment id, the edge's code, a version, the
// time it was issued, the hub CA's certificate and the certificates revoked
// among the snapshot's objects, and, for the edge and every object behind
// it, the object's record (code, tenant, kind, status and reason, path,
// tags, network, number, model) with all its keys (DID, algorithm, state,
// retirement, certificate, credential), plus the thing models those objects
// use and their tenants. The hub builds it (registry.EdgeSnapshot), the edge
// applies it to its own registry (registry.ApplySnapshot); this package only
// defines the format and its signature.
//
// The version is the size of the hub's audit log when the snapshot was read:
// every identity change is appended to the log in the transaction that makes
// it, so the size grows with every change, survives the hub's restarts, and
// two snapshots of one version hold the same identities. (The log grows
// with twin and command changes too: a newer version may hold the same
// identities.)
//
// # Envelope and signature
//
// Sign encodes the snapshot as JSON (the payload) and signs, with the hub's
// Ed25519 signing key, the bytes SigningContext followed by the payload,
// exactly as they travel. The envelope is a JSON object
//
//	{"payload": "<base64 of the payload>", "signature": "<base64 of the 64-byte signature>"}
//
// (standard base64 with padding). The context string keeps a signature over
// a snapshot from ever being valid for anything else the same key signs
// (device credentials, audit checkpoints), and the other way round.
//
// Verify checks, in this order, and refuses with the sentinel errors below
// (each wrapped with %w together with the reason):
//
//   - the size (ErrTooLarge above MaxSize) and the envelope's form (ErrMalformed),
//   - the signature over the exact payload bytes (ErrForged): nothing in
//     the payload is read before it holds,
//   - the format version (ErrFormat for one this binary does not know),
//   - the payload's form and consistency (ErrMalformed, ErrInvalid),
//   - the edge it is for (ErrWrongEdge),
//   - the version against the one the edge already applied (ErrStale: a
//     replayed or older snapshot; the same version is accepted, and applying
//     it again changes nothing).
//
// docs/PROTOCOL.md, "Edge identity snapshot", describes the format for
// implementations outside this repository.
package snapshot

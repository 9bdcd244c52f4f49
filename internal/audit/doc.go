// Package audit is wanwu's tamper-evident transparency log (capability C10):
// every identity lifecycle event, release, privileged action and signed
// report becomes an entry in an append-only Merkle tree (RFC 6962 hashing)
// stored in the metadata database, and the hub signs checkpoints of the tree
// (C2SP tlog-checkpoint in a signed note, Ed25519).
//
// An entry is appended in the same SQL transaction as the change it records
// (AppendTx), so a device is never registered without its audit entry or the
// other way round. Anyone holding the hub's public key can then check,
// without trusting the hub's database: that an entry is in the log
// (inclusion proof), that a later head extends an earlier one (consistency
// proof), and that a whole export or data directory reproduces the signed
// heads (VerifyExport, VerifyDB).
//
// README.md in this directory specifies the leaf encoding, the hashing and
// the checkpoint format precisely enough to verify with other tools.
package audit

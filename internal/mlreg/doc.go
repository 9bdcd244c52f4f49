// Package mlreg is the registry of model versions, the hub's and each
// edge's: per tenant, each
// version of a model (package ml's Meta and its ONNX bytes) with the
// SHA-256 digests of both, the hub's Ed25519 signature over them, when it
// was registered and by whom.
//
// Register refuses before it stores: the Meta must parse and validate,
// and the gonnx runtime must load the model once (which checks the bytes
// against the Meta's budget, the operators gonnx runs, the graph's input
// and outputs, and runs a trial inference); a refusal carries the
// runtime's reason and wraps ErrInvalid. A version is (id, Meta.version):
// registering the same content again changes nothing, registering other
// content under a stored version is refused (ErrConflict). A registration
// and its audit entry (ml.registered) commit in one transaction.
//
// The Meta is stored, digested and served in one form: the JSON encoding
// of the parsed document (encoding/json, fields in struct order, map keys
// sorted), so that two spellings of one document are one version. The
// signature covers the statement
//
//	wanwu.ml/v1\n<tenant>\n<id>\n<version>\n<hex sha256(meta)>\n<hex sha256(onnx)>\n
//
// and an edge checks a record with Verify (the hub's public key) before
// it loads the model. Verify recomputes both digests from the bytes it is
// given.
//
// An edge opens a Registry without a Signer on its own database: it
// registers nothing, and takes the hub's versions by Import, which
// stores a version only when Verify passes with the hub's key for the
// bytes given (ErrBadSignature otherwise: an edge never loads a model the
// hub did not sign), the Meta names the record's id and version, and the
// runtime loads it once as Register does (ErrInvalid). The version keeps
// the hub's signature, actor and time, so it verifies at the edge as at
// the hub; the import is audited (ml.imported, actor hub) in the same
// transaction.
//
// Scorer runs registered models: it keeps one loaded Session per
// (tenant, id, version), at most a bounded number of them (the least
// recently used is closed first), builds the input vector in the Meta's
// feature order and returns Result.Scores; the hub's and the edges' loop
// engines score with one (ScoreObject). Fetching the versions an edge
// needs belongs to package edge.
//
// While a rollout (package rollout) stages a candidate at the node
// (SetStages: the node's Controller.Lookup), ScoreObject scores a
// decision with both the candidate and the version in effect: the latter
// counts in shadow and for the objects outside the canary, the candidate
// for the canary's objects, and ml.Scored carries the other version's
// scores beside. The scorer is the rollout's Meter: per plan, since its
// stage began, the candidate's inferences and errors, its p99 latency,
// the share of decisions whose threshold flags differ from the other
// version's, and the PSI of its scores against the other's on the same
// inputs, each relative to its threshold (Figures; Reset at each stage
// change). SetFlagged is told where the candidate flags what the version
// in effect does not (the node captures a window for labels).
//
// Each version's figures at the node since the scorer started (Stats):
// inferences by result, their rate over the last minute, latency and
// score quantiles over the last 500, the share each threshold flagged,
// each input's drift; an edge reports them to the hub (VersionFigures).
// Every version records its expected latency, the median of trial
// inferences when the node stored it.
package mlreg

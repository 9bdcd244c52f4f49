// Package mlreg is the hub's registry of model versions: per tenant, each
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
// Scorer runs registered models: it keeps one loaded Session per
// (tenant, id, version), at most a bounded number of them (the least
// recently used is closed first), builds the input vector in the Meta's
// feature order and returns Result.Scores. Distributing models to edges
// and scoring inside loops belong to other packages.
package mlreg

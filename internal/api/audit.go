package api

import (
	"net/http"
	"strconv"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/auth"
)

// HeadResponse is a signed tree head; Checkpoint is the signed note text
// that `wanwu verify log --head` reads.
type HeadResponse struct {
	Origin     string `json:"origin"`
	Size       uint64 `json:"size"`
	Root       []byte `json:"root"`
	Checkpoint string `json:"checkpoint"`
}

func (s *server) auditHead(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	h, err := s.Audit.Head(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, HeadResponse{Origin: h.Origin, Size: h.Size, Root: h.Root, Checkpoint: string(h.Note)})
	return nil
}

// auditEntries returns entries [from, to) as JSON lines in the export format.
// Tokens bound to a tenant receive only that tenant's entries; verifying the
// whole log offline needs a deployment-wide token.
func (s *server) auditEntries(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	size, err := s.Audit.Size(r.Context())
	if err != nil {
		return err
	}
	from, err := queryUint(r, "from", 0)
	if err != nil {
		return err
	}
	to, err := queryUint(r, "to", size)
	if err != nil {
		return err
	}
	if to > size {
		to = size
	}
	if from > to {
		return badRequest("from", "from %d is after to %d", from, to)
	}
	const page = 1000
	if to-from > page {
		to = from + page
	}
	entries, err := s.Audit.Entries(r.Context(), from, to)
	if err != nil {
		return err
	}
	leaves, err := s.Audit.LeafBytes(r.Context(), from, to)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Wanwu-Audit-Size", strconv.FormatUint(size, 10))
	for i, e := range entries {
		if !p.Sees(e.Tenant) || (p.Tenant != "" && e.Tenant == "") {
			continue
		}
		line, err := audit.MarshalExport(e, leaves[i])
		if err != nil {
			return err
		}
		_, _ = w.Write(append(line, '\n'))
	}
	return nil
}

// ProofResponse carries the hashes of an inclusion or consistency proof.
type ProofResponse struct {
	Index  uint64   `json:"index,omitempty"`
	From   uint64   `json:"from,omitempty"`
	Size   uint64   `json:"size"`
	Hashes [][]byte `json:"hashes"`
}

func (s *server) inclusionProof(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	index, err := queryUint(r, "index", 0)
	if err != nil {
		return err
	}
	size, err := s.sizeParam(r, "size")
	if err != nil {
		return err
	}
	if index >= size {
		return badRequest("index", "index %d is not below size %d", index, size)
	}
	proof, err := s.Audit.InclusionProof(r.Context(), index, size)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ProofResponse{Index: index, Size: size, Hashes: nonNil(proof)})
	return nil
}

func (s *server) consistencyProof(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	from, err := queryUint(r, "from", 0)
	if err != nil {
		return err
	}
	to, err := s.sizeParam(r, "to")
	if err != nil {
		return err
	}
	if from > to {
		return badRequest("from", "from %d is after to %d", from, to)
	}
	proof, err := s.Audit.ConsistencyProof(r.Context(), from, to)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ProofResponse{From: from, Size: to, Hashes: nonNil(proof)})
	return nil
}

// sizeParam reads a tree size that defaults to, and may not exceed, the current size.
func (s *server) sizeParam(r *http.Request, name string) (uint64, error) {
	cur, err := s.Audit.Size(r.Context())
	if err != nil {
		return 0, err
	}
	n, err := queryUint(r, name, cur)
	if err != nil {
		return 0, err
	}
	if n > cur {
		return 0, badRequest(name, "%d is beyond the log size %d", n, cur)
	}
	return n, nil
}

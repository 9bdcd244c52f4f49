package console

// This file serves the audit pages: /audit, the transparency log's entries
// newest first with filters and paging, and the node's current signed tree
// head; /audit/{index}, one entry with the data the browser needs to check
// its inclusion proof itself (static/audit.js): the entry's leaf bytes, the
// proof's hashes and the signed head's root. Entries, head and proofs come
// from the node's API (GET /api/v1/audit/...), which decides who sees what:
// a tenant-bound token gets its tenant's entries only.

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/wanwu-iot/wanwu/internal/audit"
)

// Paging of the entry list.
const (
	// auditPage is how many entries a page shows.
	auditPage = 50
	// auditChunk is how many entries one API request asks for (the API's
	// own page is 1000).
	auditChunk = 1000
	// auditScan bounds the entries one page reads looking for those that
	// pass the filters; the "older" link goes on from where it stopped.
	auditScan = 20000
)

// auditEntryView is one entry as the pages show it.
type auditEntryView struct {
	Index   uint64
	Time    time.Time
	Actor   string
	Tenant  string
	Kind    string
	Subject string
	// Details is the entry's data, pretty-printed ("" when it is {}).
	Details string
	// Leaf is the base64 of the leaf bytes the tree commits to.
	Leaf string
}

// auditFilter is the list's GET form.
type auditFilter struct {
	Kind, Actor, Subject, Tenant string
	Since, Until                 string // as typed, shown back in the form
	since, until                 time.Time
}

func (f auditFilter) match(e *auditEntryView) bool {
	return (f.Kind == "" || strings.HasPrefix(e.Kind, f.Kind)) &&
		(f.Actor == "" || e.Actor == f.Actor) &&
		(f.Subject == "" || e.Subject == f.Subject) &&
		(f.Tenant == "" || e.Tenant == f.Tenant) &&
		(f.since.IsZero() || !e.Time.Before(f.since)) &&
		(f.until.IsZero() || e.Time.Before(f.until))
}

func (f auditFilter) Active() bool {
	return f.Kind != "" || f.Actor != "" || f.Subject != "" || f.Tenant != "" || f.Since != "" || f.Until != ""
}

// query is the filter as URL parameters, for the paging links.
func (f auditFilter) Query() url.Values {
	v := url.Values{}
	for _, kv := range [][2]string{{"kind", f.Kind}, {"actor", f.Actor}, {"subject", f.Subject}, {"tenant", f.Tenant}, {"since", f.Since}, {"until", f.Until}} {
		if kv[1] != "" {
			v.Set(kv[0], kv[1])
		}
	}
	return v
}

// headView is the signed tree head as the pages show it.
type headView struct {
	Origin     string
	Size       uint64
	RootHex    string
	RootB64    string
	Checkpoint string
	// Signature is the note's signature line(s).
	Signature string
	// At is when the node signed it (on the console's request).
	At time.Time
	// VerifierKey is the key GET /api/v1/info publishes; SignatureOK says
	// the console checked the head's signature with it, SignatureError
	// why it did not verify.
	VerifierKey    string
	SignatureOK    bool
	SignatureError string
}

// auditView is the list page's data.
type auditView struct {
	Filter  auditFilter
	Entries []auditEntryView
	// Size is the log's size; From and To the indexes [From, To) the page
	// read (every entry in it that the token sees and the filters pass is
	// shown).
	Size, From, To uint64
	Older, Newer   string // the paging links, "" when there is none
	Head           *headView
	Scope          string // the tenant a bound token sees
	Problem        string // a filter that was not understood
}

// auditEntryPage is /audit/{index}'s data.
type auditEntryPage struct {
	E     auditEntryView
	Head  *headView
	Proof []string // base64 hashes, the inclusion proof of E in Head
	// ProofData is the proof as data-proof carries it: the hashes in
	// base64, separated by spaces.
	ProofData string
	Scope     string
}

// timeLayouts are what the since and until fields accept, read as UTC.
var timeLayouts = []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"}

func parseFilterTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: write 2026-01-02, 2026-01-02T15:04 (UTC) or RFC 3339", s)
}

// readFilter reads the list's filters from the query.
func readFilter(r *http.Request) (auditFilter, string) {
	q := r.URL.Query()
	f := auditFilter{Kind: trimmed(q.Get("kind")), Actor: trimmed(q.Get("actor")), Subject: trimmed(q.Get("subject")),
		Tenant: trimmed(q.Get("tenant")), Since: trimmed(q.Get("since")), Until: trimmed(q.Get("until"))}
	var problems []string
	var err error
	if f.Since != "" {
		if f.since, err = parseFilterTime(f.Since); err != nil {
			problems = append(problems, "since: "+err.Error())
		}
	}
	if f.Until != "" {
		if f.until, err = parseFilterTime(f.Until); err != nil {
			problems = append(problems, "until: "+err.Error())
		}
	}
	return f, strings.Join(problems, "; ")
}

func trimmed(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > audit.MaxFieldLen {
		s = s[:audit.MaxFieldLen]
	}
	return s
}

// auditEntries reads entries [from, to) through the API: those the token
// sees, and the log's size.
func (c *Console) auditEntries(r *http.Request, q *request, from, to uint64) ([]auditEntryView, uint64, error) {
	a, err := c.apiRaw(r, q, http.MethodGet, "/api/v1/audit/entries", url.Values{
		"from": {strconv.FormatUint(from, 10)}, "to": {strconv.FormatUint(to, 10)}}, nil)
	if err != nil {
		return nil, 0, err
	}
	if a.Status >= 400 {
		return nil, 0, decodeAPIError(a)
	}
	size, err := strconv.ParseUint(a.Header.Get("Wanwu-Audit-Size"), 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("console: audit entries: size header: %w", err)
	}
	var out []auditEntryView
	for line := range bytes.Lines(a.Body) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		// ParseExport checks that the fields are the leaf's: the page
		// shows what the tree commits to.
		e, leaf, err := audit.ParseExport(line)
		if err != nil {
			return nil, 0, fmt.Errorf("console: audit entries: %w", err)
		}
		out = append(out, entryView(e, leaf))
	}
	return out, size, nil
}

func entryView(e audit.Entry, leaf []byte) auditEntryView {
	v := auditEntryView{Index: e.Index, Time: e.Time, Actor: e.Actor, Tenant: e.Tenant, Kind: e.Kind, Subject: e.Subject,
		Leaf: base64.StdEncoding.EncodeToString(leaf)}
	if len(e.Data) > 0 && !bytes.Equal(e.Data, []byte("{}")) {
		var buf bytes.Buffer
		if err := json.Indent(&buf, e.Data, "", "  "); err == nil {
			v.Details = buf.String()
		} else {
			v.Details = string(e.Data)
		}
	}
	return v
}

// auditHead gets a signed tree head from the API and checks its signature
// with the verifier key the node publishes.
func (c *Console) auditHead(r *http.Request, q *request) (*headView, error) {
	var h struct {
		Origin     string `json:"origin"`
		Size       uint64 `json:"size"`
		Root       []byte `json:"root"`
		Checkpoint string `json:"checkpoint"`
	}
	if err := c.call(r, q, http.MethodGet, "/api/v1/audit/head", nil, nil, &h); err != nil {
		return nil, err
	}
	var info struct {
		Key string `json:"audit_verifier_key"`
	}
	if err := c.call(r, q, http.MethodGet, "/api/v1/info", nil, nil, &info); err != nil {
		return nil, err
	}
	v := &headView{Origin: h.Origin, Size: h.Size, RootHex: hex.EncodeToString(h.Root), RootB64: base64.StdEncoding.EncodeToString(h.Root),
		Checkpoint: h.Checkpoint, At: q.now, VerifierKey: info.Key}
	if _, sig, ok := strings.Cut(h.Checkpoint, "\n\n"); ok {
		v.Signature = strings.TrimSpace(sig)
	}
	v.SignatureOK, v.SignatureError = checkHead(h.Checkpoint, info.Key, h.Size, h.Root)
	return v, nil
}

// checkHead checks a head's signed note with the verifier key and that it
// commits to size and root.
func checkHead(checkpoint, key string, size uint64, root []byte) (bool, string) {
	if key == "" {
		return false, "the node publishes no verifier key"
	}
	nv, err := note.NewVerifier(key)
	if err != nil {
		return false, "the verifier key is not a note verifier key: " + err.Error()
	}
	sh, err := audit.ParseHead([]byte(checkpoint), nv)
	if err != nil {
		return false, err.Error()
	}
	if sh.Size != size || !bytes.Equal(sh.Root, root) {
		return false, fmt.Sprintf("the signed note is for size %d, root %x; the answer said size %d, root %x", sh.Size, sh.Root, size, root)
	}
	return true, ""
}

// auditList is /audit: the entries, newest first, and the signed head.
func (c *Console) auditList(w http.ResponseWriter, r *http.Request, q *request) error {
	f, problem := readFilter(r)
	v := auditView{Filter: f, Problem: problem, Scope: q.p.Tenant}
	// The size first: one request of no entries.
	_, size, err := c.auditEntries(r, q, 0, 0)
	if err != nil {
		return err
	}
	v.Size = size
	qv := r.URL.Query()
	if a := qv.Get("after"); a != "" {
		// Newer: the entries from after on, the first page's worth.
		after, perr := strconv.ParseUint(a, 10, 64)
		if perr != nil {
			return &pageError{Status: http.StatusBadRequest, Title: "Not understood", Message: "after must be an entry index.", err: perr}
		}
		err = c.scanForward(r, q, &v, min(after, v.Size))
	} else {
		before := v.Size
		if b := qv.Get("before"); b != "" {
			n, perr := strconv.ParseUint(b, 10, 64)
			if perr != nil {
				return &pageError{Status: http.StatusBadRequest, Title: "Not understood", Message: "before must be an entry index.", err: perr}
			}
			before = min(n, v.Size)
		}
		err = c.scanBackward(r, q, &v, before)
	}
	if err != nil {
		return err
	}
	fq := f.Query()
	if v.From > 0 {
		fq.Set("before", strconv.FormatUint(v.From, 10))
		v.Older = "/audit?" + fq.Encode()
		fq.Del("before")
	}
	if v.To < v.Size {
		fq.Set("after", strconv.FormatUint(v.To, 10))
		v.Newer = "/audit?" + fq.Encode()
	}
	if v.Head, err = c.auditHead(r, q); err != nil {
		return err
	}
	c.render(w, r, q, http.StatusOK, "audit", view{Title: "Audit log", Nav: "audit", Scripts: []string{"audit.js"}, Data: v})
	return nil
}

// scanBackward fills v with the newest page of matching entries below
// before, reading at most auditScan entries.
func (c *Console) scanBackward(r *http.Request, q *request, v *auditView, before uint64) error {
	v.From, v.To = before, before
	for v.From > 0 && len(v.Entries) < auditPage && before-v.From < auditScan {
		from := v.From - min(v.From, auditChunk)
		es, _, err := c.auditEntries(r, q, from, v.From)
		if err != nil {
			return err
		}
		// Newest first: walk the chunk from its end, and stop where the
		// page is full (the next page starts there).
		lo := from
		for i := len(es) - 1; i >= 0; i-- {
			e := es[i]
			if !v.Filter.match(&e) {
				continue
			}
			if len(v.Entries) == auditPage {
				lo = e.Index + 1
				break
			}
			v.Entries = append(v.Entries, e)
		}
		v.From = lo
	}
	return nil
}

// scanForward fills v with the oldest page of matching entries from after
// on (shown newest first), reading at most auditScan entries.
func (c *Console) scanForward(r *http.Request, q *request, v *auditView, after uint64) error {
	v.From, v.To = after, after
	var got []auditEntryView
	for v.To < v.Size && len(got) < auditPage && v.To-after < auditScan {
		to := min(v.Size, v.To+auditChunk)
		es, _, err := c.auditEntries(r, q, v.To, to)
		if err != nil {
			return err
		}
		hi := to
		for _, e := range es {
			if !v.Filter.match(&e) {
				continue
			}
			if len(got) == auditPage {
				hi = e.Index
				break
			}
			got = append(got, e)
		}
		v.To = hi
	}
	for i := len(got) - 1; i >= 0; i-- {
		v.Entries = append(v.Entries, got[i])
	}
	return nil
}

// auditEntry is /audit/{index}: one entry, and what the browser needs to
// verify its inclusion in the signed head. An htmx request (the list's
// Verify button) gets the verification alone.
func (c *Console) auditEntry(w http.ResponseWriter, r *http.Request, q *request) error {
	index, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		return &pageError{Status: http.StatusBadRequest, Title: "Not understood",
			Message: "An audit entry is named by its index, a number: " + quote(r.PathValue("index")) + " is not one.", err: err}
	}
	_, size, err := c.auditEntries(r, q, 0, 0)
	if err != nil {
		return err
	}
	var es []auditEntryView
	if index < size {
		if es, _, err = c.auditEntries(r, q, index, index+1); err != nil {
			return err
		}
	}
	if len(es) != 1 || es[0].Index != index {
		msg := fmt.Sprintf("The log has %d entries; there is no entry %d.", size, index)
		if index < size {
			msg = fmt.Sprintf("Entry %d is not one your token may see.", index)
		}
		return &pageError{Status: http.StatusNotFound, Title: "Not found", Message: msg, Next: "Go back to the audit log."}
	}
	head, err := c.auditHead(r, q)
	if err != nil {
		return err
	}
	var pr struct {
		Size   uint64   `json:"size"`
		Hashes [][]byte `json:"hashes"`
	}
	if err := c.call(r, q, http.MethodGet, "/api/v1/audit/proof/inclusion", url.Values{
		"index": {strconv.FormatUint(index, 10)}, "size": {strconv.FormatUint(head.Size, 10)}}, nil, &pr); err != nil {
		return err
	}
	if pr.Size != head.Size {
		return errors.New("console: the inclusion proof is for another tree size than the head's")
	}
	v := auditEntryPage{E: es[0], Head: head, Scope: q.p.Tenant}
	for _, h := range pr.Hashes {
		v.Proof = append(v.Proof, base64.StdEncoding.EncodeToString(h))
	}
	v.ProofData = strings.Join(v.Proof, " ")
	c.render(w, r, q, http.StatusOK, "audit_entry", view{Title: fmt.Sprintf("Audit entry %d", index), Nav: "audit", Scripts: []string{"audit.js"}, Data: v})
	return nil
}

// Last is the index of the last entry the page read.
func (v auditView) Last() uint64 {
	if v.To == 0 {
		return 0
	}
	return v.To - 1
}

package console

// The bulk import page, at the hub: /objects/import takes the CSV that
// POST /api/v1/objects/import takes (package csvimport). With JavaScript
// (static/import.js) the browser sends the file in chunks of rows, each to
// POST /objects/import as text/csv with ?offset=, and fills the results
// in as they return; without, the form posts the whole file and the answer
// is the results page. Either way the API registers the rows, with its
// roles, tenant checks and messages.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/wanwu-iot/wanwu/internal/csvimport"
)

const (
	// maxImportBody bounds an upload: the API's CSV limit, and room for a
	// multipart form's other parts.
	maxImportBody = csvimport.MaxBytes + 64<<10
	// importAnswerRows is the most rows the API answers as one JSON
	// document (api.maxJSONImportRows): the most a form without
	// JavaScript imports at once, and the most a chunk may hold.
	importAnswerRows = 1000
	// importChunkRows is how many data rows the page's script sends at once.
	importChunkRows = 200
	// maxImportOffset bounds the offset of a chunk's lines.
	maxImportOffset = 1 << 30
)

// importView is the import page's data.
type importView struct {
	MaxRows   int    // rows one import may have (the API's limit)
	MaxBytes  int    // bytes one file may have
	MaxSize   string // MaxBytes for people
	FormRows  int    // rows a post without JavaScript imports
	ChunkRows int
	// Error is the API's refusal of the whole file, with its message.
	Error  string
	Result *importResult
}

// importResult is the outcome of one import request: the API's per-row
// results, their lines counted in the whole file.
type importResult struct {
	Created   int         `json:"created"`
	Unchanged int         `json:"unchanged"`
	Errors    int         `json:"errors"`
	Stopped   string      `json:"stopped,omitempty"`
	Rows      []importRow `json:"rows"`
	// Keys are the keys the hub generated for created rows, with their
	// certificates: they exist nowhere else.
	Keys          []importKey `json:"keys,omitempty"`
	CACertificate string      `json:"ca_certificate,omitempty"`
	// KeysJSON is Keys for the page without JavaScript to show.
	KeysJSON string `json:"-"`
}

// importRow is one row's result; Message is the API's reason, with its
// field.
type importRow struct {
	Line    int    `json:"line"`
	Code    string `json:"code,omitempty"`
	Result  string `json:"result"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message,omitempty"`
}

// importKey is a generated key with what the device needs with it.
type importKey struct {
	Code        string `json:"code"`
	PrivateKey  string `json:"private_key"`
	Certificate string `json:"certificate,omitempty"`
	Credential  string `json:"credential,omitempty"`
}

func (c *Console) importViewData() importView {
	return importView{MaxRows: c.o.ImportMaxRows, MaxBytes: csvimport.MaxBytes, MaxSize: byteText(csvimport.MaxBytes),
		FormRows: min(c.o.ImportMaxRows, importAnswerRows), ChunkRows: min(c.o.ImportMaxRows, importChunkRows)}
}

// importPage shows the import form.
func (c *Console) importPage(w http.ResponseWriter, r *http.Request, q *request) error {
	c.renderImport(w, r, q, http.StatusOK, c.importViewData())
	return nil
}

func (c *Console) renderImport(w http.ResponseWriter, r *http.Request, q *request, status int, v importView) {
	q.partial = false
	c.render(w, r, q, status, "import", view{Title: "Import objects", Nav: "fleet", Scripts: []string{"import.js"}, Data: v})
}

// importPost imports a file: a chunk from the page's script (text/csv,
// answered with JSON), or the whole file from the form (multipart,
// answered with the results page).
func (c *Console) importPost(w http.ResponseWriter, r *http.Request, q *request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "text/csv" {
		return c.importChunk(w, r, q)
	}
	v := c.importViewData()
	if r.MultipartForm == nil || len(r.MultipartForm.File["file"]) == 0 {
		v.Error = "Choose a CSV file to import."
		c.renderImport(w, r, q, http.StatusBadRequest, v)
		return nil
	}
	f, err := r.MultipartForm.File["file"][0].Open()
	if err != nil {
		return fmt.Errorf("console: import: open the upload: %w", err)
	}
	defer f.Close()
	res, err := c.importCSV(r, q, f, 0)
	var ae *apiError
	if errors.As(err, &ae) {
		v.Error = apiPageError(ae).Message
		c.renderImport(w, r, q, ae.Status, v)
		return nil
	}
	if err != nil {
		return err
	}
	if len(res.Keys) > 0 {
		b, err := json.MarshalIndent(map[string]any{"keys": res.Keys, "ca_certificate": res.CACertificate}, "", "  ")
		if err != nil {
			return fmt.Errorf("console: import: keys: %w", err)
		}
		res.KeysJSON = string(b)
	}
	v.Result = res
	c.renderImport(w, r, q, http.StatusOK, v)
	return nil
}

// importChunk imports one chunk of a file (its header and some rows) and
// answers the results as JSON, each row's line counted in the whole file:
// the line in the chunk plus ?offset=.
func (c *Console) importChunk(w http.ResponseWriter, r *http.Request, q *request) error {
	offset := 0
	if s := r.URL.Query().Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxImportOffset {
			writeImportJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
				"message": fmt.Sprintf("offset: want a line count from 0 to %d, got %q", maxImportOffset, s)}})
			return nil
		}
		offset = n
	}
	res, err := c.importCSV(r, q, r.Body, offset)
	var ae *apiError
	if errors.As(err, &ae) {
		writeImportJSON(w, ae.Status, map[string]any{"error": map[string]any{"message": apiPageError(ae).Message, "field": ae.Field}})
		return nil
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeImportJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"error": map[string]any{
			"message": fmt.Sprintf("a chunk may have at most %d bytes", tooLarge.Limit)}})
		return nil
	}
	if err != nil {
		return err
	}
	writeImportJSON(w, http.StatusOK, res)
	return nil
}

func writeImportJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// importCSV sends a CSV to the API and returns its per-row results, the
// lines moved by offset; a refusal of the whole file is an *apiError.
func (c *Console) importCSV(r *http.Request, q *request, body io.Reader, offset int) (*importResult, error) {
	a, err := c.apiRaw(r, q, http.MethodPost, "/api/v1/objects/import", nil, rawBody{ContentType: "text/csv", Body: body})
	if err != nil {
		return nil, err
	}
	if a.Status >= 400 {
		return nil, decodeAPIError(a)
	}
	var ans struct {
		Created, Unchanged, Errors int
		Stopped                    string `json:"stopped"`
		Rows                       []struct {
			Line         int    `json:"line"`
			Code         string `json:"code"`
			Result       string `json:"result"`
			Field        string `json:"field"`
			Reason       string `json:"reason"`
			Registration *struct {
				Certificate   string `json:"certificate"`
				CACertificate string `json:"ca_certificate"`
				Credential    string `json:"credential"`
				PrivateKey    string `json:"private_key"`
			} `json:"registration"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(a.Body, &ans); err != nil {
		return nil, fmt.Errorf("console: decode the import's answer: %w", err)
	}
	res := &importResult{Created: ans.Created, Unchanged: ans.Unchanged, Errors: ans.Errors, Stopped: ans.Stopped, Rows: make([]importRow, 0, len(ans.Rows))}
	for _, row := range ans.Rows {
		out := importRow{Line: row.Line + offset, Code: row.Code, Result: row.Result, Field: row.Field, Message: row.Reason}
		if row.Field != "" && row.Reason != "" {
			out.Message = row.Field + ": " + row.Reason
		}
		res.Rows = append(res.Rows, out)
		if reg := row.Registration; reg != nil && reg.PrivateKey != "" {
			res.Keys = append(res.Keys, importKey{Code: row.Code, PrivateKey: reg.PrivateKey, Certificate: reg.Certificate, Credential: reg.Credential})
			res.CACertificate = reg.CACertificate
		}
	}
	return res, nil
}

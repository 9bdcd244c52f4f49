package console

// The console's pages read and change the node through its own HTTP API,
// in process: the request carries the session's token as a bearer token
// and goes through the API's handler, so that roles, tenant binding,
// validation, auditing and every message are the API's own.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// maxAPIAnswer bounds an answer the console reads from the API.
const maxAPIAnswer = 32 << 20

// apiHandler holds the node's API handler (set by UseAPI).
type apiHandler struct{ h atomic.Pointer[http.Handler] }

// UseAPI gives the console the node's API handler, through which its pages
// read and change the node. The node calls it once its API is built, before
// it serves; until then the pages that need the API answer 503.
func (c *Console) UseAPI(h http.Handler) { c.api.h.Store(&h) }

// apiError is the API's refusal of a request: its status and the body's
// error object, with the same message an API client gets.
type apiError struct {
	Status   int
	Code     string    `json:"code"`
	Field    string    `json:"field"`
	Message  string    `json:"message"`
	Problems []problem `json:"problems"`
	Current  *int64    `json:"current_version"`
}

// problem is one problem of a thing model or loop definition, with its
// path.
type problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	if e.Field != "" && !strings.Contains(e.Message, e.Field) {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// apiAnswer is an answer of the API as the console received it.
type apiAnswer struct {
	Status int
	Header http.Header
	Body   []byte
}

// recorder is the http.ResponseWriter the API writes an in-process answer
// to.
type recorder struct {
	status int
	header http.Header
	body   bytes.Buffer
	over   bool
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len()+len(b) > maxAPIAnswer {
		w.over = true
		return 0, fmt.Errorf("console: the API's answer is over %d bytes", maxAPIAnswer)
	}
	return w.body.Write(b)
}

// rawBody is a request body sent to the API as it is (a CSV file), not
// encoded as JSON.
type rawBody struct {
	ContentType string
	Body        io.Reader
}

// apiRaw sends a request to the node's API as the signed-in principal and
// returns the answer whatever its status. body, when not nil, is sent as
// JSON, or as it is when a rawBody; query is added to path.
func (c *Console) apiRaw(r *http.Request, q *request, method, path string, query url.Values, body any) (*apiAnswer, error) {
	hp := c.api.h.Load()
	if hp == nil {
		return nil, &pageError{Status: http.StatusServiceUnavailable, Title: "Not ready",
			Message: "The node's API is not serving yet.", Next: "Try again in a moment."}
	}
	var rd io.Reader = http.NoBody
	contentType := "application/json"
	if rb, ok := body.(rawBody); ok {
		rd, contentType = rb.Body, rb.ContentType
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("console: encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	u := path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(r.Context(), method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("console: %s %s: %w", method, path, err)
	}
	req.RemoteAddr = r.RemoteAddr
	req.Host = r.Host
	req.Header.Set("Authorization", "Bearer "+q.s.secret)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "wanwu-console")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	w := &recorder{header: http.Header{}}
	(*hp).ServeHTTP(w, req)
	if w.over {
		return nil, fmt.Errorf("console: %s %s: answer over %d bytes", method, path, maxAPIAnswer)
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return &apiAnswer{Status: w.status, Header: w.header, Body: w.body.Bytes()}, nil
}

// call sends a request to the node's API as the signed-in principal and
// decodes a successful answer's JSON into out (when not nil). A refusal is
// returned as an *apiError with the API's own message.
func (c *Console) call(r *http.Request, q *request, method, path string, query url.Values, body, out any) error {
	a, err := c.apiRaw(r, q, method, path, query, body)
	if err != nil {
		return err
	}
	if a.Status >= 400 {
		return decodeAPIError(a)
	}
	if out == nil || len(a.Body) == 0 {
		return nil
	}
	if err := json.Unmarshal(a.Body, out); err != nil {
		return fmt.Errorf("console: decode the answer of %s %s: %w", method, path, err)
	}
	return nil
}

// decodeAPIError reads the API's error body.
func decodeAPIError(a *apiAnswer) error {
	var b struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(a.Body, &b); err != nil || b.Error == nil {
		return &apiError{Status: a.Status, Code: "unknown", Message: http.StatusText(a.Status)}
	}
	b.Error.Status = a.Status
	return b.Error
}

// apiPageError turns an API refusal into the error page's words.
func apiPageError(e *apiError) *pageError {
	pe := &pageError{Status: e.Status, Message: e.Error(), err: e}
	switch {
	case e.Status == http.StatusNotFound:
		pe.Title = "Not found"
	case e.Status == http.StatusForbidden:
		pe.Title = "Not allowed"
		pe.Next = "Your token's role or tenant does not allow this; ask an administrator for a token that does."
	case e.Status == http.StatusConflict:
		pe.Title = "Conflict"
	case e.Status == http.StatusUnauthorized:
		pe.Title = "Signed out"
	case e.Status == http.StatusServiceUnavailable, e.Status == http.StatusInsufficientStorage:
		pe.Title = "Not available"
		pe.Next = "Try again in a moment."
	case e.Status >= 500:
		pe.Title = "Something went wrong"
		pe.Next = "Try again in a moment."
	default:
		pe.Title = "Not accepted"
	}
	for _, p := range e.Problems {
		pe.Message += "; " + p.Path + ": " + p.Message
	}
	return pe
}

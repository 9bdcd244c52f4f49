// Package hubclient is the small HTTP client that wanwu's own tools (`ctl`,
// `bench`) use to call a hub's API: bearer token, body limits, and the hub's
// JSON errors turned into Go errors that keep the field and problem paths.
package hubclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls one hub.
type Client struct {
	Base  string // e.g. http://127.0.0.1:8080, without a trailing slash
	Token string // API token; "" sends none
	HTTP  *http.Client
}

// New returns a client with a generous timeout (bulk imports take a while).
func New(base, token string) *Client {
	return &Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Timeout: 5 * time.Minute}}
}

// Error is a non-2xx answer, with the hub's message when it sent one.
type Error struct {
	Status int
	Code   string // the hub's error code ("invalid_argument", ...), "" if none
	Msg    string
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("hub answered %d %s: %s", e.Status, e.Code, e.Msg)
	}
	return fmt.Sprintf("hub answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Msg)
}

// apiError is the hub's error body.
type apiError struct {
	Error struct {
		Code     string `json:"code"`
		Message  string `json:"message"`
		Field    string `json:"field"`
		Problems []struct {
			Path    string `json:"path"`
			Message string `json:"message"`
		} `json:"problems"`
	} `json:"error"`
}

// Do sends a request and returns the body of a 2xx (or 207) answer; other
// statuses become an *Error. The status is returned in both cases.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader, contentType string) ([]byte, int, error) {
	rc, status, err := c.Stream(ctx, method, path, body, contentType, "")
	if err != nil {
		return nil, status, err
	}
	defer rc.Close()
	out, err := io.ReadAll(io.LimitReader(rc, 256<<20))
	if err != nil {
		return nil, status, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return out, status, nil
}

// Stream is Do for answers read as they arrive: on success (2xx) the caller
// reads and closes the body; accept, if set, is the Accept header.
func (c *Client) Stream(ctx context.Context, method, path string, body io.Reader, contentType, accept string) (io.ReadCloser, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, 0, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot reach the hub at %s (is 'wanwu hub' running? --hub sets the address): %w", c.Base, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusMultiStatus {
		defer resp.Body.Close()
		out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
		e := &Error{Status: resp.StatusCode, Msg: string(bytes.TrimSpace(out))}
		var ae apiError
		if json.Unmarshal(out, &ae) == nil && ae.Error.Message != "" {
			e.Code, e.Msg = ae.Error.Code, ae.Error.Message
			if ae.Error.Field != "" && !strings.HasPrefix(e.Msg, ae.Error.Field) {
				e.Msg = ae.Error.Field + ": " + e.Msg
			}
			for _, p := range ae.Error.Problems {
				e.Msg += "\n  " + p.Path + ": " + p.Message
			}
		}
		return nil, resp.StatusCode, e
	}
	return resp.Body, resp.StatusCode, nil
}

// JSON sends in (nil: no body) as JSON and decodes the answer into out (nil: ignored).
func (c *Client) JSON(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	b, status, err := c.Do(ctx, method, path, body, "application/json")
	if err != nil {
		return status, err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return status, fmt.Errorf("hub sent unexpected JSON: %w", err)
		}
	}
	return status, nil
}

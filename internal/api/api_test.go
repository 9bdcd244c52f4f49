package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// TestErrorMapping: every error the services return maps to one status and
// code, wrapped or not; anything else is a 500 that tells the caller nothing.
func TestErrorMapping(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int
		code   string
		field  string
		secret bool // the message must not reach the caller
	}{
		{"api error as is", &Error{Status: 418, Code: "teapot", Message: "short and stout"}, 418, "teapot", "", false},
		{"invalid model", &thingmodel.ValidationError{Problems: []thingmodel.Problem{{Path: "$.x", Message: "bad"}}}, 400, "invalid_model", "model", false},
		{"field error", &registry.FieldError{Field: "code", Reason: "bad"}, 400, "invalid_argument", "code", false},
		{"body too large", &http.MaxBytesError{Limit: 10}, 413, "too_large", "", false},
		{"registry invalid", fmt.Errorf("x: %w", registry.ErrInvalid), 400, "invalid_argument", "", false},
		{"auth invalid", auth.ErrInvalid, 400, "invalid_argument", "", false},
		{"model invalid", thingmodel.ErrInvalid, 400, "invalid_argument", "", false},
		{"not found", fmt.Errorf("x: %w", registry.ErrNotFound), 404, "not_found", "", false},
		{"token not found", auth.ErrNotFound, 404, "not_found", "", false},
		{"conflict", registry.ErrConflict, 409, "conflict", "", false},
		{"token exists", auth.ErrExists, 409, "conflict", "", false},
		{"claim refused", registry.ErrClaimExpired, 401, "claim_refused", "", false},
		{"unauthenticated", auth.ErrUnauthenticated, 401, "unauthenticated", "", false},
		{"forbidden", auth.ErrForbidden, 403, "forbidden", "", false},
		{"bad proof", audit.ErrBadProof, 400, "invalid_argument", "", false},
		{"disk full", fmt.Errorf("store: commit: %w", syscall.ENOSPC), 507, "storage_full", "", false},
		{"sqlite full", errors.New("store: commit: database or disk is full (13)"), 507, "storage_full", "", false},
		{"anything else", errors.New("sql: connection at /var/lib/secret refused"), 500, "internal", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ae := toAPIError(tc.err)
			if ae.Status != tc.status || ae.Code != tc.code || ae.Field != tc.field {
				t.Errorf("toAPIError(%v) = %d %s %q, want %d %s %q", tc.err, ae.Status, ae.Code, ae.Field, tc.status, tc.code, tc.field)
			}
			// Through a handler: the body carries the code, a 401 the
			// challenge, a 507 when to retry, and a 500 nothing of the error.
			s := &server{Options: Options{Logger: slog.New(slog.DiscardHandler)}}
			s.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"code"})
			rec := httptest.NewRecorder()
			s.handle(func(http.ResponseWriter, *http.Request) error { return tc.err })(rec, httptest.NewRequest("GET", "/x", nil).WithContext(context.Background()))
			body, _ := io.ReadAll(rec.Body)
			var out struct {
				Error struct{ Code string }
			}
			_ = json.Unmarshal(body, &out)
			if rec.Code != tc.status || out.Error.Code != tc.code {
				t.Errorf("answer %d %s", rec.Code, body)
			}
			if tc.secret && strings.Contains(string(body), "secret") {
				t.Errorf("a 500 told the caller %s", body)
			}
			if tc.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tc.status == 507 && rec.Header().Get("Retry-After") == "" {
				t.Error("507 without Retry-After")
			}
		})
	}
}

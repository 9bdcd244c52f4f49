package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/csvimport"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// Row outcomes of a bulk import.
const (
	RowCreated   = "created"
	RowUnchanged = "unchanged" // already registered with the same attributes: re-running a file is idempotent
	RowError     = "error"
)

// RowResult reports one CSV row.
type RowResult struct {
	Line         int           `json:"line"`
	Code         string        `json:"code,omitempty"`
	Result       string        `json:"result"`
	Field        string        `json:"field,omitempty"`
	Reason       string        `json:"reason,omitempty"`
	Registration *Registration `json:"registration,omitempty"`
}

// ImportSummary counts the outcomes.
type ImportSummary struct {
	Created   int         `json:"created"`
	Unchanged int         `json:"unchanged"`
	Errors    int         `json:"errors"`
	Rows      []RowResult `json:"rows"`
}

// Import registers every good row of a bulk CSV (see package csvimport for
// the columns) and reports every bad one with its line and reason. Each row
// commits on its own, so one bad row never holds back the good ones. allow
// checks each row's tenant.
func (r *Registry) Import(ctx context.Context, actor string, in io.Reader, allow func(tenant string) error) (*ImportSummary, error) {
	rows, rowErrs, err := csvimport.Parse(in)
	if err != nil {
		return nil, invalidErr("csv", err)
	}
	results := make([]RowResult, 0, len(rows)+len(rowErrs))
	for _, re := range rowErrs {
		results = append(results, RowResult{Line: re.Line, Result: RowError, Field: re.Field, Reason: re.Reason})
	}
	for _, row := range rows {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		results = append(results, r.importRow(ctx, actor, row, allow))
	}
	slices.SortFunc(results, func(a, b RowResult) int { return a.Line - b.Line })
	s := &ImportSummary{Rows: results}
	for _, res := range results {
		switch res.Result {
		case RowCreated:
			s.Created++
		case RowUnchanged:
			s.Unchanged++
		default:
			s.Errors++
		}
	}
	return s, nil
}

func (r *Registry) importRow(ctx context.Context, actor string, row csvimport.Row, allow func(string) error) RowResult {
	res := RowResult{Line: row.Line, Code: row.Code}
	fail := func(err error) RowResult {
		res.Result, res.Reason = RowError, err.Error()
		var fe *FieldError
		if errors.As(err, &fe) {
			res.Field, res.Reason = fe.Field, fe.Reason
		}
		return res
	}
	c, err := code.Parse(row.Code)
	if err != nil {
		return fail(invalidErr("code", err))
	}
	if allow != nil {
		if err := allow(c.Namespace); err != nil {
			return fail(err)
		}
	}
	req := RegisterRequest{
		Code: row.Code, Kind: row.Kind, Path: row.Path, Tags: row.Tags, Edge: row.Edge,
		Key: KeySource{PublicKey: row.PublicKey, Alg: row.KeyAlg},
	}
	if row.ModelID != "" {
		req.Model = &ModelRef{ID: row.ModelID, Version: row.ModelVersion}
	}
	existing, err := r.Object(ctx, row.Code)
	switch {
	case err == nil:
		if diff := sameAttributes(existing, req); diff != "" {
			return fail(&FieldError{Field: diff, Reason: fmt.Sprintf("object %s exists with a different %s", row.Code, diff)})
		}
		res.Result = RowUnchanged
		return res
	case !errors.Is(err, ErrNotFound):
		return fail(err)
	}
	reg, err := r.Register(ctx, actor, req)
	if err != nil {
		return fail(err)
	}
	res.Result, res.Registration = RowCreated, reg
	return res
}

// sameAttributes names the first attribute in which req differs from o ("" if none).
func sameAttributes(o *Object, req RegisterRequest) string {
	kind := req.Kind
	if kind == "" {
		kind = KindDevice
	}
	switch {
	case o.Kind != kind:
		return "kind"
	case !slices.Equal(o.Path, req.Path):
		return "path"
	case !maps.Equal(nonNilTags(o.Tags), nonNilTags(req.Tags)):
		return "tags"
	case o.Edge != req.Edge:
		return "edge"
	case (o.Model == nil) != (req.Model == nil) || (o.Model != nil && *o.Model != *req.Model):
		return "model"
	}
	if req.Key.PublicKey != nil {
		did, err := keys.DID(req.Key.PublicKey)
		if err != nil || did != o.DID {
			return "public_key"
		}
	}
	return ""
}

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

func (s *ImportSummary) count(res RowResult) {
	switch res.Result {
	case RowCreated:
		s.Created++
	case RowUnchanged:
		s.Unchanged++
	default:
		s.Errors++
	}
}

// ImportOptions tune ImportStream.
type ImportOptions struct {
	// MaxRows is the row limit (default csvimport.MaxRows).
	MaxRows int
	// Allow checks each row's tenant; nil allows every tenant.
	Allow func(tenant string) error
	// Emit receives each row's result in file order, as soon as the row is
	// done; a created row's Registration may carry a generated private key,
	// which exists nowhere else, so Emit must pass it on before returning.
	// An error from Emit stops the import.
	Emit func(RowResult) error
}

// ImportStream registers the rows of a bulk CSV (see package csvimport for
// the columns) as it reads them, one at a time, and hands each result to
// o.Emit: memory stays bounded by one row however long the file. Each row
// commits on its own, so one bad row never holds back the good ones. The
// returned summary has counts and no Rows. An unusable header is an error
// before any row (a FieldError for "csv"); a file that turns out too large or
// too long stops the import there, with the rows before it registered and
// emitted, and returns the summary so far with the error.
func (r *Registry) ImportStream(ctx context.Context, actor string, in io.Reader, o ImportOptions) (*ImportSummary, error) {
	if r.opts.Replica {
		return nil, fmt.Errorf("%w: register objects at the hub", ErrReplica)
	}
	rd, err := csvimport.NewReader(in, csvimport.Options{MaxRows: o.MaxRows})
	if err != nil {
		return nil, invalidErr("csv", err)
	}
	s := &ImportSummary{}
	for {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		row, rerr, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return s, nil
		}
		if err != nil {
			return s, invalidErr("csv", err)
		}
		var res RowResult
		if rerr != nil {
			res = RowResult{Line: rerr.Line, Result: RowError, Field: rerr.Field, Reason: rerr.Reason}
		} else {
			res = r.importRow(ctx, actor, row, o.Allow)
		}
		s.count(res)
		if o.Emit != nil {
			if err := o.Emit(res); err != nil {
				return s, err
			}
		}
	}
}

// Import is ImportStream with every row's result kept in the summary, all
// in memory: for small files (o.Emit is not called). Like ImportStream it
// returns the summary so far together with an error that stopped the import
// midway, so that the generated keys of the rows before it are not lost.
func (r *Registry) Import(ctx context.Context, actor string, in io.Reader, o ImportOptions) (*ImportSummary, error) {
	rows := []RowResult{}
	o.Emit = func(res RowResult) error {
		rows = append(rows, res)
		return nil
	}
	s, err := r.ImportStream(ctx, actor, in, o)
	if s != nil {
		s.Rows = rows
	}
	return s, err
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
		Code: row.Code, Kind: row.Kind, Path: row.Path, Tags: row.Tags, Edge: row.Edge, Network: row.Network,
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
	case o.Network != req.Network:
		return "network"
	}
	if req.Key.PublicKey != nil {
		did, err := keys.DID(req.Key.PublicKey)
		if err != nil || did != o.DID {
			return "public_key"
		}
	}
	return ""
}

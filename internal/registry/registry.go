// Package registry is the hub's identity service: tenants, thing models and
// objects, with their codes, numbers, keys, certificates and credentials, and
// the lifecycle around them (rotation, revocation, quarantine, admission,
// bulk and zero-touch provisioning, API tokens).
//
// Every change is one SQLite transaction that also appends its audit entries,
// so an object never exists without the log saying who registered it, and a
// log entry never describes a change that did not commit.
//
// An edge runs the same registry on its own database as a replica
// (Options.Replica): it holds the hub CA's certificate but no key, refuses
// every change of identity, and takes its tenants, models, objects and keys
// from the signed snapshots the hub issues (EdgeSnapshot at the hub,
// ApplySnapshot at the edge; see snapshot.go), so that its devices pass the
// same admission as at the hub while the hub is unreachable.
package registry

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// Errors returned by the registry; API handlers map them to HTTP statuses.
var (
	// ErrInvalid: the request is malformed; a *FieldError names the field.
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: no such tenant, model, object or claim.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request contradicts existing state (duplicate, immutable version, wrong lifecycle state).
	ErrConflict = errors.New("conflict")
	// ErrClaim: a claim token is unknown, expired, revoked or used up.
	ErrClaim = errors.New("claim refused")
	// ErrReplica: the registry is an edge's replica, where identities do
	// not change: they change at the hub and arrive in its snapshots.
	ErrReplica = errors.New("registry is a replica of the hub's")
)

// FieldError is an ErrInvalid that names the offending field.
type FieldError struct {
	Field  string
	Reason string
	cause  error // the other package's error, for errors.Is
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true, and errors.Is with the
// cause from another package (csvimport.ErrTooManyRows, say).
func (e *FieldError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrInvalid, e.cause}
	}
	return []error{ErrInvalid}
}

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// invalidErr wraps a validation error from another package under a field name.
func invalidErr(field string, err error) error {
	return &FieldError{Field: field, Reason: err.Error(), cause: err}
}

// Options configure a Registry.
type Options struct {
	DB *store.DB
	// CA issues the objects' certificates at the hub. A replica's is the hub
	// CA's certificate only (ca.FromCertificate), or nil: the CA
	// certificate of the latest applied snapshot replaces it (CA).
	CA     *ca.CA
	Signer ed25519.PrivateKey // signs device credentials; none on a replica
	// Audit is the log every change is appended to; a replica may have
	// none (applying a snapshot is then only logged).
	Audit        *audit.Log
	DeploymentID string // feeds the derived ULA prefixes; not used by a replica
	// Replica makes the registry an edge's copy of the hub's identities:
	// no signing key and no CA key; every change is refused with
	// ErrReplica except ApplySnapshot (and the node's own API tokens).
	Replica bool
	// OnSnapshot, when set on a replica, receives what each applied
	// snapshot changed, after the commit: the edge ends the sessions of
	// the objects it names (SnapshotApplied.Disconnect).
	OnSnapshot func(SnapshotApplied)
	// Logger logs applied snapshots (default slog.Default()).
	Logger *slog.Logger
	// CertValidity is the default lifetime of issued certificates and credentials.
	CertValidity time.Duration
	// RotationOverlap is how long a rotated-out key stays valid by default.
	RotationOverlap time.Duration
	// TokenSkew is the clock difference tolerated between a device and the
	// hub when checking a device token's iat and exp (default
	// devtoken.Skew, 5 minutes).
	TokenSkew time.Duration
	// Now is the clock (tests move it).
	Now func() time.Time
	// OnCommit, when set, receives the audit entries of every committed change,
	// after the commit (the hub forwards them to the bus).
	OnCommit func([]audit.Entry)
}

// Registry implements the identity service on the metadata database.
type Registry struct {
	opts Options
	db   *store.DB
	ca   atomic.Pointer[ca.CA] // opts.CA, or on a replica the latest snapshot's
	log  *slog.Logger
	rd   *preparedReader // the frequent reads (resolve, admission) on db.R
	// models caches parsed model versions by id@version (immutable once registered).
	models sync.Map
}

// Defaults for Options.
const (
	DefaultCertValidity    = 365 * 24 * time.Hour
	DefaultRotationOverlap = 7 * 24 * time.Hour
	maxValidity            = 20 * 365 * 24 * time.Hour
)

// New checks the options and returns a registry.
//
// A replica needs only DB; it refuses a signing key and a CA that holds its
// key, and takes the CA certificate of the snapshot it applied last, if
// any, over Options.CA.
func New(opts Options) (*Registry, error) {
	switch {
	case opts.Replica && opts.DB == nil:
		return nil, errors.New("registry: DB is required")
	case opts.Replica && opts.Signer != nil:
		return nil, errors.New("registry: a replica holds no signing key: credentials are issued at the hub")
	case opts.Replica && opts.CA != nil && opts.CA.CanSign():
		return nil, errors.New("registry: a replica holds the hub CA's certificate only (ca.FromCertificate), never its key")
	case opts.Replica:
	case opts.DB == nil || opts.CA == nil || opts.Signer == nil || opts.Audit == nil:
		return nil, errors.New("registry: DB, CA, Signer and Audit are required")
	case opts.DeploymentID == "":
		return nil, errors.New("registry: DeploymentID is required")
	}
	if opts.CertValidity <= 0 {
		opts.CertValidity = DefaultCertValidity
	}
	if opts.TokenSkew < 0 {
		return nil, errors.New("registry: TokenSkew must not be negative")
	}
	if opts.TokenSkew == 0 {
		opts.TokenSkew = devtoken.Skew
	}
	if opts.RotationOverlap < 0 {
		return nil, errors.New("registry: RotationOverlap must not be negative")
	}
	if opts.RotationOverlap == 0 {
		opts.RotationOverlap = DefaultRotationOverlap
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Registry{opts: opts, db: opts.DB, rd: &preparedReader{db: opts.DB.R}, log: opts.Logger}
	r.ca.Store(opts.CA)
	if opts.Replica {
		// Reading one meta row needs no caller's context.
		c, err := r.snapshotCA(context.Background())
		if err != nil {
			return nil, err
		}
		if c != nil {
			r.ca.Store(c)
		}
	}
	return r, nil
}

// CA returns the CA the objects' certificates chain to: at the hub, the
// hub's (with its key); on a replica, a copy of its certificate without the
// key, from the latest applied snapshot (or Options.CA before the first),
// nil when there is neither. A snapshot applied later may bring another:
// call CA again rather than keeping the result.
func (r *Registry) CA() *ca.CA { return r.ca.Load() }

// Replica reports whether the registry is an edge's replica.
func (r *Registry) Replica() bool { return r.opts.Replica }

// preparedReader runs fixed read queries as statements prepared once per
// reader connection (database/sql re-prepares a Stmt on each connection of
// the pool as needed). Parsing the SQL again on every call was about half the
// cost of a Resolve. Only constant query strings may go through it, so the
// cache stays small.
type preparedReader struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func (p *preparedReader) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.stmts[query]; ok {
		return st, nil
	}
	st, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if p.stmts == nil {
		p.stmts = make(map[string]*sql.Stmt)
	}
	p.stmts[query] = st
	return st, nil
}

// QueryRowContext falls back to an unprepared query if preparing fails, so
// the error, if any, comes from running the query.
func (p *preparedReader) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return p.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (p *preparedReader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return p.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

func (r *Registry) now() time.Time { return r.opts.Now().UTC().Truncate(time.Millisecond) }

// change is one write transaction with its audit entries.
type change struct {
	r       *Registry
	ctx     context.Context
	tx      *sql.Tx
	actor   string
	now     time.Time
	entries []audit.Entry
}

// write runs fn in a transaction; entries fn logs are appended in the same
// transaction and handed to OnCommit after the commit. A replica refuses:
// its identities change only by ApplySnapshot.
func (r *Registry) write(ctx context.Context, actor string, fn func(c *change) error) error {
	if r.opts.Replica {
		return fmt.Errorf("%w: identities change at the hub and reach this edge in its snapshots", ErrReplica)
	}
	return r.commit(ctx, actor, fn)
}

// commit is write without a replica's refusal, for what a replica changes
// itself: the snapshot it applies, the node's own API tokens.
func (r *Registry) commit(ctx context.Context, actor string, fn func(c *change) error) error {
	if actor == "" {
		return errors.New("registry: a change needs an actor")
	}
	c := &change{r: r, ctx: ctx, actor: actor, now: r.now()}
	err := r.db.Tx(ctx, func(tx *sql.Tx) error {
		c.tx = tx
		c.entries = c.entries[:0]
		return fn(c)
	})
	if err != nil {
		return err
	}
	if r.opts.OnCommit != nil && len(c.entries) > 0 {
		r.opts.OnCommit(c.entries)
	}
	return nil
}

// log appends an audit entry inside the change's transaction (on a
// replica without an audit log, nothing).
func (c *change) log(kind, tenant, subject string, data any) error {
	if c.r.opts.Audit == nil {
		return nil
	}
	raw, err := marshalData(data)
	if err != nil {
		return err
	}
	e := audit.Entry{Time: c.now, Actor: c.actor, Tenant: tenant, Kind: kind, Subject: subject, Data: raw}
	idx, err := c.r.opts.Audit.AppendTx(c.ctx, c.tx, e)
	if err != nil {
		return fmt.Errorf("registry: audit %s: %w", kind, err)
	}
	e.Index = idx
	c.entries = append(c.entries, e)
	return nil
}

package hub

// Edge links: the receiver that takes what edges forward into the ingest
// log exactly once, and the membership check it asks for every device.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/snapshot"
)

// openEdges opens the receiver of edge links (tables edge_forward and
// edge_status in wanwu.db).
func (h *Hub) openEdges(ctx context.Context) error {
	var err error
	h.edges, err = forward.OpenReceiver(ctx, forward.ReceiverOptions{
		DB: h.db, Submit: submitAll(h.tel.Pipeline), Member: h.members.member, Audit: h.audit,
		OnAudit: h.wakeAuditForwarder, Logger: h.log, Metrics: h.metrics, Now: h.opts.Now,
	})
	return err
}

// submitAll makes messages durable in the ingest log in order, and waits
// until every one is.
func submitAll(p *pipeline.Pipeline) func(context.Context, []ingest.Message) error {
	return func(ctx context.Context, msgs []ingest.Message) error {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		wg.Add(len(msgs))
		for _, m := range msgs {
			p.SubmitAsync(m, pipeline.CompletionFunc(func(err error) {
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
				wg.Done()
			}))
		}
		wg.Wait()
		return first
	}
}

// memberTTL is how long an answer of the membership check is kept: a
// device moved from one edge to another is refused by the old one's link
// at most this long after.
const memberTTL = 30 * time.Second

// edgeMembers answers whether a device is an edge or behind it, from the
// registry, with the answers kept for memberTTL.
type edgeMembers struct {
	reg *registry.Registry
	now func() time.Time

	mu    sync.Mutex
	known map[[2]string]memberAnswer
}

type memberAnswer struct {
	ok      bool
	tenant  string
	expires time.Time
}

func (m *edgeMembers) member(ctx context.Context, edge, tenant, device string) (bool, error) {
	if m.now == nil {
		m.now = time.Now
	}
	key := [2]string{edge, device}
	now := m.now()
	m.mu.Lock()
	a, ok := m.known[key]
	m.mu.Unlock()
	if ok && now.Before(a.expires) {
		return a.ok && a.tenant == tenant, nil
	}
	o, err := m.reg.Object(ctx, device)
	switch {
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrInvalid):
		a = memberAnswer{expires: now.Add(memberTTL)}
	case err != nil:
		return false, err
	default:
		a = memberAnswer{ok: o.Code == edge || o.Edge == edge, tenant: o.Tenant, expires: now.Add(memberTTL)}
	}
	m.mu.Lock()
	if m.known == nil || len(m.known) > 1<<20 {
		m.known = make(map[[2]string]memberAnswer)
	}
	m.known[key] = a
	m.mu.Unlock()
	return a.ok && a.tenant == tenant, nil
}

// broadcast wakes every waiter at once: Wait returns a channel that the
// next Wake closes.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *broadcast) Wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) Wake() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// snapshotSettle is how long the hub lets identity changes gather before
// it answers a waiting edge: a burst of changes is one snapshot.
const snapshotSettle = 200 * time.Millisecond

// maxSnapshotWait bounds how long an edge's request for a newer snapshot
// is held.
const maxSnapshotWait = 30 * time.Second

// edgeSnapshot answers an edge's request for a snapshot newer than after:
// at once when the identities behind it changed since, otherwise when they
// do, within wait; nil when they did not. Only a change of what the
// snapshot holds counts, not every audit entry (twin and command changes
// are audited too).
func (h *Hub) edgeSnapshot(ctx context.Context, edge string, after uint64, wait time.Duration) ([]byte, error) {
	t := time.NewTimer(min(wait, maxSnapshotWait))
	defer t.Stop()
	for {
		changed := h.auditTick.Wait()
		s, err := h.reg.EdgeSnapshot(ctx, edge)
		if err != nil {
			return nil, err
		}
		if s.Version > after && h.snapshotChanged(edge, after, s) {
			return snapshot.Sign(s, h.signer)
		}
		select {
		case <-changed:
			select {
			case <-time.After(snapshotSettle):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		case <-t.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// sentSnapshot is the last snapshot the hub sent an edge: its version and
// the digest of what it holds.
type sentSnapshot struct {
	version uint64
	digest  [32]byte
}

// snapshotChanged reports whether s holds other identities than the
// snapshot the edge applied (version after), as far as the hub remembers
// what it sent; it remembers s as sent when it does.
func (h *Hub) snapshotChanged(edge string, after uint64, s *snapshot.Snapshot) bool {
	content, err := json.Marshal([]any{s.CACertificate, s.Revoked, s.Tenants, s.Models, s.Objects})
	if err != nil {
		return true
	}
	d := sha256.Sum256(content)
	h.snapMu.Lock()
	defer h.snapMu.Unlock()
	if h.snapSent == nil {
		h.snapSent = make(map[string]sentSnapshot)
	}
	if last, ok := h.snapSent[edge]; ok && last.version == after && last.digest == d {
		return false
	}
	h.snapSent[edge] = sentSnapshot{version: s.Version, digest: d}
	return true
}

package hub

// Edge links: the receiver that takes what edges forward into the ingest
// log exactly once, and the membership check it asks for every device.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/registry"
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

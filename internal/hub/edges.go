package hub

// Edge links: the receiver that takes what edges forward into the ingest
// log exactly once, and the membership check it asks for every device.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/api"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/snapshot"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// openEdges opens the receiver of edge links (tables edge_forward and
// edge_status in wanwu.db).
func (h *Hub) openEdges(ctx context.Context) error {
	var err error
	h.edges, err = forward.OpenReceiver(ctx, forward.ReceiverOptions{
		DB: h.db, Submit: submitAll(h.tel.Pipeline), Member: h.members.member, Audit: h.audit, CommandResult: h.edgeCommandResult, TwinReported: h.edgeTwinReported,
		LoopEvidence: h.edgeEvidence, Alarm: h.edgeAlarm, Rollout: h.edgeRollout, MLFigures: h.edgeMLFigures, DatasetWindow: h.edgeWindow,
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
	return h.pollAudited(ctx, wait, func() ([]byte, error) {
		s, err := h.reg.EdgeSnapshot(ctx, edge)
		if err != nil || s.Version <= after || !h.snapshotChanged(edge, after, s) {
			return nil, err
		}
		return snapshot.Sign(s, h.signer)
	})
}

// pollAudited answers an edge's long poll: answer says what to send (nil:
// nothing yet); it is asked at once and again after every audited change
// (once the changes settle), until it has something or wait (at most
// maxSnapshotWait) passed.
func (h *Hub) pollAudited(ctx context.Context, wait time.Duration, answer func() ([]byte, error)) ([]byte, error) {
	t := time.NewTimer(min(wait, maxSnapshotWait))
	defer t.Stop()
	for {
		changed := h.auditTick.Wait()
		if b, err := answer(); b != nil || err != nil {
			return b, err
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

// Commands for devices behind an edge go down its link: while the edge
// polls GET /api/v1/edge/downlink, every device behind it is attached to
// the command service with a sink that queues its commands for the edge;
// the edge issues them on its own command service (the same id), says so,
// and the hub records them delivered. Results come back up the control
// class (forward.CommandResultEvent).

// edgeAttachTTL is how long after an edge's last poll its devices stay
// attached; edgeRefresh how often the list of its devices is read again.
const (
	edgeAttachTTL = 90 * time.Second
	edgeRefresh   = 60 * time.Second
)

// edgeDownlink is one edge's queue of commands on their way down.
type edgeDownlink struct {
	mu    sync.Mutex
	queue []*command.Command
	// twins are the devices whose desired state the edge has not taken
	// since it changed, with the version that was current when it did.
	twins    map[string]int64
	votes    []api.EdgeVote
	wake     chan struct{}
	attached map[string]func() // device code → detach
	listed   time.Time
	polled   time.Time
}

// edgeSink is the command sink of a device behind an edge.
type edgeSink struct{ d *edgeDownlink }

// Deliver queues the command for the edge's next poll (once).
func (s edgeSink) Deliver(c *command.Command) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	for _, q := range s.d.queue {
		if q.ID == c.ID {
			return nil
		}
	}
	s.d.queue = append(s.d.queue, c)
	select {
	case s.d.wake <- struct{}{}:
	default:
	}
	return nil
}

func (h *Hub) downlinkOf(edge string) *edgeDownlink {
	h.downMu.Lock()
	defer h.downMu.Unlock()
	if h.downlinks == nil {
		h.downlinks = map[string]*edgeDownlink{}
	}
	d := h.downlinks[edge]
	if d == nil {
		d = &edgeDownlink{wake: make(chan struct{}, 1), attached: map[string]func(){}, twins: map[string]int64{}}
		h.downlinks[edge] = d
	}
	return d
}

// attachEdgeDevices attaches every device placed behind the edge (read
// again every edgeRefresh) to the command service through the edge.
func (h *Hub) attachEdgeDevices(ctx context.Context, edge string, d *edgeDownlink) error {
	d.mu.Lock()
	d.polled = time.Now()
	fresh := time.Since(d.listed) < edgeRefresh
	d.mu.Unlock()
	if fresh {
		return nil
	}
	behind := map[string]bool{}
	after := ""
	for {
		objs, next, err := h.reg.List(ctx, registry.ListFilter{Edge: edge, After: after, Limit: 1000})
		if err != nil {
			return err
		}
		for _, o := range objs {
			behind[o.Code] = true
		}
		if next == "" {
			break
		}
		after = next
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for code, detach := range d.attached {
		if !behind[code] {
			detach()
			delete(d.attached, code)
		}
	}
	var attach []string
	for code := range behind {
		if d.attached[code] == nil {
			attach = append(attach, code)
		}
	}
	for _, code := range attach {
		d.attached[code] = h.commands.Attach(code, edgeSink{d})
		// A newly attached device's desired state goes down once: it may
		// have changed while the edge was away.
		d.twins[code] = -1
	}
	d.listed = time.Now()
	return nil
}

// expireEdgeAttachments detaches the devices of edges that stopped polling.
func (h *Hub) expireEdgeAttachments() {
	h.downMu.Lock()
	defer h.downMu.Unlock()
	for _, d := range h.downlinks {
		d.mu.Lock()
		if time.Since(d.polled) > edgeAttachTTL && len(d.attached) > 0 {
			for code, detach := range d.attached {
				detach()
				delete(d.attached, code)
			}
			d.listed = time.Time{}
		}
		d.mu.Unlock()
	}
}

// edgeTwinChanged queues a device's changed desired state for its edge,
// when it is behind one whose devices are attached.
func (h *Hub) edgeTwinChanged(code string, version int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o, err := h.reg.Object(ctx, code)
	if err != nil || o.Edge == "" {
		return
	}
	d := h.downlinkOf(o.Edge)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.twins[code] = version
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// edgeDownlinkPoll answers an edge's poll: the commands queued for its
// devices and the desired states it has not taken, at once or within
// wait.
func (h *Hub) edgeDownlinkPoll(ctx context.Context, edge string, wait time.Duration) (*api.EdgeDownlink, error) {
	d := h.downlinkOf(edge)
	if err := h.attachEdgeDevices(ctx, edge, d); err != nil {
		return nil, err
	}
	t := time.NewTimer(min(wait, maxSnapshotWait))
	defer t.Stop()
	for {
		d.mu.Lock()
		out := &api.EdgeDownlink{Commands: append([]*command.Command(nil), d.queue...), Votes: append([]api.EdgeVote(nil), d.votes...)}
		codes := make([]string, 0, len(d.twins))
		for code := range d.twins {
			codes = append(codes, code)
		}
		d.mu.Unlock()
		if len(codes) > 0 {
			twins, err := h.twins.List(ctx, codes)
			if err != nil {
				return nil, err
			}
			for _, tw := range twins {
				if tw.Version > 0 {
					out.Twins = append(out.Twins, api.EdgeTwin{Code: tw.Code, Desired: tw.Desired, Version: tw.Version})
				}
			}
			if len(out.Twins) == 0 { // none ever set: nothing to take
				d.mu.Lock()
				for _, c := range codes {
					if d.twins[c] == -1 {
						delete(d.twins, c)
					}
				}
				d.mu.Unlock()
			}
		}
		if len(out.Commands) > 0 || len(out.Twins) > 0 || len(out.Votes) > 0 {
			return out, nil
		}
		select {
		case <-d.wake:
		case <-t.C:
			return out, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// edgeDownlinkAck records that the edge holds the commands (delivered,
// and out of its queue) and the desired states of these versions.
func (h *Hub) edgeDownlinkAck(ctx context.Context, edge string, ids []string, twins map[string]int64) error {
	d := h.downlinkOf(edge)
	d.mu.Lock()
	for code, v := range twins {
		if cur, ok := d.twins[code]; ok && (cur <= v) {
			delete(d.twins, code)
		}
	}
	var done []*command.Command
	keep := d.queue[:0]
	for _, c := range d.queue {
		if slices.Contains(ids, c.ID) {
			done = append(done, c)
		} else {
			keep = append(keep, c)
		}
	}
	d.queue = keep
	votes := d.votes[:0]
	for _, v := range d.votes {
		if !slices.Contains(ids, v.ID) {
			votes = append(votes, v)
		}
	}
	d.votes = votes
	d.mu.Unlock()
	for _, c := range done {
		if err := h.commands.Delivered(ctx, c.Code, c.ID); err != nil {
			return err
		}
	}
	return nil
}

// edgeTwinReported applies a device's reported state that came up an
// edge's link.
func (h *Hub) edgeTwinReported(ctx context.Context, code string, data []byte) error {
	if _, err := h.twins.Report(ctx, code, data); err != nil {
		if errors.Is(err, twin.ErrNotFound) || errors.Is(err, twin.ErrInvalid) {
			h.log.Info("a reported state from an edge was not applied", "device", code, "err", err)
			return nil
		}
		return err
	}
	return nil
}

// edgeCommandResult applies a result that came up an edge's link.
func (h *Hub) edgeCommandResult(ctx context.Context, code string, data []byte) error {
	var r struct {
		ID string `json:"id"`
		command.Result
	}
	if err := json.Unmarshal(data, &r); err != nil || r.ID == "" {
		return nil // not a result: stored as the event it is
	}
	_, err := h.commands.Result(ctx, code, r.ID, r.Result)
	if errors.Is(err, command.ErrNotFound) || errors.Is(err, command.ErrFinished) || errors.Is(err, command.ErrInvalid) {
		h.log.Info("a command result from an edge was not applied", "device", code, "command", r.ID, "err", err)
		return nil
	}
	return err
}

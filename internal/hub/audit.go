package hub

// The identity side's own work: the first admin token, forwarding the
// audit log to the bus with its checkpoints, and retiring rotated keys.

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/node"
)

// ensureAdminToken creates the first admin token on a fresh data directory
// and writes it, never logged, to a 0600 file.
func (h *Hub) ensureAdminToken(ctx context.Context) error {
	n, err := h.reg.TokenCount(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, secret, err := h.reg.CreateToken(ctx, "system", "admin", auth.Admin, "")
	if err != nil {
		return fmt.Errorf("hub: first admin token: %w", err)
	}
	path := filepath.Join(h.opts.Config.DataDir, AdminTokenFile)
	if err := node.WriteFileAtomic(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	h.log.Info("created the first admin token", "file", path)
	return nil
}

func (h *Hub) wakeAuditForwarder() {
	h.auditTick.Wake()
	select {
	case h.auditPending <- struct{}{}:
	default:
	}
}

// auditCheckpointEvery bounds how often the hub signs a checkpoint of its
// audit log while entries keep arriving.
const auditCheckpointEvery = 10 * time.Second

// forwardAudit publishes committed audit entries to the bus in log order.
// It starts from what the stream already holds, so entries committed just
// before a crash are published after the restart; message ids make a
// repeated publish harmless.
//
// It also signs checkpoints of the log and stores them in audit_heads: at
// start, at most every auditCheckpointEvery while the log grows, and at
// shutdown. 'wanwu verify log' without a saved head relies on them; only the
// entries after the last checkpoint (those of a crash) are left unsigned.
func (h *Hub) forwardAudit(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	sign := time.NewTimer(time.Hour)
	defer sign.Stop()
	var signed uint64
	var signedAt time.Time
	checkpoint := func(ctx context.Context, now bool) {
		size, err := h.audit.Size(ctx)
		if err != nil || size == signed {
			return
		}
		if wait := auditCheckpointEvery - time.Since(signedAt); wait > 0 && !now {
			sign.Reset(wait)
			return
		}
		head, err := h.audit.Head(ctx)
		if err != nil {
			h.log.Error("signing an audit checkpoint failed", "size", size, "err", err)
			return
		}
		signed, signedAt = head.Size, time.Now()
	}
	for {
		if err := h.publishPendingAudit(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("audit forwarding to the bus failed; retrying", "err", err)
			retry.Reset(time.Second)
		}
		checkpoint(ctx, false)
		select {
		case <-ctx.Done():
			// The database closes after this returns: sign what the hub
			// logged since the last checkpoint.
			final, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			checkpoint(final, true)
			cancel()
			return
		case <-h.auditPending:
		case <-retry.C:
		case <-sign.C:
		}
	}
}

func (h *Hub) publishPendingAudit(ctx context.Context) error {
	published, err := h.bus.AuditPublished(ctx)
	if err != nil {
		return err
	}
	size, err := h.audit.Size(ctx)
	if err != nil {
		return err
	}
	for published < size {
		to := min(size, published+1000)
		entries, err := h.audit.Entries(ctx, published, to)
		if err != nil {
			return err
		}
		leaves, err := h.audit.LeafBytes(ctx, published, to)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if err := h.bus.PublishAudit(ctx, e.Index, e.Kind, leaves[i]); err != nil {
				return err
			}
		}
		published = to
	}
	return nil
}

// retireKeys revokes rotated-out keys when their overlap ends.
func (h *Hub) retireKeys(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if n, err := h.reg.RetireDue(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("retiring rotated keys failed", "err", err)
		} else if n > 0 {
			h.log.Info("revoked rotated-out keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

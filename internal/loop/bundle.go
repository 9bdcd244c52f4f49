package loop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/guard"
)

// BundleFormat names the format of a Bundle.
const BundleFormat = "wanwu.loops/v1"

// MaxBundleSize bounds a bundle an edge takes.
const MaxBundleSize = 8 << 20

// Bundle is what a hub sends an edge (signed, over the edge link): the
// loops that may run there, with the kill switches and the bypasses in
// force. The edge keeps the latest one and runs its loops through link
// outages and restarts.
type Bundle struct {
	Format   string         `json:"format"`
	Edge     string         `json:"edge"`
	Loops    []*Info        `json:"loops"`
	Kills    KillSet        `json:"kills"`
	Bypasses []BundleBypass `json:"bypasses"`
	// Digest identifies the content (the hash of loops, kills and
	// bypasses): the edge asks for a bundle other than the one it has.
	Digest string `json:"digest"`
}

// KillSet is the engaged kill switches, by loop key and by site.
type KillSet struct {
	Loops map[string]string `json:"loops"`
	Sites map[string]string `json:"sites"`
}

// BundleBypass is a bypass in force.
type BundleBypass struct {
	Guard       string   `json:"guard"`
	Loop        string   `json:"loop"`
	Object      string   `json:"object,omitempty"`
	Until       string   `json:"until"` // RFC 3339
	Reason      string   `json:"reason"`
	RequestedBy string   `json:"requested_by"`
	ApprovedBy  []string `json:"approved_by"`
}

// EdgeBundle builds the bundle for an edge of a tenant: the tenant's loops
// that may run at an edge (placement auto or edge), the kill switches and
// the bypasses of the tenant.
func (s *Store) EdgeBundle(ctx context.Context, edge, tenant string) (*Bundle, error) {
	infos, err := s.List(ctx, tenant)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Format: BundleFormat, Edge: edge, Loops: []*Info{}, Kills: KillSet{Loops: map[string]string{}, Sites: map[string]string{}}, Bypasses: []BundleBypass{}}
	for _, info := range infos {
		if info.Def.Placement != Hub {
			b.Loops = append(b.Loops, info)
		}
	}
	kills, err := s.Kills(ctx)
	if err != nil {
		return nil, err
	}
	for k, v := range kills.Loops {
		if t, _, _ := strings.Cut(k, ":"); t == tenant {
			b.Kills.Loops[k] = v
		}
	}
	for k, v := range kills.Sites {
		if t, _, _ := strings.Cut(k, ":"); t == tenant {
			b.Kills.Sites[k] = v
		}
	}
	bps, err := s.activeBypasses(ctx)
	if err != nil {
		return nil, err
	}
	for _, bp := range bps {
		if t, _, _ := strings.Cut(bp.Loop, ":"); t != tenant {
			continue
		}
		b.Bypasses = append(b.Bypasses, BundleBypass{Guard: bp.Guard, Loop: bp.Loop, Object: bp.Object, Until: bp.Until.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
			Reason: bp.Reason, RequestedBy: bp.RequestedBy, ApprovedBy: bp.ApprovedBy})
	}
	b.Digest = digestJSON([]any{b.Loops, b.Kills, b.Bypasses})
	return b, nil
}

// DecodeBundle parses a bundle for an edge and checks it: the format, the
// edge it is for, and every loop's key and definition (the edge compiles
// them against its own models when it runs them).
func DecodeBundle(data []byte, edge string) (*Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("loop bundle: %d bytes, more than %d: %w", len(data), MaxBundleSize, ErrInvalid)
	}
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("loop bundle: %v: %w", err, ErrInvalid)
	}
	switch {
	case b.Format != BundleFormat:
		return nil, fmt.Errorf("loop bundle: format %q, want %q: %w", b.Format, BundleFormat, ErrInvalid)
	case b.Edge != edge:
		return nil, fmt.Errorf("loop bundle: for edge %q, not this edge %q: %w", b.Edge, edge, ErrInvalid)
	}
	seen := map[string]bool{}
	for i, info := range b.Loops {
		if info == nil || info.Def == nil {
			return nil, fmt.Errorf("loop bundle: loops[%d] has no definition: %w", i, ErrInvalid)
		}
		if info.Key != Key(info.Tenant, info.Def.ID) || info.Def.Tenant != info.Tenant || seen[info.Key] {
			return nil, fmt.Errorf("loop bundle: loops[%d]: key %q does not match its definition, or repeats: %w", i, info.Key, ErrInvalid)
		}
		seen[info.Key] = true
		switch info.Mode {
		case Active, Shadow, Disabled:
		default:
			return nil, fmt.Errorf("loop bundle: loops[%d]: mode %q: %w", i, info.Mode, ErrInvalid)
		}
	}
	if b.Kills.Loops == nil {
		b.Kills.Loops = map[string]string{}
	}
	if b.Kills.Sites == nil {
		b.Kills.Sites = map[string]string{}
	}
	return &b, nil
}

// SetRemote gives the engine the loops, kill switches and bypasses that
// come from the hub (at an edge), beside those of its own store; the
// engine reloads.
func (e *Engine) SetRemote(b *Bundle) {
	e.remote.Store(b)
	e.Reload()
}

// remoteState returns the remote loops, kills and bypasses, if any.
func (e *Engine) remoteState() ([]*Info, guard.Kill, []guard.Bypass) {
	b := e.remote.Load()
	kill := guard.Kill{Loops: map[string]string{}, Sites: map[string]string{}}
	if b == nil {
		return nil, kill, nil
	}
	maps.Copy(kill.Loops, b.Kills.Loops)
	maps.Copy(kill.Sites, b.Kills.Sites)
	var bps []guard.Bypass
	for _, bp := range b.Bypasses {
		until, err := parseTime(bp.Until)
		if err != nil {
			continue
		}
		bps = append(bps, guard.Bypass{Guard: bp.Guard, Loop: bp.Loop, Object: bp.Object, Until: until, Reason: bp.Reason, RequestedBy: bp.RequestedBy, ApprovedBy: slices.Clone(bp.ApprovedBy)})
	}
	return b.Loops, kill, bps
}

// mergeKills adds b's switches to a's.
func mergeKills(a, b guard.Kill) guard.Kill {
	out := guard.Kill{Loops: maps.Clone(a.Loops), Sites: maps.Clone(a.Sites), All: a.All}
	if out.Loops == nil {
		out.Loops = map[string]string{}
	}
	if out.Sites == nil {
		out.Sites = map[string]string{}
	}
	maps.Copy(out.Loops, b.Loops)
	maps.Copy(out.Sites, b.Sites)
	if out.All == "" {
		out.All = b.All
	}
	return out
}

func parseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

// List returns the loops of a tenant ("" = all) this node runs: its own
// store's and, at an edge, the hub's (a loop in both is the store's).
func (e *Engine) List(ctx context.Context, tenant string) ([]*Info, error) {
	infos, err := e.opts.Store.List(ctx, tenant)
	if err != nil {
		return nil, err
	}
	remote, kill, _ := e.remoteState()
	have := map[string]bool{}
	for _, info := range infos {
		have[info.Key] = true
	}
	for _, info := range remote {
		if !have[info.Key] && (tenant == "" || info.Tenant == tenant) {
			c := *info
			c.Killed = kill.Loops[c.Key]
			infos = append(infos, &c)
		}
	}
	slices.SortFunc(infos, func(a, b *Info) int { return strings.Compare(a.Key, b.Key) })
	return infos, nil
}

// Get returns a loop this node runs, at a version (0: the current one);
// a loop from the hub only at the version the edge has.
func (e *Engine) Get(ctx context.Context, key string, version int) (*Info, error) {
	info, err := e.opts.Store.Get(ctx, key, version)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return info, err
	}
	remote, kill, _ := e.remoteState()
	for _, r := range remote {
		if r.Key == key && (version == 0 || version == r.Version) {
			c := *r
			c.Killed = kill.Loops[key]
			return &c, nil
		}
	}
	return nil, err
}

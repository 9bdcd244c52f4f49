package hub

// Network profiles applied per device: the byte accounting against each
// profile's daily budget, and downlink held while a PSM device sleeps.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/wanwu-iot/wanwu/internal/netuse"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

// networkOf is a device's network profile name for netuse ("" for none).
func (h *Hub) networkOf(ctx context.Context, code string) (string, error) {
	n, _, err := h.reg.Network(ctx, code)
	return n, err
}

// openReach makes the reachability the command service asks before a
// delivery attempt; presence (open before it) tells it of uplinks.
func (h *Hub) openReach() {
	h.reach = netuse.NewReachability(netuse.ReachOptions{
		Network: h.networkOf, Profile: h.opts.Config.Networks.Profile, Uplinks: h.presence.Uplinks, Now: h.opts.Now,
	})
}

// reachOf is command.Options.Reach.
func (h *Hub) reachOf(ctx context.Context, code string) (bool, time.Time, error) {
	r, err := h.reach.Reach(ctx, code)
	return r.Asleep, r.Next, err
}

// sessionKeep is how long a sleeping device's idle DTLS session is kept
// (coap.sleeping_session_idle caps it); 0 before the reachability opens.
func (h *Hub) sessionKeep(code string) time.Duration {
	if h.reach == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.reach.SessionKeep(ctx, code)
}

// deviceWoke is presence's OnWake: what waited for the device goes out.
func (h *Hub) deviceWoke(code string) {
	if h.commands != nil {
		h.commands.Wake(code)
	}
}

// openUsage opens the byte accounting (table device_bytes in wanwu.db; the
// budget crossings go to the event store) and starts its flusher.
func (h *Hub) openUsage(ctx context.Context) error {
	cfg := h.opts.Config.Networks
	var err error
	if h.usage, err = netuse.Open(ctx, netuse.Options{
		DB: h.db, Events: h.tel.Events, Network: h.networkOf, Profile: cfg.Profile,
		Now: h.opts.Now, Logger: h.log, Metrics: h.metrics, FlushEvery: time.Duration(cfg.FlushEvery),
	}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	h.usage.Start()
	return nil
}

// networkChanged follows an object.updated entry that changed the
// object's network profile, and an object whose identity ended.
func (h *Hub) networkChanged(kind, code string, data []byte) {
	if kind == registry.KindObjectUpdated {
		var d struct {
			Changes map[string]struct {
				New string `json:"new"`
			} `json:"changes"`
		}
		if json.Unmarshal(data, &d) != nil {
			return
		}
		c, ok := d.Changes["network"]
		if !ok {
			return
		}
		h.usage.NetworkChanged(code, c.New)
	}
	if h.reach != nil {
		h.reach.NetworkChanged(code)
	}
}

// Usage exposes the byte accounting (tests flush it).
func (h *Hub) Usage() *netuse.Accountant { return h.usage }

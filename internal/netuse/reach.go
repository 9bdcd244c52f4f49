package netuse

import (
	"context"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// Reachability says whether a device can be reached now, from its network
// profile and its uplinks. A device whose profile has PSM is reachable for
// ActiveTimer (T3324) after each uplink (any message it sends, over any
// protocol), then asleep until its next one: expected after the interval
// between its last two wakes when that is known, else after
// PeriodicUpdate (T3412), the longest the network lets it sleep. A device
// with eDRX and no PSM listens once every EDRXCycle: it counts as
// reachable, a downlink to it taking up to a cycle to arrive. A device
// without a profile, or on a link that does not sleep, is always
// reachable.
type Reachability struct {
	o     ReachOptions
	cache sync.Map // code → string: the device's network profile
}

// ReachOptions configure a Reachability.
type ReachOptions struct {
	// Network returns a device's network profile name ("" for none).
	Network func(ctx context.Context, code string) (string, error)
	// Profile returns a profile with the deployment's overrides;
	// default netprofile.Lookup.
	Profile func(name string) (netprofile.Profile, bool)
	// Uplinks returns when the device's latest uplink came and when the
	// one before its latest wake came (zero: not known); presence's.
	Uplinks func(ctx context.Context, code string) (last, prev time.Time, err error)
	Now     func() time.Time
}

// NewReachability returns a Reachability.
func NewReachability(o ReachOptions) *Reachability {
	if o.Profile == nil {
		o.Profile = netprofile.Lookup
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Reachability{o: o}
}

// Reach is whether a device can be reached now.
type Reach struct {
	Asleep bool
	// Next is when an asleep device is expected to be reachable again
	// (its next uplink); zero when it is awake or no uplink is known.
	Next time.Time
}

// Reach tells whether a device can be reached now and, if not, when it is
// expected to be. An error (the registry or presence failed) comes with
// a zero Reach: the caller treats the device as reachable.
func (r *Reachability) Reach(ctx context.Context, code string) (Reach, error) {
	network, err := r.network(ctx, code)
	if err != nil {
		return Reach{}, err
	}
	p, ok := r.o.Profile(network)
	if !ok || !p.Sleep.PSM {
		return Reach{}, nil
	}
	last, prev, err := r.o.Uplinks(ctx, code)
	if err != nil {
		return Reach{}, err
	}
	return psmReach(p.Sleep, last, prev, r.o.Now()), nil
}

// psmReach is Reach for a PSM device whose latest uplink came at last and
// the one before its latest wake at prev.
func psmReach(s netprofile.Sleep, last, prev, now time.Time) Reach {
	if last.IsZero() {
		return Reach{Asleep: true} // never heard from: wait for it
	}
	if now.Sub(last) < s.ActiveTimer {
		return Reach{}
	}
	next := time.Time{}
	if !prev.IsZero() && last.After(prev) {
		next = last.Add(last.Sub(prev))
	}
	if (next.IsZero() || !next.After(now)) && s.PeriodicUpdate > 0 {
		// No interval known, or the device is later than it: at the
		// latest it wakes for its periodic update.
		next = last.Add(s.PeriodicUpdate)
	}
	if !next.IsZero() && !next.After(now) {
		next = now // overdue: any moment now
	}
	return Reach{Asleep: true, Next: next}
}

// SessionKeep is how long a device's idle session is worth keeping: a PSM
// device sleeps until its next report, at the latest its periodic update
// timer (T3412) after its last one, and is awake for its active timer
// then; 0 for a device that does not sleep (or whose profile is unknown).
func (r *Reachability) SessionKeep(ctx context.Context, code string) time.Duration {
	network, err := r.network(ctx, code)
	if err != nil {
		return 0
	}
	p, ok := r.o.Profile(network)
	if !ok || !p.Sleep.PSM {
		return 0
	}
	return p.Sleep.PeriodicUpdate + p.Sleep.ActiveTimer
}

func (r *Reachability) network(ctx context.Context, code string) (string, error) {
	if v, ok := r.cache.Load(code); ok {
		return v.(string), nil
	}
	n, err := r.o.Network(ctx, code)
	if err != nil {
		return "", err
	}
	r.cache.Store(code, n)
	return n, nil
}

// NetworkChanged forgets what the Reachability knew of a device's profile
// (an object update changed it, or the object ended).
func (r *Reachability) NetworkChanged(code string) { r.cache.Delete(code) }

// WakeGap is the shortest ActiveTimer of the PSM profiles profile returns
// (0 when none has PSM): an uplink that comes longer than this after the
// one before it follows a sleep, so presence counts the gap as a new wake.
func WakeGap(profile func(string) (netprofile.Profile, bool)) time.Duration {
	var gap time.Duration
	for _, name := range netprofile.Names() {
		p, ok := profile(name)
		if ok && p.Sleep.PSM && p.Sleep.ActiveTimer > 0 && (gap == 0 || p.Sleep.ActiveTimer < gap) {
			gap = p.Sleep.ActiveTimer
		}
	}
	return gap
}

package guard

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// History is the record of the actions sent, which max_rate, rate_limit and
// cooldown are checked against: per object and actuator, the times of the
// most recent actions and the last value sent of each value name with its
// time; per object, the times of its most recent actions on any actuator.
// Each list of times keeps at most maxPer entries (the newest), so maxPer
// must be at least the largest RateLimit.Count used with it; when it is not,
// a rate limit that cannot be counted refuses (fail-safe). It is safe for
// concurrent use.
type History struct {
	mu      sync.Mutex
	maxPer  int
	objects map[string]*objectHistory
}

type objectHistory struct {
	timeline
	actuators map[string]*actuatorHistory
}

type actuatorHistory struct {
	timeline
	last map[string]sent
}

type sent struct {
	v  float64
	at time.Time
}

// timeline is the newest action times in ascending order; dropped says
// older ones were forgotten (all of them no newer than at[0]).
type timeline struct {
	at      []time.Time
	dropped bool
}

// NewHistory returns an empty History keeping at most maxPer action times
// per object and actuator and per object (at least 1).
func NewHistory(maxPer int) *History {
	return &History{maxPer: max(maxPer, 1), objects: map[string]*objectHistory{}}
}

// Record notes an action sent at at on the object's actuator with its
// numeric values (none for start, stop and the like). The engine calls it
// for every action it sends. Times may come out of order; a value's last
// sent entry is replaced only by one at the same time or later.
func (h *History) Record(object, actuator string, at time.Time, values map[string]float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.objects[object]
	if o == nil {
		o = &objectHistory{actuators: map[string]*actuatorHistory{}}
		h.objects[object] = o
	}
	a := o.actuators[actuator]
	if a == nil {
		a = &actuatorHistory{last: map[string]sent{}}
		o.actuators[actuator] = a
	}
	o.add(at, h.maxPer)
	a.add(at, h.maxPer)
	for name, v := range values {
		if prev, ok := a.last[name]; !ok || !at.Before(prev.at) {
			a.last[name] = sent{v: v, at: at}
		}
	}
}

// Forget drops everything recorded for an object (one that was deleted).
func (h *History) Forget(object string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.objects, object)
}

// add inserts at in order (after equal times), forgetting the oldest when
// the timeline holds max entries.
func (t *timeline) add(at time.Time, max int) {
	i, _ := slices.BinarySearchFunc(t.at, at, func(e, at time.Time) int {
		if e.After(at) {
			return 1
		}
		return -1
	})
	if len(t.at) < max {
		t.at = slices.Insert(t.at, i, at)
		return
	}
	t.dropped = true
	if i == 0 {
		return // older than everything kept
	}
	copy(t.at, t.at[1:i])
	t.at[i-1] = at
}

// snapshot is a copy of what Evaluate needs about one object and actuator.
type snapshot struct {
	object, actuator timeline
	last             map[string]sent
}

func (h *History) snapshot(object, actuator string) snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s snapshot
	o := h.objects[object]
	if o == nil {
		return s
	}
	s.object = timeline{at: slices.Clone(o.at), dropped: o.dropped}
	if a := o.actuators[actuator]; a != nil {
		s.actuator = timeline{at: slices.Clone(a.at), dropped: a.dropped}
		s.last = maps.Clone(a.last)
	}
	return s
}

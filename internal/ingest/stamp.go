package ingest

import (
	"hash/maphash"
	"sync"
	"time"
)

// arrivalStamps hands out arrival times, in milliseconds, that grow strictly
// per device. A record without a time of its own is stamped with its
// message's arrival, and the store keeps one value per series and
// millisecond: two messages of one device arriving in the same millisecond
// would otherwise give the second one's values the first one's time, and the
// store would refuse them after the device had its acknowledgement. Moving a
// stamp a millisecond or two later under a burst keeps every value.
//
// Only the last second matters (a stamp never runs more than a few
// milliseconds ahead of the clock), so each shard keeps two generations of
// per-device stamps and drops the older one every second: memory stays
// proportional to the devices that sent in the last two seconds.
type arrivalStamps struct {
	seed   maphash.Seed
	shards [32]stampShard
}

type stampShard struct {
	mu        sync.Mutex
	second    int64 // the clock second cur was started in
	cur, prev map[string]int64
}

func newArrivalStamps() *arrivalStamps {
	return &arrivalStamps{seed: maphash.MakeSeed()}
}

// next returns the arrival stamp of a message of device received at now:
// now in milliseconds, or one more than the device's previous stamp.
func (a *arrivalStamps) next(device string, now time.Time) int64 {
	ms := now.UnixMilli()
	sh := &a.shards[maphash.String(a.seed, device)%uint64(len(a.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sec := ms / 1000; sec != sh.second {
		if sec == sh.second+1 {
			sh.prev = sh.cur
		} else {
			sh.prev = nil
		}
		sh.cur, sh.second = nil, sec
	}
	last, ok := sh.cur[device]
	if !ok {
		last, ok = sh.prev[device]
	}
	if ok && ms <= last {
		ms = last + 1
	}
	if sh.cur == nil {
		sh.cur = make(map[string]int64)
	}
	sh.cur[device] = ms
	return ms
}

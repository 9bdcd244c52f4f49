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
// per-device stamps and empties the older one every second. The maps are
// keyed by the device code's 64-bit hash, which also picks the shard: two
// devices whose codes collided would only share one strictly increasing
// sequence. Emptied maps keep their room for the next second, so a steady
// population of devices costs no allocation; memory stays proportional to
// the most devices that sent within two seconds.
type arrivalStamps struct {
	seed   maphash.Seed
	shards [32]stampShard
}

type stampShard struct {
	mu        sync.Mutex
	second    int64 // the clock second cur was started in
	cur, prev map[uint64]int64
}

func newArrivalStamps() *arrivalStamps {
	return &arrivalStamps{seed: maphash.MakeSeed()}
}

// next returns the arrival stamp of a message of device received at now:
// now in milliseconds, or one more than the device's previous stamp.
func (a *arrivalStamps) next(device string, now time.Time) int64 {
	ms := now.UnixMilli()
	h := maphash.String(a.seed, device)
	sh := &a.shards[h%uint64(len(a.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sec := ms / 1000; sec != sh.second {
		if sec == sh.second+1 {
			sh.prev, sh.cur = sh.cur, sh.prev
		} else {
			clear(sh.prev)
		}
		clear(sh.cur)
		sh.second = sec
	}
	last, ok := sh.cur[h]
	if !ok {
		last, ok = sh.prev[h]
	}
	if ok && ms <= last {
		ms = last + 1
	}
	if sh.cur == nil {
		sh.cur = make(map[uint64]int64)
	}
	sh.cur[h] = ms
	return ms
}

package ingest

import "sync"

// maxPooledRecords bounds the record slices kept for reuse: a pack of
// thousands of records should not pin its memory for the next small one.
const maxPooledRecords = 64

// recordSlices recycles the record slices of messages whose owner has
// released them (ReleaseRecords): a message's records were one of the
// largest allocations per ingested message.
var recordSlices sync.Pool // of *[]Record

// spareHeaders holds the emptied *[]Record that carried slices out of
// recordSlices, for ReleaseRecords to carry the next ones back in: a pool
// holds pointers, and a new one for each release was an allocation per
// message.
var spareHeaders sync.Pool // of *[]Record, nil slices

// newRecords returns an empty slice with room for n records, reused when
// one was released.
func newRecords(n int) []Record {
	if p, ok := recordSlices.Get().(*[]Record); ok {
		recs := *p
		*p = nil
		spareHeaders.Put(p)
		if cap(recs) >= n {
			return recs[:0]
		}
	}
	return make([]Record, 0, max(n, 4))
}

// ReleaseRecords hands a message's records back for reuse. Only the
// message's last owner may call it, when nothing reads the records any
// more: the pipeline does, once the stores have the batch its submitters
// handed the messages over in.
func ReleaseRecords(recs []Record) {
	if cap(recs) == 0 || cap(recs) > maxPooledRecords {
		return
	}
	recs = recs[:cap(recs)]
	clear(recs)
	p, ok := spareHeaders.Get().(*[]Record)
	if !ok {
		p = new([]Record)
	}
	*p = recs
	recordSlices.Put(p)
}

// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: 2023 mochi-mqtt, mochi-co
// SPDX-FileContributor: mochi-co

package mqtt

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Inflight is a map of InflightMessage keyed on packet id.
type Inflight struct {
	sync.RWMutex
	internal            map[uint16]*packets.Packet // internal contains the inflight packets (wanwu patch: pointers from inflightPackets)
	receiveQuota        int32                      // remaining inbound qos quota for flow control
	sendQuota           int32                      // remaining outbound qos quota for flow control
	maximumReceiveQuota int32                      // maximum allowed receive quota
	maximumSendQuota    int32                      // maximum allowed send quota
	immediate           int                        // wanwu patch: how many packets have Expiry < 0
}

// inflightPackets recycles the in-flight store's packets (wanwu patch): the
// store hands out copies only, so a deleted packet is free. A map keeps
// values of 800 bytes out of line anyway, one allocation per Set.
var inflightPackets = sync.Pool{New: func() any { return new(packets.Packet) }}

// NewInflights returns a new instance of an Inflight packets map.
func NewInflights() *Inflight {
	return &Inflight{
		internal: map[uint16]*packets.Packet{},
	}
}

// Set adds or updates an inflight packet by packet id.
func (i *Inflight) Set(m packets.Packet) bool {
	i.Lock()
	defer i.Unlock()

	old, ok := i.internal[m.PacketID]
	if ok && old.Expiry < 0 { // wanwu patch: keep the immediate count
		i.immediate--
	}
	if !ok {
		old = inflightPackets.Get().(*packets.Packet)
		i.internal[m.PacketID] = old
	}
	*old = m
	if m.Expiry < 0 {
		i.immediate++
	}
	return !ok
}

// Get returns an inflight packet by packet id.
func (i *Inflight) Get(id uint16) (packets.Packet, bool) {
	i.RLock()
	defer i.RUnlock()

	if m, ok := i.internal[id]; ok {
		return *m, true
	}

	return packets.Packet{}, false
}

// Has reports whether a packet with the id is in flight (wanwu patch: Get
// copied the 800-byte packet to answer that, for every message a client
// acknowledged and every packet id the broker chose).
func (i *Inflight) Has(id uint16) bool {
	i.RLock()
	defer i.RUnlock()
	_, ok := i.internal[id]
	return ok
}

// Len returns the size of the inflight messages map.
func (i *Inflight) Len() int {
	i.RLock()
	defer i.RUnlock()
	return len(i.internal)
}

// Clone returns a new instance of Inflight with the same message data.
// This is used when transferring inflights from a taken-over session.
func (i *Inflight) Clone() *Inflight {
	c := NewInflights()
	i.RLock()
	defer i.RUnlock()
	for k, v := range i.internal {
		p := inflightPackets.Get().(*packets.Packet)
		*p = *v
		c.internal[k] = p
	}
	c.immediate = i.immediate // wanwu patch
	return c
}

// GetAll returns all the inflight messages.
func (i *Inflight) GetAll(immediate bool) []packets.Packet {
	i.RLock()
	defer i.RUnlock()

	m := []packets.Packet{}
	for _, v := range i.internal {
		if !immediate || (immediate && v.Expiry < 0) {
			m = append(m, *v)
		}
	}

	sort.Slice(m, func(i, j int) bool {
		return uint16(m[i].Created) < uint16(m[j].Created)
	})

	return m
}

// expired returns the in-flight packets whose MQTT 5 message expiry has
// passed [MQTT-3.3.2-5] or that are older than maximumExpiry (when > 0).
// The broker calls it for every client every second; scanning in place
// instead of copying and sorting the whole store (GetAll) keeps that cheap
// for a subscriber with thousands of messages in flight (wanwu patch,
// PATCHES.md).
func (i *Inflight) expired(now, maximumExpiry int64) []packets.Packet {
	i.RLock()
	defer i.RUnlock()
	var out []packets.Packet
	for _, tk := range i.internal {
		expired := tk.ProtocolVersion == 5 && tk.Expiry > 0 && tk.Expiry < now
		enforced := maximumExpiry > 0 && now-tk.Created > maximumExpiry
		if expired || enforced {
			out = append(out, *tk)
		}
	}
	return out
}

// NextImmediate returns the next inflight packet which is indicated to be sent immediately.
// This typically occurs when the quota has been exhausted, and we need to wait until new quota
// is free to continue sending.
func (i *Inflight) NextImmediate() (packets.Packet, bool) {
	i.RLock()
	defer i.RUnlock()

	// wanwu patch: without packets waiting for send quota there is nothing to
	// find; scanning and sorting the whole map after every packet took a
	// quarter of the broker's CPU with a busy QoS 1 subscriber.
	if i.immediate == 0 {
		return packets.Packet{}, false
	}
	// wanwu patch: was GetAll(true)[0], a recursive RLock that also copied
	// and sorted every in-flight packet; one pass finds the same oldest one.
	var next packets.Packet
	found := false
	for _, v := range i.internal {
		if v.Expiry < 0 && (!found || uint16(v.Created) < uint16(next.Created)) {
			next, found = *v, true
		}
	}
	return next, found
}

// Delete removes an in-flight message from the map. Returns true if the message existed.
func (i *Inflight) Delete(id uint16) bool {
	i.Lock()
	defer i.Unlock()

	old, ok := i.internal[id]
	if !ok {
		return false
	}
	delete(i.internal, id)
	if old.Expiry < 0 { // wanwu patch: keep the immediate count
		i.immediate--
	}
	*old = packets.Packet{}
	inflightPackets.Put(old)

	return ok
}

// TakeRecieveQuota reduces the receive quota by 1.
func (i *Inflight) DecreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) > 0 {
		atomic.AddInt32(&i.receiveQuota, -1)
	}
}

// TakeRecieveQuota increases the receive quota by 1.
func (i *Inflight) IncreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) < atomic.LoadInt32(&i.maximumReceiveQuota) {
		atomic.AddInt32(&i.receiveQuota, 1)
	}
}

// ResetReceiveQuota resets the receive quota to the maximum allowed value.
func (i *Inflight) ResetReceiveQuota(n int32) {
	atomic.StoreInt32(&i.receiveQuota, n)
	atomic.StoreInt32(&i.maximumReceiveQuota, n)
}

// DecreaseSendQuota reduces the send quota by 1.
func (i *Inflight) DecreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) > 0 {
		atomic.AddInt32(&i.sendQuota, -1)
	}
}

// IncreaseSendQuota increases the send quota by 1.
func (i *Inflight) IncreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) < atomic.LoadInt32(&i.maximumSendQuota) {
		atomic.AddInt32(&i.sendQuota, 1)
	}
}

// ResetSendQuota resets the send quota to the maximum allowed value.
func (i *Inflight) ResetSendQuota(n int32) {
	atomic.StoreInt32(&i.sendQuota, n)
	atomic.StoreInt32(&i.maximumSendQuota, n)
}

// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: 2023 mochi-mqtt, mochi-co
// SPDX-FileContributor: mochi-co

package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/xid"

	"github.com/mochi-mqtt/server/v2/packets"
)

const (
	defaultKeepalive             uint16 = 10 // the default connection keepalive value in seconds.
	defaultClientProtocolVersion byte   = 4  // the default mqtt protocol version of connecting clients (if somehow unspecified).
	minimumKeepalive             uint16 = 5  // the minimum recommended keepalive - values under with display a warning.
)

var (
	ErrMinimumKeepalive = errors.New("client keepalive is below minimum recommended value and may exhibit connection instability")
)

// ReadFn is the function signature for the function used for reading and processing new packets.
type ReadFn func(*Client, packets.Packet) error

// Clients contains a map of the clients known by the broker.
type Clients struct {
	internal map[string]*Client // clients known by the broker, keyed on client id.
	sync.RWMutex
}

// NewClients returns an instance of Clients.
func NewClients() *Clients {
	return &Clients{
		internal: make(map[string]*Client),
	}
}

// Add adds a new client to the clients map, keyed on client id.
func (cl *Clients) Add(val *Client) {
	cl.Lock()
	defer cl.Unlock()
	cl.internal[val.ID] = val
}

// GetAll returns all the clients.
func (cl *Clients) GetAll() map[string]*Client {
	cl.RLock()
	defer cl.RUnlock()
	m := map[string]*Client{}
	for k, v := range cl.internal {
		m[k] = v
	}
	return m
}

// Get returns the value of a client if it exists.
func (cl *Clients) Get(id string) (*Client, bool) {
	cl.RLock()
	defer cl.RUnlock()
	val, ok := cl.internal[id]
	return val, ok
}

// Len returns the length of the clients map.
func (cl *Clients) Len() int {
	cl.RLock()
	defer cl.RUnlock()
	val := len(cl.internal)
	return val
}

// Delete removes a client from the internal map.
func (cl *Clients) Delete(id string) {
	cl.Lock()
	defer cl.Unlock()
	delete(cl.internal, id)
}

// GetByListener returns clients matching a listener id.
func (cl *Clients) GetByListener(id string) []*Client {
	cl.RLock()
	defer cl.RUnlock()
	clients := make([]*Client, 0, len(cl.internal)) // wanwu patch: was cl.Len(), a recursive RLock
	for _, client := range cl.internal {
		if client.Net.Listener == id && !client.Closed() {
			clients = append(clients, client)
		}
	}
	return clients
}

// Client contains information about a client known by the broker.
type Client struct {
	Properties   ClientProperties // client properties
	State        ClientState      // the operational state of the client.
	Net          ClientConnection // network connection state of the client
	ID           string           // the client id.
	ops          *ops             // ops provides a reference to server ops.
	sync.RWMutex                  // mutex
}

// ClientConnection contains the connection transport and metadata for the client.
type ClientConnection struct {
	Conn      net.Conn      // the net.Conn used to establish the connection
	bconn     *bufio.Reader // a buffered net.Conn for reading packets
	outbuf    *bytes.Buffer // a buffer for writing packets
	Remote    string        // the remote address of the client
	Listener  string        // listener id of the client
	Inline    bool          // if true, the client is the built-in 'inline' embedded client
	awaited   time.Time     // when awaitInput last ran (wanwu patch)
	refreshed time.Time     // when refreshDeadline last moved the deadline (wanwu patch)
	quick     int           // packets in a row that came within busyGap (wanwu patch)
}

// ClientProperties contains the properties which define the client behaviour.
type ClientProperties struct {
	Props           packets.Properties
	Will            Will
	Username        []byte
	ProtocolVersion byte
	Clean           bool
}

// Will contains the last will and testament details for a client connection.
type Will struct {
	Payload           []byte                 // -
	User              []packets.UserProperty // -
	TopicName         string                 // -
	Flag              uint32                 // 0,1
	WillDelayInterval uint32                 // -
	Qos               byte                   // -
	Retain            bool                   // -
}

// ClientState tracks the state of the client.
type ClientState struct {
	TopicAliases    TopicAliases       // a map of topic aliases
	stopCause       atomic.Value       // reason for stopping
	causeMu         sync.Mutex         // wanwu patch: the first cause stored wins (setStopCause)
	Inflight        *Inflight          // a map of in-flight qos messages
	Subscriptions   *Subscriptions     // a map of the subscription filters a client maintains
	disconnected    int64              // the time the client disconnected in unix time, for calculating expiry
	outbound        *outboundQueue     // queue for pending outbound packets (wanwu patch: was a channel)
	endOnce         sync.Once          // only end once
	isTakenOver     atomic.Bool        // used to identify orphaned clients
	packetID        uint32             // the current highest packetID
	open            context.Context    // indicate that the client is open for packet exchange
	cancelOpen      context.CancelFunc // cancel function for open context
	outboundQty     int32              // number of messages currently in the outbound queue
	Keepalive       uint16             // the number of seconds the connection can wait
	ServerKeepalive bool               // keepalive was set by the server
	publishOrder    publishOrder       // wanwu patch: asynchronous publishes, finished in arrival order
	received        receivedQoS2       // wanwu patch: the client's QoS 2 PUBLISHes awaiting its PUBREL
	queued          queuedQoS          // wanwu patch: QoS 1/2 messages waiting for room in Inflight
}

// queuedQoS holds QoS 1/2 messages for the client that wait for room in its
// in-flight store (wanwu patch): a subscriber more than MaximumInflight
// messages behind (65,535 at most: packet ids are 16 bits) had every further
// message dropped. They get their packet ids only when they go into flight.
type queuedQoS struct {
	mu   sync.Mutex
	fifo packetFIFO
	n    atomic.Int32 // fifo.len(), read without the lock
}

// waiting reports whether messages are queued.
func (q *queuedQoS) waiting() bool { return q.n.Load() > 0 }

// push queues a copy of pk unless max are waiting already.
func (q *queuedQoS) push(pk packets.Packet, max int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fifo.len() >= max {
		return false
	}
	p := queuedPackets.Get().(*packets.Packet)
	*p = pk
	q.fifo.push(p)
	q.n.Add(1)
	return true
}

// drain hands the oldest messages to send, in order, until it returns
// false (that message stays first) or none is left. The lock is held
// throughout, so a message queued meanwhile lands behind these.
func (q *queuedQoS) drain(send func(packets.Packet) bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.fifo.len() > 0 {
		if !send(**q.fifo.front()) {
			return
		}
		p := q.fifo.pop()
		q.n.Add(-1)
		*p = packets.Packet{}
		queuedPackets.Put(p)
	}
}

// takeFrom moves another session's queue here (a session taken over keeps
// its undelivered messages).
func (q *queuedQoS) takeFrom(o *queuedQoS) {
	o.mu.Lock()
	items := o.fifo.takeAll()
	o.n.Store(0)
	o.mu.Unlock()
	q.mu.Lock()
	for _, p := range items {
		q.fifo.push(p)
	}
	q.n.Add(int32(len(items)))
	q.mu.Unlock()
}

// receivedQoS2 holds the packet ids of the client's QoS 2 PUBLISHes that the
// server answered with PUBREC and whose PUBREL has not come yet (wanwu
// patch). The client's packet ids and the server's are two separate spaces
// [MQTT-2.2.1-4]: mochi kept both in Inflight, so a client's PUBLISH with
// the id of a message the server had in flight to it deleted that message,
// and the server's PUBACK of it was taken for the client's acknowledgement
// of the message (a command counted as delivered that the device never
// confirmed); a SUBSCRIBE with such an id was refused as "in use".
type receivedQoS2 struct {
	mu  sync.Mutex
	ids map[uint16]struct{}
}

func (r *receivedQoS2) has(id uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.ids[id]
	return ok
}

func (r *receivedQoS2) add(id uint16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = make(map[uint16]struct{})
	}
	r.ids[id] = struct{}{}
}

// remove reports whether id was held.
func (r *receivedQoS2) remove(id uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.ids[id]
	delete(r.ids, id)
	return ok
}

// copyFrom takes over another session's ids (a session taken over keeps its
// QoS 2 exchanges [MQTT-4.3.3-10]).
func (r *receivedQoS2) copyFrom(o *receivedQoS2) {
	o.mu.Lock()
	ids := make(map[uint16]struct{}, len(o.ids))
	for id := range o.ids {
		ids[id] = struct{}{}
	}
	o.mu.Unlock()
	r.mu.Lock()
	r.ids = ids
	r.mu.Unlock()
}

// publishOrder releases the continuations of asynchronously handled
// publishes in the order the PUBLISHes arrived, whatever order they complete
// in (wanwu patch).
type publishOrder struct {
	mu      sync.Mutex
	next    uint64 // the next slot to hand out
	head    uint64 // the oldest slot not yet released
	pending map[uint64]func()
}

// reserve takes the next slot; it is called on the client's read loop.
func (o *publishOrder) reserve() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.next
	o.next++
	return s
}

// complete records slot's continuation and runs every continuation that is
// now at the head, in order. Continuations run under the lock, so the next
// completion waits: that is what keeps acknowledgements in order.
func (o *publishOrder) complete(slot uint64, fn func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if slot == o.head && len(o.pending) == 0 {
		// In order, as the pipeline completes them: no map.
		o.head++
		fn()
		return
	}
	if o.pending == nil {
		o.pending = map[uint64]func(){}
	}
	o.pending[slot] = fn
	for {
		f, ok := o.pending[o.head]
		if !ok {
			return
		}
		delete(o.pending, o.head)
		o.head++
		f()
	}
}

// newClient returns a new instance of Client. This is almost exclusively used by Server
// for creating new clients, but it lives here because it's not dependent.
func newClient(c net.Conn, o *ops) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	cl := &Client{
		State: ClientState{
			Inflight:      NewInflights(),
			Subscriptions: NewSubscriptions(),
			TopicAliases:  NewTopicAliases(o.options.Capabilities.TopicAliasMaximum),
			open:          ctx,
			cancelOpen:    cancel,
			Keepalive:     defaultKeepalive,
			outbound:      newOutboundQueue(int(o.options.Capabilities.MaximumClientWritesPending)),
		},
		Properties: ClientProperties{
			ProtocolVersion: defaultClientProtocolVersion, // default protocol version
		},
		ops: o,
	}

	cl.State.outbound.write = cl.WriteLoop // wanwu patch: the queue starts its writer on demand

	if c != nil {
		cl.Net = ClientConnection{
			Conn:   c,
			bconn:  bufio.NewReaderSize(c, o.options.ClientNetReadBufferSize),
			Remote: c.RemoteAddr().String(),
		}
	}

	return cl
}

// writeBuffers recycles the buffers packets are encoded into and those that
// gather a client's queued packets into one write (wanwu patch).
var writeBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putWriteBuffer returns a buffer to writeBuffers, unless a large packet
// grew it beyond what is worth keeping.
func putWriteBuffer(b *bytes.Buffer) {
	if b.Cap() > 64<<10 {
		return
	}
	b.Reset()
	writeBuffers.Put(b)
}

// WriteLoop writes the client's pending outbound packets until none is left.
// wanwu patch: the outbound queue starts it on demand and it returns when the
// queue is empty, instead of one goroutine per connection waiting for the
// connection's whole life: an idle device holds no writer goroutine and no
// stack for it.
func (cl *Client) WriteLoop() {
	for {
		it, ok := cl.State.outbound.pop()
		if !ok {
			// Packets buffered while more waited are flushed by the last
			// one written; if that one was refused (too large for the
			// client) they would wait for the next write.
			cl.Lock()
			if cl.Net.outbuf != nil && cl.Net.Conn != nil {
				_ = cl.flushOutbuf()
			}
			cl.Unlock()
			return
		}
		if it.pk == nil {
			if err := cl.writeAck(it.ack); err != nil {
				cl.ops.log.Debug("failed writing an acknowledgement", "error", err, "client", cl.ID)
			}
			atomic.AddInt32(&cl.State.outboundQty, -1)
			continue
		}
		pk := it.pk
		if err := cl.writePacket(pk); err != nil {
			// TODO : Figure out what to do with error
			cl.ops.log.Debug("failed writing packet", "error", err, "client", cl.ID, "type", packets.PacketNames[pk.FixedHeader.Type]) // wanwu patch: never the payload
		}
		atomic.AddInt32(&cl.State.outboundQty, -1)
		*pk = packets.Packet{} // wanwu patch: queuedPackets
		queuedPackets.Put(pk)
	}
}

// outboundQueue holds a client's packets waiting to be written (wanwu
// patch). It was a channel with MaximumClientWritesPending slots, allocated
// in full for every client, read by a goroutine per client: with the 8,192
// slots an integration catching up with a burst needs, that was 64 KiB per
// connection plus a goroutine's stack, idle devices included. The queue grows
// with use up to the same bound, lets go of its memory when it empties, and
// runs one writer goroutine only while it holds packets, so packets are
// written one at a time and in order.
type outboundQueue struct {
	mu      sync.Mutex
	fifo    fifo[outItem]
	limit   int
	writing bool   // a writer goroutine is running
	write   func() // the writer: drains the queue, then returns
}

// fifo is a queue, oldest first, that lets go of a large backing array
// once it empties (wanwu patch). Its owner locks it.
type fifo[T any] struct {
	items []T
	head  int
}

// packetFIFO queues packets: the slow-subscriber queue.
type packetFIFO = fifo[*packets.Packet]

// keptFIFO is the capacity a fifo keeps once it empties.
const keptFIFO = 256

func (f *fifo[T]) len() int { return len(f.items) - f.head }

func (f *fifo[T]) push(v T) { f.items = append(f.items, v) }

// front is the oldest item; the queue must not be empty.
func (f *fifo[T]) front() *T { return &f.items[f.head] }

// pop removes and returns the oldest item; the queue must not be empty.
func (f *fifo[T]) pop() T {
	v := f.items[f.head]
	var zero T
	f.items[f.head] = zero
	f.head++
	if f.head == len(f.items) {
		f.head = 0
		if cap(f.items) > keptFIFO {
			f.items = nil
		} else {
			f.items = f.items[:0]
		}
	}
	return v
}

// takeAll empties the queue and returns its items, oldest first.
func (f *fifo[T]) takeAll() []T {
	items := f.items[f.head:]
	f.items, f.head = nil, 0
	return items
}

// outItem is one queued write: a packet, or, when pk is nil, an
// acknowledgement that needs nothing but its four bytes (wanwu patch: a
// PUBACK was an 800-byte packet copied in, handed across goroutines,
// encoded and zeroed again; a durable batch completes hundreds of them).
type outItem struct {
	pk  *packets.Packet
	ack [4]byte
}

func newOutboundQueue(limit int) *outboundQueue {
	return &outboundQueue{limit: limit}
}

// push adds a packet and starts the writer if none runs; false when the
// queue is full.
//
// The limit applies to everything but QoS 1/2 PUBLISHes: each of those holds
// a place in the client's in-flight store, which bounds them already, and
// dropping one lost a message the broker had accepted for the client (a
// subscriber catching up with a 300,000-message burst lost one so).
func (q *outboundQueue) push(pk *packets.Packet) bool {
	inflight := pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0
	return q.pushItem(outItem{pk: pk}, inflight)
}

// pushAck queues a success acknowledgement of a client's publish that
// carries no properties: type and flags, remaining length 2, packet id
// ([MQTT-3.4.2.1]: a PUBACK, PUBREC or PUBCOMP with reason 0x00 and no
// properties may end after the id, and mochi encodes it so in both
// protocol versions). It is bounded like any packet but a QoS 1/2 PUBLISH.
func (q *outboundQueue) pushAck(typ byte, id uint16) bool {
	return q.pushItem(outItem{ack: [4]byte{typ << 4, 2, byte(id >> 8), byte(id)}}, false)
}

func (q *outboundQueue) pushItem(it outItem, inflight bool) bool {
	q.mu.Lock()
	if !inflight && q.fifo.len() >= q.limit {
		q.mu.Unlock()
		return false
	}
	q.fifo.push(it)
	start := !q.writing && q.write != nil
	if start {
		q.writing = true
	}
	q.mu.Unlock()
	if start {
		go q.write()
	}
	return true
}

// pop takes the oldest item; when there is none it records that the
// writer stops, so the next push starts another.
func (q *outboundQueue) pop() (outItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fifo.len() == 0 {
		q.writing = false
		return outItem{}, false
	}
	return q.fifo.pop(), true
}

// len is how many packets wait.
func (q *outboundQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.fifo.len()
}

// ParseConnect parses the connect parameters and properties for a client.
func (cl *Client) ParseConnect(lid string, pk packets.Packet) {
	cl.Net.Listener = lid

	cl.Properties.ProtocolVersion = pk.ProtocolVersion
	cl.Properties.Username = pk.Connect.Username
	cl.Properties.Clean = pk.Connect.Clean
	cl.Properties.Props = pk.Properties.Copy(false)

	if cl.Properties.Props.ReceiveMaximum > cl.ops.options.Capabilities.MaximumInflight { // 3.3.4 Non-normative
		cl.Properties.Props.ReceiveMaximum = cl.ops.options.Capabilities.MaximumInflight
	}

	if pk.Connect.Keepalive <= minimumKeepalive {
		cl.ops.log.Warn(
			ErrMinimumKeepalive.Error(),
			"client", cl.ID,
			"keepalive", pk.Connect.Keepalive,
			"recommended", minimumKeepalive,
		)
	}

	cl.State.Keepalive = pk.Connect.Keepalive                                              // [MQTT-3.2.2-22]
	cl.State.Inflight.ResetReceiveQuota(int32(cl.ops.options.Capabilities.ReceiveMaximum)) // server receive max per client
	cl.State.Inflight.ResetSendQuota(int32(cl.Properties.Props.ReceiveMaximum))            // client receive max
	cl.State.TopicAliases.Outbound = NewOutboundTopicAliases(cl.Properties.Props.TopicAliasMaximum)

	cl.ID = pk.Connect.ClientIdentifier
	if cl.ID == "" {
		cl.ID = xid.New().String() // [MQTT-3.1.3-6] [MQTT-3.1.3-7]
		cl.Properties.Props.AssignedClientID = cl.ID
	}

	if pk.Connect.WillFlag {
		cl.Properties.Will = Will{
			Qos:               pk.Connect.WillQos,
			Retain:            pk.Connect.WillRetain,
			Payload:           pk.Connect.WillPayload,
			TopicName:         pk.Connect.WillTopic,
			WillDelayInterval: pk.Connect.WillProperties.WillDelayInterval,
			User:              pk.Connect.WillProperties.User,
		}
		if pk.Properties.SessionExpiryIntervalFlag &&
			pk.Properties.SessionExpiryInterval < pk.Connect.WillProperties.WillDelayInterval {
			cl.Properties.Will.WillDelayInterval = pk.Properties.SessionExpiryInterval
		}
		if pk.Connect.WillFlag {
			cl.Properties.Will.Flag = 1 // atomic for checking
		}
	}
}

// refreshDeadline refreshes the read/write deadline for the net.Conn connection.
//
// wanwu patch: the deadline moves at most once per slack (an eighth of the
// keep-alive window, at most a second) and lies that much beyond the window,
// so a silent client is closed between 1.5 and 1.5 + 1/8 keep-alives after
// its last packet. Setting both deadlines for every packet reset two runtime
// timers each time: 2% of the broker's CPU at 1,000 saturating clients.
// now is the caller's clock reading (wanwu patch: the read loop reads it
// once for this and awaitInput).
func (cl *Client) refreshDeadline(keepalive uint16, now time.Time) {
	if cl.Net.Conn == nil {
		return
	}
	var expiry time.Time // nil time can be used to disable deadline if keepalive = 0
	if keepalive > 0 {
		window := time.Duration(keepalive+(keepalive/2)) * time.Second // [MQTT-3.1.2-22]
		slack := min(window/8, time.Second)
		if now.Sub(cl.Net.refreshed) < slack {
			return
		}
		expiry = now.Add(window + slack)
	}
	cl.Net.refreshed = now
	_ = cl.Net.Conn.SetDeadline(expiry) // [MQTT-3.1.2-22]
}

// NextPacketID returns the next available (unused) packet id for the client.
// If no unused packet ids are available, an error is returned and the client
// should be disconnected.
func (cl *Client) NextPacketID() (i uint32, err error) {
	cl.Lock()
	defer cl.Unlock()

	i = atomic.LoadUint32(&cl.State.packetID)
	started := i
	overflowed := false
	for {
		if overflowed && i == started {
			return 0, packets.ErrQuotaExceeded
		}

		if i >= cl.ops.options.Capabilities.maximumPacketID {
			overflowed = true
			i = 0
			continue
		}

		i++

		if !cl.State.Inflight.Has(uint16(i)) { // wanwu patch: Has, not Get
			atomic.StoreUint32(&cl.State.packetID, i)
			return i, nil
		}
	}
}

// ResendInflightMessages attempts to resend any pending inflight messages to connected clients.
func (cl *Client) ResendInflightMessages(force bool) error {
	if cl.State.Inflight.Len() == 0 {
		return nil
	}

	for _, tk := range cl.State.Inflight.GetAll(false) {
		if tk.FixedHeader.Type == packets.Publish {
			tk.FixedHeader.Dup = true // [MQTT-3.3.1-1] [MQTT-3.3.1-3]
		}

		cl.ops.hooks.OnQosPublish(cl, tk, tk.Created, 0)
		err := cl.WritePacket(tk)
		if err != nil {
			return err
		}

		if tk.FixedHeader.Type == packets.Puback || tk.FixedHeader.Type == packets.Pubcomp {
			if ok := cl.State.Inflight.Delete(tk.PacketID); ok {
				cl.ops.hooks.OnQosComplete(cl, tk)
				atomic.AddInt64(&cl.ops.info.Inflight, -1)
			}
		}
	}

	return nil
}

// ClearInflights deletes all inflight messages for the client, e.g. for a disconnected user with a clean session.
func (cl *Client) ClearInflights() {
	for _, tk := range cl.State.Inflight.GetAll(false) {
		if ok := cl.State.Inflight.Delete(tk.PacketID); ok {
			cl.ops.hooks.OnQosDropped(cl, tk)
			atomic.AddInt64(&cl.ops.info.Inflight, -1)
		}
	}
}

// ClearExpiredInflights deletes any inflight messages which have expired.
func (cl *Client) ClearExpiredInflights(now, maximumExpiry int64) []uint16 {
	deleted := []uint16{}
	for _, tk := range cl.State.Inflight.expired(now, maximumExpiry) {
		if ok := cl.State.Inflight.Delete(tk.PacketID); ok {
			cl.ops.hooks.OnQosDropped(cl, tk)
			atomic.AddInt64(&cl.ops.info.Inflight, -1)
			deleted = append(deleted, tk.PacketID)
		}
	}

	return deleted
}

// Read reads incoming packets from the connected client and transforms them into
// packets to be handled by the packetHandler.
func (cl *Client) Read(packetHandler ReadFn) error {
	var err error

	for {
		if cl.Closed() {
			return nil
		}

		now := time.Now()
		cl.refreshDeadline(cl.State.Keepalive, now)
		if err = cl.awaitInput(now); err != nil {
			return err
		}
		fh := new(packets.FixedHeader)
		err = cl.ReadFixedHeader(fh)
		if err != nil {
			return err
		}

		err = cl.readRest(fh, packetHandler)
		if err != nil {
			return err
		}
	}
}

// awaitInput waits until the connection has something to read (wanwu
// patch). When nothing is buffered and the connection is a plain socket, the
// client's read buffer goes back to a pool while it waits, without a buffer,
// for the socket to become readable: an idle connection holds no read buffer
// (2 KiB by default). TLS connections keep theirs, as do platforms without
// socketReadable.
//
// A connection whose last busyPackets packets each came within busyGap of
// the one before is busy: it keeps its buffer and reads as usual, since
// looking before each read costs a syscall (about 4% of the broker's CPU at
// 1,000 saturating clients). Its buffer goes back once a gap is longer, at
// the latest with the keep-alive PINGREQ after it falls quiet. (A device's
// SUBSCRIBE right after its CONNECT does not make it busy.)
func (cl *Client) awaitInput(now time.Time) error {
	r := cl.Net.bconn
	if r == nil || r.Buffered() > 0 || !canPeek {
		return nil
	}
	if now.Sub(cl.Net.awaited) < busyGap {
		cl.Net.quick++
	} else {
		cl.Net.quick = 0
	}
	cl.Net.awaited = now
	if cl.Net.quick >= busyPackets {
		return nil
	}
	sc, ok := cl.Net.Conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	pool := readerPool(r.Size())
	cl.Net.bconn = nil
	pool.Put(r)
	// The poller is edge-triggered: data that arrived before this call
	// raises no new edge, so look (without reading) before waiting, as a
	// read would.
	err = rc.Read(socketReadable)
	r = pool.Get().(*bufio.Reader)
	r.Reset(cl.Net.Conn)
	cl.Net.bconn = r
	return err
}

// busyGap and busyPackets: see awaitInput.
const (
	busyGap     = time.Second
	busyPackets = 4
)

// readerPools holds pools of read buffers by size (wanwu patch).
var readerPools sync.Map // int → *sync.Pool

func readerPool(size int) *sync.Pool {
	if p, ok := readerPools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := readerPools.LoadOrStore(size, &sync.Pool{New: func() any { return bufio.NewReaderSize(nil, size) }})
	return p.(*sync.Pool)
}

// readRest reads the rest of a packet and handles it (wanwu patch: out of
// Read, so that the packet value is not in Read's frame while the
// connection waits for its next packet; see attachClient).
//
//go:noinline
func (cl *Client) readRest(fh *packets.FixedHeader, packetHandler ReadFn) error {
	pk, err := cl.ReadPacket(fh)
	if err != nil {
		return err
	}
	return packetHandler(cl, pk) // Process inbound packet.
}

// Stop instructs the client to shut down all processing goroutines and disconnect.
func (cl *Client) Stop(err error) {
	cl.State.endOnce.Do(func() {

		if cl.Net.Conn != nil {
			_ = cl.Net.Conn.Close() // omit close error
		}

		if err != nil {
			cl.setStopCause(err) // wanwu patch: a cause set before (DisconnectClient) stays
		}

		if cl.State.cancelOpen != nil {
			cl.State.cancelOpen()
		}

		atomic.StoreInt64(&cl.State.disconnected, time.Now().Unix())
	})
}

// setStopCause records why the client is being stopped, unless a cause was
// recorded already (wanwu patch: the first cause is the one).
func (cl *Client) setStopCause(err error) {
	cl.State.causeMu.Lock()
	defer cl.State.causeMu.Unlock()
	if cl.State.stopCause.Load() == nil {
		cl.State.stopCause.Store(err)
	}
}

// StopCause returns the reason the client connection was stopped, if any.
func (cl *Client) StopCause() error {
	if cl.State.stopCause.Load() == nil {
		return nil
	}
	return cl.State.stopCause.Load().(error)
}

// StopTime returns the the time the client disconnected in unix time, else zero.
func (cl *Client) StopTime() int64 {
	return atomic.LoadInt64(&cl.State.disconnected)
}

// Closed returns true if client connection is closed.
func (cl *Client) Closed() bool {
	return cl.State.open == nil || cl.State.open.Err() != nil
}

func (cl *Client) IsTakenOver() bool {
	return cl.State.isTakenOver.Load()
}

// ReadFixedHeader reads in the values of the next packet's fixed header.
func (cl *Client) ReadFixedHeader(fh *packets.FixedHeader) error {
	if cl.Net.bconn == nil {
		return ErrConnectionClosed
	}

	b, err := cl.Net.bconn.ReadByte()
	if err != nil {
		return err
	}

	err = fh.Decode(b)
	if err != nil {
		return err
	}

	var bu int
	fh.Remaining, bu, err = packets.DecodeLength(cl.Net.bconn)
	if err != nil {
		return err
	}

	// wanwu patch: the packet's size counts its length bytes (bu) too, as
	// Maximum Packet Size does [MQTT-3.1.2-24] (§2.1.4: the total number of
	// bytes in the packet); the rest of an oversized packet is read and
	// discarded, so that the close that follows is not a reset that loses
	// the DISCONNECT 0x95 on its way to the client.
	if max := cl.ops.options.Capabilities.MaximumPacketSize; max > 0 && uint64(fh.Remaining)+1+uint64(bu) > uint64(max) {
		cl.discard(fh.Remaining)
		return packets.ErrPacketTooLarge // [MQTT-3.2.2-15]
	}

	atomic.AddInt64(&cl.ops.info.BytesReceived, int64(bu+1))
	return nil
}

// discardLimit and discardWait bound what discard reads (wanwu patch).
const (
	discardLimit = 1 << 20
	discardWait  = time.Second
)

// discard reads and drops up to n bytes (at most discardLimit, for at most
// discardWait) of a packet the server refuses (wanwu patch): closing a TCP
// connection with unread data sends a reset, and a reset can destroy the
// DISCONNECT written just before it in the client's receive buffer.
func (cl *Client) discard(n int) {
	if cl.Net.bconn == nil || cl.Net.Conn == nil {
		return
	}
	_ = cl.Net.Conn.SetReadDeadline(time.Now().Add(discardWait))
	_, _ = io.CopyN(io.Discard, cl.Net.bconn, int64(min(n, discardLimit)))
}

// lingerClose flushes what is buffered for the client, shuts the write side
// and reads and drops what the client still sends (at most discardLimit,
// for at most discardWait), so that a close that follows is not a reset
// (wanwu patch). Only the connection's reader may call it.
func (cl *Client) lingerClose() {
	cl.Lock()
	_ = cl.flushOutbuf()
	cl.Unlock()
	if cw, ok := cl.Net.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	cl.discard(discardLimit)
}

// ReadPacket reads the remaining buffer into an MQTT packet.
func (cl *Client) ReadPacket(fh *packets.FixedHeader) (pk packets.Packet, err error) {
	atomic.AddInt64(&cl.ops.info.PacketsReceived, 1)

	pk.ProtocolVersion = cl.Properties.ProtocolVersion // inherit client protocol version for decoding
	pk.FixedHeader = *fh
	p := make([]byte, pk.FixedHeader.Remaining)
	n, err := io.ReadFull(cl.Net.bconn, p)
	if err != nil {
		return pk, err
	}

	atomic.AddInt64(&cl.ops.info.BytesReceived, int64(n))

	// wanwu patch: p is this packet's own (made above), so the decoders may
	// keep slices of it; mochi decoded from a second copy.
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectDecode(p)
	case packets.Disconnect:
		err = pk.DisconnectDecode(p)
	case packets.Connack:
		err = pk.ConnackDecode(p)
	case packets.Publish:
		err = pk.PublishDecode(p)
		if err == nil {
			atomic.AddInt64(&cl.ops.info.MessagesReceived, 1)
		}
	case packets.Puback:
		err = pk.PubackDecode(p)
	case packets.Pubrec:
		err = pk.PubrecDecode(p)
	case packets.Pubrel:
		err = pk.PubrelDecode(p)
	case packets.Pubcomp:
		err = pk.PubcompDecode(p)
	case packets.Subscribe:
		err = pk.SubscribeDecode(p)
	case packets.Suback:
		err = pk.SubackDecode(p)
	case packets.Unsubscribe:
		err = pk.UnsubscribeDecode(p)
	case packets.Unsuback:
		err = pk.UnsubackDecode(p)
	case packets.Pingreq, packets.Pingresp:
		// wanwu patch: these have no variable header and no payload (§3.12,
		// §3.13); one with either is malformed, not a ping.
		if len(p) > 0 {
			err = packets.ErrMalformedPacket
		}
	case packets.Auth:
		err = pk.AuthDecode(p)
	default:
		// wanwu patch: a malformed packet, as a code (was a bare error).
		err = fmt.Errorf("%w: invalid packet type %v", packets.ErrMalformedPacket, pk.FixedHeader.Type)
	}

	if err != nil {
		return pk, err
	}

	if cl.ops.hooks.has(OnPacketRead) { // wanwu patch: no copies when no hook reads packets
		pk, err = cl.ops.hooks.OnPacketRead(cl, pk)
	}
	return
}

// WritePacket encodes and writes a packet to the client.
func (cl *Client) WritePacket(pk packets.Packet) error {
	return cl.writePacket(&pk)
}

// writePacket is WritePacket on a packet the caller lets it change (wanwu
// patch: the write loop handed each queued 800-byte packet over by value).
func (cl *Client) writePacket(pk *packets.Packet) error {
	if cl.Closed() {
		return ErrConnectionClosed
	}

	if cl.Net.Conn == nil {
		return nil
	}

	if pk.Expiry > 0 {
		expiry := pk.Expiry - time.Now().Unix()
		if expiry < 1 {
			expiry = 1
		}
		pk.Properties.MessageExpiryInterval = uint32(expiry) // [MQTT-3.3.2-6]
	}

	pk.ProtocolVersion = cl.Properties.ProtocolVersion
	if pk.Mods.MaxSize == 0 { // NB we use this statement to embed client packet sizes in tests
		pk.Mods.MaxSize = cl.Properties.Props.MaximumPacketSize
	}

	if cl.Properties.Props.RequestProblemInfoFlag && cl.Properties.Props.RequestProblemInfo == 0x0 {
		pk.Mods.DisallowProblemInfo = true // [MQTT-3.1.2-29] strict, no problem info on any packet if set
	}

	if pk.FixedHeader.Type != packets.Connack || cl.Properties.Props.RequestResponseInfo == 0x1 || cl.ops.options.Capabilities.Compatibilities.AlwaysReturnResponseInfo {
		pk.Mods.AllowResponseInfo = true // [MQTT-3.1.2-28] we need to know which properties we can encode
	}

	if cl.ops.hooks.has(OnPacketEncode) { // wanwu patch: no copies when no hook encodes
		*pk = cl.ops.hooks.OnPacketEncode(cl, *pk)
	}

	var err error
	// wanwu patch: encode into a pooled buffer (a new one per packet was
	// most of the broker's write-path garbage).
	buf := writeBuffers.Get().(*bytes.Buffer)
	defer putWriteBuffer(buf)
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(buf)
	case packets.Connack:
		err = pk.ConnackEncode(buf)
	case packets.Publish:
		err = pk.PublishEncode(buf)
	case packets.Puback:
		err = pk.PubackEncode(buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(buf)
	case packets.Suback:
		err = pk.SubackEncode(buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(buf)
	case packets.Unsuback:
		err = pk.UnsubackEncode(buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(buf)
	case packets.Pingresp:
		err = pk.PingrespEncode(buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(buf)
	case packets.Auth:
		err = pk.AuthEncode(buf)
	default:
		err = fmt.Errorf("%w: %v", packets.ErrNoValidPacketAvailable, pk.FixedHeader.Type)
	}
	if err != nil {
		return err
	}

	if pk.Mods.MaxSize > 0 && uint32(buf.Len()) > pk.Mods.MaxSize {
		return packets.ErrPacketTooLarge // [MQTT-3.1.2-24] [MQTT-3.1.2-25]
	}

	n, err := func() (int64, error) {
		cl.Lock()
		defer cl.Unlock()
		if cl.State.outbound.len() == 0 {
			if cl.Net.outbuf == nil {
				return buf.WriteTo(cl.Net.Conn)
			}

			// first write to buffer, then flush buffer
			n, _ := cl.Net.outbuf.Write(buf.Bytes()) // will always be successful
			err = cl.flushOutbuf()
			return int64(n), err
		}

		// there are more writes in the queue
		if cl.Net.outbuf == nil {
			if buf.Len() >= cl.ops.options.ClientNetWriteBufferSize {
				return buf.WriteTo(cl.Net.Conn)
			}
			cl.Net.outbuf = writeBuffers.Get().(*bytes.Buffer) // wanwu patch: pooled
		}

		n, _ := cl.Net.outbuf.Write(buf.Bytes()) // will always be successful
		if cl.Net.outbuf.Len() < cl.ops.options.ClientNetWriteBufferSize {
			return int64(n), nil
		}

		err = cl.flushOutbuf()
		return int64(n), err
	}()
	if err != nil {
		return err
	}

	atomic.AddInt64(&cl.ops.info.BytesSent, n)
	atomic.AddInt64(&cl.ops.info.PacketsSent, 1)
	if pk.FixedHeader.Type == packets.Publish {
		atomic.AddInt64(&cl.ops.info.MessagesSent, 1)
	}

	if cl.ops.hooks.has(OnPacketSent) {
		cl.ops.hooks.OnPacketSent(cl, *pk, buf.Bytes())
	}

	return err
}

// writeAck writes an acknowledgement queued by pushAck (wanwu patch). It
// goes through the connection's write buffer, as a packet does while more
// writes wait, and is flushed when nothing else waits or the buffer is full.
func (cl *Client) writeAck(b [4]byte) error {
	if cl.Closed() {
		return ErrConnectionClosed
	}
	if cl.Net.Conn == nil {
		return nil
	}
	cl.Lock()
	if cl.Net.outbuf == nil {
		cl.Net.outbuf = writeBuffers.Get().(*bytes.Buffer)
	}
	cl.Net.outbuf.Write(b[:])
	var err error
	if cl.State.outbound.len() == 0 || cl.Net.outbuf.Len() >= cl.ops.options.ClientNetWriteBufferSize {
		err = cl.flushOutbuf()
	}
	cl.Unlock()
	if err != nil {
		return err
	}
	atomic.AddInt64(&cl.ops.info.BytesSent, int64(len(b)))
	atomic.AddInt64(&cl.ops.info.PacketsSent, 1)
	return nil
}

func (cl *Client) flushOutbuf() (err error) {
	if cl.Net.outbuf == nil {
		return
	}

	_, err = cl.Net.outbuf.WriteTo(cl.Net.Conn)
	if err == nil {
		putWriteBuffer(cl.Net.outbuf) // wanwu patch: pooled
		cl.Net.outbuf = nil
	}
	return
}

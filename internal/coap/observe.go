package coap

import (
	"sync"

	"github.com/plgd-dev/go-coap/v3/udp/client"
)

// observers tracks observations (RFC 7641) of /tw/d and /c.
type observers struct {
	mu     sync.Mutex
	byCode map[string]map[*observer]struct{}
	byConn map[*client.Conn]map[*observer]struct{}
}

type obsKind uint8

const (
	obsTwin obsKind = iota + 1
	obsCommands
)

// observer is one observation: a connection, the registration's token and
// what it observes.
type observer struct {
	cc    *client.Conn
	token []byte
	code  string
	kind  obsKind
	con   bool // notifications are confirmable

	mu      sync.Mutex // serializes notifications
	seq     uint32     // last Observe value sent
	lastMID int32      // message id of the last notification
	reset   bool       // the client answered a notification with RST
	gone    bool
	detach  func() // the command sink, for /c

	ready     chan struct{} // closed once the registration's response is sent
	readyOnce sync.Once
}

func (ob *observer) markReady() { ob.readyOnce.Do(func() { close(ob.ready) }) }

func (o *observers) init() {
	o.byCode = map[string]map[*observer]struct{}{}
	o.byConn = map[*client.Conn]map[*observer]struct{}{}
}

func (o *observers) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, m := range o.byConn {
		n += len(m)
	}
	return n
}

// add registers ob, replacing an observation of the same connection and
// token (RFC 7641 §4.1: a repeated registration is the same observation).
func (o *observers) add(ob *observer) {
	o.mu.Lock()
	var old []*observer
	for x := range o.byConn[ob.cc] {
		if string(x.token) == string(ob.token) || (x.kind == ob.kind && x.code == ob.code) {
			old = append(old, x)
		}
	}
	for _, x := range old {
		o.removeLocked(x)
	}
	if o.byCode[ob.code] == nil {
		o.byCode[ob.code] = map[*observer]struct{}{}
	}
	o.byCode[ob.code][ob] = struct{}{}
	if o.byConn[ob.cc] == nil {
		o.byConn[ob.cc] = map[*observer]struct{}{}
	}
	o.byConn[ob.cc][ob] = struct{}{}
	o.mu.Unlock()
	for _, x := range old {
		x.stop()
	}
}

func (o *observers) removeLocked(ob *observer) {
	delete(o.byCode[ob.code], ob)
	if len(o.byCode[ob.code]) == 0 {
		delete(o.byCode, ob.code)
	}
	delete(o.byConn[ob.cc], ob)
	if len(o.byConn[ob.cc]) == 0 {
		delete(o.byConn, ob.cc)
	}
}

func (o *observers) remove(ob *observer) {
	o.mu.Lock()
	o.removeLocked(ob)
	o.mu.Unlock()
	ob.stop()
}

// stop ends an observation: it detaches the command sink.
func (ob *observer) stop() {
	ob.mu.Lock()
	ob.gone = true
	d := ob.detach
	ob.detach = nil
	ob.mu.Unlock()
	if d != nil {
		d()
	}
}

// cancel removes the observation of cc with token (RFC 7641 §3.6: GET with
// Observe 1).
func (o *observers) cancel(cc *client.Conn, token []byte) {
	o.mu.Lock()
	var found []*observer
	for x := range o.byConn[cc] {
		if string(x.token) == string(token) {
			found = append(found, x)
		}
	}
	for _, x := range found {
		o.removeLocked(x)
	}
	o.mu.Unlock()
	for _, x := range found {
		x.stop()
	}
}

// of returns the observations of a device of one kind.
func (o *observers) of(code string, kind obsKind) []*observer {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*observer
	for x := range o.byCode[code] {
		if x.kind == kind {
			out = append(out, x)
		}
	}
	return out
}

// reset handles an RST from cc: the observation whose last notification
// had that message id ends (RFC 7641 §3.6).
func (o *observers) reset(cc *client.Conn, mid int32) {
	o.mu.Lock()
	var found []*observer
	for x := range o.byConn[cc] {
		x.mu.Lock()
		if x.lastMID == mid {
			x.reset = true
			found = append(found, x)
		}
		x.mu.Unlock()
	}
	for _, x := range found {
		o.removeLocked(x)
	}
	o.mu.Unlock()
	for _, x := range found {
		x.stop()
	}
}

func (o *observers) dropConn(cc *client.Conn) {
	o.mu.Lock()
	var found []*observer
	for x := range o.byConn[cc] {
		found = append(found, x)
	}
	for _, x := range found {
		o.removeLocked(x)
	}
	o.mu.Unlock()
	for _, x := range found {
		x.stop()
	}
}

func (o *observers) dropDevice(code string) {
	o.mu.Lock()
	var found []*observer
	for x := range o.byCode[code] {
		found = append(found, x)
	}
	for _, x := range found {
		o.removeLocked(x)
	}
	o.mu.Unlock()
	for _, x := range found {
		x.stop()
	}
}

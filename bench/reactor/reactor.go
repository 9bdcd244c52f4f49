//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

// Reactor is one epoll loop over a listening socket and its connections.
type Reactor struct {
	lfd, epfd      int
	wake, wakeRead int // a pipe: Close writes, the loop wakes
	addr           netip.AddrPort
	conns          []conn // by file descriptor
	start          time.Time
	closed         atomic.Bool
	// Counters, for tests and the log line at the end.
	accepted, published, refused atomic.Int64
}

// conn is an open connection's whole state while it is idle: 32 bytes.
type conn struct {
	partial   []byte // the start of a packet split across reads; nil almost always
	deadline  uint32 // seconds since start after which a silent client is closed; 0: none
	keepAlive uint16 // seconds, as the client's CONNECT asked
	version   uint8  // MQTT protocol level once CONNECT arrived (4 or 5); 0 before
	open      bool
}

// maxPacket bounds a packet this front end takes: an idle connection sends
// CONNECT, PINGREQ and DISCONNECT; anything larger would go to a worker.
const maxPacket = 64 << 10

// Listen opens a non-blocking IPv4 listening socket on addr ("ip:port").
func Listen(addr string) (*Reactor, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("listen %q: want an IPv4 address and port", addr)
	}
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	r := &Reactor{lfd: lfd, epfd: -1, wake: -1, wakeRead: -1, start: time.Now()}
	fail := func(what string, err error) (*Reactor, error) {
		r.closeFDs()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := syscall.SetsockoptInt(lfd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if err := syscall.Bind(lfd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return fail("bind", err)
	}
	if err := syscall.Listen(lfd, 4096); err != nil {
		return fail("listen", err)
	}
	sa, err := syscall.Getsockname(lfd)
	if err != nil {
		return fail("getsockname", err)
	}
	in4 := sa.(*syscall.SockaddrInet4)
	r.addr = netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))
	if r.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return fail("epoll", err)
	}
	// Close writes to this pipe to wake the loop.
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return fail("pipe", err)
	}
	r.wakeRead, r.wake = p[0], p[1]
	for _, fd := range []int{lfd, r.wakeRead} {
		if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
			return fail("epoll_ctl", err)
		}
	}
	return r, nil
}

// Addr is the address the reactor accepts on.
func (r *Reactor) Addr() netip.AddrPort { return r.addr }

// Close stops Serve, which closes every connection.
func (r *Reactor) Close() {
	if r.closed.CompareAndSwap(false, true) {
		syscall.Write(r.wake, []byte{0})
	}
}

// Serve runs the loop until Close.
func (r *Reactor) Serve() error {
	defer r.closeFDs()
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, maxPacket) // shared by every connection
	lastSweep := time.Now()
	for {
		n, err := syscall.EpollWait(r.epfd, events, 1000)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		if r.closed.Load() {
			return nil
		}
		for _, ev := range events[:max(n, 0)] {
			switch fd := int(ev.Fd); fd {
			case r.lfd:
				r.acceptAll()
			case r.wakeRead:
			default:
				r.readable(fd, buf)
			}
		}
		if time.Since(lastSweep) >= time.Second {
			lastSweep = time.Now()
			r.sweep()
		}
	}
}

func (r *Reactor) acceptAll() {
	for {
		fd, _, err := syscall.Accept4(r.lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: none left; EMFILE and the like: try again on the next event
		}
		if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
			syscall.Close(fd)
			continue
		}
		r.track(fd)
		// A client must send CONNECT within 10 s.
		r.conns[fd].deadline = r.now() + 10
		r.accepted.Add(1)
	}
}

func (r *Reactor) track(fd int) {
	if fd >= len(r.conns) {
		r.conns = append(r.conns, make([]conn, fd+1-len(r.conns))...)
	}
	r.conns[fd] = conn{open: true}
}

func (r *Reactor) drop(fd int) {
	if fd < len(r.conns) {
		r.conns[fd] = conn{}
	}
	syscall.Close(fd) // also removes it from the epoll set
}

func (r *Reactor) now() uint32 { return uint32(time.Since(r.start)/time.Second) + 1 }

// sweep closes the connections whose keep-alive (1.5 times what the client
// said) or CONNECT deadline passed. A production front end keeps deadlines
// in a timer wheel instead of scanning every connection once a second.
func (r *Reactor) sweep() {
	now := r.now()
	for fd := range r.conns {
		if c := &r.conns[fd]; c.open && c.deadline != 0 && c.deadline < now {
			r.drop(fd)
		}
	}
}

func (r *Reactor) readable(fd int, buf []byte) {
	if fd >= len(r.conns) || !r.conns[fd].open {
		syscall.Close(fd)
		return
	}
	n, err := syscall.Read(fd, buf)
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
		return
	}
	if err != nil || n == 0 {
		r.drop(fd)
		return
	}
	c := &r.conns[fd]
	data := buf[:n]
	if c.partial != nil {
		data = append(c.partial, data...)
		c.partial = nil
	}
	for len(data) > 0 {
		used, ok := r.packet(fd, c, data)
		if !ok {
			r.refused.Add(1)
			r.drop(fd)
			return
		}
		if used == 0 { // incomplete: keep the start, in a slice of its own
			if len(data) > maxPacket {
				r.refused.Add(1)
				r.drop(fd)
				return
			}
			c.partial = append([]byte(nil), data...)
			return
		}
		if !c.open { // DISCONNECT
			return
		}
		data = data[used:]
	}
}

// packet handles the first packet of b: how many bytes it took (0: b holds
// only part of it), and false when the connection must be closed.
func (r *Reactor) packet(fd int, c *conn, b []byte) (int, bool) {
	length, hdr, ok := remainingLength(b)
	if !ok {
		return 0, false
	}
	if hdr == 0 || len(b) < hdr+length {
		return 0, true
	}
	if hdr+length > maxPacket {
		return 0, false
	}
	body := b[hdr : hdr+length]
	kind := b[0] >> 4
	if c.version == 0 && kind != 1 {
		return 0, false // the first packet must be CONNECT [MQTT-3.1.0-1]
	}
	switch kind {
	case 1: // CONNECT
		if c.version != 0 {
			return 0, false // a second CONNECT [MQTT-3.1.0-2]
		}
		version, keepAlive, ok := parseConnect(body)
		if !ok {
			return 0, false
		}
		c.version, c.keepAlive = version, keepAlive
		c.touch(r.now())
		connack := []byte{0x20, 0x02, 0x00, 0x00}
		if version == 5 {
			connack = []byte{0x20, 0x03, 0x00, 0x00, 0x00} // no properties
		}
		return hdr + length, write(fd, connack)
	case 3: // PUBLISH
		r.published.Add(1)
		qos := b[0] >> 1 & 3
		if qos > 1 {
			return 0, false // QoS 2 would go to a worker
		}
		c.touch(r.now())
		if qos == 1 {
			id, ok := publishID(body)
			if !ok {
				return 0, false
			}
			return hdr + length, write(fd, []byte{0x40, 0x02, byte(id >> 8), byte(id)})
		}
		return hdr + length, true
	case 12: // PINGREQ
		c.touch(r.now())
		return hdr + length, write(fd, []byte{0xD0, 0x00})
	case 14: // DISCONNECT
		r.drop(fd)
		return hdr + length, true
	}
	return 0, false
}

// touch moves the keep-alive deadline: a client that sends nothing for one
// and a half times its keep-alive is closed [MQTT-3.1.2-24].
func (c *conn) touch(now uint32) {
	c.deadline = 0
	if c.keepAlive > 0 {
		c.deadline = now + uint32(c.keepAlive)*3/2 + 1
	}
}

// remainingLength decodes a fixed header's Remaining Length: the length, the
// header's size (0 when b ends inside it), and false when it is malformed.
func remainingLength(b []byte) (length, hdr int, ok bool) {
	mult := 1
	for i := 1; i < 5; i++ {
		if i >= len(b) {
			return 0, 0, true
		}
		length += int(b[i]&0x7F) * mult
		if b[i]&0x80 == 0 {
			return length, i + 1, true
		}
		mult *= 128
	}
	return 0, 0, false
}

// parseConnect reads the protocol level and keep-alive of a CONNECT body.
func parseConnect(body []byte) (version uint8, keepAlive uint16, ok bool) {
	if len(body) < 10 || body[0] != 0 || body[1] != 4 || string(body[2:6]) != "MQTT" {
		return 0, 0, false
	}
	version = body[6]
	if version != 4 && version != 5 {
		return 0, 0, false
	}
	return version, uint16(body[8])<<8 | uint16(body[9]), true
}

// publishID reads a QoS 1 PUBLISH's packet identifier (after the topic).
// The identifier comes before MQTT 5's properties, so both versions agree.
func publishID(body []byte) (uint16, bool) {
	if len(body) < 2 {
		return 0, false
	}
	n := 2 + (int(body[0])<<8 | int(body[1]))
	if len(body) < n+2 {
		return 0, false
	}
	return uint16(body[n])<<8 | uint16(body[n+1]), true
}

// write sends a small reply; a socket that cannot take a few bytes at once
// is closed (a full front end would queue them).
func write(fd int, b []byte) bool {
	n, err := syscall.Write(fd, b)
	return err == nil && n == len(b)
}

func (r *Reactor) closeFDs() {
	for fd := range r.conns {
		if r.conns[fd].open {
			r.drop(fd)
		}
	}
	for _, fd := range []int{r.lfd, r.epfd, r.wake, r.wakeRead} {
		if fd >= 0 {
			syscall.Close(fd)
		}
	}
}

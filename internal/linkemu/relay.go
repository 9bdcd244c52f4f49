package linkemu

// Relay: a cable that can be pulled.

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Relay is a TCP relay to a target address that can be cut (every
// connection closed, new ones refused) and restored, as a pulled cable or
// a restarted peer does: the demo pulls an edge's link to its hub with it,
// and tests cut links. It counts the bytes it carries.
type Relay struct {
	ln     net.Listener
	target func() string

	mu      sync.Mutex
	down    bool
	conns   map[net.Conn]struct{}
	relayed time.Time // when the first connection since Restore was relayed
	wg      sync.WaitGroup

	up, dn atomic.Int64 // bytes toward the target, and back
}

// Bytes reports the bytes carried toward the target (up) and back (down).
func (p *Relay) Bytes() (up, down int64) { return p.up.Load(), p.dn.Load() }

// IsCut reports whether the relay is cut.
func (p *Relay) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

// counter adds what passes to n.
type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c counter) Write(b []byte) (int, error) {
	k, err := c.w.Write(b)
	c.n.Add(int64(k))
	return k, err
}

// NewRelay relays a new loopback port to target(), asked at each
// connection; Close stops it.
func NewRelay(target func() string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the relay's address.
func (p *Relay) Addr() string { return p.ln.Addr().String() }

func (p *Relay) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		up, err := net.DialTimeout("tcp", p.target(), 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		if p.relayed.IsZero() {
			p.relayed = time.Now()
		}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn, n *atomic.Int64) {
			defer p.wg.Done()
			_, _ = io.Copy(counter{dst, n}, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(up, c, &p.up)
		go pipe(c, up, &p.dn)
	}
}

// Cut closes every relayed connection and refuses new ones until Restore.
func (p *Relay) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (p *Relay) Restore() {
	p.mu.Lock()
	p.down = false
	p.relayed = time.Time{}
	p.mu.Unlock()
}

// Relayed is when the relay carried its first connection since the last
// Restore (zero if none yet).
func (p *Relay) Relayed() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.relayed
}

// Close stops the proxy.
func (p *Relay) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

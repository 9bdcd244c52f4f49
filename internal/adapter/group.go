package adapter

import (
	"context"
	"sync"
)

// Group owns an adapter's goroutines (twin pushes, command deliveries,
// requests served off a connection's reading goroutine) so that its
// Shutdown can wait for every one. Once Wait began, Go starts nothing: the
// adapter is stopping and its caller decides what to do instead. The zero
// Group is ready to use.
type Group struct {
	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// Go runs fn on a goroutine of the group and reports true, or reports
// false, without running fn, when the group is stopping.
func (g *Group) Go(fn func()) bool {
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return false
	}
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		fn()
	}()
	return true
}

// Wait stops the group from starting goroutines and waits for those it
// started, or for ctx to end.
func (g *Group) Wait(ctx context.Context) error {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

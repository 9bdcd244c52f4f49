package adapter

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestListenError: a busy address is said once, by its configuration key,
// and stays EADDRINUSE for errors.Is; other errors lose only the net
// package's repetition of the address.
func TestListenError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, lerr := net.Listen("tcp", busy.Addr().String())
	got := ListenError("mqtt.listen", busy.Addr().String(), lerr)
	if !errors.Is(got, syscall.EADDRINUSE) || strings.Count(got.Error(), "in use") != 1 ||
		!strings.HasPrefix(got.Error(), "mqtt.listen "+busy.Addr().String()+" is in use") {
		t.Errorf("busy: %q", got)
	}
	_, lerr = net.Listen("tcp", "127.0.0.1:99999")
	got = ListenError("http.listen", "127.0.0.1:99999", lerr)
	if strings.Count(got.Error(), "127.0.0.1:99999") != 1 || !strings.HasPrefix(got.Error(), "http.listen 127.0.0.1:99999: ") {
		t.Errorf("bad port: %q", got)
	}
}

// TestGroup: Wait waits for what Go started, and nothing starts after it.
func TestGroup(t *testing.T) {
	var g Group
	release := make(chan struct{})
	var ran atomic.Int32
	for range 5 {
		if !g.Go(func() { <-release; ran.Add(1) }) {
			t.Fatal("Go refused before Wait")
		}
	}
	waited := make(chan error, 1)
	go func() { waited <- g.Wait(context.Background()) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while goroutines ran")
	case <-time.After(50 * time.Millisecond):
	}
	for g.Go(func() { ran.Add(100) }) {
		// Wait may not have begun yet; what Go started is waited for too.
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if n := ran.Load(); n%100 != 5 {
		t.Fatalf("ran %d", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var h Group
	stuck := make(chan struct{})
	defer close(stuck)
	h.Go(func() { <-stuck })
	if err := h.Wait(ctx); err == nil {
		t.Fatal("Wait ignored its context")
	}
}

package adapter

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
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

//go:build linux

// Command reactor is a measured prototype of an MQTT front end that holds
// idle connections without a goroutine each: one epoll loop reads the
// sockets that are ready into one shared buffer, and a connection at rest is
// its socket plus a 32-byte state record (keep-alive deadline, protocol
// version, a partial packet when one is split across reads).
//
// It exists to measure what such a design costs per idle connection, side
// by side with the hub and mosquitto (bench/compare.sh runs `wanwu bench
// idle` against it). It accepts any CONNECT (no authentication), answers
// PINGREQ, acknowledges QoS 0/1 PUBLISHes and closes on DISCONNECT, on a
// malformed packet and on anything else; it relays nothing. What the hub
// would need besides is in bench/RESULTS.md.
//
//	go run ./bench/reactor --listen 127.0.0.1:18832
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18832", "IPv4 address and port to accept MQTT connections on")
	flag.Parse()
	r, err := Listen(*listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reactor:", err)
		os.Exit(1)
	}
	slog.Info("reactor: accepting MQTT connections", "addr", r.Addr())
	done := make(chan error, 1)
	go func() { done <- r.Serve() }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
		r.Close()
		err = <-done
	case err = <-done:
	}
	slog.Info("reactor: stopped", "accepted", r.accepted.Load(), "published", r.published.Load(), "refused", r.refused.Load())
	if err != nil {
		fmt.Fprintln(os.Stderr, "reactor:", err)
		os.Exit(1)
	}
}

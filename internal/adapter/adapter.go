// Package adapter says what a protocol adapter is to the role that runs it.
//
// An adapter (MQTT, CoAP; at the edge the southbound drivers such as Modbus)
// connects devices: it authenticates them, authorizes their topics or paths,
// decodes what they send into canonical messages and submits those to the
// pipeline, and carries what the platform sends them (twin changes,
// commands) back down. A role (hub, edge) holds a list of adapters and
// treats them alike through this interface: it starts them, tells them of
// identity and twin changes, asks them for their listeners, and shuts them
// down. Adding an adapter means writing one and adding it to the role's
// list; nothing else in the role's wiring names it.
//
// Every adapter hands what devices send to the one accept path, Intake: it
// decodes and validates, keeps a refusal as a dead letter, submits to the
// pipeline and answers once; the adapter only turns the answer into its
// protocol's.
//
// Commands reach devices the other way round: an adapter attaches a sink
// for a device that can take them (command.Service.Attach), and the command
// service delivers through it.
package adapter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// Adapter is a running protocol endpoint.
type Adapter interface {
	// Name is the adapter's short name ("mqtt", "coap"), used in logs,
	// metrics and Listeners' keys.
	Name() string
	// Start opens the adapter's listeners; Shutdown closes them and ends
	// its sessions, waiting for its goroutines. Shutdown is idempotent.
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
	// DisconnectDevice ends the device's sessions: its identity changed
	// (revoked, quarantined, a key revoked or rotated), and it must pass
	// admission again. It does not block on the device.
	DisconnectDevice(code string)
	// TwinChanged tells the adapter that the device's desired state
	// changed, so that a device connected to it gets the new state now.
	TwinChanged(code string)
	// Listeners returns the bound address of each open listener by its
	// name ("tcp", "tls", "udp", "dtls"); an empty map before Start.
	Listeners() map[string]string
}

// Presence hears of devices' sessions and traffic (presence.Service): an
// adapter with connections reports each session a device opens and why it
// ended; the intake reports every message it accepts. The calls must not
// block.
type Presence interface {
	Connected(code, tenant, protocol, remote string)
	Disconnected(code, tenant, protocol, reason string)
	Seen(code, tenant, protocol string)
}

// ListenError says which configured listener could not open, by its
// configuration key, once: the net package's "listen tcp ADDR:" is dropped,
// and an address in use says what to do about it.
func ListenError(key, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return inUse{fmt.Sprintf("%s %s is in use (is a hub or another program already listening there?); stop it or choose another address", key, addr)}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	return fmt.Errorf("%s %s: %w", key, addr, err)
}

// inUse is ListenError's answer for an address in use; it is EADDRINUSE
// for errors.Is without saying so twice.
type inUse struct{ msg string }

func (e inUse) Error() string { return e.msg }
func (e inUse) Unwrap() error { return syscall.EADDRINUSE }

// Addrs writes bound listener addresses as Listeners returns them.
func Addrs(addrs map[string]net.Addr) map[string]string {
	out := make(map[string]string, len(addrs))
	for name, a := range addrs {
		out[name] = a.String()
	}
	return out
}

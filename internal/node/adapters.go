package node

// The protocol adapters: built from the configuration, started, told of
// identity and twin changes, and shut down as one list.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/modbus"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
	"github.com/wanwu-iot/wanwu/internal/netuse"
	"github.com/wanwu-iot/wanwu/internal/protoerr"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/southbound"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// AdapterConfig is the configuration the adapters read.
type AdapterConfig struct {
	MQTT       config.MQTT
	CoAP       config.CoAP
	MaxPayload int // telemetry.max_payload
	// Southbound turns on the field-bus drivers (Modbus): the edge's, whose
	// devices the role gives them (southbound.Assign).
	Southbound bool
}

// AdapterDeps are what every adapter is built with.
type AdapterDeps struct {
	Registry *registry.Registry
	Intake   *adapter.Intake
	Twins    *twin.Service
	Commands *command.Service
	Presence adapter.Presence // nil: none
	// Usage counts each device's bytes per day; nil: not counted.
	Usage   *netuse.Accountant
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// ProtocolErrors counts malformed traffic for every adapter.
	ProtocolErrors *protoerr.Recorder
	// TLS is the server side of MQTT over TLS and, by its certificate,
	// of DTLS with certificates; nil when no TLS listener is configured.
	TLS *tls.Config
	// ClientCAs verifies device certificates.
	ClientCAs *x509.CertPool
	// PSK returns a device's DTLS pre-shared key; nil: no PSK suites.
	PSK func(ctx context.Context, code string) ([]byte, error)
	// SessionKeep says how long a sleeping device's idle session is worth
	// keeping (0: not a sleeping device); nil: none is kept longer than
	// coap.session_idle.
	SessionKeep func(code string) time.Duration
}

// builders are the adapters a node can run, in start order: each returns
// nil when the configuration turns it off. A new adapter is one more
// function here; a role's wiring does not change.
var builders = []func(AdapterConfig, AdapterDeps) (adapter.Adapter, error){buildMQTT, buildCoAP, buildModbus}

func buildModbus(c AdapterConfig, d AdapterDeps) (adapter.Adapter, error) {
	if !c.Southbound {
		return nil, nil
	}
	return modbus.New(modbus.Options{Intake: d.Intake, Commands: d.Commands, Twins: d.Twins, Presence: d.Presence,
		Logger: d.Logger, Metrics: d.Metrics})
}

func buildMQTT(c AdapterConfig, d AdapterDeps) (adapter.Adapter, error) {
	m := c.MQTT
	l := m.Limits
	return mqtt.New(mqtt.Options{
		Listen: m.Listen, TLSListen: m.TLSListen, TLS: d.TLS,
		DevListen: m.DevListen, DevACL: m.DevACL,
		Registry: d.Registry, Intake: d.Intake, Twins: d.Twins, Commands: d.Commands, Presence: d.Presence, Usage: d.Usage,
		Logger: d.Logger, Metrics: d.Metrics, ProtocolErrors: d.ProtocolErrors,
		MaxPacket: uint32(c.MaxPayload) + 1024, MaxInflight: uint16(m.MaxInflight), MaxQueued: m.MaxQueued,
		Limits: mqtt.Limits{
			ConnectPerDevice: rate.Limit(l.ConnectPerDevice), ConnectPerDeviceBurst: l.ConnectPerDeviceBurst,
			ConnectPerAddr: rate.Limit(l.ConnectPerAddr), ConnectPerAddrBurst: l.ConnectPerAddrBurst,
			PublishPerDevice: rate.Limit(l.PublishPerDevice), PublishPerDeviceBurst: l.PublishPerDeviceBurst,
			AuthFailuresPerAddr: rate.Limit(l.AuthFailuresPerAddr), AuthFailuresPerAddrBurst: l.AuthFailuresPerAddrBurst,
			AuthFailuresPerDevice: rate.Limit(l.AuthFailuresPerDevice), AuthFailuresPerDeviceBurst: l.AuthFailuresPerDeviceBurst,
		},
	})
}

func buildCoAP(c AdapterConfig, d AdapterDeps) (adapter.Adapter, error) {
	cc := c.CoAP
	if cc.DTLSListen == "" && cc.Listen == "" {
		return nil, nil
	}
	opts := coap.Options{
		Listen: cc.Listen, DTLSListen: cc.DTLSListen, PSK: d.PSK,
		Registry: d.Registry, Intake: d.Intake, Twins: d.Twins, Commands: d.Commands, Presence: d.Presence, Usage: d.Usage,
		Logger: d.Logger, Metrics: d.Metrics, MaxPayload: c.MaxPayload,
		Idle:      time.Duration(cc.SessionIdle),
		SleepIdle: sleepIdle(time.Duration(cc.SleepingSessionIdle), d.SessionKeep),
		Limits: coap.Limits{
			RequestsPerDevice: rate.Limit(cc.Limits.RequestPerDevice), RequestsPerDeviceBurst: cc.Limits.RequestPerDeviceBurst,
			RequestsPerAddr: rate.Limit(cc.Limits.RequestPerAddr), RequestsPerAddrBurst: cc.Limits.RequestPerAddrBurst,
		},
	}
	if cc.DTLSListen != "" && d.TLS != nil && len(d.TLS.Certificates) > 0 {
		opts.Certificate = &d.TLS.Certificates[0]
		opts.ClientCAs = d.ClientCAs
	}
	return coap.New(opts)
}

// sleepIdle is coap.Options.SleepIdle: what keep says, at most most.
func sleepIdle(most time.Duration, keep func(string) time.Duration) func(string) time.Duration {
	if most <= 0 || keep == nil {
		return nil
	}
	return func(code string) time.Duration { return min(keep(code), most) }
}

// Adapters are a node's running protocol adapters.
type Adapters struct {
	list []adapter.Adapter
}

// BuildAdapters builds the adapters the configuration turns on; none has
// started.
func BuildAdapters(c AdapterConfig, d AdapterDeps) (*Adapters, error) {
	a := &Adapters{}
	for _, build := range builders {
		x, err := build(c, d)
		if err != nil {
			return nil, err
		}
		if x != nil {
			a.list = append(a.list, x)
		}
	}
	return a, nil
}

// Start opens each adapter's listeners, in order; an adapter's errors name
// it, or the listener's configuration key. On error, stop the list with
// Shutdown.
func (a *Adapters) Start(ctx context.Context) error {
	for _, x := range a.list {
		if err := x.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Shutdown closes every adapter, so that nothing new arrives.
func (a *Adapters) Shutdown(ctx context.Context) error {
	var errs []error
	for _, x := range a.list {
		errs = append(errs, x.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// DisconnectDevice ends a device's sessions on every adapter.
func (a *Adapters) DisconnectDevice(code string) {
	for _, x := range a.list {
		x.DisconnectDevice(code)
	}
}

// TwinChanged tells every adapter that a device's desired state changed.
func (a *Adapters) TwinChanged(code string) {
	for _, x := range a.list {
		x.TwinChanged(code)
	}
}

// Listeners are the bound addresses of every adapter's listeners, keyed
// "<adapter>/<listener>" ("mqtt/tcp", "coap/dtls").
func (a *Adapters) Listeners() map[string]string {
	out := map[string]string{}
	for _, x := range a.list {
		for name, addr := range x.Listeners() {
			out[x.Name()+"/"+name] = addr
		}
	}
	return out
}

// Drivers are the southbound drivers among the adapters.
func (a *Adapters) Drivers() []southbound.Driver {
	var out []southbound.Driver
	for _, x := range a.list {
		if d, ok := x.(southbound.Driver); ok {
			out = append(out, d)
		}
	}
	return out
}

// Get returns the adapter of that name, nil if none runs.
func (a *Adapters) Get(name string) adapter.Adapter {
	for _, x := range a.list {
		if x.Name() == name {
			return x
		}
	}
	return nil
}

// The protocol endpoints are adapters.
var (
	_ adapter.Adapter   = (*mqtt.Server)(nil)
	_ adapter.Adapter   = (*coap.Server)(nil)
	_ southbound.Driver = (*modbus.Driver)(nil)
)

package modbus

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/southbound"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// Device is a Modbus device to poll: URL tcp://host:port or
// rtuovertcp://host:port, UnitID its unit (slave) id.
type Device = southbound.Device

// Status is what the driver knows of one device.
type Status = southbound.Status

// Protocol is the driver's name: Name, the intake's source, presence's
// protocol.
const Protocol = "modbus"

// URL schemes the driver takes.
const (
	SchemeTCP        = "tcp"        // Modbus TCP
	SchemeRTUOverTCP = "rtuovertcp" // Modbus RTU frames through a TCP gateway (a serial device server)
)

// Defaults for Options.
const (
	DefaultTimeout      = time.Second
	DefaultRetryBackoff = time.Second
	DefaultMaxBackoff   = time.Minute
	// MaxTimeout bounds a device's Timeout: a poll loop must notice a
	// shutdown within a bounded time, and it waits out a request.
	MaxTimeout = 30 * time.Second
	// resultTimeout bounds recording a command's result or a twin report.
	resultTimeout = 10 * time.Second
	// submitTimeout bounds the wait for the intake to make a poll durable.
	submitTimeout = 10 * time.Second
)

// Options configure a Driver. Intake is required.
type Options struct {
	// Intake takes every poll's values, as it takes every adapter's
	// messages: decode, validate against the model, dead letters.
	Intake *adapter.Intake
	// Commands, when set, delivers commands for the actions the mapping
	// writes; nil: none are taken.
	Commands *command.Service
	// Twins, when set, is read when a device's desired state changes
	// (TwinChanged) and when it comes online: a desired property mapped
	// to a holding register or coil is written, then reported. nil: the
	// desired state is not written.
	Twins *twin.Service
	// Presence hears of each device going online and offline, with the
	// reason; nil: none.
	Presence adapter.Presence
	// Devices are the devices to poll from Start; SetDevices replaces them.
	Devices []Device
	// Timeout bounds each request of a device whose own Timeout is 0
	// (default DefaultTimeout, at most MaxTimeout). Connecting has the
	// library's own bound of 5 s.
	Timeout time.Duration
	// RetryBackoff and MaxBackoff shape the wait after the n-th failed
	// attempt in a row to reach a device: RetryBackoff·2^(n-1), at most
	// MaxBackoff, jittered into [d/2, d] (defaults 1 s, 1 min). A group
	// whose reads fail with an exception or a malformed answer waits as
	// long, or its interval if that is longer.
	RetryBackoff, MaxBackoff time.Duration
	Logger                   *slog.Logger
	// Metrics registers the wanwu_modbus_* metrics; nil: not exported.
	Metrics prometheus.Registerer
}

// Driver polls Modbus devices and writes to them: a southbound.Driver.
type Driver struct {
	o   Options
	log *slog.Logger
	lib *log.Logger // the library's own lines, at debug level
	m   *metrics

	mu      sync.Mutex
	devices map[string]*target // the list: what to poll once started
	pollers map[string]*poller // running, by code
	started bool
	stopped bool
	ctx     context.Context // the pollers' parent; canceled by Shutdown
	cancel  context.CancelFunc
	g       adapter.Group
}

// target is a device of the list with its compiled mapping.
type target struct {
	dev     Device
	plan    *plan
	remote  string // host:port
	timeout time.Duration
}

var _ southbound.Driver = (*Driver)(nil)

// New checks o and returns a Driver that has not started. A device of
// o.Devices it cannot poll is a configuration error, named as SetDevices
// names it.
func New(o Options) (*Driver, error) {
	if o.Intake == nil {
		return nil, errors.New("modbus: Intake is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	o.Timeout = min(o.Timeout, MaxTimeout)
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.RetryBackoff)
	lg := o.Logger.With("component", Protocol)
	d := &Driver{o: o, log: lg, lib: slog.NewLogLogger(lg.Handler(), slog.LevelDebug), pollers: map[string]*poller{}}
	devices, err := d.targets(o.Devices)
	if err != nil {
		return nil, err
	}
	if d.m, err = newMetrics(o.Metrics); err != nil {
		return nil, err
	}
	d.devices = devices
	d.m.devices.Set(float64(len(devices)))
	return d, nil
}

// Name is "modbus".
func (d *Driver) Name() string { return Protocol }

// Schemes are tcp and rtuovertcp.
func (d *Driver) Schemes() []string { return []string{SchemeTCP, SchemeRTUOverTCP} }

// Listeners is empty: the driver listens on nothing; it connects to its
// devices (Status lists them).
func (d *Driver) Listeners() map[string]string { return map[string]string{} }

// Start starts polling every device of the list, each on its own
// goroutine. A second Start does nothing; a Start after Shutdown is an
// error.
func (d *Driver) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.stopped:
		return errors.New("modbus: shut down")
	case d.started:
		return nil
	}
	d.started = true
	// The pollers outlive Start's ctx: Shutdown ends them.
	d.ctx, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, code := range sortedCodes(d.devices) {
		d.startLocked(d.devices[code], nil)
	}
	return nil
}

// Shutdown stops polling, reports each online device offline (reason
// "shutdown"), and waits for the poll goroutines, each of which may be
// waiting out a request's timeout, or for ctx. It is idempotent.
func (d *Driver) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	for _, p := range d.pollers {
		p.stop(presence.ReasonShutdown)
	}
	clear(d.pollers)
	if d.cancel != nil {
		d.cancel()
	}
	d.mu.Unlock()
	if err := d.g.Wait(ctx); err != nil {
		return fmt.Errorf("modbus: shutdown: %w", err)
	}
	return nil
}

// SetDevices replaces the list of devices: new ones start, removed ones
// stop, and one whose URL, unit, timeout, tenant or model version changed
// starts again once its old poll loop ended. A device that cannot be
// polled (a URL that is not tcp:// or rtuovertcp:// with a host and port,
// a model without a valid Modbus mapping, a code twice) is left out and
// named in the error; the others are taken.
func (d *Driver) SetDevices(devs []Device) error {
	next, err := d.targets(devs)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.devices = next
	d.m.devices.Set(float64(len(next)))
	if !d.started || d.stopped {
		return err
	}
	for code, p := range d.pollers {
		if t := next[code]; t == nil || !same(t, p.t) {
			p.stop(ReasonRemoved)
			delete(d.pollers, code)
			if t != nil {
				d.startLocked(t, p.done)
			}
		}
	}
	for _, code := range sortedCodes(next) {
		if d.pollers[code] == nil {
			d.startLocked(next[code], nil)
		}
	}
	return err
}

// targets checks a device list: the devices it can poll, and an error
// naming each it cannot.
func (d *Driver) targets(devs []Device) (map[string]*target, error) {
	next := make(map[string]*target, len(devs))
	var errs []error
	for _, dev := range devs {
		t, err := d.target(dev)
		if err == nil && next[dev.Code] != nil {
			err = errors.New("listed twice")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("modbus: device %s: %w", dev.Code, err))
			continue
		}
		next[dev.Code] = t
	}
	return next, errors.Join(errs...)
}

// ReasonRemoved is the presence reason of a device taken off the list.
const ReasonRemoved = "removed"

// same reports whether a and b poll the same device the same way. A
// model version is immutable, so its key stands for its mapping.
func same(a, b *target) bool {
	x, y := a.dev, b.dev
	return x.URL == y.URL && x.UnitID == y.UnitID && a.timeout == b.timeout && x.Tenant == y.Tenant &&
		x.Model.Key() == y.Model.Key()
}

func (d *Driver) target(dev Device) (*target, error) {
	if dev.Code == "" {
		return nil, errors.New("no code")
	}
	u, err := url.Parse(dev.URL)
	if err != nil {
		return nil, fmt.Errorf("URL: %w", err)
	}
	if u.Scheme != SchemeTCP && u.Scheme != SchemeRTUOverTCP {
		return nil, fmt.Errorf("URL %q: the scheme must be %s or %s", dev.URL, SchemeTCP, SchemeRTUOverTCP)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("URL %q: want %s://host:port", dev.URL, u.Scheme)
	}
	if u.Scheme == SchemeRTUOverTCP && dev.UnitID == 0 {
		// Unit 0 is a broadcast on a serial line: no device answers it.
		return nil, errors.New("unit 0 is the broadcast address of Modbus RTU; give the device's unit id")
	}
	pl, err := compile(dev.Model)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	timeout := dev.Timeout
	if timeout <= 0 {
		timeout = d.o.Timeout
	}
	return &target{dev: dev, plan: pl, remote: u.Host, timeout: min(timeout, MaxTimeout)}, nil
}

// startLocked starts t's poll loop once after (the device's previous loop)
// is done, so that two loops never talk to one device.
func (d *Driver) startLocked(t *target, after <-chan struct{}) {
	p := newPoller(d, t, after)
	ctx, cancel := context.WithCancel(d.ctx)
	p.cancel = cancel
	if !d.g.Go(func() { p.run(ctx) }) {
		cancel()
		return
	}
	d.pollers[t.dev.Code] = p
}

// DisconnectDevice stops polling a device whose identity changed (revoked,
// quarantined) and reports it offline, reason "revoked"; it is taken off
// the list until a SetDevices lists it again.
func (d *Driver) DisconnectDevice(code string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.devices[code]; ok {
		delete(d.devices, code)
		d.m.devices.Set(float64(len(d.devices)))
	}
	if p := d.pollers[code]; p != nil {
		p.stop(presence.ReasonRevoked)
		delete(d.pollers, code)
	}
}

// TwinChanged has the device's poll loop write the desired properties
// that have a writable register (Options.Twins).
func (d *Driver) TwinChanged(code string) {
	d.mu.Lock()
	p := d.pollers[code]
	d.mu.Unlock()
	if p != nil && d.o.Twins != nil {
		p.twinChanged()
	}
}

// Status reports every device of the list, sorted by code.
func (d *Driver) Status() []Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Status, 0, len(d.devices))
	for _, code := range sortedCodes(d.devices) {
		if p := d.pollers[code]; p != nil {
			out = append(out, p.status())
		} else {
			out = append(out, Status{Code: code})
		}
	}
	return out
}

// backoff is the wait after the n-th failure in a row.
func (d *Driver) backoff(n int) time.Duration {
	w := d.o.RetryBackoff
	for i := 1; i < n && w < d.o.MaxBackoff; i++ {
		w *= 2
	}
	w = min(w, d.o.MaxBackoff)
	half := w / 2
	return half + rand.N(w-half+1)
}

func sortedCodes[V any](m map[string]V) []string {
	codes := make([]string, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return codes
}

// topic names a group of a device for its dead letters.
func topic(t *target, g int) string {
	return fmt.Sprintf("%s unit %d group %d", t.dev.URL, t.dev.UnitID, g)
}

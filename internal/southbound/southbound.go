package southbound

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Device is one field device a driver polls.
type Device struct {
	Code, Tenant string
	// Model is the device's thing model; its mapping says what to poll
	// (thingmodel.ModbusMapping for Modbus).
	Model *thingmodel.Model
	// URL says where the device is and how to reach it; its scheme picks
	// the driver: tcp://host:port (Modbus TCP), rtuovertcp://host:port
	// (Modbus RTU through a TCP gateway).
	URL string
	// UnitID is the Modbus unit (slave) id; drivers without one ignore it.
	UnitID uint8
	// Timeout bounds each request to the device; 0: the driver's default.
	Timeout time.Duration
}

// Status is what a driver knows of one of its devices.
type Status struct {
	Code string `json:"code"`
	// Online: the device answered its latest request.
	Online bool `json:"online"`
	// Reason says why it is offline ("timeout", "network", a gateway's
	// exception); "" while online or before the first attempt.
	Reason string `json:"reason,omitempty"`
	// LastError is the latest failed request's error, whatever its cause
	// (an exception, a malformed answer), and when it happened.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastPoll is the latest poll's start, LastSuccess the latest poll
	// that read every value it asked for (whether or not the model then
	// accepted them: a refusal is a dead letter, counted apart).
	LastPoll    time.Time `json:"last_poll,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Polls counts successful polls since the device's poll loop started.
	Polls uint64 `json:"polls"`
	// Failures counts consecutive attempts that did not reach the device;
	// Backoff is the wait before the next one (0 while it answers).
	Failures int           `json:"failures,omitempty"`
	Backoff  time.Duration `json:"backoff,omitempty"`
}

// Driver is a running field-bus driver.
type Driver interface {
	adapter.Adapter
	// Schemes are the URL schemes of the devices it takes.
	Schemes() []string
	// SetDevices replaces the devices it polls: new ones start, removed
	// ones stop, changed ones restart. A device it cannot poll (its URL,
	// its model's mapping) is left out and named in the error; the others
	// are taken all the same.
	SetDevices(devs []Device) error
	// Status reports every device of its list, by code.
	Status() []Status
}

// ErrNoDriver: a device's URL has a scheme no driver takes.
var ErrNoDriver = errors.New("southbound: no driver for the device's URL scheme")

// Assign gives each driver the devices whose URL scheme it takes, and every
// driver its list, empty or not, so that devices no longer listed stop. A
// device no driver takes is left out and named in the error.
func Assign(drivers []Driver, devs []Device) error {
	lists := make([][]Device, len(drivers))
	var errs []error
	for _, d := range devs {
		u, err := url.Parse(d.URL)
		if err != nil {
			errs = append(errs, fmt.Errorf("southbound: device %s: URL: %w", d.Code, err))
			continue
		}
		i := slices.IndexFunc(drivers, func(x Driver) bool { return slices.Contains(x.Schemes(), u.Scheme) })
		if i < 0 {
			errs = append(errs, fmt.Errorf("device %s: scheme %q: %w", d.Code, u.Scheme, ErrNoDriver))
			continue
		}
		lists[i] = append(lists[i], d)
	}
	for i, x := range drivers {
		if err := x.SetDevices(lists[i]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", x.Name(), err))
		}
	}
	return errors.Join(errs...)
}

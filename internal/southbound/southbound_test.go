package southbound

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// listDriver keeps the lists it is given.
type listDriver struct {
	name    string
	schemes []string
	got     [][]string
	refuse  string // a code SetDevices names as not pollable
}

func (d *listDriver) Name() string                   { return d.name }
func (d *listDriver) Start(context.Context) error    { return nil }
func (d *listDriver) Shutdown(context.Context) error { return nil }
func (d *listDriver) DisconnectDevice(string)        {}
func (d *listDriver) TwinChanged(string)             {}
func (d *listDriver) Listeners() map[string]string   { return map[string]string{} }
func (d *listDriver) Schemes() []string              { return d.schemes }
func (d *listDriver) Status() []Status               { return nil }
func (d *listDriver) SetDevices(devs []Device) (err error) {
	var codes []string
	for _, dev := range devs {
		if dev.Code == d.refuse {
			err = errors.New("device " + dev.Code + ": refused")
			continue
		}
		codes = append(codes, dev.Code)
	}
	d.got = append(d.got, codes)
	return err
}

func TestAssign(t *testing.T) {
	mb := &listDriver{name: "modbus", schemes: []string{"tcp", "rtuovertcp"}, refuse: "acme:m3"}
	ua := &listDriver{name: "opcua", schemes: []string{"opc.tcp"}}
	err := Assign([]Driver{mb, ua}, []Device{
		{Code: "acme:m1", URL: "tcp://10.0.0.1:502"},
		{Code: "acme:o1", URL: "opc.tcp://10.0.0.2:4840"},
		{Code: "acme:m2", URL: "rtuovertcp://10.0.0.3:4001"},
		{Code: "acme:m3", URL: "tcp://10.0.0.4:502"},
		{Code: "acme:x", URL: "bacnet://10.0.0.5"},
		{Code: "acme:y", URL: "::"},
	})
	if !slices.Equal(mb.got[0], []string{"acme:m1", "acme:m2"}) || !slices.Equal(ua.got[0], []string{"acme:o1"}) {
		t.Errorf("lists: modbus %q, opcua %q", mb.got, ua.got)
	}
	if !errors.Is(err, ErrNoDriver) {
		t.Errorf("error %v is not ErrNoDriver", err)
	}
	for _, want := range []string{`device acme:x: scheme "bacnet"`, "device acme:y: URL", "modbus: device acme:m3: refused"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	// An empty list stops every device.
	if err := Assign([]Driver{mb, ua}, nil); err != nil {
		t.Fatal(err)
	}
	if len(mb.got) != 2 || len(mb.got[1]) != 0 || len(ua.got[1]) != 0 {
		t.Errorf("empty lists not given: %q %q", mb.got, ua.got)
	}
}

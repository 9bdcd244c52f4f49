package modbus

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the driver's Prometheus metrics. None has a device label:
// a fleet's devices would each cost a series; Status has them per device.
type metrics struct {
	polls   prometheus.Counter
	errors  *prometheus.CounterVec
	writes  *prometheus.CounterVec
	devices prometheus.Gauge
	online  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		polls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wanwu_modbus_polls_total",
			Help: "Polls of a group of registers of a Modbus device, failed ones included.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_modbus_errors_total",
			Help: "Failed Modbus requests and refused values, by cause: timeout, connection, exception, bad_response, bad_value, refused.",
		}, []string{"cause"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_modbus_writes_total",
			Help: "Writes for commands and desired state, by result: succeeded, failed (the device or the value refused it), unreached.",
		}, []string{"result"}),
		devices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wanwu_modbus_devices",
			Help: "Modbus devices being polled.",
		}),
		online: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wanwu_modbus_devices_online",
			Help: "Modbus devices that answered their latest request.",
		}),
	}
	// The labels known in advance start at zero, so that a rate over them
	// is defined before the first error.
	for _, c := range []string{causeTimeout, causeConnection, causeException, causeBadResponse, causeBadValue, causeRefused} {
		m.errors.WithLabelValues(c)
	}
	for _, r := range []string{writeSucceeded, writeFailed, writeUnreached} {
		m.writes.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.polls, m.errors, m.writes, m.devices, m.online} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("modbus: metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Results of a write.
const (
	writeSucceeded = "succeeded"
	writeFailed    = "failed"
	writeUnreached = "unreached"
)

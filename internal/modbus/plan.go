package modbus

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Limits of one request (Modbus Application Protocol v1.1b3 §6.1-6.4).
const (
	maxReadRegisters = 125
	maxReadBits      = 2000
)

// plan is a model's Modbus mapping ready to run: each group's reads
// merged into as few requests as the registers allow, and the writes.
type plan struct {
	groups  []*groupPlan
	actions map[string]*write // by action
	desired map[string]*point // properties the twin's desired state may set
}

type groupPlan struct {
	index    int
	interval time.Duration
	readings []reading // in the mapping's order: the published order
	reqs     []request
}

// reading is one property's value in a poll.
type reading struct {
	prop string
	p    point
}

// request reads count registers (or bits) of table from start; item i of
// the group's readings takes words off..off+words of the answer.
type request struct {
	table string
	start uint16
	count uint16
	items []item
}

type item struct {
	reading int // index in groupPlan.readings
	off     int
}

// write is what a command for one action writes.
type write struct {
	arg     string  // the argument written, or ""
	argUnit string  // its unit in the model, converted to p.unit
	value   float64 // the constant written when arg is ""
	p       point
}

// errNoMapping: the device's model has no Modbus mapping to poll or write.
var errNoMapping = errors.New("the model has no Modbus mapping")

// compile turns m's Modbus mapping into a plan.
func compile(m *thingmodel.Model) (*plan, error) {
	if m == nil || m.Mapping == nil || m.Mapping.Modbus == nil {
		return nil, errNoMapping
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	mb := m.Mapping.Modbus
	pl := &plan{actions: map[string]*write{}, desired: map[string]*point{}}
	for i, g := range mb.Groups {
		d, err := time.ParseDuration(g.Interval)
		if err != nil { // Validate checked it
			return nil, fmt.Errorf("group %d: %w", i, err)
		}
		gp := &groupPlan{index: i, interval: d}
		gp.readings = make([]reading, len(g.Registers))
		for j, r := range g.Registers {
			gp.readings[j] = reading{prop: r.Property, p: newPoint(&r.ModbusPoint)}
			if thingmodel.ModbusWritable(gp.readings[j].p.table) && !m.Properties[r.Property].ReadOnly {
				pl.desired[r.Property] = &gp.readings[j].p
			}
		}
		gp.reqs = merge(gp.readings)
		pl.groups = append(pl.groups, gp)
	}
	for name, w := range mb.Actions {
		wr := &write{arg: w.Argument, p: newPoint(&w.ModbusPoint)}
		switch v := w.Value.(type) {
		case bool:
			if v {
				wr.value = 1
			}
		case float64:
			wr.value = v
		}
		if wr.arg != "" {
			wr.argUnit = m.Actions[name].Input[wr.arg].Unit
		}
		pl.actions[name] = wr
	}
	return pl, nil
}

// merge groups readings of one table at adjacent addresses into requests,
// each within a request's limit. Readings that are not adjacent get
// requests of their own: registers in between may not exist on the
// device, and reading one that does not is an exception for the whole
// request.
func merge(readings []reading) []request {
	order := make([]int, len(readings))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ra, rb := &readings[a].p, &readings[b].p
		if ra.table != rb.table {
			if ra.table < rb.table {
				return -1
			}
			return 1
		}
		return int(ra.addr) - int(rb.addr)
	})
	var reqs []request
	for _, i := range order {
		p := &readings[i].p
		limit := maxReadRegisters
		if !thingmodel.ModbusRegisterTable(p.table) {
			limit = maxReadBits
		}
		if n := len(reqs); n > 0 {
			last := &reqs[n-1]
			if last.table == p.table && int(last.start)+int(last.count) == int(p.addr) && int(last.count)+p.words <= limit {
				last.items = append(last.items, item{reading: i, off: int(last.count)})
				last.count += uint16(p.words)
				continue
			}
		}
		reqs = append(reqs, request{table: p.table, start: p.addr, count: uint16(p.words), items: []item{{reading: i}}})
	}
	return reqs
}

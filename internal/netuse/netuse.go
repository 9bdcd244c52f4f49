// Package netuse applies each device's network profile (package
// netprofile) at the hub: it counts the bytes every device exchanges with
// the hub per UTC day against the daily byte budget of its profile
// (Accountant), and says whether a device whose link sleeps (PSM) can be
// reached now and when it is expected to be next (Reachability).
//
// # Counting bytes
//
// What is counted is what the hub reads from and writes to the device's
// connection or datagrams: MQTT packets with the TLS records around them
// (handshakes included), CoAP datagrams over plain UDP, CoAP messages over
// DTLS with the overhead of their records (header, explicit nonce, tag; not
// the handshake, which the DTLS library does not let the hub see). IP, TCP
// and UDP headers, retransmissions below TCP and the radio's own overhead
// are not visible to the hub and not counted, so a carrier's bill is
// higher. HTTP ingest is not counted. An adapter gives every connection (or DTLS session, or
// plain-UDP endpoint) a Meter, counts into it with an atomic add per read
// or write, and hands it to the Accountant once it knows the device
// (Attribute) and back when the connection ends (Release). The hot path
// costs that add and nothing else.
//
// Every Options.FlushEvery the Accountant drains the meters, adds what
// they counted to the device's row of the day in the table device_bytes
// (device, day, up, down; the metadata database), and to the counter
// wanwu_device_bytes_total{tenant,network,direction}. Bytes counted before
// midnight (UTC) and flushed after it count to the new day. The API's
// figures are those of the last flush.
//
// # Budgets
//
// A device's budget is its profile's DailyBudget, as the hub's
// configuration may override it (networks.profiles.<name>.daily_budget),
// for up and down together. The flush that takes a device past it records
// the crossing in the device's row, in the same transaction as the bytes,
// then writes the device event "wanwu.budget_exceeded" to the event store
// (a name no thing model can declare; webhooks deliver it like any device
// event) and logs one line: once per device and day, and again after a
// restart only if the event was not written (writing it twice stores it
// once). wanwu_devices_over_budget{tenant,network} counts the devices over
// their budget today. Nothing is refused: the budget is an alarm, not a cap.
package netuse

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// EventBudgetExceeded is the device event a budget crossing writes.
const EventBudgetExceeded = "wanwu.budget_exceeded"

// NoNetwork is the network label of devices without a network profile.
const NoNetwork = "none"

// Defaults for Options.
const (
	DefaultFlushEvery = 10 * time.Second
	DefaultKeepDays   = 400
)

// EventWriter stores device events: the event store.
type EventWriter interface {
	Write(ctx context.Context, events []eventstore.Event, values []eventstore.Value) error
}

// Options configure an Accountant.
type Options struct {
	DB *store.DB
	// Events receives the budget crossings; nil: none written.
	Events EventWriter
	// Network returns a device's network profile name ("" for none) and
	// an error wrapping a not-found error for an unknown device; the
	// registry's Network.
	Network func(ctx context.Context, code string) (string, error)
	// Profile returns a profile with the deployment's overrides;
	// default netprofile.Lookup.
	Profile    func(name string) (netprofile.Profile, bool)
	Now        func() time.Time
	Logger     *slog.Logger
	Metrics    prometheus.Registerer
	FlushEvery time.Duration // default DefaultFlushEvery
	// KeepDays is how many days of rows are kept; default DefaultKeepDays.
	KeepDays int
}

// Accountant counts the bytes of every device per UTC day.
type Accountant struct {
	o   Options
	db  *store.DB
	log *slog.Logger

	fmu sync.Mutex // one flush at a time

	mu      sync.Mutex // guards what follows
	day     string     // the UTC day the devices' totals are of
	devices map[string]*device
	meters  map[*Meter]*device
	events  []eventstore.Event // crossings not yet in the event store
	asOf    time.Time          // the last flush

	bytes *prometheus.CounterVec // wanwu_device_bytes_total
	over  *prometheus.GaugeVec   // wanwu_devices_over_budget

	cancel context.CancelFunc
	done   chan struct{}
}

// device is one device's day in memory.
type device struct {
	code, tenant string
	network      string
	known        bool  // network was looked up (or read with today's row)
	meters       int   // meters counting for it now
	pendUp       int64 // drained from meters, not yet written
	pendDown     int64
	up, down     int64 // written today
	overAt       int64 // ms of today's crossing, 0 none
}

var migrations = []store.Migration{{
	Name: "bytes per device and day",
	Statements: []string{
		// day is YYYY-MM-DD (UTC); tenant and network are the device's
		// when its bytes were last written, so that a day keeps the
		// network it was counted under; over_at is when the day's budget
		// was crossed (ms, 0 not) and over_event the event written for
		// it, kept to write it again, identically, after a crash.
		`CREATE TABLE device_bytes (
			device     TEXT NOT NULL,
			day        TEXT NOT NULL,
			tenant     TEXT NOT NULL,
			network    TEXT NOT NULL DEFAULT '',
			up         INTEGER NOT NULL DEFAULT 0,
			down       INTEGER NOT NULL DEFAULT 0,
			over_at    INTEGER NOT NULL DEFAULT 0,
			over_event BLOB,
			PRIMARY KEY (device, day)
		)`,
		`CREATE INDEX device_bytes_day ON device_bytes (day, tenant)`,
	},
}}

// Open migrates the table and reads today's rows, so that a restart goes
// on counting the day where it was; budget crossings recorded today are
// written to the event store again (a repeat stores nothing new).
func Open(ctx context.Context, o Options) (*Accountant, error) {
	if o.DB == nil || o.Network == nil {
		return nil, errors.New("netuse: DB and Network are required")
	}
	if o.Profile == nil {
		o.Profile = netprofile.Lookup
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultFlushEvery
	}
	if o.KeepDays <= 0 {
		o.KeepDays = DefaultKeepDays
	}
	if err := o.DB.Migrate(ctx, "netuse", migrations); err != nil {
		return nil, fmt.Errorf("netuse: %w", err)
	}
	a := &Accountant{
		o: o, db: o.DB, log: o.Logger.With("component", "netuse"),
		devices: map[string]*device{}, meters: map[*Meter]*device{},
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_device_bytes_total",
			Help: "Bytes devices exchanged with the hub over MQTT and CoAP (TLS/DTLS included; IP/TCP/UDP headers and radio overhead not), by tenant, network profile and direction (up: from the device).",
		}, []string{"tenant", "network", "direction"}),
		over: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wanwu_devices_over_budget",
			Help: "Devices over their network profile's daily byte budget today (UTC), by tenant and network profile.",
		}, []string{"tenant", "network"}),
	}
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{a.bytes, a.over} {
			if err := o.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("netuse: metrics: %w", err)
			}
		}
	}
	if err := a.load(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// Day is the UTC day of t as device_bytes keys it.
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// load reads today's rows into memory.
func (a *Accountant) load(ctx context.Context) error {
	now := a.o.Now()
	a.day, a.asOf = Day(now), now
	rows, err := a.db.R.QueryContext(ctx, `SELECT device, tenant, network, up, down, over_at, over_event FROM device_bytes WHERE day = ?`, a.day)
	if err != nil {
		return fmt.Errorf("netuse: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		d := &device{known: true}
		var ev []byte
		if err := rows.Scan(&d.code, &d.tenant, &d.network, &d.up, &d.down, &d.overAt, &ev); err != nil {
			return fmt.Errorf("netuse: %w", err)
		}
		a.devices[d.code] = d
		if d.overAt != 0 && len(ev) > 0 {
			a.events = append(a.events, crossingEvent(d, ev))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("netuse: %w", err)
	}
	a.setOverGauge()
	a.writeEvents(ctx)
	return nil
}

// Start runs the goroutine that flushes every FlushEvery and prunes old rows.
func (a *Accountant) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan struct{})
	go func() {
		defer close(a.done)
		t := time.NewTicker(a.o.FlushEvery)
		defer t.Stop()
		prune := time.NewTicker(time.Hour)
		defer prune.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := a.Flush(ctx); err != nil && ctx.Err() == nil {
					a.log.Warn("device byte counts not written; retrying", "err", err)
				}
			case <-prune.C:
				if err := a.prune(ctx); err != nil && ctx.Err() == nil {
					a.log.Warn("old device byte counts not pruned", "err", err)
				}
			}
		}
	}()
}

// Shutdown stops the goroutine and writes what the meters counted. The
// adapters stop first, so that their connections' last bytes are in.
func (a *Accountant) Shutdown(ctx context.Context) error {
	if a == nil {
		return nil
	}
	if a.cancel != nil {
		a.cancel()
		<-a.done
	}
	return a.Flush(ctx)
}

// Attribute tells the Accountant that m counts a device's bytes, from
// now and from before (what m counted so far is the device's too: a TLS
// handshake, the CONNECT). A meter attributed to another device before
// moves: what it counted until now stays with that one. It only touches
// memory, so adapters call it where they admit a device.
func (a *Accountant) Attribute(m *Meter, code, tenant string) {
	if a == nil || m == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if d := a.meters[m]; d != nil {
		if d.code == code {
			return
		}
		up, down := m.take()
		d.pendUp, d.pendDown = d.pendUp+up, d.pendDown+down
		d.meters--
	}
	d := a.devices[code]
	if d == nil {
		d = &device{code: code, tenant: tenant}
		a.devices[code] = d
	}
	d.meters++
	a.meters[m] = d
}

// Release ends m's attribution when its connection ends; what it counted
// is written with the next flush.
func (a *Accountant) Release(m *Meter) {
	if a == nil || m == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.meters[m]
	if d == nil {
		return
	}
	delete(a.meters, m)
	d.meters--
	up, down := m.take()
	d.pendUp, d.pendDown = d.pendUp+up, d.pendDown+down
}

// NetworkChanged tells the Accountant that a device's network profile
// changed (an object update); its next bytes count under the new one.
func (a *Accountant) NetworkChanged(code, network string) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if d := a.devices[code]; d != nil {
		d.network, d.known = network, true
	}
}

// Budget is the daily byte budget of a network profile (0: none).
func (a *Accountant) Budget(network string) int64 {
	if p, ok := a.o.Profile(network); ok {
		return p.DailyBudget
	}
	return 0
}

// written is one device's delta in a flush.
type written struct {
	d        *device
	up, down int64
	network  string
	overAt   int64
	event    []byte // the crossing's event data, when this flush crosses
}

// Flush drains the meters and writes every device's new bytes of the day,
// with the budget crossings they make, in one transaction; then it adds
// them to the metrics and writes the crossings' events.
func (a *Accountant) Flush(ctx context.Context) error {
	a.fmu.Lock()
	defer a.fmu.Unlock()
	now := a.o.Now()
	today := Day(now)

	a.mu.Lock()
	if today != a.day {
		// A new UTC day: every device starts it at zero. What was
		// counted and not written yet counts to the new day. Devices
		// neither connected nor waiting to be written are forgotten;
		// the others stay for the day (their totals decide the budget).
		for code, d := range a.devices {
			d.up, d.down, d.overAt = 0, 0, 0
			if d.pendUp == 0 && d.pendDown == 0 && d.meters == 0 {
				delete(a.devices, code)
			}
		}
		a.day = today
		a.setOverGauge()
	}
	for m, d := range a.meters {
		up, down := m.take()
		d.pendUp, d.pendDown = d.pendUp+up, d.pendDown+down
	}
	var lookup []*device
	for _, d := range a.devices {
		if !d.known && (d.pendUp > 0 || d.pendDown > 0) {
			lookup = append(lookup, d)
		}
	}
	a.mu.Unlock()

	// Networks of devices first seen: read outside the lock.
	found := map[*device]string{}
	for _, d := range lookup {
		n, err := a.o.Network(ctx, d.code)
		if err != nil && ctx.Err() != nil {
			return err
		}
		if err != nil {
			// Unknown (deleted meanwhile) or the registry failed: counted
			// without a network this time, looked up again next time.
			a.log.Debug("network of a device not read", "device", d.code, "err", err)
			continue
		}
		found[d] = n
	}

	a.mu.Lock()
	for d, n := range found {
		if !d.known {
			d.network, d.known = n, true
		}
	}
	var batch []written
	for _, d := range a.devices {
		if d.pendUp == 0 && d.pendDown == 0 {
			continue
		}
		w := written{d: d, up: d.pendUp, down: d.pendDown, network: d.network}
		if d.overAt == 0 {
			if b := a.Budget(d.network); b > 0 && d.up+d.down+w.up+w.down > b {
				w.overAt = now.UnixMilli()
				w.event, _ = json.Marshal(map[string]any{
					"day": today, "network": d.network, "budget": b,
					"up": d.up + w.up, "down": d.down + w.down,
				})
			}
		}
		batch = append(batch, w)
	}
	a.mu.Unlock()
	if len(batch) == 0 {
		a.mu.Lock()
		a.asOf = now
		a.mu.Unlock()
		a.writeEvents(ctx)
		return nil
	}

	err := a.db.Tx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO device_bytes (device, day, tenant, network, up, down, over_at, over_event)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (device, day) DO UPDATE SET tenant = excluded.tenant, network = excluded.network,
				up = up + excluded.up, down = down + excluded.down,
				over_at = CASE WHEN over_at = 0 THEN excluded.over_at ELSE over_at END,
				over_event = CASE WHEN over_at = 0 THEN excluded.over_event ELSE over_event END`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, w := range batch {
			var ev any
			if w.event != nil {
				ev = w.event
			}
			if _, err := st.ExecContext(ctx, w.d.code, today, w.d.tenant, w.network, w.up, w.down, w.overAt, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Nothing was taken from the pending counts: the next flush
		// writes them with whatever comes meanwhile.
		return fmt.Errorf("netuse: write: %w", err)
	}

	a.mu.Lock()
	for _, w := range batch {
		d := w.d
		d.pendUp, d.pendDown = d.pendUp-w.up, d.pendDown-w.down
		d.up, d.down = d.up+w.up, d.down+w.down
		label := networkLabel(w.network)
		a.bytes.WithLabelValues(d.tenant, label, "up").Add(float64(w.up))
		a.bytes.WithLabelValues(d.tenant, label, "down").Add(float64(w.down))
		if w.overAt != 0 {
			d.overAt = w.overAt
			a.events = append(a.events, crossingEvent(d, w.event))
			a.log.Warn("device over its daily byte budget", "device", d.code, "network", w.network,
				"budget", a.Budget(w.network), "bytes", d.up+d.down, "day", today)
		}
	}
	a.asOf = now
	a.setOverGauge()
	a.mu.Unlock()
	a.writeEvents(ctx)
	return nil
}

// setOverGauge recounts the devices over budget today; a.mu is held.
func (a *Accountant) setOverGauge() {
	type key struct{ tenant, network string }
	n := map[key]int{}
	for _, d := range a.devices {
		if d.overAt != 0 {
			n[key{d.tenant, networkLabel(d.network)}]++
		}
	}
	a.over.Reset()
	for k, v := range n {
		a.over.WithLabelValues(k.tenant, k.network).Set(float64(v))
	}
}

// crossingEvent is the device event of a budget crossing.
func crossingEvent(d *device, data []byte) eventstore.Event {
	return eventstore.Event{Tenant: d.tenant, Device: d.code, Name: EventBudgetExceeded, Time: d.overAt, Data: data, Received: d.overAt}
}

// writeEvents writes the crossings not yet in the event store; those that
// fail stay for the next flush.
func (a *Accountant) writeEvents(ctx context.Context) {
	a.mu.Lock()
	evs := a.events
	a.events = nil
	a.mu.Unlock()
	if len(evs) == 0 || a.o.Events == nil {
		return
	}
	if err := a.o.Events.Write(ctx, evs, nil); err != nil {
		a.log.Warn("budget crossing events not written; retrying", "events", len(evs), "err", err)
		a.mu.Lock()
		a.events = append(evs, a.events...)
		a.mu.Unlock()
	}
}

// prune deletes rows older than KeepDays.
func (a *Accountant) prune(ctx context.Context) error {
	oldest := Day(a.o.Now().AddDate(0, 0, -a.o.KeepDays))
	_, err := a.db.W.ExecContext(ctx, `DELETE FROM device_bytes WHERE day < ?`, oldest)
	return err
}

func networkLabel(n string) string {
	if n == "" {
		return NoNetwork
	}
	return n
}

// Today is the current UTC day.
func (a *Accountant) Today() string { return Day(a.o.Now()) }

// lastFlush is when the last flush was.
func (a *Accountant) lastFlush() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.asOf
}

// Usage is one device's bytes of one UTC day.
type Usage struct {
	Day     string `json:"day"`               // YYYY-MM-DD, UTC
	Network string `json:"network,omitempty"` // the profile it was counted under
	Up      int64  `json:"up"`                // bytes from the device
	Down    int64  `json:"down"`              // bytes to the device
	Total   int64  `json:"total"`
	// Budget is the profile's daily budget (0: none), PercentUsed
	// Total as a percentage of it.
	Budget      int64   `json:"budget,omitempty"`
	PercentUsed float64 `json:"percent_used,omitempty"`
	// Cost is Total at the profile's price per MB (10^6 bytes), in
	// Currency.
	Cost         float64    `json:"cost"`
	Currency     string     `json:"currency,omitempty"`
	OverBudgetAt *time.Time `json:"over_budget_at,omitempty"`
}

// Currency is the unit of netprofile's prices.
const Currency = "CNY"

// Days returns a device's bytes for the last n UTC days, today first, one
// entry per day (zero for a day without traffic, under network, the
// device's profile now), with asOf, the last flush.
func (a *Accountant) Days(ctx context.Context, code, network string, n int) ([]Usage, time.Time, error) {
	today, asOf := Day(a.o.Now()), a.lastFlush()
	t, err := time.Parse(time.DateOnly, today)
	if err != nil {
		return nil, asOf, fmt.Errorf("netuse: day %q: %w", today, err)
	}
	first := Day(t.AddDate(0, 0, -(n - 1)))
	rows, err := a.db.R.QueryContext(ctx, `SELECT day, network, up, down, over_at FROM device_bytes WHERE device = ? AND day >= ? AND day <= ?`, code, first, today)
	if err != nil {
		return nil, asOf, fmt.Errorf("netuse: %w", err)
	}
	defer rows.Close()
	byDay := map[string]Usage{}
	for rows.Next() {
		var u Usage
		var over int64
		if err := rows.Scan(&u.Day, &u.Network, &u.Up, &u.Down, &over); err != nil {
			return nil, asOf, fmt.Errorf("netuse: %w", err)
		}
		if over != 0 {
			at := time.UnixMilli(over).UTC()
			u.OverBudgetAt = &at
		}
		byDay[u.Day] = u
	}
	if err := rows.Err(); err != nil {
		return nil, asOf, fmt.Errorf("netuse: %w", err)
	}
	out := make([]Usage, 0, n)
	for i := range n {
		day := Day(t.AddDate(0, 0, -i))
		u, ok := byDay[day]
		if !ok {
			u = Usage{Day: day, Network: network}
		}
		out = append(out, a.priced(u))
	}
	return out, asOf, nil
}

// priced fills in a day's total, budget, share of it and cost.
func (a *Accountant) priced(u Usage) Usage {
	u.Total = u.Up + u.Down
	p, ok := a.o.Profile(u.Network)
	if !ok {
		return u
	}
	u.Budget = p.DailyBudget
	if u.Budget > 0 {
		u.PercentUsed = float64(u.Total) * 100 / float64(u.Budget)
	}
	u.Cost = float64(u.Total) / 1e6 * p.PricePerMB
	if p.PricePerMB > 0 {
		u.Currency = Currency
	}
	return u
}

// NetworkUsage is one network profile's bytes of one day over a tenant's
// (or every tenant's) devices.
type NetworkUsage struct {
	Network string `json:"network"` // NoNetwork for devices without one
	// Devices is how many exchanged bytes that day.
	Devices    int     `json:"devices"`
	Up         int64   `json:"up"`
	Down       int64   `json:"down"`
	Total      int64   `json:"total"`
	OverBudget int     `json:"over_budget"`
	Budget     int64   `json:"budget,omitempty"` // per device and day
	Cost       float64 `json:"cost"`
	Currency   string  `json:"currency,omitempty"`
}

// Networks sums today's bytes per network profile (the one each device's
// bytes were counted under), for a tenant or, with "", every tenant; with
// asOf, the last flush.
func (a *Accountant) Networks(ctx context.Context, tenant string) ([]NetworkUsage, time.Time, error) {
	today, asOf := Day(a.o.Now()), a.lastFlush()
	q := `SELECT network, COUNT(*), SUM(up), SUM(down), SUM(over_at != 0) FROM device_bytes WHERE day = ?`
	args := []any{today}
	if tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, tenant)
	}
	rows, err := a.db.R.QueryContext(ctx, q+` GROUP BY network`, args...)
	if err != nil {
		return nil, asOf, fmt.Errorf("netuse: %w", err)
	}
	defer rows.Close()
	byNet := map[string]NetworkUsage{}
	for rows.Next() {
		var u NetworkUsage
		if err := rows.Scan(&u.Network, &u.Devices, &u.Up, &u.Down, &u.OverBudget); err != nil {
			return nil, asOf, fmt.Errorf("netuse: %w", err)
		}
		u.Total = u.Up + u.Down
		if p, ok := a.o.Profile(u.Network); ok {
			u.Budget = p.DailyBudget
			u.Cost = float64(u.Total) / 1e6 * p.PricePerMB
			if p.PricePerMB > 0 {
				u.Currency = Currency
			}
		}
		u.Network = networkLabel(u.Network)
		byNet[u.Network] = u
	}
	if err := rows.Err(); err != nil {
		return nil, asOf, fmt.Errorf("netuse: %w", err)
	}
	var out []NetworkUsage
	for _, k := range slices.Sorted(maps.Keys(byNet)) {
		out = append(out, byNet[k])
	}
	return out, asOf, nil
}

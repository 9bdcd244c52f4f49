package alarm

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's Prometheus metrics. The gauges are read from
// the alarms table at each scrape, so they cannot drift from what is stored
// (a restart, an Import, a shelving that expired).
type metrics struct {
	events *prometheus.CounterVec
	floods prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, db *sql.DB, now func() time.Time) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_alarm_events_total", Help: "Alarm events recorded, by kind (raised, cleared, acked, shelved, ...).",
		}, []string{"kind"}),
		floods: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wanwu_alarm_floods_total", Help: "Alarm floods started (a tenant's annunciated activations reached the flood policy's count within its window).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	g := &gauges{
		db: db, now: now,
		active: prometheus.NewDesc("wanwu_alarms_active",
			"Active alarms that are not shelved, by severity.", []string{"severity"}, nil),
		suppressed: prometheus.NewDesc("wanwu_alarms_suppressed",
			"Alarms whose notifications are suppressed now (chattering).", nil, nil),
	}
	for _, c := range []prometheus.Collector{m.events, m.floods, g} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("alarm: metrics: %w", err)
		}
	}
	return m, nil
}

// gauges collects the gauges from the database.
type gauges struct {
	db                 *sql.DB
	now                func() time.Time
	active, suppressed *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.active
	ch <- g.suppressed
}

// scrapeTimeout bounds the gauges' queries.
const scrapeTimeout = 5 * time.Second

// Collect implements prometheus.Collector.
func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	counts := map[Severity]int{}
	err := func() error {
		rows, err := g.db.QueryContext(ctx, `SELECT severity, count(*) FROM alarms
			WHERE state IN (?, ?) AND shelved_until <= ? GROUP BY severity`,
			string(UnackActive), string(AckActive), g.now().UnixMilli())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var sev string
			var n int
			if err := rows.Scan(&sev, &n); err != nil {
				return err
			}
			counts[Severity(sev)] = n
		}
		return rows.Err()
	}()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(g.active, err)
	} else {
		for _, sev := range Severities {
			ch <- prometheus.MustNewConstMetric(g.active, prometheus.GaugeValue, float64(counts[sev]), string(sev))
		}
	}
	var n int
	if err := g.db.QueryRowContext(ctx, `SELECT count(*) FROM alarms WHERE suppressed != ''`).Scan(&n); err != nil {
		ch <- prometheus.NewInvalidMetric(g.suppressed, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(g.suppressed, prometheus.GaugeValue, float64(n))
}

package node

// The telemetry side: the stores, the decoder, the pipeline with its
// store consumer, and the adapters' intake.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/diskguard"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
)

// Files and directories of the telemetry side, inside the data directory.
const (
	TSDBDir    = "tsdb"
	EventsFile = "events.db"
	// IngestCursor says up to which ingest batch the stores are durable.
	IngestCursor = "ingest.cursor"
)

// TelemetryOptions configure StartTelemetry.
type TelemetryOptions struct {
	Dir     string // the data directory
	Config  config.Telemetry
	Bus     *bus.Bus
	Disk    *diskguard.Guard // admits device data and hears of full stores; nil: none
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Now     func() time.Time // the decoder's clock (tests move it)
	// Presence hears of every upload the intake takes; nil: none.
	Presence adapter.Presence
	// Consumers of the ingest log besides the stores (webhooks; at the
	// edge, the forwarder to the hub).
	Consumers []Consumer
	// Admit, when set, may refuse a device message before it is taken,
	// after the disk guard (pipeline.Options.Admit): at an edge, a
	// forwarding class whose quota is full.
	Admit func(*ingest.Message) error
}

// Consumer is a consumer of the ingest log, with its name and its cursor
// file in the data directory.
type Consumer struct {
	pipeline.Consumer
	Name       string
	CursorFile string // relative to the data directory
}

// Telemetry is the running telemetry side. Its parts are exported for the
// role to hand to the adapters, the API and further pipeline consumers.
type Telemetry struct {
	TSDB     *tsdb.Store
	Events   *eventstore.Store
	Decoder  *ingest.Decoder
	Pipeline *pipeline.Pipeline
	Intake   *adapter.Intake
}

// StartTelemetry opens the stores and starts the pipeline and the intake.
// On error, what it opened is closed again.
func StartTelemetry(ctx context.Context, o TelemetryOptions) (t *Telemetry, err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	t = &Telemetry{}
	defer func() {
		if err != nil {
			_ = t.Shutdown(context.Background())
			t = nil
		}
	}()
	if t.TSDB, err = tsdb.Open(tsdb.Options{
		Dir: filepath.Join(o.Dir, TSDBDir), OutOfOrderWindow: time.Duration(o.Config.OutOfOrderWindow),
		Retention: time.Duration(o.Config.Retention), Logger: o.Logger.With("component", "tsdb"), Registerer: o.Metrics,
	}); err != nil {
		return nil, fmt.Errorf("tsdb: %w", err)
	}
	if t.Events, err = eventstore.Open(ctx, filepath.Join(o.Dir, EventsFile)); err != nil {
		return nil, err
	}
	t.Decoder = ingest.NewDecoder(ingest.Options{
		MaxPayload: o.Config.MaxPayload, FutureSkew: time.Duration(o.Config.FutureSkew),
		MaxAge: time.Duration(o.Config.OutOfOrderWindow), Now: o.Now,
	})
	po := pipeline.Options{
		Bus: o.Bus, TSDB: t.TSDB, Events: t.Events, Logger: o.Logger, Metrics: o.Metrics,
		CursorFile: filepath.Join(o.Dir, IngestCursor),
	}
	if o.Disk != nil {
		po.Admit = func(*ingest.Message) error { return o.Disk.Admit() }
		po.OnNoSpace = func(store string, err error) { o.Disk.Report(store, err) }
	}
	if o.Admit != nil {
		disk := po.Admit
		po.Admit = func(m *ingest.Message) error {
			if disk != nil {
				if err := disk(m); err != nil {
					return err
				}
			}
			return o.Admit(m)
		}
	}
	if t.Pipeline, err = pipeline.New(po); err != nil {
		return nil, err
	}
	for _, c := range o.Consumers {
		if err := t.Pipeline.AddConsumer(c.Consumer, pipeline.ConsumerOptions{Name: c.Name, CursorFile: filepath.Join(o.Dir, c.CursorFile)}); err != nil {
			return nil, err
		}
	}
	if err := t.Pipeline.Start(ctx); err != nil {
		return nil, err
	}
	t.Intake = adapter.NewIntake(adapter.IntakeOptions{
		Decoder: t.Decoder, Pipeline: t.Pipeline, Presence: o.Presence, Logger: o.Logger.With("component", "intake"),
	})
	t.Intake.Start()
	return t, nil
}

// Shutdown stores the refusals the intake still holds, lets the pipeline
// write what it accepted, and closes the stores, in that order; stop the
// adapters first. It is safe on a partly started Telemetry.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.Intake != nil {
		errs = append(errs, t.Intake.Shutdown(ctx))
	}
	if t.Pipeline != nil {
		errs = append(errs, t.Pipeline.Shutdown(ctx))
	}
	if t.TSDB != nil {
		errs = append(errs, t.TSDB.Close())
	}
	if t.Events != nil {
		errs = append(errs, t.Events.Close())
	}
	return errors.Join(errs...)
}

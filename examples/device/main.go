// Command device is a small wanwu device written with the device SDK
// (package github.com/wanwu-iot/wanwu/device): on its first start it claims
// its identity with a claim token, later it loads it; it publishes a sine
// wave as the pump model's temperature every second, carries out the
// setSpeed and stop commands, and follows the twin's desired speed.
//
// With a hub running (go run ./cmd/wanwu hub) and a claim token for a tenant
// with the pump model:
//
//	go run ./cmd/wanwu ctl claim create --tenant acme --model acme:pump@1.0.0
//	go run ./examples/device --claim wwc_... --id pump-demo
//	go run ./cmd/wanwu ctl command send acme:pump-demo setSpeed rpm=1200
//
// Stop it with Ctrl-C; start it again and it goes on with the same
// identity, sending first what the hub had not acknowledged.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wanwu-iot/wanwu/device"
)

func main() {
	hub := flag.String("hub", "http://127.0.0.1:8080", "the hub's API, for the claim")
	broker := flag.String("broker", "mqtt://127.0.0.1:1883", "the hub's MQTT endpoint")
	claim := flag.String("claim", os.Getenv("WANWU_CLAIM"), "claim token for the first start (default $WANWU_CLAIM)")
	id := flag.String("id", "", "the id to ask for when claiming (default: derived from the key)")
	dir := flag.String("dir", "wanwu-device", "where the identity and the buffer live")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *hub, *broker, *claim, *id, *dir); err != nil {
		log.Error("device stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, hub, broker, claim, localID, dir string) error {
	identityDir := filepath.Join(dir, "identity")
	id, err := device.LoadIdentity(identityDir)
	if errors.Is(err, fs.ErrNotExist) {
		if claim == "" {
			return errors.New("no identity yet: give --claim (a claim token from `wanwu ctl claim create`)")
		}
		key, err := device.GenerateKey()
		if err != nil {
			return err
		}
		if id, err = device.Claim(ctx, hub, claim, key, device.ClaimOptions{ID: localID}); err != nil {
			return err
		}
		if err := id.Save(identityDir); err != nil {
			return err
		}
		log.Info("claimed", "code", id.Code, "number", id.Number)
	} else if err != nil {
		return err
	}

	c, err := device.Connect(ctx, device.Options{
		Identity:  id,
		Broker:    broker,
		BufferDir: filepath.Join(dir, "buffer"),
		Logger:    log,
	})
	if err != nil {
		return err
	}
	defer c.Close()

	var speed atomic.Int64
	c.OnCommand(func(ctx context.Context, cmd device.Command) device.Result {
		switch cmd.Action {
		case "setSpeed":
			var args struct {
				RPM float64 `json:"rpm"`
			}
			if err := json.Unmarshal(cmd.Args, &args); err != nil {
				return device.Failed("bad arguments")
			}
			speed.Store(int64(args.RPM))
			_ = c.ReportState(ctx, map[string]any{"speed": args.RPM})
			return device.Succeeded(map[string]any{"rpm": args.RPM})
		case "stop":
			speed.Store(0)
			_ = c.ReportState(ctx, map[string]any{"speed": 0})
			return device.Succeeded(nil)
		}
		return device.Failed(fmt.Sprintf("unknown action %q", cmd.Action))
	})
	c.OnDesired(func(ctx context.Context, d device.Delta) {
		if v, ok := d.State["speed"].(float64); ok {
			speed.Store(int64(v))
			if err := c.ReportState(ctx, map[string]any{"speed": v}); err != nil {
				log.Warn("report", "err", err)
			}
		}
	})

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			temp := 60 + 10*math.Sin(now.Sub(start).Seconds()/30*2*math.Pi)
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.Publish(pctx,
				device.Record{Name: "temperature", Unit: "Cel", Time: now, Value: math.Round(temp*100) / 100},
				device.Record{Name: "speed", Unit: "1/min", Time: now, Value: speed.Load()})
			cancel()
			switch {
			case errors.Is(err, device.ErrPending):
				log.Info("hub out of reach; buffered", "waiting", c.Buffered())
			case err != nil && ctx.Err() == nil:
				log.Warn("publish", "err", err)
			}
		}
	}
}

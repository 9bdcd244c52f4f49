package cli

// The demo's anomaly model: a normal-behaviour model of the plant's
// spindles (internal/ml's PCA), trained at the start from fault-free
// spindle physics stepped in process and registered at the hub, which the
// shadow loop spindle-anomaly (examples/loops) scores with.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/hubclient"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/scenario"
)

// demoModelID is the id of the demo's spindle model in the scenario's
// tenant (the loop names it so in decide.model).
const demoModelID = "spindle-normal"

// demoModelVectors is how many feature vectors the model is trained on.
const demoModelVectors = 2000

// demoModelSeed seeds the training devices: the same vectors, hence the
// same model, on every run (a rerun registers nothing new).
const demoModelSeed = 20260101

// demoModelFeatures are the spindle properties the model takes, under the
// names the loop gives them (examples/loops/spindle-anomaly.yaml): what
// bearing wear (the mid band, the broadband RMS, the crest factor),
// imbalance (the low band), chatter (the high band, the motor current) and
// overheating (the temperature against the load) move, and the feed they
// depend on.
var demoModelFeatures = []struct{ Name, Property string }{
	{"feed", "feedRate"},
	{"amps", "motorCurrent"},
	{"temp", "spindleTemp"},
	{"vib_rms", "vibRms"},
	{"crest", "crestFactor"},
	{"band_low", "vibBandLow"},
	{"band_mid", "vibBandMid"},
	{"band_high", "vibBandHigh"},
}

// demoModelStart is the simulated start of the training devices: fixed, so
// that the vectors do not depend on when the demo runs.
var demoModelStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// demoModelData steps fault-free spindles of the scenario's CNC classes
// (faults removed, bearings not wearing beyond their initial state, the
// feed moved between 55 % and 100 % now and then as the operator and the
// loops move it) and returns one feature vector per report. ok is false
// when the scenario has no CNC class.
func demoModelData(sc *scenario.Scenario) (vectors [][]float64, dataset string, ok bool) {
	var classes []scenario.Class
	for _, c := range sc.Classes {
		if c.Kind == scenario.KindCNC {
			c.Faults = nil
			c.Params = maps.Clone(c.Params)
			if c.Params == nil {
				c.Params = map[string]float64{}
			}
			c.Params["wear_rate"] = 0
			classes = append(classes, c)
		}
	}
	if len(classes) == 0 {
		return nil, "", false
	}
	return spindleVectors(classes, demoModelSeed, demoModelVectors, 0), "demo-spindles-fault-free", true
}

// spindleVectors steps devices of the CNC classes given (each at its own
// hour of the day, the feed moved between 55 % and 100 % now and then as
// the operator and the loops move it) and returns n feature vectors, one
// per report, leaving out the reports of each device's first skip.
func spindleVectors(classes []scenario.Class, seed int64, n int, skip time.Duration) (vectors [][]float64) {
	const perDevice = 250
	devices := (n + perDevice - 1) / perDevice
	feeds := []float64{100, 85, 70, 100, 55, 90}
	for d := 0; d < devices && len(vectors) < n; d++ {
		c := &classes[d%len(classes)]
		dev := c.Device(d/len(classes), seed)
		interval := c.Interval
		if interval <= 0 {
			interval = 5 * time.Second
		}
		// Each device at its own hour of the day (the ambient moves).
		start := demoModelStart.Add(time.Duration(d) * 3 * time.Hour)
		t := start
		for step, k := 0, 0; k < perDevice && len(vectors) < n; step++ {
			if step%60 == 0 {
				args, _ := json.Marshal(map[string]float64{"feedRate": feeds[(d+step/60)%len(feeds)]})
				_, _ = dev.Command("setFeedRate", args)
			}
			t = t.Add(interval)
			vals := map[string]float64{}
			for _, r := range dev.Step(t) {
				if v, isNum := r.Value.(float64); isNum {
					vals[r.Name] = v
				}
			}
			vec := make([]float64, len(demoModelFeatures))
			full := true
			for i, f := range demoModelFeatures {
				v, has := vals[f.Property]
				full = full && has
				vec[i] = v
			}
			if full && t.Sub(start) > skip {
				vectors = append(vectors, vec)
				k++
			}
		}
	}
	return vectors
}

// trainDemoModel trains the spindle model and registers it in the
// scenario's tenant through the hub's API; registering the same content
// again (a rerun on the same data directory) changes nothing, and a
// version registered before with other content (another scenario's
// spindles on the same data directory) is kept. It returns
// the line the demo prints, "" when the scenario has no spindles.
func trainDemoModel(ctx context.Context, hc *hubclient.Client, sc *scenario.Scenario) (string, error) {
	vectors, dataset, ok := demoModelData(sc)
	if !ok {
		return "", nil
	}
	names := make([]string, len(demoModelFeatures))
	for i, f := range demoModelFeatures {
		names[i] = f.Name
	}
	onnx, meta, err := ml.TrainPCA(vectors, names, ml.PCAOptions{
		ID: demoModelID, Version: 1,
		Dataset: dataset, DatasetVersion: fmt.Sprint(demoModelSeed),
		CreatedAt: demoModelStart,
	})
	if err != nil {
		return "", fmt.Errorf("model %s: %w", demoModelID, err)
	}
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(map[string]any{"meta": json.RawMessage(metaJSON), "onnx": onnx})
	if err != nil {
		return "", err
	}
	b, _, err := hc.Do(ctx, "POST", "/api/v1/ml/models?tenant="+url.QueryEscape(sc.Tenant), bytes.NewReader(body), "application/json")
	if he := (*hubclient.Error)(nil); errors.As(err, &he) && he.Status == http.StatusConflict {
		// Another scenario's spindles trained the version kept in this
		// data directory: the loop scores with that one.
		return fmt.Sprintf("anomaly model %s: version %d registered before with other content (another scenario on this data directory?), kept; the loop scores with it (ctl ml show %s)",
			demoModelID, meta.Version, demoModelID), nil
	}
	if err != nil {
		return "", fmt.Errorf("model %s: %w", demoModelID, err)
	}
	var out struct {
		Created bool `json:"created"`
	}
	_ = json.Unmarshal(b, &out)
	how := "registered"
	if !out.Created {
		how = "registered before with the same content"
	}
	return fmt.Sprintf("anomaly model %s trained on %d fault-free spindle vectors, %d inputs (%s), threshold %.3g: %s (ctl ml show %s; ctl loop evidence %s:spindle-anomaly)",
		demoModelID, meta.Training.Vectors, len(meta.Inputs), strings.Join(names, ", "), meta.Thresholds[ml.PCAThreshold].Above,
		how, demoModelID, sc.Tenant), nil
}

// demoModelView is a registered model version as the demo's summary shows
// it.
type demoModelView struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Size    int    `json:"size"`
	SHA256  string `json:"onnx_sha256"`
}

// demoModels lists the tenant's registered models (nil when the hub does
// not answer).
func demoModels(ctx context.Context, hc *hubclient.Client, tenant string) []demoModelView {
	var out struct {
		Models []demoModelView `json:"models"`
	}
	b, _, err := hc.Do(ctx, "GET", "/api/v1/ml/models?tenant="+url.QueryEscape(tenant), nil, "")
	if err != nil || json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out.Models
}

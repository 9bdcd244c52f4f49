package cli

// The demo's learning loop, played by its operator through the hub's API:
// windows of the spindles' running are captured and labelled (normal, and
// the alarms the faults raised as true positives), a dataset version is
// built from them, spindle-normal is trained again on it and staged at
// the hub (shadow, canary, active by its gates); the spindle-anomaly loop
// then acts on it. A deliberately bad version (its threshold at the median
// of normal running) is staged next, and its disagreement gate rolls it
// back on its own.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/hubclient"
	"github.com/wanwu-iot/wanwu/internal/learn"
	"github.com/wanwu-iot/wanwu/internal/rollout"
	"github.com/wanwu-iot/wanwu/internal/scenario"
)

// demoDataset is the dataset the demo builds of its spindles.
const demoDataset = "spindles"

// demoLearner is the learning loop's state, for the status lines.
type demoLearner struct {
	hc  *hubclient.Client
	sc  *scenario.Scenario
	log *slog.Logger

	mu    sync.Mutex
	lines []string // what it did, for the status block
}

func (l *demoLearner) say(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

// text is the status block's part: what the learning loop did so far.
func (l *demoLearner) text() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		return ""
	}
	return "learning loop (ctl ml rollouts; the console's ML models page):\n  " + strings.Join(l.lines, "\n  ") + "\n"
}

// learn runs the loop once, at start+at.
func (l *demoLearner) learn(ctx context.Context, at time.Duration) {
	select {
	case <-time.After(at):
	case <-ctx.Done():
		return
	}
	// A small fleet has few rows after a short while: capture again, a
	// longer span, until there is enough normal running to train on.
	for try := 1; ; try++ {
		err := l.run(ctx, at)
		if err != nil && strings.Contains(err.Error(), "rows of normal data") && try < 8 && ctx.Err() == nil {
			l.say(fmt.Sprintf("not enough normal running yet to train on; capturing again in %s", learnRetry))
			select {
			case <-time.After(learnRetry):
			case <-ctx.Done():
				return
			}
			at += learnRetry
			continue
		}
		if err != nil && ctx.Err() == nil {
			l.log.Warn("the demo's learning loop stopped", "err", err)
			l.say("stopped: " + err.Error())
		}
		return
	}
}

// learnRetry is how long the learning loop waits for more data.
const learnRetry = 30 * time.Second

func (l *demoLearner) do(ctx context.Context, method, path string, in, out any) error {
	var body *bytes.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	var b []byte
	var err error
	if body != nil {
		b, _, err = l.hc.Do(ctx, method, path, body, "application/json")
	} else {
		b, _, err = l.hc.Do(ctx, method, path, nil, "")
	}
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func (l *demoLearner) run(ctx context.Context, ran time.Duration) error {
	t := url.QueryEscape(l.sc.Tenant)
	// 1. Label: the alarms' windows are faults; a window of every spindle
	//    without an active alarm is normal running.
	var active struct {
		Alarms []struct{ Object string } `json:"alarms"`
	}
	if err := l.do(ctx, "GET", "/api/v1/alarms?state=unack_active,ack_active&tenant="+t, nil, &active); err != nil {
		return fmt.Errorf("alarms: %w", err)
	}
	alarmed := map[string]bool{}
	for _, a := range active.Alarms {
		alarmed[a.Object] = true
	}
	// And the spindles a loop acted on (the model in shadow included):
	// not the normal running to learn from.
	var acted struct {
		Evidence []struct {
			Object, Kind string
		} `json:"evidence"`
	}
	if err := l.do(ctx, "GET", "/api/v1/evidence?limit=1000&tenant="+t, nil, &acted); err != nil {
		return fmt.Errorf("evidence: %w", err)
	}
	for _, ev := range acted.Evidence {
		if ev.Kind == "action" {
			alarmed[ev.Object] = true
		}
	}
	var ws struct {
		Windows []dataset.Window `json:"windows"`
	}
	if err := l.do(ctx, "GET", "/api/v1/ml/windows?unlabelled=true&limit=1000&tenant="+t, nil, &ws); err != nil {
		return fmt.Errorf("windows: %w", err)
	}
	faults := 0
	for _, w := range ws.Windows {
		// The windows around what the spindles' loops did (alarms and
		// decisions: chatter, bearing wear, anomalies) are faults.
		if w.Reason != dataset.ReasonRequest && (strings.Contains(w.Loop, "spindle") || strings.Contains(w.Loop, "bearing") || strings.Contains(w.Loop, "chatter")) {
			if err := l.do(ctx, "POST", "/api/v1/ml/windows/"+url.PathEscape(w.ID)+"/labels?tenant="+t,
				map[string]string{"kind": dataset.KindTruePositive, "note": "demo operator: the fault the simulator injected"}, nil); err == nil {
				faults++
			}
		}
	}
	minutes := min(max(ran.Minutes(), 0.25), 5)
	normal := 0
	for _, c := range l.sc.Classes {
		if c.Kind != scenario.KindCNC {
			continue
		}
		for i := range c.Count {
			code := l.sc.Tenant + ":" + c.DeviceID(i)
			if alarmed[code] {
				continue
			}
			if err := l.do(ctx, "POST", "/api/v1/ml/windows/capture", map[string]any{"object": code, "minutes": minutes,
				"note": "demo operator: normal running"}, nil); err == nil {
				normal++
			}
		}
	}
	// 2. A dataset version of them, and the model trained on it.
	var built struct {
		Dataset dataset.Manifest `json:"dataset"`
	}
	if err := l.do(ctx, "POST", "/api/v1/ml/datasets?tenant="+t, map[string]any{"name": demoDataset, "query": map[string]string{"model": ""}}, &built); err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	m := built.Dataset
	l.say(fmt.Sprintf("dataset %s v%d of %d windows (%d captured as normal running, %d around the spindles' alarms and decisions labelled as faults), label coverage %.2f, completeness %.2f (ctl dataset show %s)",
		m.Name, m.Version, m.Windows, normal, faults, m.Quality.LabelCoverage, m.Quality.Completeness, m.Name))
	inputs := make([]learn.Input, len(demoModelFeatures))
	for i, f := range demoModelFeatures {
		inputs[i] = learn.Input{Name: f.Name, Property: f.Property}
	}
	train := func(spec learn.Spec) (string, *learn.Report, error) {
		var out struct {
			Model  struct{ Version string } `json:"model"`
			Report learn.Report             `json:"report"`
		}
		err := l.do(ctx, "POST", "/api/v1/ml/train?tenant="+t, spec, &out)
		return out.Model.Version, &out.Report, err
	}
	// Trained on minutes of running, the threshold sits close to normal
	// reports it has not seen: a margin of 2 over the 99th percentile
	// (the default is 1.5) keeps it from flagging them; the faults score
	// far above it.
	good, rep, err := train(learn.Spec{Dataset: m.Name, DatasetVersion: strconv.Itoa(m.Version), Model: demoModelID, Inputs: inputs, MinRows: 80, Margin: 2})
	if err != nil {
		return fmt.Errorf("training: %w", err)
	}
	recall := ""
	if rep.Recall >= 0 {
		recall = fmt.Sprintf(", %.0f%% of the fault windows caught", 100*rep.Recall)
	}
	l.say(fmt.Sprintf("%s v%s trained on %d rows: %.1f%% of normal rows flagged%s; staged at the hub in shadow",
		demoModelID, good, rep.Rows, 100*rep.NormalFlagged, recall))
	// 3. Staged: shadow, canary, active by the gates.
	stages := map[string]any{"shadow": map[string]any{"min_samples": 20, "min_duration": "10s"},
		"canary": map[string]any{"min_samples": 20, "min_duration": "10s"}, "judge_after": 20} // a ratio of 10 decisions is noise
	id, err := l.deploy(ctx, good, stages)
	if err != nil {
		return err
	}
	state, reason, err := l.await(ctx, id)
	if err != nil {
		return err
	}
	l.say(fmt.Sprintf("rollout %s of v%s %s (%s); ctl ml rollout %s", id, good, state, reason, id))
	if state == rollout.Done {
		if err := l.do(ctx, "POST", "/api/v1/loops/"+url.PathEscape(l.sc.Tenant+":spindle-anomaly")+"/mode", map[string]string{"mode": "active"}, nil); err == nil {
			l.say("spindle-anomaly made active: its alarms are raised now (ctl loop evidence " + l.sc.Tenant + ":spindle-anomaly)")
		}
	}
	// 4. A bad version: its threshold at the median of normal running.
	bad, _, err := train(learn.Spec{Dataset: m.Name, DatasetVersion: strconv.Itoa(m.Version), Model: demoModelID, Inputs: inputs, MinRows: 80,
		Quantile: 0.5, Margin: 1})
	if err != nil {
		return fmt.Errorf("training the bad version: %w", err)
	}
	l.say(fmt.Sprintf("a bad version, %s v%s (it flags half of normal running), staged in shadow", demoModelID, bad))
	if id, err = l.deploy(ctx, bad, stages); err != nil {
		return err
	}
	state, reason, err = l.await(ctx, id)
	if err != nil {
		return err
	}
	l.say(fmt.Sprintf("rollout %s of v%s %s (%s)", id, bad, state, reason))
	return nil
}

func (l *demoLearner) deploy(ctx context.Context, version string, stages map[string]any) (string, error) {
	var out struct {
		Rollout rollout.Plan `json:"rollout"`
	}
	plan := map[string]any{"artifact": demoModelID, "version": version, "targets": map[string]any{"hub": true},
		"canary": map[string]any{"fraction": 0.5}, "stages": stages,
		// Versions trained apart, the second on minutes of running,
		// disagree on the reports near their thresholds: the demo allows
		// 20 % (the default is 5 %); the bad version disagrees on half.
		// The demo shares its machine with its fleet (and, in the tests,
		// with other tests): an inference that waited for a core past its
		// 20 ms deadline is an error, so the demo's stages, of a few dozen
		// decisions each, allow one in ten and a p99 of 50 ms.
		"gates": map[string]any{"error_rate": map[string]float64{"max": 0.1}, "latency_p99_ms": map[string]float64{"max": 50},
			"score_shift": map[string]float64{"max": 0.5}, "disagreement": map[string]float64{"max": 0.2}, "false_alarm_rate": map[string]float64{"max": 0.2}}}
	if err := l.do(ctx, "POST", "/api/v1/ml/rollouts?tenant="+url.QueryEscape(l.sc.Tenant), plan, &out); err != nil {
		return "", fmt.Errorf("rollout of v%s: %w", version, err)
	}
	return out.Rollout.ID, nil
}

// await polls a rollout until it ends; it returns its state and why.
func (l *demoLearner) await(ctx context.Context, id string) (string, string, error) {
	for {
		var v struct {
			Rollout rollout.Plan      `json:"rollout"`
			Records []*rollout.Record `json:"records"`
		}
		if err := l.do(ctx, "GET", "/api/v1/ml/rollouts/"+url.PathEscape(id)+"?tenant="+url.QueryEscape(l.sc.Tenant), nil, &v); err != nil {
			return "", "", err
		}
		if v.Rollout.State != rollout.Running {
			reason := ""
			if n := len(v.Records); n > 0 {
				reason = v.Records[n-1].Reason
			}
			return v.Rollout.State, reason, nil
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// demoRolloutView is a rollout as the demo's summary shows it.
type demoRolloutView struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	State   string `json:"state"`
}

// demoRollouts lists the tenant's rollouts (nil when the hub does not
// answer).
func demoRollouts(ctx context.Context, hc *hubclient.Client, tenant string) []demoRolloutView {
	var out struct {
		Rollouts []demoRolloutView `json:"rollouts"`
	}
	b, _, err := hc.Do(ctx, "GET", "/api/v1/ml/rollouts?tenant="+url.QueryEscape(tenant), nil, "")
	if err != nil || json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out.Rollouts
}

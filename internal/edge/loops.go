package edge

// Closed loops at the edge: the hub's loops for the objects behind this
// edge run here, through link outages and restarts (the latest signed
// bundle is kept in the data directory), scoring with the models the hub
// signed (ml.go); their evidence and alarms go up the link (the control
// and alarm classes).

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/api"
	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/loop"
	"github.com/wanwu-iot/wanwu/internal/node"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
)

// Files of the loops in the data directory.
const (
	LoopsCursor     = "loops.cursor"
	LoopsBundleFile = "loops.bundle"
	loopsSigFile    = "loops.bundle.sig"
)

// openLoops opens the alarm service and the loop engine, gives it the
// bundle kept from the last run, and starts it; it runs before the
// pipeline, whose consumer the engine is.
func (e *Edge) openLoops(ctx context.Context) error {
	var err error
	if e.alarms, err = alarm.Open(ctx, alarm.Options{
		DB: e.db, Audit: e.audit, Now: e.opts.Now, Logger: e.log, OnEvent: e.alarmChanged, Registerer: e.metrics,
	}); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	st, err := loop.OpenStore(ctx, e.db, e.audit, nil, e.opts.Now)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if err := e.openML(ctx); err != nil {
		return err
	}
	if e.loops, err = loop.NewEngine(loop.Options{
		Store: st, Objects: e.reg, Commands: e.commands, Twins: e.twins, Alarms: e.alarms,
		Emit: e.emitLoopEvent, Role: "edge", Edge: e.id.Code, Now: e.opts.Now, Logger: e.log, Registerer: e.metrics,
		OnEvidence: e.evidenceWritten, Scorer: e.mlScorer,
	}); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if err := e.loops.Start(ctx); err != nil {
		return err
	}
	if b, err := e.keptBundle(); err == nil {
		e.loops.SetRemote(b)
		e.loopsDigest = b.Digest
	} else if !errors.Is(err, os.ErrNotExist) {
		e.log.Warn("the kept loop bundle is not used", "err", err)
	}
	return nil
}

// keptBundle reads the bundle kept from the last run and checks its
// signature again (the hub's key is known by then, or the bundle waits).
func (e *Edge) keptBundle() (*loop.Bundle, error) {
	dir := e.opts.Config.DataDir
	body, err := os.ReadFile(filepath.Join(dir, LoopsBundleFile))
	if err != nil {
		return nil, err
	}
	sig, err := os.ReadFile(filepath.Join(dir, loopsSigFile))
	if err != nil {
		return nil, err
	}
	key, err := readHubKey(dir)
	if err != nil {
		return nil, err
	}
	return verifyBundle(key, string(sig), body, e.id.Code)
}

// readHubKey reads the hub's signing key kept in the data directory.
func readHubKey(dir string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, HubKeyFile))
	if err != nil {
		return nil, err
	}
	return parseEd25519(b)
}

// verifyBundle checks the hub's signature over a bundle and decodes it.
func verifyBundle(key ed25519.PublicKey, sig string, body []byte, edge string) (*loop.Bundle, error) {
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return nil, errors.New("loop bundle: no signature")
	}
	if !ed25519.Verify(key, append([]byte(api.LoopsSigningContext), body...), raw) {
		return nil, errors.New("loop bundle: not the hub's signature")
	}
	return loop.DecodeBundle(body, edge)
}

// syncLoops keeps the hub's loops, kill switches and bypasses in step: a
// long poll for a bundle other than the one the edge has.
func (e *Edge) syncLoops(ctx context.Context) {
	e.keepPolling(ctx, "the hub's loops could not be taken; will retry", e.fetchLoops)
}

func (e *Edge) fetchLoops(ctx context.Context) error {
	key := e.hubKeyNow()
	if key == nil {
		return errors.New("the hub's signing key is not known yet")
	}
	resp, body, err := e.poll(ctx, "/api/v1/edge/loops?after="+url.QueryEscape(e.loopsDigest), loop.MaxBundleSize)
	if err != nil {
		return err
	}
	switch resp.StatusCode {
	case http.StatusNoContent:
		return nil
	case http.StatusOK:
	default:
		return fmt.Errorf("hub answered %s: %.200s", resp.Status, body)
	}
	sig := resp.Header.Get(api.DownlinkSignatureHeader)
	b, err := verifyBundle(key, sig, body, e.id.Code)
	if err != nil {
		e.syncM.refused.WithLabelValues("loop_bundle").Inc()
		e.log.Warn("a loop bundle from the hub was refused", "err", err)
		return err
	}
	dir := e.opts.Config.DataDir
	if err := node.WriteFileAtomic(filepath.Join(dir, loopsSigFile), []byte(sig), 0o644); err != nil {
		return err
	}
	if err := node.WriteFileAtomic(filepath.Join(dir, LoopsBundleFile), body, 0o644); err != nil {
		return err
	}
	e.loops.SetRemote(b)
	e.loopsDigest = b.Digest
	e.log.Info("loops from the hub taken", "loops", len(b.Loops), "kill_switches", len(b.Kills.Loops)+len(b.Kills.Sites), "bypasses", len(b.Bypasses))
	return nil
}

// emitLoopEvent records a loop's event (a work order) for its object.
func (e *Edge) emitLoopEvent(ctx context.Context, msg ingest.Message) error {
	p := e.loopPipe.Load()
	if p == nil {
		return errors.New("edge: the pipeline has not started")
	}
	return p.Submit(ctx, msg)
}

// evidenceWritten sends each state of an evidence record up the link.
func (e *Edge) evidenceWritten(ev *loop.Evidence) {
	e.capturer.Load().Decision(ev)
	data, err := json.Marshal(ev)
	if err != nil {
		return
	}
	e.sendUp(ev.Object, forward.LoopEvidenceEvent, data)
}

// alarmChanged sends an alarm's change up the link (the alarm class).
func (e *Edge) alarmChanged(ev alarm.Event) {
	if ev.Alarm.ID == "" { // flood events are the edge's own
		return
	}
	e.capturer.Load().Alarm(ev)
	data, err := json.Marshal(ev.Alarm)
	if err != nil {
		return
	}
	e.sendUp(ev.Alarm.Object, forward.AlarmEvent, data)
}

// sendUp keeps an event of the edge's own for the hub.
func (e *Edge) sendUp(code, event string, data []byte) {
	p := e.loopPipe.Load()
	if p == nil {
		return
	}
	msg := ingest.Message{Device: code, Tenant: tenantOf(code), Kind: ingest.Event, Event: event,
		EventData: data, Received: e.opts.Now().UnixMilli(), Source: "edge"}
	p.SubmitAsync(msg, pipeline.CompletionFunc(func(err error) {
		if err != nil {
			e.log.Warn("a loop record could not be kept for the hub", "device", code, "event", event, "err", err)
		}
	}))
}

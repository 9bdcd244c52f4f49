package edge

// Commands and desired state set at the hub for devices behind the edge:
// polled over the link; commands issued on the edge's own command service
// under the hub's id (so a repeat is the same command), desired states made
// the edge's (by a merge patch from what it holds), both acknowledged to
// the hub. The devices' results and reported states go back up the control
// class as forward.CommandResultEvent and forward.TwinReportedEvent.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"time"

	"github.com/wanwu-iot/wanwu/internal/api"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// errNotYetBehind: some of what came down is for devices the edge's
// replica does not hold yet; it is asked for again after a pause.
var errNotYetBehind = errors.New("devices not in the identity snapshot yet")

// hubActor is the actor of the commands the hub issued, at the edge.
const hubActor = "hub"

// pollCommands takes the hub's commands for the edge's devices until ctx
// ends.
func (e *Edge) pollCommands(ctx context.Context) {
	e.keepPolling(ctx, "the hub's commands could not be taken; will retry", func(ctx context.Context) error {
		down, err := e.fetchCommands(ctx)
		if err == nil && (len(down.Commands) > 0 || len(down.Twins) > 0 || len(down.Votes) > 0) {
			err = e.takeDownlink(ctx, down)
		}
		return err
	})
}

// keepPolling runs poll (a long poll of the hub) again and again until ctx
// ends, waiting 100 ms after a failure, twice as long after each further
// one, at most 5 s.
func (e *Edge) keepPolling(ctx context.Context, failed string, poll func(ctx context.Context) error) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := poll(ctx)
		if err == nil {
			wait = 100 * time.Millisecond
			continue
		}
		if ctx.Err() == nil {
			e.log.Debug(failed, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		wait = min(2*wait, 5*time.Second)
	}
}

// downlink is the hub's answer to a poll.
type downlink struct {
	Commands []*command.Command `json:"commands"`
	Twins    []struct {
		Code    string         `json:"code"`
		Desired map[string]any `json:"desired"`
		Version int64          `json:"version"`
	} `json:"twins"`
	Votes []api.EdgeVote `json:"votes"`
}

func (e *Edge) fetchCommands(ctx context.Context) (*downlink, error) {
	resp, body, err := e.poll(ctx, "/api/v1/edge/commands", 64<<20)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("hub answered %s: %.200s", resp.Status, body)
	}
	if err := e.verifyDownlink(resp.Header.Get(api.DownlinkSignatureHeader), body); err != nil {
		e.syncM.refused.WithLabelValues("downlink_signature").Inc()
		e.log.Warn("a downlink from the hub was refused: its signature does not verify with the hub's key", "err", err)
		return nil, err
	}
	var out downlink
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("hub's commands: %w", err)
	}
	return &out, nil
}

// verifyDownlink checks the hub's signature over a downlink body.
func (e *Edge) verifyDownlink(sig string, body []byte) error {
	key := e.hubKeyNow()
	if key == nil {
		return errors.New("the hub's signing key is not known yet")
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return errors.New("no signature")
	}
	if !ed25519.Verify(key, append([]byte(api.DownlinkSigningContext), body...), raw) {
		return errors.New("not the hub's signature")
	}
	return nil
}

// takeDownlink issues the hub's commands here, takes its desired states,
// and tells the hub which it holds. A command the edge refuses (a device it
// does not know, arguments its model refuses) is held too, and fails with
// the reason.
func (e *Edge) takeDownlink(ctx context.Context, down *downlink) error {
	ids := make([]string, 0, len(down.Commands))
	waiting := false
	for _, c := range down.Commands {
		ttl := time.Until(c.ExpiresAt)
		if ttl <= 0 {
			ttl = time.Second
		}
		_, _, err := e.commands.Issue(ctx, hubActor, command.IssueRequest{
			Code: c.Code, Action: c.Action, Args: c.Args, ID: c.ID, TTL: ttl, ResultTimeout: c.ResultTimeout,
		})
		switch {
		case err == nil:
		case errors.Is(err, command.ErrNotFound):
			// Not in the replica yet: the snapshot that places it behind
			// this edge has not arrived. The hub keeps it; asked again.
			waiting = true
			continue
		case errors.Is(err, command.ErrInvalid), errors.Is(err, command.ErrIDConflict):
			e.log.Warn("a command from the hub was refused here; it fails at the hub with the reason", "device", c.Code, "command", c.ID, "err", err)
			e.sendResult(c.Code, c.ID, command.Result{Status: "failed", Reason: "refused at the edge: " + err.Error()})
		default:
			return err
		}
		ids = append(ids, c.ID)
	}
	twins := map[string]int64{}
	for _, tw := range down.Twins {
		if err := e.takeDesired(ctx, tw.Code, tw.Desired); err != nil {
			if errors.Is(err, twin.ErrNotFound) {
				waiting = true // likewise
				continue
			}
			if !errors.Is(err, twin.ErrInvalid) {
				return err
			}
			e.log.Warn("a desired state from the hub was refused here", "device", tw.Code, "err", err)
		}
		twins[tw.Code] = tw.Version
	}
	votes := make([]string, 0, len(down.Votes))
	for _, v := range down.Votes {
		// A vote that no longer applies (decided meanwhile, not an
		// approver) is acknowledged too: it is in the evidence's history
		// at the hub's audit log, and asking again changes nothing.
		if _, err := e.loops.Vote(ctx, v.By, v.Evidence, v.Approve, v.Note); err != nil {
			e.log.Info("a vote from the hub was not taken", "evidence", v.Evidence, "by", v.By, "err", err)
		}
		votes = append(votes, v.ID)
	}
	body, _ := json.Marshal(map[string]any{"ids": ids, "twins": twins, "votes": votes})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.hubURL+"/api/v1/edge/commands/ack", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("hub answered %s to the acknowledgement", resp.Status)
	}
	if waiting {
		return errNotYetBehind
	}
	return nil
}

// takeDesired makes the hub's desired state the device's here: the merge
// patch from what the edge holds to it.
func (e *Edge) takeDesired(ctx context.Context, code string, desired map[string]any) error {
	cur, err := e.twins.Get(ctx, code)
	if err != nil {
		return err
	}
	patch := mergeDiff(cur.Desired, desired)
	if len(patch) == 0 {
		return nil
	}
	b, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = e.twins.SetDesired(ctx, hubActor, code, b, 0)
	return err
}

// mergeDiff is the JSON merge patch (RFC 7396) that turns from into to.
func mergeDiff(from, to map[string]any) map[string]any {
	patch := map[string]any{}
	for k := range from {
		if _, ok := to[k]; !ok {
			patch[k] = nil
		}
	}
	for k, v := range to {
		fv, ok := from[k]
		if ok && reflect.DeepEqual(fv, v) {
			continue
		}
		fm, fok := fv.(map[string]any)
		tm, tok := v.(map[string]any)
		if ok && fok && tok {
			patch[k] = mergeDiff(fm, tm)
			continue
		}
		patch[k] = v
	}
	return patch
}

// twinChanged is the twin service's OnChange: a desired change reaches the
// device's session; a reported change goes up to the hub.
func (e *Edge) twinChanged(c twin.Change) {
	if e.adapters == nil {
		return
	}
	if c.Desired {
		e.adapters.TwinChanged(c.Code)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tw, err := e.twins.Get(ctx, c.Code)
	if err != nil || e.tel == nil {
		return
	}
	data, err := json.Marshal(tw.Reported)
	if err != nil {
		return
	}
	msg := ingest.Message{Device: c.Code, Tenant: c.Tenant, Kind: ingest.Event, Event: forward.TwinReportedEvent,
		EventData: data, Received: e.opts.Now().UnixMilli(), Source: "edge"}
	e.tel.Pipeline.SubmitAsync(msg, pipeline.CompletionFunc(func(err error) {
		if err != nil {
			e.log.Warn("a reported state could not be kept for the hub", "device", c.Code, "err", err)
		}
	}))
}

// commandEvent is the command service's OnEvent: a hub command that ended
// here sends its result up; results go to the loops too (raw captures).
func (e *Edge) commandEvent(ev command.Event) {
	if e.loops != nil { // raw captures feed the loops' band features
		e.loops.CommandEvent(ev)
	}
	c := ev.Command
	if c.Actor != hubActor || !c.Status.Final() {
		return
	}
	res := command.Result{Status: "succeeded", Reason: c.Reason, Output: c.Output}
	if c.Status != command.Succeeded {
		res = command.Result{Status: "failed", Reason: fmt.Sprintf("%s at the edge", c.Status), Output: c.Output}
		if c.Reason != "" {
			res.Reason += ": " + c.Reason
		}
	}
	e.sendResult(c.Code, c.ID, res)
}

// sendResult puts a device's result for a hub command into the ingest log,
// whence the forwarder takes it up the control class.
func (e *Edge) sendResult(code, id string, res command.Result) {
	if e.tel == nil {
		return
	}
	data, err := json.Marshal(struct {
		ID string `json:"id"`
		command.Result
	}{id, res})
	if err != nil {
		return
	}
	msg := ingest.Message{Device: code, Tenant: tenantOf(code), Kind: ingest.Event, Event: forward.CommandResultEvent,
		EventData: data, Received: e.opts.Now().UnixMilli(), Source: "edge"}
	e.tel.Pipeline.SubmitAsync(msg, pipeline.CompletionFunc(func(err error) {
		if err != nil {
			e.log.Warn("a command's result could not be kept for the hub", "device", code, "command", id, "err", err)
		}
	}))
}

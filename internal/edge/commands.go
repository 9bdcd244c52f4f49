package edge

// Commands issued at the hub for devices behind the edge: polled over the
// link, issued on the edge's own command service under the hub's id (so a
// repeat is the same command), acknowledged to the hub; the devices'
// results go back up the control class as forward.CommandResultEvent.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/pipeline"
)

// hubActor is the actor of the commands the hub issued, at the edge.
const hubActor = "hub"

// pollCommands takes the hub's commands for the edge's devices until ctx
// ends.
func (e *Edge) pollCommands(ctx context.Context) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		cmds, err := e.fetchCommands(ctx)
		if err == nil && len(cmds) > 0 {
			err = e.takeCommands(ctx, cmds)
		}
		if err != nil {
			if ctx.Err() == nil {
				e.log.Debug("the hub's commands could not be taken; will retry", "err", err)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			wait = min(2*wait, 5*time.Second)
			continue
		}
		wait = 100 * time.Millisecond
	}
}

func (e *Edge) fetchCommands(ctx context.Context) ([]*command.Command, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotPoll+15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/api/v1/edge/commands?wait=%d", e.hubURL, int(snapshotPoll/time.Second)), nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("hub answered %s: %.200s", resp.Status, body)
	}
	var out struct {
		Commands []*command.Command `json:"commands"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("hub's commands: %w", err)
	}
	return out.Commands, nil
}

// takeCommands issues the hub's commands here and tells the hub which it
// holds. A command the edge refuses (a device it does not know, arguments
// its model refuses) is held too, and fails with the reason.
func (e *Edge) takeCommands(ctx context.Context, cmds []*command.Command) error {
	ids := make([]string, 0, len(cmds))
	for _, c := range cmds {
		ttl := time.Until(c.ExpiresAt)
		if ttl <= 0 {
			ttl = time.Second
		}
		_, _, err := e.commands.Issue(ctx, hubActor, command.IssueRequest{
			Code: c.Code, Action: c.Action, Args: c.Args, ID: c.ID, TTL: ttl, ResultTimeout: c.ResultTimeout,
		})
		switch {
		case err == nil:
		case errors.Is(err, command.ErrInvalid), errors.Is(err, command.ErrNotFound), errors.Is(err, command.ErrIDConflict):
			e.log.Warn("a command from the hub was refused here; it fails at the hub with the reason", "device", c.Code, "command", c.ID, "err", err)
			e.sendResult(c.Code, c.ID, command.Result{Status: "failed", Reason: "refused at the edge: " + err.Error()})
		default:
			return err
		}
		ids = append(ids, c.ID)
	}
	body, _ := json.Marshal(map[string]any{"ids": ids})
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
	return nil
}

// commandEvent is the command service's OnEvent: a hub command that ended
// here sends its result up.
func (e *Edge) commandEvent(ev command.Event) {
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

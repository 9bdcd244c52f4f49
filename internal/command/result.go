package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Result is what a device reports when it has run (or refused) a command.
type Result struct {
	Status string          `json:"status"` // "succeeded" or "failed"
	Reason string          `json:"reason,omitempty"`
	Output json.RawMessage `json:"output,omitempty"` // a JSON object, or absent
}

// DecodeResult parses a device's result payload:
//
//	{"status":"succeeded"|"failed","reason":"...","output":{...}}
//
// at most MaxResultBytes, no other members, reason at most MaxReasonLen
// bytes of UTF-8. Output comes back canonical (sorted keys), or nil when
// absent or null. Every error wraps ErrInvalid.
func DecodeResult(payload []byte) (Result, error) {
	if len(payload) > MaxResultBytes {
		return Result{}, fmt.Errorf("%w: result: %d bytes, more than %d", ErrInvalid, len(payload), MaxResultBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var r Result
	if err := dec.Decode(&r); err != nil {
		return Result{}, fmt.Errorf("%w: result: %w", ErrInvalid, err)
	}
	if _, err := dec.Token(); err == nil {
		return Result{}, fmt.Errorf("%w: result: more than one JSON value", ErrInvalid)
	}
	if err := r.normalize(); err != nil {
		return Result{}, err
	}
	return r, nil
}

// normalize checks r and puts Output in canonical form.
func (r *Result) normalize() error {
	if r.Status != string(Succeeded) && r.Status != string(Failed) {
		return fmt.Errorf("%w: result: status %q is not \"succeeded\" or \"failed\"", ErrInvalid, truncate(r.Status))
	}
	if len(r.Reason) > MaxReasonLen {
		return fmt.Errorf("%w: result: reason is %d bytes, more than %d", ErrInvalid, len(r.Reason), MaxReasonLen)
	}
	if !utf8.ValidString(r.Reason) {
		return fmt.Errorf("%w: result: reason is not UTF-8", ErrInvalid)
	}
	if t := bytes.TrimSpace(r.Output); len(t) == 0 || string(t) == "null" {
		r.Output = nil
		return nil
	}
	out, _, err := canonicalObject(r.Output, MaxResultBytes)
	if err != nil {
		return fmt.Errorf("%w: result: output: %w", ErrInvalid, err)
	}
	r.Output = out
	return nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// Result records a device's result for command id. A result for another
// device's command is ErrNotFound. The first result finishes an open
// command (a queued one counts as delivered); the same result again changes
// nothing and returns no error; a different result for a finished command
// (for instance after it timed out) is kept in its history as a late_result
// event and returns the command with ErrFinished.
func (s *Service) Result(ctx context.Context, code, id string, res Result) (*Command, error) {
	if err := res.normalize(); err != nil {
		return nil, err
	}
	var out *Command
	err := s.write(ctx, "", func(c *change) error {
		r, err := c.get(id)
		if err != nil {
			return err
		}
		if r.Code != code {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		out = &r.Command
		if r.Status.Final() {
			if string(r.Status) == res.Status && r.Reason == res.Reason && bytes.Equal(r.Output, res.Output) {
				return nil // a repeat
			}
			c.err = fmt.Errorf("%w: %s is %s", ErrFinished, id, r.Status)
			var n int
			if err := c.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM command_events WHERE command_id = ? AND kind = ?`,
				id, EventLateResult).Scan(&n); err != nil {
				return fmt.Errorf("command: count late results: %w", err)
			}
			if n >= maxLateResults {
				return nil
			}
			data, err := json.Marshal(res)
			if err != nil {
				return err
			}
			return c.event(EventLateResult, r, data)
		}
		if r.Status == Queued {
			r.markDelivered(c.now)
			if err := c.event(EventDelivered, r, nil); err != nil {
				return err
			}
			c.kick(code)
		}
		r.finish(Status(res.Status), res.Reason, res.Output, c.now)
		if err := c.update(r); err != nil {
			return err
		}
		kind := EventSucceeded
		if r.Status == Failed {
			kind = EventFailed
		}
		return c.event(kind, r, nil)
	})
	if err != nil && !errors.Is(err, ErrFinished) {
		return nil, err
	}
	return out, err
}

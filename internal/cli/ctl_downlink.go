package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Twins, commands and PSKs: `wanwu ctl twin|command|device psk`.

// ctlOnePath runs a request on prefix+ARG+suffix and prints the JSON answer:
// the shape of every ctl command that names one thing and shows it.
func ctlOnePath(method, prefix, suffix, what string) func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	return func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
		return func(e *env, c *ctlConn, args []string) error {
			if err := needArgs(args, 1, what); err != nil {
				return err
			}
			var out any
			if _, err := c.json(method, prefix+url.PathEscape(args[0])+suffix, nil, &out); err != nil {
				return err
			}
			return printJSON(e.stdout, out)
		}
	}
}

// desiredPatch builds a JSON object (a twin's merge patch, a command's
// arguments) from either one JSON object argument or key=value pairs (a
// value that parses as JSON is taken as such, otherwise as a string; in a
// merge patch key=null deletes).
func desiredPatch(args []string) ([]byte, error) {
	if len(args) == 1 && strings.HasPrefix(strings.TrimSpace(args[0]), "{") {
		if !json.Valid([]byte(args[0])) {
			return nil, usagef("the patch is not valid JSON")
		}
		return []byte(args[0]), nil
	}
	patch := map[string]any{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usagef("%q: want key=value or one JSON object", a)
		}
		var val any
		if err := json.Unmarshal([]byte(v), &val); err != nil {
			val = v
		}
		patch[k] = val
	}
	return json.Marshal(patch)
}

func ctlTwinSet(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	version := fs.Int64("version", -1, "apply only if the desired version is still this one (optimistic concurrency); -1 = unconditional")
	return func(e *env, c *ctlConn, args []string) error {
		if len(args) < 2 {
			return usagef("expected arguments: CODE key=value... | CODE '{json merge patch}'")
		}
		patch, err := desiredPatch(args[1:])
		if err != nil {
			return err
		}
		path := "/api/v1/objects/" + url.PathEscape(args[0]) + "/twin/desired"
		if *version >= 0 {
			path += "?version=" + fmt.Sprint(*version)
		}
		raw, _, err := c.do("PATCH", path, bytes.NewReader(patch), "application/merge-patch+json")
		if err != nil {
			return err
		}
		var out any
		if err := json.Unmarshal(raw, &out); err != nil {
			return err
		}
		return printJSON(e.stdout, out)
	}
}

func ctlCommandSend(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	id := fs.String("id", "", "command id (idempotency key: sending the same id again returns the first command)")
	ttl := fs.Duration("ttl", 0, "how long the command may wait for the device (default: the hub's commands.default_ttl)")
	resultTimeout := fs.Duration("result-timeout", 0, "how long after delivery the device has to answer (default 60s)")
	wait := fs.Duration("wait", 0, "wait up to this long for the command to finish and print its final state")
	return func(e *env, c *ctlConn, args []string) error {
		if len(args) < 2 {
			return usagef("expected arguments: CODE ACTION [key=value... | '{json arguments}']")
		}
		body := map[string]any{"action": args[1]}
		if len(args) > 2 {
			// The same forms as twin set: key=value pairs or one JSON object.
			a, err := desiredPatch(args[2:])
			if err != nil {
				return err
			}
			body["args"] = json.RawMessage(a)
		}
		if *id != "" {
			body["id"] = *id
		}
		if *ttl > 0 {
			body["ttl"] = ttl.String()
		}
		if *resultTimeout > 0 {
			body["result_timeout"] = resultTimeout.String()
		}
		var cmd map[string]any
		if _, err := c.json("POST", "/api/v1/objects/"+url.PathEscape(args[0])+"/commands", body, &cmd); err != nil {
			return err
		}
		if *wait <= 0 {
			return printJSON(e.stdout, cmd)
		}
		cid, _ := cmd["id"].(string)
		deadline := time.Now().Add(*wait)
		for {
			var got struct {
				Command map[string]any `json:"command"`
			}
			if _, err := c.json("GET", "/api/v1/commands/"+url.PathEscape(cid), nil, &got); err != nil {
				return err
			}
			switch got.Command["status"] {
			case "queued", "delivered":
				if time.Now().After(deadline) {
					_ = printJSON(e.stdout, got.Command)
					return fmt.Errorf("command %s still %v after %s", cid, got.Command["status"], *wait)
				}
				time.Sleep(200 * time.Millisecond)
				continue
			}
			return printJSON(e.stdout, got.Command)
		}
	}
}

func ctlCommandList(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	status := fs.String("status", "", "only this status (queued, delivered, succeeded, failed, expired, timed_out, canceled)")
	limit := fs.Int("limit", 100, "at most this many, newest first")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		q := url.Values{"limit": {fmt.Sprint(*limit)}}
		if *status != "" {
			q.Set("status", *status)
		}
		var out any
		if _, err := c.json("GET", "/api/v1/objects/"+url.PathEscape(args[0])+"/commands?"+q.Encode(), nil, &out); err != nil {
			return err
		}
		return printJSON(e.stdout, out)
	}
}

func ctlDevicePSK(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	keyOnly := fs.Bool("key-only", false, "print only the key (for scripts: coap-client -u CODE -k \"$(...)\")")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		var out struct {
			Identity string `json:"identity"`
			Key      string `json:"key"`
		}
		if _, err := c.json("GET", "/api/v1/objects/"+url.PathEscape(args[0])+"/psk", nil, &out); err != nil {
			return err
		}
		if *keyOnly {
			_, err := fmt.Fprintln(e.stdout, out.Key)
			return err
		}
		return printJSON(e.stdout, out)
	}
}

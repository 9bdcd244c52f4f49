package cli

// The demo's closed loops: the shipped definitions (examples/loops) for
// the scenario's models, their live status, and the operator's part in
// them (approvals, alarms).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/wanwu-iot/wanwu/examples/loops"
	"github.com/wanwu-iot/wanwu/internal/hubclient"
	"github.com/wanwu-iot/wanwu/internal/loop"
	"github.com/wanwu-iot/wanwu/internal/scenario"
)

// defineDemoLoops defines the shipped loops whose thing model the
// scenario's classes report, in its tenant; it returns their keys.
func defineDemoLoops(ctx context.Context, hc *hubclient.Client, sc *scenario.Scenario) ([]string, error) {
	models := map[string]bool{}
	for _, c := range sc.Classes {
		id, _, _ := strings.Cut(c.Model, "@")
		models[id] = true
	}
	files, err := fs.Glob(loops.FS, "*.yaml")
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, name := range files {
		doc, err := loops.FS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		d, err := loop.Parse(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if !models[d.On.Model] {
			continue
		}
		if _, _, err := hc.Do(ctx, "POST", "/api/v1/loops?tenant="+url.QueryEscape(sc.Tenant), bytes.NewReader(doc), "application/yaml"); err != nil {
			return nil, fmt.Errorf("loop %s: %w", name, err)
		}
		keys = append(keys, loop.Key(sc.Tenant, d.ID))
	}
	return keys, nil
}

// demoLoopView is a loop as the demo shows it.
type demoLoopView struct {
	Key      string         `json:"key"`
	Mode     string         `json:"mode"`
	Killed   string         `json:"killed,omitempty"`
	States   map[string]int `json:"states"`
	Refusals map[string]int `json:"refusals,omitempty"`
}

// demoAlarmView counts the tenant's alarms.
type demoAlarmView struct {
	Active     int            `json:"active"`
	Unacked    int            `json:"unacknowledged"`
	Shelved    int            `json:"shelved"`
	BySeverity map[string]int `json:"by_severity"`
	Flooding   bool           `json:"flooding"`
}

func demoLoops(ctx context.Context, hc *hubclient.Client, tenant string) ([]demoLoopView, *demoAlarmView) {
	var out struct {
		Loops []struct {
			Loop struct {
				Key, Mode, Killed string
			} `json:"loop"`
			Evidence loop.Counts `json:"evidence"`
		} `json:"loops"`
	}
	var views []demoLoopView
	if b, _, err := hc.Do(ctx, "GET", "/api/v1/loops?tenant="+url.QueryEscape(tenant), nil, ""); err == nil && json.Unmarshal(b, &out) == nil {
		for _, l := range out.Loops {
			views = append(views, demoLoopView{Key: l.Loop.Key, Mode: l.Loop.Mode, Killed: l.Loop.Killed, States: l.Evidence.States, Refusals: l.Evidence.Refusals})
		}
	}
	var al struct {
		Alarms []struct {
			Severity, State string
			Shelved         any
		}
		Flooding bool
	}
	av := &demoAlarmView{BySeverity: map[string]int{}}
	if b, _, err := hc.Do(ctx, "GET", "/api/v1/alarms?limit=1000&tenant="+url.QueryEscape(tenant), nil, ""); err == nil && json.Unmarshal(b, &al) == nil {
		av.Flooding = al.Flooding
		for _, a := range al.Alarms {
			if a.Shelved != nil {
				av.Shelved++
				continue
			}
			if a.State == "unack_active" || a.State == "ack_active" {
				av.Active++
				av.BySeverity[a.Severity]++
			}
			if a.State == "unack_active" || a.State == "unack_cleared" {
				av.Unacked++
			}
		}
	}
	return views, av
}

// loopLines is the live status of the loops and alarms.
func loopLines(ctx context.Context, hc *hubclient.Client, tenant string) string {
	views, av := demoLoops(ctx, hc, tenant)
	if len(views) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("closed loops (ctl loop evidence KEY explains each decision):\n")
	width := 0
	for _, v := range views {
		width = max(width, len(v.Key))
	}
	for _, v := range views {
		fmt.Fprintf(&b, "  %-*s  %-7s %s\n", width, v.Key, v.Mode, loopSummary(v))
	}
	var sev []string
	for _, s := range []string{"critical", "high", "medium", "low"} {
		if n := av.BySeverity[s]; n > 0 {
			sev = append(sev, fmt.Sprintf("%d %s", n, s))
		}
	}
	detail := ""
	if len(sev) > 0 {
		detail = " (" + strings.Join(sev, ", ") + ")"
	}
	flood := ""
	if av.Flooding {
		flood = "; ALARM FLOOD"
	}
	fmt.Fprintf(&b, "alarms: %d active%s, %d unacknowledged, %d shelved%s\n", av.Active, detail, av.Unacked, av.Shelved, flood)
	return b.String()
}

// loopSummary says what a loop did, in words.
func loopSummary(v demoLoopView) string {
	if v.Killed != "" {
		return "KILLED: " + v.Killed
	}
	s := v.States
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(s[loop.StateSent]+s[loop.StateVerify], "acting")
	add(s[loop.StateDone], "done")
	add(s[loop.StateFailed], "failed")
	if n := s[loop.StateRefused]; n > 0 {
		var why []string
		for _, k := range slices.Sorted(mapKeys(v.Refusals)) {
			if k != "approval" {
				why = append(why, fmt.Sprintf("%s %d", k, v.Refusals[k]))
			}
		}
		sort.Strings(why)
		parts = append(parts, fmt.Sprintf("%d refused (%s)", n, strings.Join(why, ", ")))
	}
	add(s[loop.StateAwaiting], "waiting for approval")
	add(s[loop.StateRejected], "rejected")
	add(s[loop.StateExpired], "approval expired")
	add(s[loop.StateShadow], "decided in shadow")
	add(s[loop.StateRecorded], "recorded (alarms, events, clears)")
	add(s[loop.StateError], "errors")
	if len(parts) == 0 {
		return "watching, no decision yet"
	}
	return strings.Join(parts, ", ")
}

// approveOldest approves (or rejects) the oldest action waiting for
// approval, as the demo's operator.
func approveOldest(approve bool, note string) func(ctx context.Context, c *hubclient.Client, tenant string) error {
	return func(ctx context.Context, c *hubclient.Client, tenant string) error {
		var out struct {
			Approvals []struct {
				ID int64 `json:"id"`
			} `json:"approvals"`
		}
		b, _, err := c.Do(ctx, "GET", "/api/v1/approvals?tenant="+url.QueryEscape(tenant), nil, "")
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &out); err != nil || len(out.Approvals) == 0 {
			return err
		}
		verb := "approve"
		if !approve {
			verb = "reject"
		}
		id := out.Approvals[len(out.Approvals)-1].ID
		body, _ := json.Marshal(map[string]string{"note": note})
		_, _, err = c.Do(ctx, "POST", fmt.Sprintf("/api/v1/evidence/%d/%s", id, verb), bytes.NewReader(body), "application/json")
		return err
	}
}

// alarmStep acknowledges the oldest unacknowledged alarm, or shelves the
// first active alarm of a name.
func alarmStep(shelveName, reason string) func(ctx context.Context, c *hubclient.Client, tenant string) error {
	return func(ctx context.Context, c *hubclient.Client, tenant string) error {
		var out struct {
			Alarms []struct {
				ID, Name, State string
				Shelved         any
			}
		}
		b, _, err := c.Do(ctx, "GET", "/api/v1/alarms?limit=1000&tenant="+url.QueryEscape(tenant), nil, "")
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return err
		}
		for i := len(out.Alarms) - 1; i >= 0; i-- {
			a := out.Alarms[i]
			switch {
			case a.Shelved != nil:
			case shelveName != "" && a.Name == shelveName && (a.State == "unack_active" || a.State == "ack_active"):
				body, _ := json.Marshal(map[string]string{"reason": reason, "duration": "1h"})
				_, _, err := c.Do(ctx, "POST", "/api/v1/alarms/"+url.PathEscape(a.ID)+"/shelve", bytes.NewReader(body), "application/json")
				return err
			case shelveName == "" && (a.State == "unack_active" || a.State == "unack_cleared"):
				body, _ := json.Marshal(map[string]string{"note": reason})
				_, _, err := c.Do(ctx, "POST", "/api/v1/alarms/"+url.PathEscape(a.ID)+"/ack", bytes.NewReader(body), "application/json")
				return err
			}
		}
		return nil
	}
}

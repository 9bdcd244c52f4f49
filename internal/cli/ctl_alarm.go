package cli

// Alarms from the command line: `wanwu ctl alarm list|show|ack|shelve|unshelve`.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/alarm"
)

func alarmPath(id, suffix string) string { return "/api/v1/alarms/" + url.PathEscape(id) + suffix }

// shelvedText says until when an alarm is shelved, "-" when it is not.
func shelvedText(a *alarm.Alarm) string {
	if a.Shelved == nil {
		return "-"
	}
	return "until " + timeText(a.Shelved.Until)
}

func ctlAlarmList(fs *flag.FlagSet) ctlRun {
	state := fs.String("state", "", "only these states, comma-separated: unack_active, ack_active, unack_cleared, cleared")
	severity := fs.String("severity", "", "only this severity and above: low, medium, high, critical")
	object := fs.String("object", "", "only this object's alarms")
	shelved := fs.String("shelved", "", "true: only shelved alarms; false: only those not shelved")
	tenant := fs.String("tenant", "", "only this tenant's alarms")
	limit := fs.Int("limit", 100, "at most this many")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		if *shelved != "" && *shelved != "true" && *shelved != "false" {
			return usagef("--shelved %q: want true or false", *shelved)
		}
		q := addFilters(url.Values{}, map[string]string{"state": *state, "severity": *severity, "object": *object, "shelved": *shelved, "tenant": *tenant})
		q.Set("limit", strconv.Itoa(*limit))
		var out struct {
			Alarms   []*alarm.Alarm `json:"alarms"`
			Flooding bool           `json:"flooding"`
		}
		if done, err := getData(e, c, "/api/v1/alarms?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Alarms))
		for _, a := range out.Alarms {
			rows = append(rows, []string{a.ID, a.Object, a.Name, string(a.Severity), string(a.State), shelvedText(a),
				strconv.Itoa(a.Count), timeText(a.RaisedAt), short(a.Message, 60)})
		}
		if err := table(e.stdout, []string{"ID", "OBJECT", "NAME", "SEVERITY", "STATE", "SHELVED", "COUNT", "RAISED", "MESSAGE"}, rows); err != nil {
			return err
		}
		if out.Flooding {
			fmt.Fprintln(e.stdout, "alarm flood: the tenant's alarm rate is above the ISA-18.2 limit")
		}
		return nil
	}
}

func ctlAlarmShow(fs *flag.FlagSet) ctlRun {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID (from ctl alarm list)"); err != nil {
			return err
		}
		var out struct {
			Alarm   alarm.Alarm   `json:"alarm"`
			History []alarm.Event `json:"history"`
		}
		if done, err := getData(e, c, alarmPath(args[0], ""), *asJSON, &out); done || err != nil {
			return err
		}
		w := e.stdout
		a := &out.Alarm
		fmt.Fprintf(w, "alarm       %s\n", a.ID)
		fmt.Fprintf(w, "object      %s\nname        %s (from %s)\n", a.Object, a.Name, a.Source)
		fmt.Fprintf(w, "severity    %s\nstate       %s\nmessage     %s\n", a.Severity, a.State, a.Message)
		fmt.Fprintf(w, "raised      %s (activation %d)\n", timeText(a.RaisedAt), a.Count)
		if a.ClearedAt != nil {
			fmt.Fprintf(w, "cleared     %s\n", timeText(*a.ClearedAt))
		}
		if a.AckedAt != nil {
			fmt.Fprintf(w, "acked       %s by %s", timeText(*a.AckedAt), a.AckedBy)
			if a.AckNote != "" {
				fmt.Fprintf(w, ": %s", a.AckNote)
			}
			fmt.Fprintln(w)
		}
		if s := a.Shelved; s != nil {
			fmt.Fprintf(w, "shelved     until %s by %s: %s\n", timeText(s.Until), s.By, s.Reason)
		}
		if a.Suppressed != "" {
			fmt.Fprintf(w, "suppressed  %s\n", a.Suppressed)
		}
		if a.Origin != "" {
			fmt.Fprintf(w, "origin      edge %s\n", a.Origin)
		}
		if len(a.Data) > 0 {
			var data bytes.Buffer
			if json.Compact(&data, a.Data) != nil {
				data.Reset()
				data.Write(a.Data)
			}
			fmt.Fprintf(w, "data        %s\n", data.Bytes())
		}
		fmt.Fprintln(w, "\nhistory")
		rows := make([][]string, 0, len(out.History))
		for _, ev := range out.History {
			rows = append(rows, []string{"  " + timeText(ev.Time), ev.Kind, orDash(ev.Actor), string(ev.Alarm.State), ev.Detail(80)})
		}
		return table(w, []string{"  TIME", "EVENT", "BY", "STATE", "DETAIL"}, rows)
	}
}

func ctlAlarmAck(fs *flag.FlagSet) ctlRun {
	note := fs.String("note", "", "a note kept with the acknowledgement")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID (from ctl alarm list)"); err != nil {
			return err
		}
		var out struct {
			Alarm alarm.Alarm `json:"alarm"`
		}
		if done, err := callData(e, c, "POST", alarmPath(args[0], "/ack"), map[string]string{"note": *note}, *asJSON, &out); done || err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "alarm %s acknowledged: %s\n", out.Alarm.ID, out.Alarm.State)
		return nil
	}
}

func ctlAlarmShelve(fs *flag.FlagSet) ctlRun {
	dur := fs.String("for", "", "how long, e.g. 1h (at most 168h)")
	reason := fs.String("reason", "", "why (required)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID (from ctl alarm list)"); err != nil {
			return err
		}
		if d, err := time.ParseDuration(*dur); err != nil || d <= 0 {
			return usagef("--for %q: want how long to shelve, a positive duration such as 1h", *dur)
		}
		if strings.TrimSpace(*reason) == "" {
			return usagef("--reason is required: shelving says why")
		}
		var out struct {
			Alarm alarm.Alarm `json:"alarm"`
		}
		if done, err := callData(e, c, "POST", alarmPath(args[0], "/shelve"), map[string]string{"duration": *dur, "reason": *reason}, *asJSON, &out); done || err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "alarm %s shelved %s\n", out.Alarm.ID, shelvedText(&out.Alarm))
		return nil
	}
}

func ctlAlarmUnshelve(fs *flag.FlagSet) ctlRun {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID (from ctl alarm list)"); err != nil {
			return err
		}
		var out struct {
			Alarm alarm.Alarm `json:"alarm"`
		}
		if done, err := callData(e, c, "POST", alarmPath(args[0], "/unshelve"), nil, *asJSON, &out); done || err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "alarm %s unshelved: %s\n", out.Alarm.ID, out.Alarm.State)
		return nil
	}
}

package cli

// ctl presence get|list|events: devices' online state and their sessions.

import (
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// presenceState is the hub's answer for one device's presence.
type presenceState struct {
	Code       string    `json:"code"`
	Tenant     string    `json:"tenant"`
	Online     bool      `json:"online"`
	Protocols  []string  `json:"protocols"`
	Since      time.Time `json:"since"`
	LastSeen   time.Time `json:"last_seen"`
	LastReason string    `json:"last_reason"`
	Remote     string    `json:"remote"`
}

// presenceEvent is the hub's answer for one session start or end.
type presenceEvent struct {
	Time     time.Time `json:"time"`
	Code     string    `json:"code"`
	Kind     string    `json:"kind"`
	Protocol string    `json:"protocol"`
	Reason   string    `json:"reason"`
	Remote   string    `json:"remote"`
	Online   bool      `json:"online"`
}

func onlineText(online bool) string {
	if online {
		return "online"
	}
	return "offline"
}

// timeOrNever is timeText, or "never" for the zero time.
func timeOrNever(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return timeText(t)
}

func presenceRows(states []presenceState) [][]string {
	rows := make([][]string, 0, len(states))
	for _, s := range states {
		rows = append(rows, []string{s.Code, onlineText(s.Online), strings.Join(s.Protocols, ","), timeOrNever(s.Since), timeOrNever(s.LastSeen), s.LastReason})
	}
	return rows
}

var presenceHeader = []string{"DEVICE", "STATE", "OVER", "SINCE", "LAST SEEN", "LAST END"}

func eventRows(evs []presenceEvent) [][]string {
	rows := make([][]string, 0, len(evs))
	for _, ev := range evs {
		what := ev.Kind
		if ev.Reason != "" {
			what += " (" + ev.Reason + ")"
		}
		rows = append(rows, []string{timeText(ev.Time), ev.Code, ev.Protocol, what, onlineText(ev.Online), ev.Remote})
	}
	return rows
}

var eventHeader = []string{"TIME", "DEVICE", "PROTOCOL", "SESSION", "THEN", "REMOTE"}

func ctlPresenceGet(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		var out struct {
			Presence presenceState   `json:"presence"`
			Events   []presenceEvent `json:"events"`
		}
		if done, err := getData(e, c, "/api/v1/objects/"+url.PathEscape(args[0])+"/presence", *asJSON, &out); done || err != nil {
			return err
		}
		if err := table(e.stdout, presenceHeader, presenceRows([]presenceState{out.Presence})); err != nil {
			return err
		}
		if len(out.Events) == 0 {
			fmt.Fprintln(e.stdout, "\nno sessions yet")
			return nil
		}
		fmt.Fprintln(e.stdout)
		return table(e.stdout, eventHeader, eventRows(out.Events))
	}
}

func ctlPresenceList(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	tenant := fs.String("tenant", "", "one tenant's devices")
	online := fs.Bool("online", false, "only devices online now")
	offline := fs.Bool("offline", false, "only devices offline now")
	limit := fs.Int("limit", 100, "at most this many, by code")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments (filters are flags)"); err != nil {
			return err
		}
		if *online && *offline {
			return usagef("--online and --offline exclude each other")
		}
		q := addFilters(url.Values{"limit": {fmt.Sprint(*limit)}}, map[string]string{"tenant": *tenant})
		if *online || *offline {
			q.Set("online", fmt.Sprint(*online))
		}
		var out struct {
			Presence []presenceState `json:"presence"`
		}
		if done, err := getData(e, c, "/api/v1/presence?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		return table(e.stdout, presenceHeader, presenceRows(out.Presence))
	}
}

func ctlPresenceEvents(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	since := sinceFlag(fs, "24h")
	device := fs.String("device", "", "one device's sessions (CODE)")
	tenant := fs.String("tenant", "", "one tenant's sessions")
	limit := fs.Int("limit", 100, "at most this many, the newest")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments (filters are flags)"); err != nil {
			return err
		}
		start, err := startParam(*since)
		if err != nil {
			return err
		}
		q := addFilters(url.Values{"since": {start}, "limit": {fmt.Sprint(*limit)}}, map[string]string{"device": *device, "tenant": *tenant})
		var out struct {
			Events []presenceEvent `json:"events"`
		}
		if done, err := getData(e, c, "/api/v1/presence/events?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		return table(e.stdout, eventHeader, eventRows(out.Events))
	}
}

// ctlObjectShow prints an object, then its presence as ctl presence get
// does; --json prints both answers as one document.
func ctlObjectShow(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	asJSON := fs.Bool("json", false, "print the hub's answers as one JSON document")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		path := "/api/v1/objects/" + url.PathEscape(args[0])
		var obj map[string]any
		if _, err := c.json("GET", path, nil, &obj); err != nil {
			return err
		}
		var pres struct {
			Presence presenceState   `json:"presence"`
			Events   []presenceEvent `json:"events"`
		}
		if _, err := c.json("GET", path+"/presence", nil, &pres); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, map[string]any{"object": obj, "presence": pres.Presence, "sessions": pres.Events})
		}
		if err := printJSON(e.stdout, obj); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout)
		if err := table(e.stdout, presenceHeader, presenceRows([]presenceState{pres.Presence})); err != nil {
			return err
		}
		if len(pres.Events) > 0 {
			fmt.Fprintln(e.stdout)
			return table(e.stdout, eventHeader, eventRows(pres.Events))
		}
		return nil
	}
}

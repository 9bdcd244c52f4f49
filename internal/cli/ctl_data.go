package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// The data commands read what devices sent: latest values, a property's
// range, events and dead letters. They print a table for people and, with
// --json, the hub's answer for scripts; --since takes a duration back from
// now ("10m", "2h").

// sinceFlag adds --since (default d) and returns the query value for start.
func sinceFlag(fs *flag.FlagSet, d string) *string {
	return fs.String("since", d, "how far back, a duration such as 10m or 2h")
}

// startParam turns --since into the API's relative start ("-10m").
func startParam(since string) (string, error) {
	d, err := time.ParseDuration(since)
	if err != nil || d <= 0 {
		return "", usagef("--since %q: want a positive duration such as 10m or 2h", since)
	}
	return "-" + d.String(), nil
}

// table writes rows under a header, aligned.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// valueText writes a value as a person reads it: JSON for objects
// (positions), the string itself for strings.
func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return fmt.Sprint(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// addFilters sets in q the query parameters whose values are not empty.
func addFilters(q url.Values, filters map[string]string) url.Values {
	for k, v := range filters {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func timeText(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05.000") }

// getData GETs path: with asJSON it prints the hub's answer and reports
// done; otherwise it decodes the answer into out for a table.
func getData(e *env, c *ctlConn, path string, asJSON bool, out any) (done bool, err error) {
	raw, _, err := c.do("GET", path, nil, "")
	if err != nil {
		return false, err
	}
	if asJSON {
		_, err := e.stdout.Write(raw)
		return true, err
	}
	return false, json.Unmarshal(raw, out)
}

func ctlTelemetryLatest(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		var out struct {
			Values map[string]struct {
				Time  time.Time `json:"time"`
				Value any       `json:"value"`
			} `json:"values"`
		}
		if done, err := getData(e, c, "/api/v1/telemetry/"+url.PathEscape(args[0])+"/latest", *asJSON, &out); done || err != nil {
			return err
		}
		names := make([]string, 0, len(out.Values))
		for n := range out.Values {
			names = append(names, n)
		}
		sort.Strings(names)
		rows := make([][]string, 0, len(names))
		for _, n := range names {
			v := out.Values[n]
			rows = append(rows, []string{n, valueText(v.Value), timeText(v.Time)})
		}
		return table(e.stdout, []string{"PROPERTY", "VALUE", "TIME"}, rows)
	}
}

func ctlTelemetryRange(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	since := sinceFlag(fs, "1h")
	step := fs.String("step", "1m", "the step between points")
	agg := fs.String("agg", "avg", "aggregation per step: avg, min, max, sum, count, last")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 2, "CODE PROPERTY"); err != nil {
			return err
		}
		start, err := startParam(*since)
		if err != nil {
			return err
		}
		q := url.Values{"start": {start}, "end": {"now"}, "step": {*step}, "agg": {*agg}}
		var out struct {
			Series []struct {
				Points []struct {
					Time  time.Time `json:"time"`
					Value any       `json:"value"`
				} `json:"points"`
			} `json:"series"`
		}
		if done, err := getData(e, c, "/api/v1/telemetry/"+url.PathEscape(args[0])+"/"+url.PathEscape(args[1])+"?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		var rows [][]string
		for _, s := range out.Series {
			for _, p := range s.Points {
				rows = append(rows, []string{timeText(p.Time), valueText(p.Value)})
			}
		}
		if len(rows) == 0 {
			fmt.Fprintf(e.stderr, "no values of %s for %s in the last %s\n", args[1], args[0], *since)
			return nil
		}
		return table(e.stdout, []string{"TIME", strings.ToUpper(*agg)}, rows)
	}
}

func ctlEvents(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	since := sinceFlag(fs, "24h")
	device := fs.String("device", "", "one device's events (CODE)")
	tenant := fs.String("tenant", "", "one tenant's events")
	name := fs.String("name", "", "only events of this name")
	limit := fs.Int("limit", 100, "at most this many, the newest")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments (filters are flags)"); err != nil {
			return err
		}
		start, err := startParam(*since)
		if err != nil {
			return err
		}
		q := addFilters(url.Values{"start": {start}, "limit": {fmt.Sprint(*limit)}},
			map[string]string{"device": *device, "tenant": *tenant, "name": *name})
		var out struct {
			Events []struct {
				Device string          `json:"device"`
				Name   string          `json:"name"`
				Time   time.Time       `json:"time"`
				Data   json.RawMessage `json:"data"`
			} `json:"events"`
		}
		if done, err := getData(e, c, "/api/v1/events?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Events))
		for _, ev := range out.Events {
			var data bytes.Buffer
			if len(ev.Data) > 0 && json.Compact(&data, ev.Data) != nil {
				data.Reset()
				data.Write(ev.Data)
			}
			rows = append(rows, []string{timeText(ev.Time), ev.Device, ev.Name, data.String()})
		}
		return table(e.stdout, []string{"TIME", "DEVICE", "EVENT", "DATA"}, rows)
	}
}

func ctlDeadLetters(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	device := fs.String("device", "", "one device's dead letters (CODE)")
	tenant := fs.String("tenant", "", "one tenant's dead letters")
	limit := fs.Int("limit", 100, "at most this many, the newest")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments (filters are flags)"); err != nil {
			return err
		}
		q := addFilters(url.Values{"limit": {fmt.Sprint(*limit)}}, map[string]string{"device": *device, "tenant": *tenant})
		var out struct {
			DeadLetters []struct {
				Time    time.Time `json:"time"`
				Device  string    `json:"device"`
				Source  string    `json:"source"`
				Reason  string    `json:"reason"`
				Message string    `json:"message"`
			} `json:"dead_letters"`
		}
		if done, err := getData(e, c, "/api/v1/deadletters?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.DeadLetters))
		for _, d := range out.DeadLetters {
			rows = append(rows, []string{timeText(d.Time), d.Device, d.Source, d.Reason, d.Message})
		}
		return table(e.stdout, []string{"TIME", "DEVICE", "SOURCE", "REASON", "MESSAGE"}, rows)
	}
}

package cli

// Edge nodes as the hub sees them: `wanwu ctl edge list|show`.

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/edge"
	"github.com/wanwu-iot/wanwu/internal/forward"
)

// edgeInfo is one edge in the hub's answer, with what it said of itself.
type edgeInfo struct {
	forward.EdgeInfo
	Status edge.Status `json:"status"`
}

// linkText is an edge's link as the hub last heard of it: up when it
// spoke within three of its 5-second heartbeats.
func linkText(e edgeInfo, now time.Time) string {
	if now.Sub(e.SeenAt) <= 15*time.Second {
		return "up"
	}
	return "down " + now.Sub(e.SeenAt).Truncate(time.Second).String()
}

func backlogText(e edgeInfo) string {
	var parts []string
	for _, b := range e.Status.Backlog {
		if b.Records > 0 || b.Messages > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", b.Class, b.Records))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func ctlEdgeList(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	tenant := fs.String("tenant", "", "only this tenant's edges")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		var out struct {
			Edges []edgeInfo `json:"edges"`
		}
		path := "/api/v1/edges"
		if *tenant != "" {
			path += "?tenant=" + url.QueryEscape(*tenant)
		}
		if done, err := getData(e, c, path, *asJSON, &out); done || err != nil {
			return err
		}
		now := time.Now()
		rows := make([][]string, 0, len(out.Edges))
		for _, x := range out.Edges {
			rows = append(rows, []string{x.Code, linkText(x, now), timeText(x.SeenAt), strconv.Itoa(x.Status.DevicesOnline),
				backlogText(x), strconv.FormatInt(x.Messages, 10), byteText(x.BytesUp), strconv.FormatInt(x.Gaps, 10)})
		}
		return table(e.stdout, []string{"EDGE", "LINK", "LAST SEEN", "ONLINE", "BACKLOG (records)", "FORWARDED", "BYTES UP", "GAPS"}, rows)
	}
}

func ctlEdgeShow(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		var x edgeInfo
		var raw json.RawMessage
		if *asJSON {
			if done, err := getData(e, c, "/api/v1/edges/"+url.PathEscape(args[0]), true, &raw); done || err != nil {
				return err
			}
		}
		if done, err := getData(e, c, "/api/v1/edges/"+url.PathEscape(args[0]), false, &x); done || err != nil {
			return err
		}
		now := time.Now()
		w := e.stdout
		fmt.Fprintf(w, "edge        %s (tenant %s)\n", x.Code, x.Tenant)
		fmt.Fprintf(w, "link        %s, last seen %s", linkText(x, now), timeText(x.SeenAt))
		if x.Status.Link.LastError != "" {
			fmt.Fprintf(w, " (its last error: %s)", x.Status.Link.LastError)
		}
		fmt.Fprintf(w, "\nforwarded   %d device messages, %s up, %d gap records\n", x.Messages, byteText(x.BytesUp), x.Gaps)
		fmt.Fprintf(w, "devices     %d online\nsnapshot    version %d\nepoch       %s\n\n", x.Status.DevicesOnline, x.Status.Snapshot, x.Epoch)
		rows := make([][]string, 0, len(x.Status.Backlog))
		for _, b := range x.Status.Backlog {
			full := ""
			if b.Full {
				full = "full"
			}
			oldest := "-"
			if b.OldestS > 0 {
				oldest = (time.Duration(b.OldestS * float64(time.Second))).Truncate(time.Second).String()
			}
			rows = append(rows, []string{b.Class, strconv.FormatInt(b.Records, 10), byteText(int64(b.Bytes)), oldest, byteText(b.Quota),
				strconv.FormatUint(x.Marks[b.Class], 10), full})
		}
		return table(w, []string{"CLASS", "BACKLOG", "BYTES", "OLDEST", "QUOTA", "AT HUB THROUGH", ""}, rows)
	}
}

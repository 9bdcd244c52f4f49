package console

// The edges pages, at the hub only: /edges lists the edge nodes (their link
// to the hub, the backlog they last reported, what the hub holds of them,
// the devices behind them), refreshed with htmx; /edges/{code} is one edge
// in full, as `wanwu ctl edge show` prints it, with its devices.

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

// edgeLinkUp is how recently an edge must have spoken for its link to be
// up: three of its 5-second heartbeats, as `wanwu ctl edge list` counts.
const edgeLinkUp = 15 * time.Second

// maxEdgeDevices is the most devices behind one edge a page lists (the
// API's page size).
const maxEdgeDevices = 1000

// edgeLink is what GET /api/v1/edges answers of one edge (forward.EdgeInfo,
// with the status the edge last sent decoded).
type edgeLink struct {
	Code     string            `json:"code"`
	Tenant   string            `json:"tenant"`
	Epoch    string            `json:"epoch"`
	SeenAt   time.Time         `json:"seen_at"`
	Messages int64             `json:"messages"`
	BytesUp  int64             `json:"bytes_up"`
	Gaps     int64             `json:"gap_records"`
	Marks    map[string]uint64 `json:"marks"`
	Status   edgeStatus        `json:"status"`
}

// edgeStatus is what an edge says of itself (edge.Status).
type edgeStatus struct {
	Version       string             `json:"version"`
	Link          forward.LinkStatus `json:"link"`
	Backlog       []forward.Backlog  `json:"backlog"`
	DevicesOnline int                `json:"devices_online"`
	Snapshot      uint64             `json:"snapshot_version"`
	At            time.Time          `json:"at"`
}

// edgeRow is one edge on the pages.
type edgeRow struct {
	Code, Tenant string
	// Linked: the edge has forwarded at least once; the rest of the link's
	// fields are set only then.
	Linked    bool
	Up        bool
	Quiet     string // how long it has not been heard from, when down
	SeenAt    time.Time
	LastError string
	Epoch     string
	Version   string
	Snapshot  uint64
	Online    int // devices online, as the edge last said
	Messages  int64
	BytesUp   string
	Gaps      int64
	// Waiting sums the records waiting at the edge over every class.
	Waiting int64
	Backlog []backlogRow
	// Devices behind the edge registered at the hub; DevicesMore: there
	// are more than the page counted.
	Devices     int
	DevicesMore bool
}

// backlogRow is one class of an edge's backlog.
type backlogRow struct {
	Class    string
	Records  int64
	Messages uint64
	Bytes    string
	Oldest   string
	Quota    string
	Full     bool
	Mark     uint64 // the hub's high-water mark: through which message it holds the class
}

// edgesView is the edges list.
type edgesView struct {
	Edges    []edgeRow
	At       time.Time
	Tenant   string // the tenant a bound token sees
	HubCodes bool   // at least one tenant exists (for the empty state's commands)
}

// edgeView is one edge's page.
type edgeView struct {
	Edge    edgeRow
	Devices []edgeDevice
	// More is the API's cursor when more devices follow.
	More string
	// PresenceAtHub: some device behind the edge has a presence at the
	// hub (normally none do: the edge keeps its devices' presence).
	PresenceAtHub bool
}

// edgeDevice is a device behind an edge.
type edgeDevice struct {
	O        registry.Object
	Presence *presenceView // nil when the hub has no presence for it
}

// edgeRowFrom turns the API's answer into a row.
func edgeRowFrom(l edgeLink, now time.Time) edgeRow {
	e := edgeRow{Code: l.Code, Tenant: l.Tenant, Linked: true, SeenAt: l.SeenAt, LastError: l.Status.Link.LastError,
		Epoch: l.Epoch, Version: l.Status.Version, Snapshot: l.Status.Snapshot, Online: l.Status.DevicesOnline,
		Messages: l.Messages, BytesUp: byteText(l.BytesUp), Gaps: l.Gaps}
	quiet := now.Sub(l.SeenAt)
	e.Up = quiet <= edgeLinkUp
	if !e.Up {
		e.Quiet = durationText(quiet)
	}
	for _, b := range l.Status.Backlog {
		row := backlogRow{Class: b.Class, Records: b.Records, Messages: b.Messages, Bytes: byteText(int64(b.Bytes)),
			Oldest: "–", Quota: byteText(b.Quota), Full: b.Full, Mark: l.Marks[b.Class]}
		if b.OldestS > 0 {
			row.Oldest = durationText(time.Duration(b.OldestS * float64(time.Second)))
		}
		e.Waiting += b.Records
		e.Backlog = append(e.Backlog, row)
	}
	return e
}

// edgesData reads the edges the principal sees through the API: those
// that forwarded, and the edge objects registered that have not yet.
func (c *Console) edgesData(r *http.Request, q *request) (*edgesView, error) {
	var links struct {
		Edges []edgeLink `json:"edges"`
	}
	if err := c.call(r, q, http.MethodGet, "/api/v1/edges", nil, nil, &links); err != nil {
		return nil, err
	}
	var objs struct {
		Objects []registry.Object `json:"objects"`
	}
	if err := c.call(r, q, http.MethodGet, "/api/v1/objects", url.Values{"kind": {registry.KindEdge}, "limit": {fmt.Sprint(maxEdgeDevices)}}, nil, &objs); err != nil {
		return nil, err
	}
	v := &edgesView{At: q.now, Tenant: q.p.Tenant}
	seen := map[string]bool{}
	for _, l := range links.Edges {
		seen[l.Code] = true
		v.Edges = append(v.Edges, edgeRowFrom(l, q.now))
	}
	for _, o := range objs.Objects {
		if !seen[o.Code] && o.Status == registry.StatusActive {
			v.Edges = append(v.Edges, edgeRow{Code: o.Code, Tenant: o.Tenant})
		}
	}
	slices.SortFunc(v.Edges, func(a, b edgeRow) int {
		switch {
		case a.Code < b.Code:
			return -1
		case a.Code > b.Code:
			return 1
		}
		return 0
	})
	for i := range v.Edges {
		n, more, err := c.countBehind(r, q, v.Edges[i].Code)
		if err != nil {
			return nil, err
		}
		v.Edges[i].Devices, v.Edges[i].DevicesMore = n, more
	}
	if len(v.Edges) == 0 {
		var t struct {
			Tenants []struct{ Name string } `json:"tenants"`
		}
		if err := c.call(r, q, http.MethodGet, "/api/v1/tenants", nil, nil, &t); err == nil {
			v.HubCodes = len(t.Tenants) > 0
		}
	}
	return v, nil
}

// countBehind counts the objects registered behind an edge, up to a page.
func (c *Console) countBehind(r *http.Request, q *request, edge string) (int, bool, error) {
	var out struct {
		Objects []struct{} `json:"objects"`
		Next    string     `json:"next"`
	}
	err := c.call(r, q, http.MethodGet, "/api/v1/objects", url.Values{"edge": {edge}, "limit": {fmt.Sprint(maxEdgeDevices)}}, nil, &out)
	if err != nil {
		return 0, false, fmt.Errorf("console: devices behind %s: %w", edge, err)
	}
	return len(out.Objects), out.Next != "", nil
}

// edges is the list of edges; an htmx request (the page's refresh every
// 10 s) gets the list alone.
func (c *Console) edges(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.edgesData(r, q)
	if err != nil {
		return err
	}
	c.render(w, r, q, http.StatusOK, "edges", view{Title: "Edges", Nav: "edges", Data: v})
	return nil
}

// edge is one edge's page, with the devices behind it.
func (c *Console) edge(w http.ResponseWriter, r *http.Request, q *request) error {
	code := r.PathValue("code")
	var v edgeView
	var l edgeLink
	err := c.call(r, q, http.MethodGet, "/api/v1/edges/"+url.PathEscape(code), nil, nil, &l)
	var ae *apiError
	switch {
	case err == nil:
		v.Edge = edgeRowFrom(l, q.now)
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		// An edge registered that has not forwarded yet has a page that
		// says so; a code that is no edge the user sees is not found.
		var o registry.Object
		if oerr := c.call(r, q, http.MethodGet, "/api/v1/objects/"+url.PathEscape(code), nil, nil, &o); oerr != nil || o.Kind != registry.KindEdge {
			return &pageError{Status: http.StatusNotFound, Title: "Edge not found", Query: code,
				Message: "No edge you can see has the code " + quote(code) + ".",
				Next:    "The edges page lists every edge you can see.", err: err}
		}
		v.Edge = edgeRow{Code: o.Code, Tenant: o.Tenant}
	default:
		return err
	}
	var objs struct {
		Objects []registry.Object `json:"objects"`
		Next    string            `json:"next"`
	}
	query := url.Values{"edge": {v.Edge.Code}, "limit": {fmt.Sprint(maxEdgeDevices)}}
	if after := r.URL.Query().Get("after"); after != "" {
		query.Set("after", after)
	}
	if err := c.call(r, q, http.MethodGet, "/api/v1/objects", query, nil, &objs); err != nil {
		return err
	}
	v.More = objs.Next
	v.Edge.Devices, v.Edge.DevicesMore = len(objs.Objects), objs.Next != ""
	// The hub's presence of the edge's tenant: devices behind an edge
	// connect to it, so normally the hub has none for them.
	var pres struct {
		Presence []presenceState `json:"presence"`
	}
	if len(objs.Objects) > 0 && c.o.Presence != nil {
		if err := c.call(r, q, http.MethodGet, "/api/v1/presence", url.Values{"tenant": {v.Edge.Tenant}, "limit": {"1000"}}, nil, &pres); err != nil {
			return err
		}
	}
	byCode := map[string]presenceState{}
	for _, p := range pres.Presence {
		byCode[p.Code] = p
	}
	for _, o := range objs.Objects {
		d := edgeDevice{O: o}
		if p, ok := byCode[o.Code]; ok {
			d.Presence = &presenceView{Online: p.Online, Since: p.Since, LastSeen: p.LastSeen, Protocols: p.Protocols, LastReason: p.LastReason}
			v.PresenceAtHub = true
		}
		v.Devices = append(v.Devices, d)
	}
	q.partial = false
	c.render(w, r, q, http.StatusOK, "edge", view{Title: "Edge " + v.Edge.Code, Nav: "edges", Data: v})
	return nil
}

// presenceState is a device's presence as GET /api/v1/presence answers it.
type presenceState struct {
	Code       string    `json:"code"`
	Online     bool      `json:"online"`
	Protocols  []string  `json:"protocols"`
	Since      time.Time `json:"since"`
	LastSeen   time.Time `json:"last_seen"`
	LastReason string    `json:"last_reason"`
}

// byteText is a byte count for people (binary units, as the CLI prints).
func byteText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// durationText is a duration to the second, or to the minute past an hour.
func durationText(d time.Duration) string {
	if d >= time.Hour {
		return d.Truncate(time.Minute).String()
	}
	return d.Truncate(time.Second).String()
}

package console

import (
	"cmp"
	"net/http"
	"slices"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/registry"
)

// fleetView is the fleet overview's data.
type fleetView struct {
	// Scope is the tenant a bound token sees, "" for every tenant.
	Scope   string
	Total   int
	Tenants []tenantRow
	// Statuses, Kinds, Networks and Edges count the visible objects.
	Statuses []countRow
	Kinds    []countRow
	Networks []countRow
	Edges    []countRow
	// Places counts the objects by the first two levels of each tenant's
	// hierarchy (at most maxPlaces rows); Unplaced those not placed.
	Places   []placeRow
	Unplaced int
	// Presence is nil when the node has no presence service.
	Presence *fleetPresence
	// Rates is nil without the node's metrics; RatesHidden says that a
	// tenant-bound token is not shown them.
	Rates       *rateView
	RatesHidden bool
	At          string // the time of the counts, RFC 3339 UTC
	AtText      string
}

type tenantRow struct {
	Name, Title                                  string
	Objects                                      int
	Active, Quarantined, Revoked, Decommissioned int
	Online                                       int
	Offline                                      int
}

// placeRow is a place in a tenant's hierarchy: level 1 (a site) or 2.
type placeRow struct {
	Tenant, Path string
	Level, N     int
}

// maxPlaces bounds the hierarchy rows the overview shows.
const maxPlaces = 60

type countRow struct {
	Name string
	N    int
}

// fleetPresence counts the devices whose presence this node sees.
type fleetPresence struct {
	Online, Offline int
	// Edge is set at an edge: the devices counted are those behind it.
	Edge string
}

// connectable kinds keep sessions with the node; assets do not, and an
// edge's link to the hub is no device session.
func connectable(kind string) bool {
	return kind == registry.KindDevice || kind == registry.KindGateway
}

// fleetData counts what the principal sees.
func (c *Console) fleetData(r *http.Request, q *request) (*fleetView, error) {
	ctx := r.Context()
	v := &fleetView{Scope: q.p.Tenant, At: q.now.UTC().Format("2006-01-02T15:04:05Z"), AtText: q.now.UTC().Format("2006-01-02 15:04:05 UTC")}
	tenants, err := c.o.Registry.Tenants(ctx, q.p.Tenant)
	if err != nil {
		return nil, err
	}
	counts, err := c.o.Registry.CountObjects(ctx, q.p.Tenant)
	if err != nil {
		return nil, err
	}
	rows := map[string]*tenantRow{}
	for _, t := range tenants {
		rows[t.Name] = &tenantRow{Name: t.Name, Title: t.Title}
	}
	status, kind, network, edge := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	localActive := map[string]int{} // by tenant: active devices whose presence this node sees
	for _, n := range counts {
		if !q.p.Sees(n.Tenant) {
			continue
		}
		tr := rows[n.Tenant]
		if tr == nil { // a tenant listed by no Tenants row (the shared namespace holds no objects)
			tr = &tenantRow{Name: n.Tenant}
			rows[n.Tenant] = tr
		}
		tr.Objects += n.Objects
		switch n.Status {
		case registry.StatusActive:
			tr.Active += n.Objects
		case registry.StatusQuarantined:
			tr.Quarantined += n.Objects
		case registry.StatusRevoked:
			tr.Revoked += n.Objects
		case registry.StatusDecommissioned:
			tr.Decommissioned += n.Objects
		}
		v.Total += n.Objects
		status[n.Status] += n.Objects
		kind[n.Kind] += n.Objects
		network[n.Network] += n.Objects
		if n.Edge != "" {
			edge[n.Edge] += n.Objects
		}
		if n.Status == registry.StatusActive && connectable(n.Kind) && c.local(n.Edge) {
			localActive[n.Tenant] += n.Objects
		}
	}
	if c.o.Presence != nil {
		fp := &fleetPresence{}
		if c.o.Role == "edge" {
			fp.Edge = c.o.Code
		}
		online := c.o.Presence.OnlineByTenant()
		for name, tr := range rows {
			tr.Online = online[name]
			tr.Offline = max(0, localActive[name]-tr.Online)
			fp.Online += tr.Online
			fp.Offline += tr.Offline
		}
		v.Presence = fp
	}
	if err := c.places(r, q, v); err != nil {
		return nil, err
	}
	for _, tr := range rows {
		v.Tenants = append(v.Tenants, *tr)
	}
	slices.SortFunc(v.Tenants, func(a, b tenantRow) int { return cmp.Compare(a.Name, b.Name) })
	v.Statuses, v.Kinds, v.Networks, v.Edges = sorted(status), sorted(kind), sorted(network), sorted(edge)
	if c.rates != nil {
		if q.p.Tenant == "" {
			rv := c.rates.view(c.o.RateEvery)
			v.Rates = &rv
		} else {
			v.RatesHidden = true
		}
	}
	return v, nil
}

// places counts the objects by the first two levels of the hierarchy.
func (c *Console) places(r *http.Request, q *request, v *fleetView) error {
	paths, err := c.o.Registry.CountPaths(r.Context(), q.p.Tenant)
	if err != nil {
		return err
	}
	n := map[[2]string]int{}
	for _, p := range paths {
		if !q.p.Sees(p.Tenant) {
			continue
		}
		if p.Path == "" {
			v.Unplaced += p.Objects
			continue
		}
		segs := strings.Split(p.Path, "/")
		n[[2]string{p.Tenant, segs[0]}] += p.Objects
		if len(segs) > 1 {
			n[[2]string{p.Tenant, segs[0] + "/" + segs[1]}] += p.Objects
		}
	}
	for k, c := range n {
		v.Places = append(v.Places, placeRow{Tenant: k[0], Path: k[1], Level: strings.Count(k[1], "/") + 1, N: c})
	}
	slices.SortFunc(v.Places, func(a, b placeRow) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Path, b.Path))
	})
	if len(v.Places) > maxPlaces {
		v.Places = v.Places[:maxPlaces]
	}
	return nil
}

// sorted turns counts into rows, most first, then by name.
func sorted(m map[string]int) []countRow {
	out := make([]countRow, 0, len(m))
	for k, n := range m {
		out = append(out, countRow{k, n})
	}
	slices.SortFunc(out, func(a, b countRow) int {
		if c := cmp.Compare(b.N, a.N); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}

// fleet is the overview page.
func (c *Console) fleet(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.fleetData(r, q)
	if err != nil {
		return err
	}
	q.partial = false
	c.render(w, r, q, http.StatusOK, "fleet", view{Title: "Fleet", Nav: "fleet", Charts: v.Rates != nil, Data: v})
	return nil
}

// fleetSummary is the overview's counts alone, which the page reloads
// every few seconds with htmx.
func (c *Console) fleetSummary(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.fleetData(r, q)
	if err != nil {
		return err
	}
	q.partial = true
	c.render(w, r, q, http.StatusOK, "fleet", view{Title: "Fleet", Nav: "fleet", Data: v})
	return nil
}

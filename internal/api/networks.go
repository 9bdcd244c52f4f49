package api

// Network profiles as the hub applies them, and the bytes devices
// exchange with it per UTC day against their profile's budget.

import (
	"net/http"
	"slices"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
	"github.com/wanwu-iot/wanwu/internal/netuse"
)

// maxUsageDays bounds GET /api/v1/objects/{code}/bytes?days=.
const maxUsageDays = 400

func (s *server) networkRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/networks", s.authed(auth.Viewer, s.listNetworks))
	mux.HandleFunc("GET /api/v1/networks/usage", s.authed(auth.Viewer, s.networkUsage))
	mux.HandleFunc("GET /api/v1/objects/{code}/bytes", s.authed(auth.Viewer, s.objectBytes))
}

// profile is a network profile as the hub applies it (the deployment's
// overrides included).
func (s *server) profile(name string) (netprofile.Profile, bool) {
	if s.Profile != nil {
		return s.Profile(name)
	}
	return netprofile.Lookup(name)
}

func (s *server) listNetworks(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	out := []netprofile.Profile{}
	for _, name := range netprofile.Names() {
		if pr, ok := s.profile(name); ok {
			out = append(out, pr)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"networks": out})
	return nil
}

// objectBytes is GET /api/v1/objects/{code}/bytes?days=N: the device's
// bytes per UTC day, today first, with the budget, the share of it used
// and the cost, as of the last flush.
func (s *server) objectBytes(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.visible(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	n, err := queryUint(r, "days", 7)
	if err != nil {
		return err
	}
	if n < 1 || n > maxUsageDays {
		return badRequest("days", "want 1 to %d", maxUsageDays)
	}
	days, asOf, err := s.Usage.Days(r.Context(), o.Code, o.Network, int(n))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"code": o.Code, "network": o.Network, "as_of": asOf.UTC().Truncate(time.Millisecond), "days": days,
	})
	return nil
}

// networkRow is one network profile in the fleet view.
type networkRow struct {
	netuse.NetworkUsage
	// Objects is how many objects (not deleted) name the profile.
	Objects int `json:"objects"`
}

// networkUsage is GET /api/v1/networks/usage: per network profile, the
// objects on it, and today's (UTC) devices with traffic, bytes, devices
// over budget and cost, as of the last flush.
func (s *server) networkUsage(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := scopeTenant(p, r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	counts, err := s.Registry.CountByNetwork(r.Context(), tenant)
	if err != nil {
		return err
	}
	usage, asOf, err := s.Usage.Networks(r.Context(), tenant)
	if err != nil {
		return err
	}
	rows := map[string]*networkRow{}
	// The profiles in their order (slowest link first), then objects
	// without one, then any other name a row carries.
	order := append(netprofile.Names(), netuse.NoNetwork)
	row := func(name string) *networkRow {
		if rows[name] == nil {
			if !slices.Contains(order, name) {
				order = append(order, name)
			}
			nu := netuse.NetworkUsage{Network: name}
			if pr, ok := s.profile(name); ok {
				nu.Budget = pr.DailyBudget
			}
			rows[name] = &networkRow{NetworkUsage: nu}
		}
		return rows[name]
	}
	for _, c := range counts {
		name := c.Network
		if name == "" {
			name = netuse.NoNetwork
		}
		row(name).Objects = c.Objects
	}
	for _, u := range usage {
		objects := row(u.Network).Objects
		rows[u.Network].NetworkUsage, rows[u.Network].Objects = u, objects
	}
	out := []networkRow{}
	for _, name := range order {
		if r := rows[name]; r != nil {
			out = append(out, *r)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"day": s.Usage.Today(), "as_of": asOf.UTC().Truncate(time.Millisecond), "networks": out,
	})
	return nil
}

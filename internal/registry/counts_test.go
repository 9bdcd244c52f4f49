package registry

import (
	"encoding/json"
	"testing"
)

// TestCountObjects: counts by tenant, kind, status, network and edge, for one
// tenant or all; deleted objects are left out, quarantined and revoked ones
// counted under their status.
func TestCountObjects(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	e.mustTenant("beta", "")
	for _, req := range []RegisterRequest{
		{Code: "acme:d1", Network: "nb-iot"},
		{Code: "acme:d2", Network: "nb-iot"},
		{Code: "acme:d3"},
		{Code: "acme:gw", Kind: KindGateway, Network: "ethernet"},
		{Code: "acme:e1", Kind: KindEdge},
		{Code: "acme:d4", Edge: "acme:e1"},
		{Code: "acme:d5", Edge: "acme:e1"},
		{Code: "acme:t1", Tags: map[string]string{"env": "test"}},
		{Code: "beta:d1", Network: "wlan"},
	} {
		e.mustRegister(req)
	}
	if _, err := e.reg.Quarantine(e.ctx, "op", "acme:d2", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Revoke(e.ctx, "op", "acme:d3", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Delete(e.ctx, "op", DeleteRequest{Filter: ListFilter{Tenant: "acme", Tags: map[string]string{"env": "test"}}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ tenant, want string }{
		{"acme", `[{"Tenant":"acme","Kind":"device","Status":"active","Network":"","Edge":"acme:e1","Objects":2},` +
			`{"Tenant":"acme","Kind":"device","Status":"active","Network":"nb-iot","Edge":"","Objects":1},` +
			`{"Tenant":"acme","Kind":"device","Status":"quarantined","Network":"nb-iot","Edge":"","Objects":1},` +
			`{"Tenant":"acme","Kind":"device","Status":"revoked","Network":"","Edge":"","Objects":1},` +
			`{"Tenant":"acme","Kind":"edge","Status":"active","Network":"","Edge":"","Objects":1},` +
			`{"Tenant":"acme","Kind":"gateway","Status":"active","Network":"ethernet","Edge":"","Objects":1}]`},
		{"beta", `[{"Tenant":"beta","Kind":"device","Status":"active","Network":"wlan","Edge":"","Objects":1}]`},
		{"gamma", `null`},
	} {
		counts, err := e.reg.CountObjects(e.ctx, c.tenant)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := json.Marshal(counts); string(got) != c.want {
			t.Errorf("%s: %s\nwant %s", c.tenant, got, c.want)
		}
	}
	all, err := e.reg.CountObjects(e.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range all {
		n += c.Objects
	}
	if len(all) != 7 || n != 8 {
		t.Errorf("all tenants: %d rows, %d objects, want 7 and 8: %+v", len(all), n, all)
	}
}

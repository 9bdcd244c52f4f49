package registry

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/keys"
)

// TestNetwork: an object's network is set at registration, by a claim's
// template and by an import, changed by an update (one audit entry naming
// old and new, no reconnect needed), listed by it, counted per network;
// a name that is not a profile is refused with the field and the valid
// names.
func TestNetwork(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	e.mustTenant("beta", "")

	refused := []struct {
		name string
		do   func() error
	}{
		{"register", func() error {
			_, err := e.reg.Register(e.ctx, "op", RegisterRequest{Code: "acme:x", Network: "lora"})
			return err
		}},
		{"register, wrong case", func() error {
			_, err := e.reg.Register(e.ctx, "op", RegisterRequest{Code: "acme:x", Network: "NB-IoT"})
			return err
		}},
		{"claim template", func() error {
			_, _, err := e.reg.CreateClaim(e.ctx, "op", "acme", ClaimSpec{Network: "3g"})
			return err
		}},
		{"update", func() error {
			e.mustRegister(RegisterRequest{Code: "acme:y"})
			_, err := e.reg.Update(e.ctx, "op", "acme:y", UpdateRequest{Network: ptr("satellite")})
			return err
		}},
		{"list", func() error {
			_, _, err := e.reg.List(e.ctx, ListFilter{Network: "x"})
			return err
		}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			err := c.do()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want invalid", err)
			}
			wantFieldError(t, err, "network")
			if !strings.Contains(err.Error(), "nb-iot, lte-cat1, 5g-redcap, wlan, ethernet") {
				t.Errorf("%v does not name the profiles", err)
			}
		})
	}

	reg := e.mustRegister(RegisterRequest{Code: "acme:m1", Network: "nb-iot"})
	if reg.Object.Network != "nb-iot" {
		t.Errorf("registration %+v", reg.Object)
	}
	e.mustRegister(RegisterRequest{Code: "acme:m2", Network: "nb-iot"})
	e.mustRegister(RegisterRequest{Code: "acme:w1", Network: "wlan"})
	e.mustRegister(RegisterRequest{Code: "beta:m1", Network: "nb-iot"})
	for code, want := range map[string]string{"acme:m1": "nb-iot", "acme:w1": "wlan", "acme:y": ""} {
		o, err := e.reg.Object(e.ctx, code)
		if err != nil || o.Network != want {
			t.Errorf("%s: %v network %q, want %q", code, err, o.Network, want)
		}
		n, tenant, err := e.reg.Network(e.ctx, code)
		if err != nil || n != want || tenant != "acme" {
			t.Errorf("Network(%s) = %q %q %v", code, n, tenant, err)
		}
	}
	if _, _, err := e.reg.Network(e.ctx, "acme:nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Network of an unknown object: %v", err)
	}

	e.takeCommits()
	o, err := e.reg.Update(e.ctx, "op", "acme:m2", UpdateRequest{Network: ptr("lte-cat1")})
	if err != nil || o.Network != "lte-cat1" {
		t.Fatalf("update: %v %+v", err, o)
	}
	commits := e.takeCommits()
	if len(commits) != 1 || len(commits[0]) != 1 || commits[0][0].Kind != KindObjectUpdated {
		t.Fatalf("commits %+v, want one object.updated", commits)
	}
	var data struct{ Changes map[string]fieldChange }
	if err := json.Unmarshal(commits[0][0].Data, &data); err != nil {
		t.Fatal(err)
	}
	if c := data.Changes["network"]; c.Old != "nb-iot" || c.New != "lte-cat1" || len(data.Changes) != 1 {
		t.Errorf("changes %+v", data.Changes)
	}
	if UpdateNeedsReconnect(commits[0][0].Data) {
		t.Error("a network change should not end the device's sessions")
	}
	// Unchanged: nothing logged; "" clears it.
	size := e.size()
	if _, err := e.reg.Update(e.ctx, "op", "acme:m2", UpdateRequest{Network: ptr("lte-cat1")}); err != nil || e.size() != size {
		t.Errorf("no-op update: %v, %d entries", err, e.size()-size)
	}
	if o, err := e.reg.Update(e.ctx, "op", "acme:w1", UpdateRequest{Network: ptr("")}); err != nil || o.Network != "" {
		t.Errorf("clearing: %v %+v", err, o)
	}

	for f, want := range map[string]string{"nb-iot": "acme:m1 beta:m1", "-": "acme:w1 acme:y", "lte-cat1": "acme:m2"} {
		objs, _, err := e.reg.List(e.ctx, ListFilter{Network: f})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range objs {
			got = append(got, o.Code)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("list network=%s: %v, want %s", f, got, want)
		}
	}
	counts, err := e.reg.CountByNetwork(e.ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(counts); string(got) != `[{"Network":"","Objects":2},{"Network":"lte-cat1","Objects":1},{"Network":"nb-iot","Objects":1}]` {
		t.Errorf("acme counts %s", got)
	}

	// A claim's template gives its devices their network.
	_, secret, err := e.reg.CreateClaim(e.ctx, "op", "acme", ClaimSpec{Network: "5g-redcap"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := keys.Generate(keys.P256)
	if err != nil {
		t.Fatal(err)
	}
	creg, err := e.reg.UseClaim(e.ctx, secret, ClaimRequest{Local: "c1", PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if creg.Object.Network != "5g-redcap" {
		t.Errorf("claimed %+v", creg.Object)
	}

	// Import: a network column; a row naming an object that exists with
	// another network is an error for that field; a bad name is refused.
	csv := "code,network\nacme:i1,wlan\nacme:m1,nb-iot\nacme:m2,nb-iot\nacme:i2,zigbee\n"
	sum, err := e.reg.Import(e.ctx, "op", strings.NewReader(csv), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, r := range sum.Rows {
		rows = append(rows, r.Result+":"+r.Field)
	}
	if strings.Join(rows, " ") != "created: unchanged: error:network error:network" {
		t.Errorf("import rows %v", rows)
	}
	if o, _ := e.reg.Object(e.ctx, "acme:i1"); o == nil || o.Network != "wlan" {
		t.Errorf("imported %+v", o)
	}
}

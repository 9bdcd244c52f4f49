package netprofile

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBuiltin(t *testing.T) {
	all := All()
	if got, want := len(all), 5; got != want {
		t.Fatalf("%d built-in profiles, want %d", got, want)
	}
	names := Names()
	if want := []string{NBIoT, LTECat1, RedCap, WLAN, Ethernet}; !slices.Equal(names, want) {
		t.Fatalf("Names() = %v, want %v", names, want)
	}
	for i, p := range all {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
		if got, ok := Lookup(names[i]); !ok || got != p {
			t.Errorf("Lookup(%q) = %v, %v; want All()[%d]", names[i], got.Name, ok, i)
		}
		if i > 0 && p.Latency.Base > all[i-1].Latency.Base {
			t.Errorf("%s is listed after %s but is slower to answer", p.Name, all[i-1].Name)
		}
		if max := p.MTU - 28; p.Protocol == "coap" && p.MaxPayload > max {
			t.Errorf("%s: a %d-byte CoAP payload cannot fit one %d-byte datagram", p.Name, p.MaxPayload, max)
		}
	}
	if _, ok := Lookup("nb-iot2"); ok {
		t.Error("Lookup found a profile that does not exist")
	}
	// All returns a copy: the built-in profiles cannot be changed through it.
	all[0].UplinkBPS = 1
	if p, _ := Lookup(NBIoT); p.UplinkBPS == 1 {
		t.Error("All returned the built-in slice itself")
	}
}

func TestLossRate(t *testing.T) {
	for _, tc := range []struct {
		name string
		loss Loss
		want float64
	}{
		{"none", Loss{}, 0},
		{"bernoulli", Loss{Good: 0.1, Bad: 0.9}, 0.1},
		{"half bad", Loss{Good: 0, Bad: 1, GoodToBad: 0.1, BadToGood: 0.1}, 0.5},
		{"fifth bad", Loss{Good: 0.05, Bad: 0.5, GoodToBad: 0.05, BadToGood: 0.2}, 0.8*0.05 + 0.2*0.5},
	} {
		if got := tc.loss.Rate(); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s: Rate() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	base, _ := Lookup(NBIoT)
	for _, tc := range []struct {
		name   string
		change func(p *Profile)
		field  string // "" if valid
	}{
		{"built-in", func(p *Profile) {}, ""},
		{"no jitter", func(p *Profile) { p.Latency.JitterMedian, p.Latency.JitterMax = 0, 0 }, ""},
		{"no sleep", func(p *Profile) { p.Sleep = Sleep{} }, ""},
		{"edrx only", func(p *Profile) { p.Sleep = Sleep{EDRXCycle: 20480 * time.Millisecond} }, ""},
		{"random loss", func(p *Profile) { p.Loss = Loss{Good: 0.2} }, ""},
		{"no name", func(p *Profile) { p.Name = "" }, "name"},
		{"upper-case name", func(p *Profile) { p.Name = "NB" }, "name"},
		{"long name", func(p *Profile) { p.Name = strings.Repeat("a", 64) }, "name"},
		{"protocol", func(p *Profile) { p.Protocol = "http" }, "protocol"},
		{"negative latency", func(p *Profile) { p.Latency.Base = -1 }, "latency.base"},
		{"huge latency", func(p *Profile) { p.Latency.Base = 2 * time.Hour }, "latency.base"},
		{"jitter max below median", func(p *Profile) { p.Latency.JitterMax = p.Latency.JitterMedian - 1 }, "latency.jitter_max"},
		{"zero uplink", func(p *Profile) { p.UplinkBPS = 0 }, "uplink_bps"},
		{"negative downlink", func(p *Profile) { p.DownlinkBPS = -5 }, "downlink_bps"},
		{"good above 1", func(p *Profile) { p.Loss.Good = 1.5 }, "loss.good"},
		{"bad NaN", func(p *Profile) { p.Loss.Bad = math.NaN() }, "loss.bad"},
		{"negative transition", func(p *Profile) { p.Loss.GoodToBad = -0.1 }, "loss.good_to_bad"},
		{"absorbing bad state", func(p *Profile) { p.Loss.BadToGood = 0 }, "loss.bad_to_good"},
		{"small MTU", func(p *Profile) { p.MTU = 67 }, "mtu"},
		{"large MTU", func(p *Profile) { p.MTU = 65536 }, "mtu"},
		{"no payload", func(p *Profile) { p.MaxPayload = 0 }, "max_payload"},
		{"T3324 too long", func(p *Profile) { p.Sleep.ActiveTimer = 187 * time.Minute }, "sleep.active_timer"},
		{"PSM without T3412", func(p *Profile) { p.Sleep.PeriodicUpdate = 0 }, "sleep.periodic_update"},
		{"T3412 within T3324", func(p *Profile) { p.Sleep.PeriodicUpdate = p.Sleep.ActiveTimer }, "sleep.periodic_update"},
		{"eDRX too long", func(p *Profile) { p.Sleep.EDRXCycle = 3 * time.Hour }, "sleep.edrx_cycle"},
		{"negative price", func(p *Profile) { p.PricePerMB = -0.1 }, "price_per_mb"},
		{"infinite price", func(p *Profile) { p.PricePerMB = math.Inf(1) }, "price_per_mb"},
		{"negative budget", func(p *Profile) { p.DailyBudget = -1 }, "daily_budget"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			tc.change(&p)
			err := p.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Validate() = %v, want an error on %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field+": ") {
				t.Errorf("message %q does not name %s", err, tc.field)
			}
		})
	}
}

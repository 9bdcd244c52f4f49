package guard

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		errs   []string // fragments, one per expected error; none: valid
	}{
		{"empty", Policy{}, nil},
		{"full", Policy{
			Bounds:      map[string]Range{"feedRate": {f(0), f(100)}, "speed": {Min: f(-5)}},
			MaxStep:     map[string]float64{"feedRate": 5},
			MaxRate:     map[string]float64{"feedRate": 0.5},
			RateLimit:   RateLimit{Count: 3, Per: time.Minute},
			Cooldown:    10 * time.Second,
			Clamp:       true,
			Interlocks:  []Condition{{Name: "door", Expr: "door.closed"}},
			Permissives: []Condition{{Name: "speed", Expr: "rpm > 100"}},
			Approval:    Approval{Required: 2, Approvers: []string{"ann", "bob"}, Expires: time.Hour},
		}, nil},
		{"equal bounds", Policy{Bounds: map[string]Range{"x": {f(3), f(3)}}}, nil},
		{"min above max", Policy{Bounds: map[string]Range{"x": {f(3), f(2)}}}, []string{`bounds of "x": min 3 > max 2`}},
		{"NaN and infinite bounds", Policy{Bounds: map[string]Range{"x": {f(math.NaN()), f(math.Inf(1))}}},
			[]string{"min NaN is not a finite number", "max +Inf is not a finite number"}},
		{"empty value name", Policy{Bounds: map[string]Range{"": {}}}, []string{"empty value name"}},
		{"steps and rates", Policy{MaxStep: map[string]float64{"a": 0, "b": -1, "c": math.NaN(), "d": math.Inf(1)}, MaxRate: map[string]float64{"a": 0}},
			[]string{`max_step of "a": 0`, `max_step of "b": -1`, `max_step of "c": NaN`, `max_step of "d": +Inf`, `max_rate of "a": 0`}},
		{"count without period", Policy{RateLimit: RateLimit{Count: 3}}, []string{"rate limit 3 per 0s"}},
		{"period without count", Policy{RateLimit: RateLimit{Per: time.Second}}, []string{"rate limit 0 per 1s"}},
		{"negative rate limit", Policy{RateLimit: RateLimit{Count: -1, Per: time.Second}}, []string{"rate limit -1 per 1s"}},
		{"negative cooldown", Policy{Cooldown: -time.Second}, []string{"cooldown -1s is negative"}},
		{"negative required", Policy{Approval: Approval{Required: -1}}, []string{"-1 approvers required"}},
		{"negative expiry", Policy{Approval: Approval{Expires: -time.Second}}, []string{"expiry -1s is negative"}},
		{"required without expiry", Policy{Approval: Approval{Required: 1}}, []string{"1 approvers required and no expiry"}},
		{"required beyond the list", Policy{Approval: Approval{Required: 3, Approvers: []string{"ann", "bob"}, Expires: time.Hour}}, []string{"3 approvers required of 2 listed"}},
		{"duplicate and empty approvers", Policy{Approval: Approval{Required: 1, Approvers: []string{"ann", "", "ann"}, Expires: time.Hour}},
			[]string{"approver 2 has an empty name", `approver "ann" listed twice`}},
		{"conditions", Policy{
			Permissives: []Condition{{Name: "a", Expr: "x"}, {Name: "", Expr: "y"}},
			Interlocks:  []Condition{{Name: "a", Expr: "z"}, {Name: "b"}},
		}, []string{"permissive 2 has no name", `interlock "a": the name is used`, `interlock "b" has no expression`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatalf("valid policy: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.errs)
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("%v does not wrap ErrInvalidPolicy", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.errs) {
				t.Fatalf("%d errors, want %d:\n%v", len(lines), len(tt.errs), err)
			}
			for i, frag := range tt.errs {
				if !strings.Contains(lines[i], frag) {
					t.Fatalf("error %d %q, want %q", i, lines[i], frag)
				}
			}
		})
	}
}

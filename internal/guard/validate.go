package guard

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// ErrInvalidPolicy is wrapped by every error of Policy.Validate.
var ErrInvalidPolicy = errors.New("invalid guard policy")

// Validate reports every problem of the policy: bounds that are not finite
// or have Min > Max, steps and rates that are not finite and positive, a
// rate limit with a negative part or only one of Count and Per set, a
// negative cooldown, an approval with a negative count or expiry, no expiry
// while approval is required, empty or repeated approvers, more approvals
// required than approvers listed, and conditions with an empty or repeated
// name (across interlocks and permissives) or an empty expression.
func (p Policy) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidPolicy}, args...)...))
	}
	for _, name := range slices.Sorted(maps.Keys(p.Bounds)) {
		r := p.Bounds[name]
		if name == "" {
			bad("bounds of an empty value name")
		}
		if r.Min != nil && !isFinite(*r.Min) {
			bad("bounds of %q: min %s is not a finite number", name, num(*r.Min))
		}
		if r.Max != nil && !isFinite(*r.Max) {
			bad("bounds of %q: max %s is not a finite number", name, num(*r.Max))
		}
		if r.Min != nil && r.Max != nil && *r.Min > *r.Max {
			bad("bounds of %q: min %s > max %s", name, num(*r.Min), num(*r.Max))
		}
	}
	for _, kind := range []struct {
		guard string
		m     map[string]float64
	}{{GuardMaxStep, p.MaxStep}, {GuardMaxRate, p.MaxRate}} {
		for _, name := range slices.Sorted(maps.Keys(kind.m)) {
			if v := kind.m[name]; name == "" || !(v > 0) || math.IsInf(v, 1) {
				bad("%s of %q: %s is not a finite number > 0", kind.guard, name, num(v))
			}
		}
	}
	if rl := p.RateLimit; rl.Count < 0 || rl.Per < 0 || (rl.Count == 0) != (rl.Per == 0) {
		bad("rate limit %d per %s: set both a count and a period > 0, or neither", rl.Count, rl.Per)
	}
	if p.Cooldown < 0 {
		bad("cooldown %s is negative", p.Cooldown)
	}
	a := p.Approval
	switch {
	case a.Required < 0:
		bad("approval: %d approvers required", a.Required)
	case a.Expires < 0:
		bad("approval: expiry %s is negative", a.Expires)
	case a.Required > 0 && a.Expires == 0:
		bad("approval: %d approvers required and no expiry", a.Required)
	case len(a.Approvers) > 0 && a.Required > len(a.Approvers):
		bad("approval: %d approvers required of %d listed", a.Required, len(a.Approvers))
	}
	for i, name := range a.Approvers {
		if name == "" {
			bad("approval: approver %d has an empty name", i+1)
		} else if slices.Index(a.Approvers, name) < i {
			bad("approval: approver %q listed twice", name)
		}
	}
	seen := map[string]bool{}
	for _, list := range []struct {
		kind  string
		conds []Condition
	}{{GuardPermissive, p.Permissives}, {GuardInterlock, p.Interlocks}} {
		for i, c := range list.conds {
			switch {
			case c.Name == "":
				bad("%s %d has no name", list.kind, i+1)
			case seen[c.Name]:
				bad("%s %q: the name is used by another condition", list.kind, c.Name)
			}
			seen[c.Name] = true
			if c.Expr == "" {
				bad("%s %q has no expression", list.kind, c.Name)
			}
		}
	}
	return errors.Join(errs...)
}

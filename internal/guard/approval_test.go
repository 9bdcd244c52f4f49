package guard

import (
	"strings"
	"testing"
	"time"
)

func TestTally(t *testing.T) {
	two := Approval{Required: 2, Approvers: []string{"ann", "bob", "cy"}, Expires: time.Hour}
	anyone := Approval{Required: 2, Expires: time.Hour}
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	yes := func(by string, min int) Vote { return Vote{By: by, Approve: true, At: at(min)} }
	no := func(by string, min int, note string) Vote { return Vote{By: by, At: at(min), Note: note} }
	tests := []struct {
		name  string
		a     Approval
		votes []Vote
		now   time.Time
		state ApprovalState
		why   string
	}{
		{"nothing required", Approval{}, nil, at(0), Approved, "no approval required"},
		{"no votes", two, nil, at(1), Pending, "0 of 2 approvals; waits for 2 of 3 (ann, bob, cy)"},
		{"one of two", two, []Vote{yes("ann", 1)}, at(2), Pending, "1 of 2 approvals (ann)"},
		{"two of two", two, []Vote{yes("ann", 1), yes("bob", 2)}, at(3), Approved, "approved by ann, bob"},
		{"the same approver twice", two, []Vote{yes("ann", 1), yes("ann", 2)}, at(3), Pending, "1 of 2 approvals (ann)"},
		{"the requester does not count", two, []Vote{yes("ann", 1), yes("req", 2)}, at(3), Pending, "not counted: req (the requester)"},
		{"the requester listed as approver does not count", Approval{Required: 1, Approvers: []string{"req"}, Expires: time.Hour},
			[]Vote{yes("req", 1)}, at(3), Pending, "not counted: req (the requester)"},
		{"outside the list does not count", two, []Vote{yes("ann", 1), yes("eve", 2)}, at(3), Pending, "not counted: eve (not an approver)"},
		{"outside the list cannot reject", two, []Vote{no("eve", 1, "")}, at(3), Pending, "not counted: eve (not an approver)"},
		{"empty list: anyone", anyone, []Vote{yes("eve", 1), yes("zed", 2)}, at(3), Approved, "approved by eve, zed"},
		{"empty name does not count", anyone, []Vote{yes("", 1), yes("zed", 2)}, at(3), Pending, "1 of 2 approvals (zed)"},
		{"one rejection rejects", two, []Vote{yes("ann", 1), no("cy", 2, "too risky")}, at(3), Rejected, "rejected by cy: too risky"},
		{"rejection without note", two, []Vote{no("cy", 2, "")}, at(3), Rejected, "rejected by cy"},
		{"approval before a rejection stands", two, []Vote{no("cy", 5, ""), yes("ann", 1), yes("bob", 2)}, at(6), Approved, "approved by ann, bob"},
		{"a rejection before the approval", two, []Vote{yes("bob", 3), yes("ann", 1), no("cy", 2, "")}, at(6), Rejected, "rejected by cy"},
		{"expired", two, []Vote{yes("ann", 1)}, at(60), Expired, "expired at 2025-03-01T09:00:00Z with 1 of 2 approvals (ann)"},
		{"a vote at the deadline is too late", two, []Vote{yes("ann", 1), yes("bob", 60)}, at(61), Expired, "1 of 2"},
		{"a vote just before the deadline counts", two, []Vote{yes("ann", 1), yes("bob", 59)}, at(61), Approved, "approved by ann, bob"},
		{"a vote after now does not count yet", two, []Vote{yes("ann", 1), yes("bob", 10)}, at(5), Pending, "1 of 2"},
		{"no expiry is fail-safe", Approval{Required: 1}, []Vote{yes("ann", 1)}, at(5), Expired, "no expiry"},
		{"more required than listed never approves", Approval{Required: 3, Approvers: []string{"ann", "bob"}, Expires: time.Hour},
			[]Vote{yes("ann", 1), yes("bob", 2)}, at(5), Pending, "2 of 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, why := tt.a.Tally("req", t0, tt.votes, tt.now)
			if state != tt.state || !strings.Contains(why, tt.why) {
				t.Fatalf("%s %q, want %s containing %q", state, why, tt.state, tt.why)
			}
		})
	}
}

func TestTallyDoesNotReorderVotes(t *testing.T) {
	votes := []Vote{{By: "bob", Approve: true, At: t0.Add(2 * time.Minute)}, {By: "ann", Approve: true, At: t0.Add(time.Minute)}}
	Approval{Required: 2, Expires: time.Hour}.Tally("req", t0, votes, t0.Add(time.Hour/2))
	if votes[0].By != "bob" {
		t.Fatal("Tally reordered the caller's votes")
	}
}

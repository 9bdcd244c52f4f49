package guard

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ApprovalState is where a request for approval stands.
type ApprovalState string

// States of a request for approval.
const (
	Pending  ApprovalState = "pending"
	Approved ApprovalState = "approved"
	Rejected ApprovalState = "rejected"
	Expired  ApprovalState = "expired"
)

// Vote is one approver's answer to a request.
type Vote struct {
	By      string
	Approve bool
	At      time.Time
	Note    string
}

// Tally decides a request for approval (a pending action, a bypass) made by
// requester at created, from the votes cast up to now, and says why. Votes
// count in the order of their times (ties in the order given), and only
// those cast before now and before the request expired, by an allowed
// approver: a name that is not empty, not the requester's, and in
// a.Approvers when that list is set. The request is rejected as soon as an
// allowed approver rejects it, approved as soon as Required distinct allowed
// approvers approved it (whichever comes first), and expired when now ≥
// created+Expires while it is still pending. Required ≤ 0 approves at once;
// Expires ≤ 0 with Required > 0 (an invalid policy) expires at once.
func (a Approval) Tally(requester string, created time.Time, votes []Vote, now time.Time) (ApprovalState, string) {
	if a.Required <= 0 {
		return Approved, "no approval required"
	}
	if a.Expires <= 0 {
		return Expired, "the approval has no expiry (invalid policy)"
	}
	deadline := created.Add(a.Expires)
	ordered := slices.Clone(votes)
	slices.SortStableFunc(ordered, func(x, y Vote) int { return x.At.Compare(y.At) })

	var approvers, ignored []string
	for _, v := range ordered {
		switch {
		case v.At.After(now) || !v.At.Before(deadline):
			continue
		case v.By == "":
			continue
		case v.By == requester:
			ignored = appendOnce(ignored, v.By+" (the requester)")
			continue
		case len(a.Approvers) > 0 && !slices.Contains(a.Approvers, v.By):
			ignored = appendOnce(ignored, v.By+" (not an approver)")
			continue
		}
		if !v.Approve {
			why := "rejected by " + v.By
			if v.Note != "" {
				why += ": " + v.Note
			}
			return Rejected, why
		}
		if approvers = appendOnce(approvers, v.By); len(approvers) >= a.Required {
			return Approved, "approved by " + strings.Join(approvers, ", ")
		}
	}
	why := fmt.Sprintf("%d of %d approvals", len(approvers), a.Required)
	if len(approvers) > 0 {
		why += " (" + strings.Join(approvers, ", ") + ")"
	}
	if len(ignored) > 0 {
		why += "; not counted: " + strings.Join(ignored, ", ")
	}
	if !now.Before(deadline) {
		return Expired, "expired at " + deadline.UTC().Format(time.RFC3339) + " with " + why
	}
	return Pending, why + "; " + a.waitsFor()
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

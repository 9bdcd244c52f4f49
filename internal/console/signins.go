package console

// Sign-ins and sign-outs go to the node's audit log: who opened a console
// session, from where, and when it ended. Refused sign-ins are not
// entries (anyone could fill the log with them): they are counted in
// wanwu_console_signins_total and logged.

import (
	"context"
	"encoding/json"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/auth"
)

// Audit kinds of the console.
const (
	KindSignedIn  = "console.signed_in"
	KindSignedOut = "console.signed_out"
)

// auditSession appends a sign-in or sign-out entry. A failure to record it
// is logged, and the session goes on: signing in changes nothing, and an
// operator may need the console most when the node's disk is full.
func (c *Console) auditSession(ctx context.Context, kind string, p auth.Principal, remote string, now time.Time) {
	if c.o.Audit == nil {
		return
	}
	data, _ := json.Marshal(map[string]string{"role": string(p.Role), "remote": remote, "node": c.o.Role})
	if _, err := c.o.Audit.Append(ctx, audit.Entry{Time: now, Actor: p.Name, Tenant: p.Tenant, Kind: kind, Data: data}); err != nil {
		c.log.Error("console: sign-in not recorded in the audit log", "kind", kind, "token", p.Name, "err", err)
	}
}

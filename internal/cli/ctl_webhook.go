package cli

// ctl webhook create|list|delete|deliveries|retry.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"
)

type webhookRow struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	URL         string    `json:"url"`
	Types       []string  `json:"types"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	Secret      string    `json:"secret"`
}

func webhookRows(hooks []webhookRow) [][]string {
	rows := make([][]string, 0, len(hooks))
	for _, h := range hooks {
		rows = append(rows, []string{h.ID, h.Tenant, h.URL, strings.Join(h.Types, ","), timeText(h.CreatedAt), h.Description})
	}
	return rows
}

var webhookHeader = []string{"ID", "TENANT", "URL", "TYPES", "CREATED", "DESCRIPTION"}

func ctlWebhookCreate(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	tenant := fs.String("tenant", "", "whose events it receives (default: the token's tenant)")
	types := fs.String("types", "event,command,presence", "which events, comma-separated: event, command, presence")
	desc := fs.String("description", "", "what the receiver is")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "URL (https; http only for a receiver on loopback)"); err != nil {
			return err
		}
		body := map[string]any{"tenant": *tenant, "url": args[0], "description": *desc, "types": strings.Split(*types, ",")}
		b, _ := json.Marshal(body)
		raw, _, err := c.do("POST", "/api/v1/webhooks", bytes.NewReader(b), "application/json")
		if err != nil {
			return err
		}
		if *asJSON {
			_, err := e.stdout.Write(raw)
			return err
		}
		var out struct {
			Webhook webhookRow `json:"webhook"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("the hub's answer: %w", err)
		}
		fmt.Fprintf(e.stdout, "webhook %s for %s (%s) → %s\nsigning secret (shown once; the receiver checks the Wanwu-Signature header with it):\n%s\n",
			out.Webhook.ID, out.Webhook.Tenant, strings.Join(out.Webhook.Types, ","), out.Webhook.URL, out.Webhook.Secret)
		return nil
	}
}

func ctlWebhookList(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	tenant := fs.String("tenant", "", "one tenant's webhooks")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		q := addFilters(url.Values{}, map[string]string{"tenant": *tenant})
		var out struct {
			Webhooks []webhookRow `json:"webhooks"`
		}
		if done, err := getData(e, c, "/api/v1/webhooks?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		return table(e.stdout, webhookHeader, webhookRows(out.Webhooks))
	}
}

func ctlWebhookDeliveries(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	status := fs.String("status", "failed", "failed (given up after every attempt), pending, or all")
	limit := fs.Int("limit", 100, "at most this many, the oldest")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID"); err != nil {
			return err
		}
		q := url.Values{"limit": {fmt.Sprint(*limit)}}
		if *status != "all" {
			q.Set("status", *status)
		}
		var out struct {
			Deliveries []struct {
				EventID   string    `json:"event_id"`
				Type      string    `json:"type"`
				Status    string    `json:"status"`
				Attempts  int       `json:"attempts"`
				LastError string    `json:"last_error"`
				LastAt    time.Time `json:"last_attempt"`
			} `json:"deliveries"`
		}
		if done, err := getData(e, c, "/api/v1/webhooks/"+url.PathEscape(args[0])+"/deliveries?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Deliveries))
		for _, d := range out.Deliveries {
			rows = append(rows, []string{d.EventID, d.Type, d.Status, fmt.Sprint(d.Attempts), timeOrNever(d.LastAt), d.LastError})
		}
		return table(e.stdout, []string{"EVENT", "TYPE", "STATUS", "ATTEMPTS", "LAST ATTEMPT", "LAST ERROR"}, rows)
	}
}

func ctlWebhookRetry(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID"); err != nil {
			return err
		}
		var out struct {
			Requeued int `json:"requeued"`
		}
		if _, err := c.json("POST", "/api/v1/webhooks/"+url.PathEscape(args[0])+"/retry", nil, &out); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%d failed deliveries of %s are due again\n", out.Requeued, args[0])
		return nil
	}
}

func ctlWebhookDelete(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID"); err != nil {
			return err
		}
		if _, _, err := c.do("DELETE", "/api/v1/webhooks/"+url.PathEscape(args[0]), nil, ""); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "webhook %s deleted, with what it had not delivered\n", args[0])
		return nil
	}
}

package cli

// ctl commands for the end of an object's life: update, decommission,
// delete test objects, deprecate a model version.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

func ctlObjectUpdate(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	path := fs.String("path", "", `new place in the asset hierarchy ("-" = none)`)
	model := fs.String("model", "", "move to this model version, ID@VERSION (VERSION may be latest)")
	edge := fs.String("edge", "", `new edge or gateway ("-" = none); moves the number to the edge's /64`)
	network := fs.String("network", "", `new network profile ("-" = none): `+strings.Join(netprofile.Names(), ", "))
	var tags, untag, setTags stringList
	fs.Var(&tags, "tag", "set tag key=value, keeping the others (repeatable)")
	fs.Var(&untag, "untag", "remove tag key (repeatable)")
	fs.Var(&setTags, "tags", "replace all tags by these key=value (repeatable; --tags '' clears them)")
	asJSON := fs.Bool("json", false, "print the updated object as JSON")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		body := map[string]any{}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if set["path"] {
			body["path"] = strings.TrimPrefix(*path, "-")
		}
		if set["edge"] {
			body["edge"] = strings.TrimPrefix(*edge, "-")
		}
		if set["network"] {
			body["network"] = strings.TrimPrefix(*network, "-")
		}
		if *model != "" {
			id, version := splitModelRef(*model)
			body["model"] = map[string]string{"id": id, "version": version}
		}
		if len(tags) > 0 {
			t, err := parseTags(tags)
			if err != nil {
				return err
			}
			body["tags_merge"] = t
		}
		if len(untag) > 0 {
			body["tags_remove"] = []string(untag)
		}
		if set["tags"] {
			var nonEmpty []string
			for _, t := range setTags {
				if t != "" {
					nonEmpty = append(nonEmpty, t)
				}
			}
			t, err := parseTags(nonEmpty)
			if err != nil {
				return err
			}
			body["tags"] = t
		}
		if len(body) == 0 {
			return usagef("nothing to update: give --path, --tag, --untag, --tags, --model, --edge or --network")
		}
		var out map[string]any
		if _, err := c.json("PATCH", "/api/v1/objects/"+url.PathEscape(args[0]), body, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, out)
		}
		model, network := "none", "none"
		if m, ok := out["model"].(map[string]any); ok {
			model = fmt.Sprintf("%v@%v", m["id"], m["version"])
		}
		if n, ok := out["network"].(string); ok && n != "" {
			network = n
		}
		fmt.Fprintf(e.stdout, "%v updated: number %v, model %s, network %s\n", out["code"], out["number"], model, network)
		return nil
	}
}

func ctlObjectDecommission(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	reason := fs.String("reason", "", "why (recorded in the audit log)")
	release := fs.Bool("release-code", false, "free the code for a new object (default: the hub's identity.decommission_release_codes)")
	keep := fs.Bool("keep-code", false, "keep the code reserved for good, whatever the hub's default")
	yes := fs.Bool("yes", false, "confirm: decommissioning is final")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		if *release && *keep {
			return usagef("--release-code and --keep-code contradict each other")
		}
		if !*yes {
			return usagef("decommissioning %s is final: its keys, certificates and credential are revoked for good, its data stays until retention removes it. Run again with --yes to decommission", args[0])
		}
		body := map[string]any{"reason": *reason}
		if *release {
			body["release_code"] = true
		} else if *keep {
			body["release_code"] = false
		}
		var out struct {
			Code         string `json:"code"`
			Status       string `json:"status"`
			ReleasedCode string `json:"released_code"`
		}
		if _, err := c.json("POST", "/api/v1/objects/"+url.PathEscape(args[0])+"/decommission", body, &out); err != nil {
			return err
		}
		if out.ReleasedCode != "" {
			fmt.Fprintf(e.stdout, "%s is %s; the code is free again (history kept as %s)\n", out.ReleasedCode, out.Status, out.Code)
		} else {
			fmt.Fprintf(e.stdout, "%s is %s; the code stays reserved\n", out.Code, out.Status)
		}
		return nil
	}
}

func ctlObjectDelete(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	tenant := fs.String("tenant", "", "tenant whose objects are deleted (required)")
	under := fs.String("under", "", "only objects at or below this hierarchy path")
	kind := fs.String("kind", "", "only this kind")
	edge := fs.String("edge", "", "only objects served by this edge")
	reason := fs.String("reason", "", "why (recorded in the audit log)")
	dry := fs.Bool("dry-run", false, "only list what would be deleted")
	yes := fs.Bool("yes", false, "confirm: deletion is final")
	asJSON := fs.Bool("json", false, "print the hub's answer as JSON")
	var tags stringList
	fs.Var(&tags, "tag", "only objects with tag key=value (at least one; repeatable)")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		if *tenant == "" || len(tags) == 0 {
			return usagef("name the tenant (--tenant) and at least one tag the test objects carry (--tag env=test)")
		}
		t, err := parseTags(tags)
		if err != nil {
			return err
		}
		if !*dry && !*yes {
			return usagef("deleting objects is final: each is revoked and removed. Run with --dry-run to see which, then with --yes to delete")
		}
		body := map[string]any{"tenant": *tenant, "tags": t, "under": *under, "kind": *kind, "edge": *edge, "reason": *reason, "dry_run": *dry}
		var out struct {
			DryRun  bool     `json:"dry_run"`
			Deleted []string `json:"deleted"`
			More    bool     `json:"more"`
		}
		raw, _, err := c.do("POST", "/api/v1/objects/delete", bytes.NewReader(mustJSON(body)), "application/json")
		if err != nil {
			return err
		}
		if *asJSON {
			_, err := e.stdout.Write(raw)
			return err
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return err
		}
		verb := "deleted"
		if out.DryRun {
			verb = "would delete"
		}
		for _, code := range out.Deleted {
			fmt.Fprintf(e.stdout, "%s %s\n", verb, code)
		}
		fmt.Fprintf(e.stdout, "%s %d objects\n", verb, len(out.Deleted))
		if out.More {
			fmt.Fprintln(e.stdout, "more objects match: run again")
		}
		return nil
	}
}

func ctlModelDeprecate(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	reason := fs.String("reason", "", "why (shown to whoever is refused this version; required)")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID@VERSION"); err != nil {
			return err
		}
		id, version := splitModelRef(args[0])
		if version == "" || version == "latest" {
			return usagef("name the version: ID@VERSION")
		}
		if *reason == "" {
			return usagef("say why with --reason")
		}
		var out struct {
			ID      string `json:"id"`
			Version string `json:"version"`
		}
		if _, err := c.json("POST", "/api/v1/models/"+url.PathEscape(id)+"/versions/"+url.PathEscape(version)+"/deprecate", map[string]string{"reason": *reason}, &out); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s@%s deprecated\n", out.ID, out.Version)
		return nil
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

package hubtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestObjectLifecycleEnd follows an object to the end through ctl and the
// API: update (tags, path, model upgrade), deprecation, shared std: models
// used by a second tenant, decommission with the code reserved and
// released, deletion of test objects, and tenant scoping of each route.
func TestObjectLifecycleEnd(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	h.MustWanwu("ctl", "tenant", "create", "globex")
	doc, err := os.ReadFile(pumpModel)
	if err != nil {
		t.Fatal(err)
	}
	v2 := strings.Replace(string(doc), `"version": "1.0.0"`, `"version": "2.0.0"`, 1)
	std := strings.Replace(string(doc), `"id": "acme:pump"`, `"id": "std:pump"`, 1)
	dir := t.TempDir()
	for name, body := range map[string]string{"v2.json": v2, "std.json": std} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h.MustWanwu("ctl", "model", "register", filepath.Join(dir, "v2.json"))
	h.MustWanwu("ctl", "model", "register", filepath.Join(dir, "std.json"))

	mint := func(name, role, tenant string) string {
		var out struct{ Secret string }
		h.MustAdmin(201, "POST", "/api/v1/tokens", map[string]any{"name": name, "role": role, "tenant": tenant}).JSON(t, &out)
		return out.Secret
	}
	acmeOp, globexOp := mint("acme-op", "operator", "acme"), mint("globex-op", "operator", "globex")

	// Shared models: globex uses std:pump without copying it, sees it in
	// its model list, and cannot write the shared namespace.
	if r := h.Do("POST", "/api/v1/objects", globexOp, map[string]any{"code": "globex:p1", "model": map[string]string{"id": "std:pump", "version": "1.0.0"}}); r.Status != 201 {
		t.Fatalf("globex registers with std:pump: %d %s", r.Status, r.Body)
	}
	if r := h.Do("GET", "/api/v1/models", globexOp, nil); !strings.Contains(string(r.Body), `"std:pump"`) || strings.Contains(string(r.Body), `"acme:pump"`) {
		t.Errorf("globex model list: %s", r.Body)
	}
	if r := h.Do("POST", "/api/v1/models", globexOp, std); r.Status != 403 {
		t.Errorf("a tenant operator writes std:: %d", r.Status)
	}
	if r := h.Do("POST", "/api/v1/objects", globexOp, map[string]any{"code": "globex:p2", "model": map[string]string{"id": "acme:pump", "version": "1.0.0"}}); r.Status != 400 || !strings.Contains(string(r.Body), "model") {
		t.Errorf("globex uses acme's model: %d %s", r.Status, r.Body)
	}
	if r := h.Admin("POST", "/api/v1/tenants", map[string]any{"name": "std"}); r.Status != 400 {
		t.Errorf("tenant std: %d %s", r.Status, r.Body)
	}

	// Update through ctl: tags merged and removed, path, model upgrade; the number stays.
	var before object
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:p1", "path": "site-a/hall", "tags": map[string]string{"env": "prod", "line": "3"},
		"model": map[string]string{"id": "acme:pump", "version": "1.0.0"}})
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:p1", nil).JSON(t, &before)
	out := h.MustWanwu("ctl", "object", "update", "acme:p1", "--path", "site-b/hall", "--tag", "owner=ops", "--untag", "line", "--model", "acme:pump@2.0.0")
	if !strings.Contains(out, "acme:pump@2.0.0") || !strings.Contains(out, before.Number) {
		t.Errorf("ctl object update said %q", out)
	}
	var after object
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:p1", nil).JSON(t, &after)
	if after.Number != before.Number || after.Tags["owner"] != "ops" || after.Tags["line"] != "" || strings.Join(after.Path, "/") != "site-b/hall" {
		t.Errorf("after update: %+v", after)
	}
	entries := string(h.Admin("GET", "/api/v1/audit/entries", nil).Body)
	if !strings.Contains(entries, `"kind":"object.updated"`) || !strings.Contains(entries, `acme:pump@1.0.0`) {
		t.Errorf("audit lacks object.updated with the old model")
	}
	for name, c := range map[string]struct {
		token string
		body  any
		want  int
	}{
		"other tenant's operator": {globexOp, map[string]any{"path": "x"}, 404},
		"empty":                   {acmeOp, map[string]any{}, 400},
		"bad tag":                 {acmeOp, map[string]any{"tags_merge": map[string]string{"a b": "x"}}, 400},
	} {
		if r := h.Do("PATCH", "/api/v1/objects/acme:p1", c.token, c.body); r.Status != c.want {
			t.Errorf("update %s: %d, want %d: %s", name, r.Status, c.want, r.Body)
		}
	}

	// Deprecation: listed, refused for new objects naming the newer version.
	h.MustWanwu("ctl", "model", "deprecate", "acme:pump@1.0.0", "--reason", "seal defect")
	if r := h.Do("POST", "/api/v1/models/acme:pump/versions/1.0.0/deprecate", globexOp, map[string]any{"reason": "x"}); r.Status != 404 {
		t.Errorf("globex deprecates acme's model: %d", r.Status)
	}
	r := h.Admin("POST", "/api/v1/objects", map[string]any{"code": "acme:p9", "model": map[string]string{"id": "acme:pump", "version": "1.0.0"}})
	if r.Status != 400 || !strings.Contains(string(r.Body), "acme:pump@2.0.0") || !strings.Contains(string(r.Body), `"field": "model"`) {
		t.Errorf("registering on a deprecated version: %d %s", r.Status, r.Body)
	}
	if models := string(h.MustAdmin(200, "GET", "/api/v1/models", nil).Body); !strings.Contains(models, `"seal defect"`) {
		t.Errorf("model list does not show the deprecation: %s", models)
	}

	// Decommission: final, asks for --yes; reserved by default, released on request.
	if _, errOut, code := h.Wanwu("ctl", "object", "decommission", "acme:p1"); code != 2 || !strings.Contains(errOut, "--yes") {
		t.Errorf("decommission without --yes: %d %s", code, errOut)
	}
	if r := h.Do("POST", "/api/v1/objects/acme:p1/decommission", globexOp, map[string]any{}); r.Status != 404 {
		t.Errorf("globex decommissions acme:p1: %d", r.Status)
	}
	out = h.MustWanwu("ctl", "object", "decommission", "acme:p1", "--reason", "replaced", "--yes")
	if !strings.Contains(out, "decommissioned; the code stays reserved") {
		t.Errorf("decommission said %q", out)
	}
	adm := h.MustAdmin(200, "GET", "/api/v1/objects/acme:p1/admission?did="+after.DID, nil).Map(t)
	if adm["status"] != "revoked" || !strings.Contains(adm["reason"].(string), "decommissioned") {
		t.Errorf("admission after decommission: %v", adm)
	}
	if r := h.Admin("POST", "/api/v1/objects", map[string]any{"code": "acme:p1"}); r.Status != 409 {
		t.Errorf("re-registering a reserved code: %d", r.Status)
	}
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:p2", "model": map[string]string{"id": "acme:pump", "version": "2.0.0"}})
	// A desired state and a queued command: a released code passes on neither.
	if r := h.Do("PATCH", "/api/v1/objects/acme:p2/twin/desired", h.AdminToken, map[string]any{"speed": 900}); r.Status != 200 {
		t.Fatalf("desired: %d %s", r.Status, r.Body)
	}
	h.MustAdmin(201, "POST", "/api/v1/objects/acme:p2/commands", map[string]any{"id": "p2-stop", "action": "stop"})
	out = h.MustWanwu("ctl", "object", "decommission", "acme:p2", "--release-code", "--yes")
	if !strings.Contains(out, "history kept as acme:p2~1") {
		t.Errorf("released decommission said %q", out)
	}
	eventually(t, "the command canceled and the twin forgotten", func() error {
		var c struct {
			Command struct{ Status string } `json:"command"`
		}
		h.MustAdmin(200, "GET", "/api/v1/commands/p2-stop", nil).JSON(t, &c)
		if c.Command.Status != "canceled" {
			return fmt.Errorf("command %s", c.Command.Status)
		}
		if r := h.Admin("GET", "/api/v1/objects/acme:p2/twin", nil); r.Status != 404 {
			return fmt.Errorf("twin of the released code: %d %s", r.Status, r.Body)
		}
		return nil
	})
	h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": "acme:p2"})
	var tw struct {
		Desired map[string]any `json:"desired"`
		Version int64          `json:"version"`
	}
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:p2/twin", nil).JSON(t, &tw)
	if len(tw.Desired) != 0 || tw.Version != 0 {
		t.Errorf("the new acme:p2 inherited a twin: %+v", tw)
	}
	if r := h.MustAdmin(200, "GET", "/api/v1/objects/acme:p2~1", nil).Map(t); r["released_code"] != "acme:p2" || r["status"] != "decommissioned" {
		t.Errorf("archived row %v", r)
	}

	// Delete test objects: dry run, then for real; another tenant is untouched.
	for _, c := range []string{"acme:t1", "acme:t2", "globex:t1"} {
		h.MustAdmin(201, "POST", "/api/v1/objects", map[string]any{"code": c, "tags": map[string]string{"env": "test"}})
	}
	if _, errOut, code := h.Wanwu("ctl", "object", "delete", "--tenant", "acme"); code != 2 || !strings.Contains(errOut, "--tag") {
		t.Errorf("delete without a tag: %d %s", code, errOut)
	}
	if r := h.Do("POST", "/api/v1/objects/delete", globexOp, map[string]any{"tenant": "acme", "tags": map[string]string{"env": "test"}}); r.Status != 403 {
		t.Errorf("globex deletes acme's objects: %d", r.Status)
	}
	out = h.MustWanwu("ctl", "object", "delete", "--tenant", "acme", "--tag", "env=test", "--dry-run")
	if !strings.Contains(out, "would delete 2 objects") {
		t.Errorf("dry run said %q", out)
	}
	h.MustAdmin(200, "GET", "/api/v1/objects/acme:t1", nil)
	out = h.MustWanwu("ctl", "object", "delete", "--tenant", "acme", "--tag", "env=test", "--yes", "--reason", "test run over")
	if !strings.Contains(out, "deleted 2 objects") {
		t.Errorf("delete said %q", out)
	}
	if r := h.Admin("GET", "/api/v1/objects/acme:t1", nil); r.Status != 404 {
		t.Errorf("deleted object still found: %d", r.Status)
	}
	h.MustAdmin(200, "GET", "/api/v1/objects/globex:t1", nil)
	entries = string(h.Admin("GET", "/api/v1/audit/entries", nil).Body)
	if n := strings.Count(entries, `"kind":"object.deleted"`); n != 2 {
		t.Errorf("%d object.deleted entries, want 2", n)
	}
}

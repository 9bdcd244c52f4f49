package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/hub"
	"github.com/wanwu-iot/wanwu/internal/hubclient"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// ctlConn is how ctl reaches the hub.
type ctlConn struct {
	*hubclient.Client
	// noToken says why ctl has no API token, for a command the hub then
	// refuses (offline commands need none, so it is not an error at once).
	noToken string
}

func (c *ctlConn) do(method, path string, body io.Reader, contentType string) ([]byte, int, error) {
	b, status, err := c.Do(context.Background(), method, path, body, contentType)
	return b, status, c.explain(status, err)
}

func (c *ctlConn) json(method, path string, in, out any) (int, error) {
	status, err := c.JSON(context.Background(), method, path, in, out)
	return status, c.explain(status, err)
}

// explain adds why ctl had no token to the hub's refusal.
func (c *ctlConn) explain(status int, err error) error {
	if err != nil && status == 401 && c.noToken != "" {
		return fmt.Errorf("%w\n%s", err, c.noToken)
	}
	return err
}

type ctlGlobals struct {
	hub, token, tokenFile, dataDir string
}

func ctlGlobalFlags(fs *flag.FlagSet, g *ctlGlobals) {
	fs.StringVar(&g.hub, "hub", "", "hub API URL (default: $WANWU_HUB, else <data-dir>/hub.url, else http://127.0.0.1:8080)")
	fs.StringVar(&g.token, "token", "", "API token (default: $WANWU_TOKEN, else --token-file)")
	fs.StringVar(&g.tokenFile, "token-file", "", "file holding the API token (default: <data-dir>/admin.token)")
	fs.StringVar(&g.dataDir, "data-dir", config.DefaultHub().DataDir, "the local hub's data directory, where ctl finds hub.url and admin.token")
}

func (g ctlGlobals) connect() (*ctlConn, error) {
	base, token := g.hub, g.token
	if base == "" {
		base = os.Getenv("WANWU_HUB")
	}
	if base == "" {
		if b, err := os.ReadFile(filepath.Join(g.dataDir, hub.URLFile)); err == nil {
			base = strings.TrimSpace(string(b))
		}
	}
	if base == "" {
		base = "http://" + config.DefaultHub().HTTP.Listen
	}
	base = strings.TrimRight(base, "/")
	if token == "" {
		token = os.Getenv("WANWU_TOKEN")
	}
	noToken := ""
	if token == "" {
		file := g.tokenFile
		if file == "" {
			file = filepath.Join(g.dataDir, hub.AdminTokenFile)
		}
		b, err := os.ReadFile(file)
		if err != nil && g.tokenFile != "" {
			return nil, fmt.Errorf("token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			abs, _ := filepath.Abs(file)
			noToken = fmt.Sprintf("ctl found no API token: no token file at %s. Run ctl where the hub runs, or give --data-dir, --token-file or --token (or set WANWU_TOKEN).", abs)
		}
	}
	return &ctlConn{Client: hubclient.New(base, token), noToken: noToken}, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ctlCommand is one `wanwu ctl <group> <verb>`.
type ctlCommand struct {
	group, verb, args, summary string
	flags                      func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error
}

func ctlCommands() []ctlCommand {
	return []ctlCommand{
		{"tenant", "create", "NAME", "create a tenant (namespace of codes, own IPv6 /48)", ctlTenantCreate},
		{"tenant", "list", "", "list tenants", ctlSimpleGet("/api/v1/tenants")},
		{"model", "register", "FILE", "register a thing model version (JSON)", ctlModelRegister},
		{"model", "list", "", "list thing models", ctlSimpleGet("/api/v1/models")},
		{"model", "get", "ID[@VERSION]", "print a thing model", ctlModelGet("")},
		{"model", "td", "ID[@VERSION]", "export a thing model as a W3C WoT Thing Description", ctlModelGet("/td")},
		{"model", "deprecate", "ID@VERSION", "deprecate a model version: refused for new objects, kept by those on it (--reason)", ctlModelDeprecate},
		{"object", "register", "CODE", "register an object; issues its certificate and credential", ctlObjectRegister},
		{"object", "import", "FILE.csv", "register objects from a CSV file (per-row results)", ctlObjectImport},
		{"object", "get", "CODE", "print an object", ctlObjectGet("")},
		{"object", "show", "CODE", "an object with its presence: online or offline, since, last seen, newest sessions", ctlObjectShow},
		{"object", "list", "", "list objects (filters: --tenant --under --tag --kind --status --network)", ctlListObjects("/api/v1/objects")},
		{"object", "bytes", "CODE", "bytes the device exchanged with the hub per UTC day: up, down, budget, share used, cost (--days, --json)", ctlObjectBytes},
		{"object", "credential", "CODE", "print the object's signed credential", ctlObjectGet("/credential")},
		{"object", "certificate", "CODE", "print the object's certificate (PEM)", ctlObjectGet("/certificate")},
		{"object", "admission", "CODE", "ask whether the object may connect (--did, --cert-serial)", ctlObjectAdmission},
		{"object", "rotate", "CODE", "give the object a new key, certificate and credential", ctlObjectRotate},
		{"object", "revoke", "CODE", "revoke the object and all its keys", ctlObjectLifecycle("revoke")},
		{"object", "quarantine", "CODE", "limit the object to remediation", ctlObjectLifecycle("quarantine")},
		{"object", "reinstate", "CODE", "end a quarantine", ctlObjectLifecycle("reinstate")},
		{"object", "update", "CODE", "change path, tags, model version, edge or network (--path --tag k=v --untag k --tags --model ID@VER --edge --network)", ctlObjectUpdate},
		{"object", "decommission", "CODE", "take the object out of service for good: revoked, data kept (--reason, --release-code, --yes)", ctlObjectDecommission},
		{"object", "delete", "", "delete a tenant's test objects (--tenant, --tag env=test, --dry-run, --yes)", ctlObjectDelete},
		{"edge", "list", "", "edges forwarding to this hub: link, last seen, devices online, backlog by class, forwarded, gap records (--tenant, --json)", ctlEdgeList},
		{"edge", "show", "CODE", "one edge: link, backlog per class (records, bytes, oldest, quota), what the hub holds (--json)", ctlEdgeShow},
		{"network", "list", "", "the network profiles as this hub applies them: budget, price, sleep (--json)", ctlNetworkList},
		{"network", "usage", "", "today's bytes per network profile: objects, active devices, bytes, over budget, cost (--tenant, --json)", ctlNetworkUsage},
		{"resolve", "", "CODE|NUMBER|DID", "resolve an object by code, IPv6 number or DID", ctlOnePath("GET", "/api/v1/resolve/", "", "CODE, NUMBER or DID")},
		{"device", "token", "CODE", "sign a device token with the device's key (MQTT password, HTTP bearer); offline", ctlDeviceToken},
		{"device", "psk", "CODE", "print the device's CoAP/DTLS pre-shared key (identity = code)", ctlDevicePSK},
		{"twin", "get", "CODE", "print a device's twin: desired, reported, delta, versions, metadata", ctlOnePath("GET", "/api/v1/objects/", "/twin", "CODE")},
		{"twin", "set", "CODE key=value...", "change desired state (merge patch; --version for optimistic concurrency)", ctlTwinSet},
		{"twin", "list", "", "list twins (filters as for object list)", ctlListObjects("/api/v1/twins")},
		{"command", "send", "CODE ACTION [key=value...|JSON]", "issue a thing-model action to a device (--id, --ttl, --wait)", ctlCommandSend},
		{"command", "get", "ID", "print a command and its events", ctlOnePath("GET", "/api/v1/commands/", "", "ID")},
		{"command", "list", "CODE", "list a device's commands (--status)", ctlCommandList},
		{"command", "cancel", "ID", "cancel a command that has not finished", ctlOnePath("POST", "/api/v1/commands/", "/cancel", "ID")},
		{"claim", "create", "", "create a zero-touch claim token for devices", ctlClaimCreate},
		{"claim", "list", "", "list claim tokens: uses, expiry, state (--json)", ctlClaimList},
		{"claim", "revoke", "ID", "revoke a claim token (devices already claimed keep their identities)", ctlClaimRevoke},
		{"telemetry", "latest", "CODE", "a device's latest values (--json)", ctlTelemetryLatest},
		{"telemetry", "range", "CODE PROPERTY", "a property's values (--since 1h, --step, --agg, --json)", ctlTelemetryRange},
		{"events", "", "", "device events, newest last (--device, --tenant, --name, --since 24h, --json)", ctlEvents},
		{"deadletters", "", "", "refused device messages and why (--device, --tenant, --json)", ctlDeadLetters},
		{"webhook", "create", "URL", "send device events, command events and presence changes to a receiver, signed (--tenant, --types)", ctlWebhookCreate},
		{"webhook", "list", "", "list webhooks (--tenant, --json)", ctlWebhookList},
		{"webhook", "delete", "ID", "delete a webhook and what it has not delivered", ctlWebhookDelete},
		{"webhook", "deliveries", "ID", "a webhook's failed (or --status pending) deliveries and why", ctlWebhookDeliveries},
		{"webhook", "retry", "ID", "try a webhook's failed deliveries again", ctlWebhookRetry},
		{"presence", "get", "CODE", "a device's online state and its newest session events (--json)", ctlPresenceGet},
		{"presence", "list", "", "devices' online state (--tenant, --online, --offline, --json)", ctlPresenceList},
		{"presence", "events", "", "device sessions started and ended, with the reason (--device, --tenant, --since 24h, --json)", ctlPresenceEvents},
		{"loop", "apply", "-f FILE", "define a closed loop or its next version (YAML or JSON; --tenant); every problem with its path", ctlLoopApply},
		{"loop", "list", "", "loops: version, mode, kill switch, objects and decisions on (at the hub), evidence records by state (the hub's and the edges'; --tenant, --json)", ctlLoopList},
		{"loop", "show", "KEY", "a loop's definition as YAML, with its stats (--version N)", ctlLoopShow},
		{"loop", "versions", "KEY", "a loop's versions: mode, when, by whom, digest", ctlLoopVersions},
		{"loop", "mode", "KEY MODE", "switch a loop to active, shadow or disabled (a new version)", ctlLoopMode},
		{"loop", "kill", "KEY", "engage a loop's kill switch: every action refused (--reason)", ctlLoopKill},
		{"loop", "release", "KEY", "release a loop's kill switch", ctlLoopRelease},
		{"loop", "evidence", "[KEY]", "decisions, newest first (--object, --state, --limit, --before); --id N explains one", ctlLoopEvidence},
		{"loop", "explain", "ID", "the whole story of one decision: inputs, guards, action, approvals, steps, outcome", ctlLoopExplain},
		{"loop", "approvals", "", "actions waiting for approval (--tenant, --json)", ctlLoopApprovals},
		{"loop", "approve", "ID", "approve an action waiting for approval (--note)", ctlLoopVote(true)},
		{"loop", "reject", "ID", "reject an action waiting for approval (--note)", ctlLoopVote(false)},
		{"loop", "bypass", "KEY", "request a time-boxed bypass of a guard (--guard, --for, --reason, --object); someone else approves it", ctlLoopBypass},
		{"loop", "bypasses", "", "bypasses pending and in force (--all: ended ones too)", ctlLoopBypasses},
		{"loop", "bypass-approve", "ID", "approve another's bypass request: in force from now (--note)", ctlBypassAction("approve")},
		{"loop", "bypass-reject", "ID", "reject a bypass request (--note)", ctlBypassAction("reject")},
		{"loop", "bypass-end", "ID", "end a bypass before its time", ctlBypassAction("end")},
		{"loop", "compare", "SHADOW ACTIVE", "a shadow loop's decisions beside an active one's: agreement, per object (--since 24h, --window 1m)", ctlLoopCompare},
		{"ml", "register", "", "register a model version: --meta FILE (the model document) --onnx FILE; refused with the runtime's reason (--tenant)", ctlMLRegister},
		{"ml", "list", "", "model versions: tenant, id, version, size, digest, who, when (--tenant, --json)", ctlMLList},
		{"ml", "show", "ID", "a model version: digests, signature, who, when, its document, its figures at the hub and each edge, its rollouts (--version V, --tenant, --json)", ctlMLShow},
		{"ml", "deploy", "ID", "stage a version: shadow → canary → active by its gates (--version V, --edges A,B | --all-edges | --at-hub, --canary 0.1, --shadow-for, --canary-for, --min-samples, --gate FIGURE=MAX)", ctlMLDeploy},
		{"ml", "promote", "ROLLOUT", "force a rollout's stage at every target or one (--to canary|active, --node, --reason)", ctlMLForce(false)},
		{"ml", "rollback", "ROLLOUT", "roll a rollout back at every target (it ends) or one (--node, --reason)", ctlMLForce(true)},
		{"ml", "rollouts", "", "rollouts: model, versions, state, targets (--model, --tenant, --json)", ctlMLRollouts},
		{"ml", "rollout", "ROLLOUT", "a rollout: plan, each node's stage, every stage change with its figures and gates", ctlMLRollout},
		{"ml", "windows", "", "windows of raw data captured around alarms, decisions and requests (--object, --reason, --loop, --unlabelled, --tenant, --json)", ctlMLWindows},
		{"ml", "window", "WINDOW", "a window: span, features, each property's summary (raw or kept at the edge), labels", ctlMLWindow},
		{"ml", "capture", "OBJECT", "capture a window of an object's data now (--minutes, --note)", ctlMLCapture},
		{"ml", "label", "WINDOW", "label a window (--kind true_positive|false_positive|normal|class, --class, --note)", ctlMLLabel},
		{"ml", "train", "MODEL", "train a model on a dataset version and register it (--dataset, --input NAME=PROPERTY ..., --version)", ctlMLTrain},
		{"dataset", "build", "NAME", "build the next version of a dataset from the windows and their labels now (--object, --reason, --loop, --model)", ctlDatasetBuild},
		{"dataset", "list", "", "dataset versions: windows, labels, coverage, completeness, content digest", ctlDatasetList},
		{"dataset", "show", "NAME", "a dataset version: quality scores, lineage, content digest (--version)", ctlDatasetShow},
		{"dataset", "export", "NAME", "export a version as a zip of Parquet files and its manifest (--out FILE.zip, --version)", ctlDatasetExport},
		{"site", "kill", "TENANT:SITE", "engage a site's kill switch: every loop's actions there refused (--reason)", ctlSiteKill},
		{"site", "release", "TENANT:SITE", "release a site's kill switch", ctlSiteRelease},
		{"alarm", "list", "", "alarms (--state, --severity and above, --object, --shelved true|false, --tenant, --json)", ctlAlarmList},
		{"alarm", "show", "ID", "an alarm and its history", ctlAlarmShow},
		{"alarm", "ack", "ID", "acknowledge an alarm (--note)", ctlAlarmAck},
		{"alarm", "shelve", "ID", "shelve an alarm: no notifications until then (--for 1h, --reason)", ctlAlarmShelve},
		{"alarm", "unshelve", "ID", "end an alarm's shelving", ctlAlarmUnshelve},
		{"claim", "use", "", "act as a device: make a key and CSR, claim an identity with a claim token", ctlClaimUse},
		{"token", "create", "NAME", "create an API token (--role, --tenant)", ctlTokenCreate},
		{"token", "list", "", "list API tokens", ctlSimpleGet("/api/v1/tokens")},
		{"token", "revoke", "NAME", "revoke an API token", ctlTokenRevoke},
		{"audit", "head", "", "print (and --out save) the signed tree head", ctlAuditHead},
		{"audit", "entries", "", "export audit entries as JSON lines (--from, --to, --out)", ctlAuditEntries},
		{"audit", "prove", "INDEX", "fetch and check an inclusion proof for an entry", ctlAuditProve},
	}
}

func init() {
	for _, c := range ctlCommands() {
		fs := newFlagSet("ctl")
		ctlGlobalFlags(fs, &ctlGlobals{})
		c.flags(fs)
		register("ctl "+strings.TrimSpace(c.group+" "+c.verb), fs)
	}
}

func ctlUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: wanwu ctl <group> <verb> [args] [flags]\n\nCommands:")
	for _, c := range ctlCommands() {
		fmt.Fprintf(w, "  %-30s %s\n", strings.TrimSpace(c.group+" "+c.verb+" "+c.args), c.summary)
	}
	fmt.Fprintln(w, "\nEvery command takes --hub, --token, --token-file and --data-dir.")
}

func runCtl(e *env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		ctlUsage(e.stdout)
		if len(args) == 0 {
			return usagef("a command is required")
		}
		return nil
	}
	// Global flags may come before the command words too:
	// `ctl --data-dir X tenant create acme`.
	args, lead := ctlLeadingGlobals(args)
	if len(args) == 0 {
		ctlUsage(e.stderr)
		return usagef("a command is required after %s", strings.Join(lead, " "))
	}
	for _, c := range ctlCommands() {
		rest := append(args[1:len(args):len(args)], lead...)
		if c.group != args[0] {
			continue
		}
		if c.verb != "" {
			if len(rest) == 0 || rest[0] != c.verb {
				continue
			}
			rest = rest[1:]
		}
		name := "ctl " + strings.TrimSpace(c.group+" "+c.verb)
		fs := newFlagSet(name)
		var g ctlGlobals
		ctlGlobalFlags(fs, &g)
		run := c.flags(fs)
		if err := parse(e, fs, interleave(fs, rest)); err != nil {
			return err
		}
		conn, err := g.connect()
		if err != nil {
			return err
		}
		return run(e, conn, fs.Args())
	}
	return ctlUnknown(args)
}

// ctlLeadingGlobals takes the global flags (--hub, --token, --token-file,
// --data-dir, with their values) off the front of args.
func ctlLeadingGlobals(args []string) (rest, lead []string) {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	var g ctlGlobals
	ctlGlobalFlags(fs, &g)
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && len(args[0]) > 1 {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		if fs.Lookup(name) == nil {
			break
		}
		lead = append(lead, args[0])
		args = args[1:]
		if !hasValue && len(args) > 0 {
			lead = append(lead, args[0])
			args = args[1:]
		}
	}
	return args, lead
}

// ctlUnknown answers a command ctl does not have: the verbs of a group it
// names, or the nearest group or verb, instead of the whole help.
func ctlUnknown(args []string) error {
	var groups, verbs []string
	seen := map[string]bool{}
	for _, c := range ctlCommands() {
		if !seen[c.group] {
			seen[c.group] = true
			groups = append(groups, c.group)
		}
		if c.group == args[0] && c.verb != "" {
			verbs = append(verbs, c.verb)
		}
	}
	switch {
	case len(verbs) > 0 && len(args) == 1:
		return usagef("%s: which command? %s (ctl --help lists them all)", args[0], strings.Join(verbs, ", "))
	case len(verbs) > 0:
		if near := nearest(args[1], verbs); near != "" {
			return usagef("unknown ctl command %q; did you mean %q?", args[0]+" "+args[1], args[0]+" "+near)
		}
		return usagef("unknown ctl command %q; ctl %s has: %s", args[0]+" "+args[1], args[0], strings.Join(verbs, ", "))
	}
	if near := nearest(args[0], groups); near != "" {
		return usagef("unknown ctl command %q; did you mean %q?", args[0], near)
	}
	return usagef("unknown ctl command %q (ctl --help lists the commands)", args[0])
}

// nearest returns the word of words closest to w by edit distance, when it
// is close enough to be a typo (at most a third of its letters), else "".
func nearest(w string, words []string) string {
	best, bestD := "", len(w)/3+1
	for _, c := range words {
		if d := editDistance(w, c); d < bestD || d == bestD && best == "" && d <= len(w)/3 {
			best, bestD = c, d
		}
	}
	if editDistance(w, best) > len(w)/3 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// interleave moves positional arguments after the flags, so that
// `ctl object get acme:x --hub URL` works like `ctl object get --hub URL acme:x`.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			if f := fs.Lookup(name); f != nil {
				if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
					continue
				}
				if i+1 < len(args) {
					flags = append(flags, args[i+1])
					i++
				}
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func needArgs(args []string, n int, what string) error {
	if len(args) != n {
		return usagef("expected arguments: %s", what)
	}
	return nil
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func ctlSimpleGet(path string) func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	return func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
		return func(e *env, c *ctlConn, args []string) error {
			if err := needArgs(args, 0, "no arguments"); err != nil {
				return err
			}
			var out any
			if _, err := c.json("GET", path, nil, &out); err != nil {
				return err
			}
			return printJSON(e.stdout, out)
		}
	}
}

func ctlTenantCreate(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	title := fs.String("title", "", "display name")
	prefix := fs.String("prefix", "", "operator-owned IPv6 /48 for the tenant (default: a derived ULA /48)")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "NAME"); err != nil {
			return err
		}
		var out any
		if _, err := c.json("POST", "/api/v1/tenants", map[string]string{"name": args[0], "title": *title, "prefix": *prefix}, &out); err != nil {
			return err
		}
		return printJSON(e.stdout, out)
	}
}

func ctlModelRegister(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "FILE"); err != nil {
			return err
		}
		doc, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		b, status, err := c.do("POST", "/api/v1/models", bytes.NewReader(doc), "application/json")
		if err != nil {
			return err
		}
		var out struct {
			Model struct{ ID, Version string }
		}
		_ = json.Unmarshal(b, &out)
		verb := "registered"
		if status == http.StatusOK {
			verb = "already registered, unchanged"
		}
		fmt.Fprintf(e.stdout, "model %s@%s %s\n", out.Model.ID, out.Model.Version, verb)
		return nil
	}
}

// splitModelRef splits "id@version" (version optional).
func splitModelRef(s string) (string, string) {
	id, version, _ := strings.Cut(s, "@")
	return id, version
}

func ctlModelGet(suffix string) func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	return func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
		return func(e *env, c *ctlConn, args []string) error {
			if err := needArgs(args, 1, "ID[@VERSION]"); err != nil {
				return err
			}
			id, version := splitModelRef(args[0])
			if version == "" {
				version = "latest"
			}
			b, _, err := c.do("GET", "/api/v1/models/"+url.PathEscape(id)+"/versions/"+url.PathEscape(version)+suffix, nil, "")
			if err != nil {
				return err
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				return err
			}
			return printJSON(e.stdout, v)
		}
	}
}

// registration mirrors registry.Registration for writing key material to files.
type registration struct {
	Object struct {
		Code   string `json:"code"`
		Number string `json:"number"`
		DID    string `json:"did"`
	} `json:"object"`
	Certificate   string `json:"certificate"`
	CACertificate string `json:"ca_certificate"`
	Credential    string `json:"credential"`
	PrivateKey    string `json:"private_key"`
}

// saveRegistration writes the device's files into dir, keys with mode 0600.
func saveRegistration(e *env, dir string, raw []byte, keyPEM []byte) error {
	var reg registration
	if err := json.Unmarshal(raw, &reg); err != nil {
		return fmt.Errorf("hub sent unexpected JSON: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files := []struct {
		name string
		data string
		mode os.FileMode
	}{
		{"cert.pem", reg.Certificate, 0o644},
		{"ca.pem", reg.CACertificate, 0o644},
		{"credential.jwt", reg.Credential + "\n", 0o644},
		{"registration.json", string(raw), 0o600},
	}
	if reg.PrivateKey != "" {
		files = append(files, struct {
			name string
			data string
			mode os.FileMode
		}{"key.pem", reg.PrivateKey, 0o600})
	} else if keyPEM != nil {
		files = append(files, struct {
			name string
			data string
			mode os.FileMode
		}{"key.pem", string(keyPEM), 0o600})
	}
	for _, f := range files {
		if strings.TrimSpace(f.data) == "" {
			continue // keyless assets have no certificate or credential
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "%s\n  number %s\n  did    %s\n  files  %s/{cert.pem,key.pem,ca.pem,credential.jwt}\n",
		reg.Object.Code, reg.Object.Number, reg.Object.DID, dir)
	return nil
}

// keyFlags are shared by register and rotate.
type keyFlags struct{ csr, publicKey, keyAlg, validity, out *string }

func addKeyFlags(fs *flag.FlagSet) keyFlags {
	return keyFlags{
		csr:       fs.String("csr", "", "PEM file with the device's certificate signing request (device-generated key)"),
		publicKey: fs.String("public-key", "", "the device's public key: did:key, PEM file name, or base64 SPKI"),
		keyAlg:    fs.String("key-alg", "", "algorithm when the hub generates the key: p256 (default) or ed25519"),
		validity:  fs.String("validity", "", "certificate lifetime, e.g. 8760h (default: the hub's)"),
		out:       fs.String("out", "", "write cert.pem, key.pem, ca.pem and credential.jwt into this directory"),
	}
}

func (k keyFlags) body(m map[string]any) error {
	if *k.csr != "" {
		b, err := os.ReadFile(*k.csr)
		if err != nil {
			return err
		}
		m["csr"] = string(b)
	}
	if pk := *k.publicKey; pk != "" {
		if !strings.HasPrefix(pk, "did:") {
			if b, err := os.ReadFile(pk); err == nil {
				pk = string(b)
			}
		}
		m["public_key"] = pk
	}
	if *k.keyAlg != "" {
		m["key_alg"] = *k.keyAlg
	}
	if *k.validity != "" {
		m["validity"] = *k.validity
	}
	return nil
}

func (k keyFlags) finish(e *env, raw []byte) error {
	if *k.out != "" {
		return saveRegistration(e, *k.out, raw, nil)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return printJSON(e.stdout, v)
}

func ctlObjectRegister(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	kind := fs.String("kind", "device", "device, gateway, edge or asset")
	model := fs.String("model", "", "thing model as ID@VERSION")
	path := fs.String("path", "", "place in the asset hierarchy, e.g. plant-1/area-a/line-3")
	edge := fs.String("edge", "", "code of the edge node or gateway that serves this object")
	network := fs.String("network", "", "the profile of the object's link: "+strings.Join(netprofile.Names(), ", "))
	var tags stringList
	fs.Var(&tags, "tag", "tag as key=value (repeatable)")
	kf := addKeyFlags(fs)
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		body := map[string]any{"code": args[0], "kind": *kind}
		if *model != "" {
			id, version := splitModelRef(*model)
			body["model"] = map[string]string{"id": id, "version": version}
		}
		if *path != "" {
			body["path"] = *path
		}
		if *edge != "" {
			body["edge"] = *edge
		}
		if *network != "" {
			body["network"] = *network
		}
		if len(tags) > 0 {
			t, err := parseTags(tags)
			if err != nil {
				return err
			}
			body["tags"] = t
		}
		if err := kf.body(body); err != nil {
			return err
		}
		b, _ := json.Marshal(body)
		raw, _, err := c.do("POST", "/api/v1/objects", bytes.NewReader(b), "application/json")
		if err != nil {
			return err
		}
		return kf.finish(e, raw)
	}
}

func parseTags(tags []string) (map[string]string, error) {
	out := map[string]string{}
	for _, t := range tags {
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			return nil, usagef("--tag %q: want key=value", t)
		}
		out[k] = v
	}
	return out, nil
}

func ctlObjectImport(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	out := fs.String("out", "", "write key material of created rows into DIR/<code>/ (default for hub-generated keys: ./wanwu-keys-<time>/)")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "FILE.csv"); err != nil {
			return err
		}
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		// The hub answers row by row (NDJSON) as it registers them; each
		// result, with its generated key, is handled as it arrives, so
		// neither side holds the whole file's results.
		body, _, err := c.Stream(context.Background(), "POST", "/api/v1/objects/import", f, "text/csv", "application/x-ndjson")
		if err != nil {
			return err
		}
		defer body.Close()
		dec := json.NewDecoder(body)
		rows, last := 0, time.Now()
		for {
			var l struct {
				Type                       string          `json:"type"`
				Line                       int             `json:"line"`
				Code                       string          `json:"code"`
				Result                     string          `json:"result"`
				Field                      string          `json:"field"`
				Reason                     string          `json:"reason"`
				Registration               json.RawMessage `json:"registration"`
				Created, Unchanged, Errors int
				Stopped                    string `json:"stopped"`
			}
			if err := dec.Decode(&l); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("the hub's answer ended after %d rows without a summary (rows after them may or may not be registered; importing the file again is safe): %w", rows, err)
			}
			switch l.Type {
			case "row":
				rows++
				if l.Result == "error" {
					fmt.Fprintf(e.stdout, "line %d: error: %s%s\n", l.Line, fieldPrefix(l.Field), l.Reason)
				} else {
					fmt.Fprintf(e.stdout, "line %d: %s %s\n", l.Line, l.Result, l.Code)
					if *out == "" && bytes.Contains(l.Registration, []byte(`"private_key"`)) {
						// A key the hub generated is shown once: never drop it.
						*out = "wanwu-keys-" + time.Now().UTC().Format("20060102-150405")
						fmt.Fprintf(e.stderr, "writing the keys the hub generated to %s/ (--out chooses the directory)\n", *out)
					}
					if *out != "" && len(l.Registration) > 0 && string(l.Registration) != "null" {
						if err := saveRegistration(&env{stdout: io.Discard, stderr: e.stderr}, filepath.Join(*out, strings.ReplaceAll(l.Code, ":", "_")), l.Registration, nil); err != nil {
							return err
						}
					}
				}
				if time.Since(last) >= 2*time.Second {
					fmt.Fprintf(e.stderr, "%d rows done\n", rows)
					last = time.Now()
				}
			case "summary":
				fmt.Fprintf(e.stdout, "%d created, %d unchanged, %d errors\n", l.Created, l.Unchanged, l.Errors)
				switch {
				case l.Stopped != "":
					return fmt.Errorf("import stopped after %d rows: %s", rows, l.Stopped)
				case l.Errors > 0:
					return fmt.Errorf("%d rows were not registered", l.Errors)
				}
				return nil
			}
		}
	}
}

func fieldPrefix(f string) string {
	if f == "" {
		return ""
	}
	return f + ": "
}

func ctlObjectGet(suffix string) func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	return func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
		out := fs.String("out", "", "write the result to this file instead of stdout")
		return func(e *env, c *ctlConn, args []string) error {
			if err := needArgs(args, 1, "CODE"); err != nil {
				return err
			}
			raw, _, err := c.do("GET", "/api/v1/objects/"+url.PathEscape(args[0])+suffix, nil, "")
			if err != nil {
				return err
			}
			if suffix == "/credential" {
				var v struct{ Credential string }
				if err := json.Unmarshal(raw, &v); err != nil {
					return err
				}
				raw = []byte(v.Credential + "\n")
			} else if suffix == "" {
				var v any
				if err := json.Unmarshal(raw, &v); err != nil {
					return err
				}
				raw, _ = json.MarshalIndent(v, "", "  ")
				raw = append(raw, '\n')
			}
			if *out != "" {
				return os.WriteFile(*out, raw, 0o644)
			}
			_, err = e.stdout.Write(raw)
			return err
		}
	}
}

// objectFilterFlags binds the object filters (the API's object list query)
// to fs; the returned function builds the query once flags are parsed.
func objectFilterFlags(fs *flag.FlagSet) func() url.Values {
	tenant := fs.String("tenant", "", "only this tenant")
	under := fs.String("under", "", "only objects at or below this hierarchy path")
	kind := fs.String("kind", "", "only this kind")
	status := fs.String("status", "", "only this status (active, quarantined, revoked)")
	edge := fs.String("edge", "", "only objects served by this edge")
	network := fs.String("network", "", `only objects on this network profile ("-" = those without one)`)
	limit := fs.Int("limit", 100, "page size (at most 1000)")
	after := fs.String("after", "", "continue after this code")
	var tags stringList
	fs.Var(&tags, "tag", "only objects with tag key=value (repeatable)")
	return func() url.Values {
		q := url.Values{}
		for k, v := range map[string]string{"tenant": *tenant, "under": *under, "kind": *kind, "status": *status, "edge": *edge, "network": *network, "after": *after} {
			if v != "" {
				q.Set(k, v)
			}
		}
		q.Set("limit", fmt.Sprint(*limit))
		for _, t := range tags {
			q.Add("tag", t)
		}
		return q
	}
}

// ctlListObjects lists what path returns for the objects the filter flags select.
func ctlListObjects(path string) func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	return func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
		query := objectFilterFlags(fs)
		return func(e *env, c *ctlConn, args []string) error {
			if err := needArgs(args, 0, "no arguments"); err != nil {
				return err
			}
			var out any
			if _, err := c.json("GET", path+"?"+query().Encode(), nil, &out); err != nil {
				return err
			}
			return printJSON(e.stdout, out)
		}
	}
}

func ctlObjectAdmission(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	did := fs.String("did", "", "the DID the device presents")
	serial := fs.String("cert-serial", "", "the serial (hex) of the certificate the device presents")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		q := url.Values{}
		if *did != "" {
			q.Set("did", *did)
		}
		if *serial != "" {
			q.Set("cert_serial", *serial)
		}
		var out struct {
			Status string `json:"status"`
			Reason string `json:"reason"`
		}
		if _, err := c.json("GET", "/api/v1/objects/"+url.PathEscape(args[0])+"/admission?"+q.Encode(), nil, &out); err != nil {
			return err
		}
		// "revoked (object revoked)" said it twice: the reason only when
		// it says more than the status.
		if out.Reason != "" && out.Reason != "object "+out.Status && out.Reason != out.Status {
			fmt.Fprintf(e.stdout, "%s: %s\n", out.Status, out.Reason)
		} else {
			fmt.Fprintln(e.stdout, out.Status)
		}
		return nil
	}
}

func ctlObjectRotate(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	overlap := fs.String("overlap", "", "how long the old key keeps working (default: the hub's rotation overlap)")
	now := fs.Bool("revoke-old-now", false, "revoke the old key at once (compromised key)")
	kf := addKeyFlags(fs)
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		body := map[string]any{}
		if *overlap != "" {
			body["overlap"] = *overlap
		}
		if *now {
			body["revoke_old_now"] = true
		}
		if err := kf.body(body); err != nil {
			return err
		}
		b, _ := json.Marshal(body)
		raw, _, err := c.do("POST", "/api/v1/objects/"+url.PathEscape(args[0])+"/rotate", bytes.NewReader(b), "application/json")
		if err != nil {
			return err
		}
		return kf.finish(e, raw)
	}
}

func ctlObjectLifecycle(action string) func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	return func(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
		reason := fs.String("reason", "", "why (recorded in the audit log)")
		var yes *bool
		if action == "revoke" {
			yes = fs.Bool("yes", false, "confirm: revocation is final")
		}
		return func(e *env, c *ctlConn, args []string) error {
			if err := needArgs(args, 1, "CODE"); err != nil {
				return err
			}
			if yes != nil && !*yes {
				return usagef("revoking %s is final: its keys, certificates and credential stop working for good and cannot be reinstated (quarantine can). Run again with --yes to revoke", args[0])
			}
			var out struct {
				Code   string `json:"code"`
				Status string `json:"status"`
			}
			if _, err := c.json("POST", "/api/v1/objects/"+url.PathEscape(args[0])+"/"+action, map[string]string{"reason": *reason}, &out); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s is %s\n", out.Code, out.Status)
			return nil
		}
	}
}

func ctlClaimCreate(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	tenant := fs.String("tenant", "", "tenant the claimed devices join")
	name := fs.String("name", "", "a label for the token (e.g. the production batch)")
	uses := fs.Int("max-uses", 1, "how many devices may claim with this token")
	ttl := fs.String("ttl", "24h", "how long the token is valid")
	kind := fs.String("kind", "", "kind of the claimed objects (default device)")
	model := fs.String("model", "", "thing model of the claimed objects, ID@VERSION")
	path := fs.String("path", "", "hierarchy path of the claimed objects")
	edge := fs.String("edge", "", "edge serving the claimed objects")
	network := fs.String("network", "", "network profile of the claimed objects: "+strings.Join(netprofile.Names(), ", "))
	var tags stringList
	fs.Var(&tags, "tag", "tag key=value for the claimed objects (repeatable)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		body := map[string]any{"tenant": *tenant, "name": *name, "max_uses": *uses, "ttl": *ttl, "kind": *kind, "path": *path, "edge": *edge, "network": *network}
		if *model != "" {
			id, version := splitModelRef(*model)
			body["model"] = map[string]string{"id": id, "version": version}
		}
		if len(tags) > 0 {
			t, err := parseTags(tags)
			if err != nil {
				return err
			}
			body["tags"] = t
		}
		b, _ := json.Marshal(body)
		raw, _, err := c.do("POST", "/api/v1/claims", bytes.NewReader(b), "application/json")
		if err != nil {
			return err
		}
		if *asJSON {
			_, err := e.stdout.Write(raw)
			return err
		}
		var out struct {
			Claim claimRow `json:"claim"`
			Token string   `json:"token"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("hub sent unexpected JSON: %w", err)
		}
		fmt.Fprintf(e.stdout, "claim %s for tenant %s: %d uses, expires %s\n", out.Claim.ID, out.Claim.Tenant, out.Claim.MaxUses, timeText(out.Claim.ExpiresAt))
		fmt.Fprintf(e.stdout, "token %s\n", out.Token)
		fmt.Fprintln(e.stderr, "the token is shown only now (the hub keeps its hash): give it to the devices, e.g. WANWU_CLAIM=<token>")
		return nil
	}
}

func ctlTokenCreate(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	role := fs.String("role", "viewer", "admin, operator or viewer")
	tenant := fs.String("tenant", "", "bind the token to one tenant")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "NAME"); err != nil {
			return err
		}
		var out any
		if _, err := c.json("POST", "/api/v1/tokens", map[string]string{"name": args[0], "role": *role, "tenant": *tenant}, &out); err != nil {
			return err
		}
		return printJSON(e.stdout, out)
	}
}

func ctlTokenRevoke(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "NAME"); err != nil {
			return err
		}
		if _, err := c.json("DELETE", "/api/v1/tokens/"+url.PathEscape(args[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "token %s revoked\n", args[0])
		return nil
	}
}

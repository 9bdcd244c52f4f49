package cli

// Closed loops from the command line: `wanwu ctl loop ...` (definitions,
// modes, kill switches, evidence, approvals, bypasses, shadow comparison)
// and `wanwu ctl site kill|release`.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/guard"
	"github.com/wanwu-iot/wanwu/internal/loop"
)

// ctlRun is what a command's flag function returns.
type ctlRun = func(e *env, c *ctlConn, args []string) error

// callData sends in as JSON (nil: no body) with method to path: with
// asJSON it prints the hub's answer and reports done; otherwise it decodes
// the answer into out (nil: ignored).
func callData(e *env, c *ctlConn, method, path string, in any, asJSON bool, out any) (done bool, err error) {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return false, err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	raw, _, err := c.do(method, path, body, ct)
	if err != nil {
		return false, err
	}
	if asJSON {
		_, err := e.stdout.Write(raw)
		return true, err
	}
	if out == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return false, fmt.Errorf("hub sent unexpected JSON: %w", err)
	}
	return false, nil
}

// loopEntry is one loop in the hub's list: its current version, what the
// hub's engine counted for it, and its evidence records by state (the
// hub's and those kept from edges).
type loopEntry struct {
	Loop     loop.Info      `json:"loop"`
	Stats    loop.LoopStats `json:"stats"`
	Evidence loop.Counts    `json:"evidence"`
}

// loopArg takes the one argument, a loop's key (or its id alone), and
// returns the key.
func loopArg(c *ctlConn, args []string) (string, error) {
	if err := needArgs(args, 1, "KEY (tenant:id)"); err != nil {
		return "", err
	}
	return loopKey(c, args[0])
}

// loopKey returns a loop's key: arg when it is tenant:id, else the one
// loop the token sees whose id is arg.
func loopKey(c *ctlConn, arg string) (string, error) {
	if strings.Contains(arg, ":") {
		return arg, nil
	}
	var out struct {
		Loops []loopEntry `json:"loops"`
	}
	if _, err := c.json("GET", "/api/v1/loops", nil, &out); err != nil {
		return "", err
	}
	var keys []string
	for _, l := range out.Loops {
		if _, id, _ := loop.SplitKey(l.Loop.Key); id == arg {
			keys = append(keys, l.Loop.Key)
		}
	}
	switch len(keys) {
	case 1:
		return keys[0], nil
	case 0:
		return "", fmt.Errorf("no loop %q (a loop is tenant:id; ctl loop list shows them)", arg)
	}
	return "", usagef("loop %q is in several tenants (%s): give tenant:id", arg, strings.Join(keys, ", "))
}

func loopPath(key, suffix string) string { return "/api/v1/loops/" + url.PathEscape(key) + suffix }

// num writes a number as a person reads it: at most six significant digits.
func num(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

// orDash is s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ctlLoopApply(fs *flag.FlagSet) ctlRun {
	file := fs.String("f", "", "the definition, YAML or JSON (- reads standard input)")
	tenant := fs.String("tenant", "", "the loop's tenant, when the definition names none (default: the token's)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "none (the definition is -f FILE)"); err != nil {
			return err
		}
		if *file == "" {
			return usagef("-f FILE is required: the loop definition (YAML or JSON)")
		}
		var doc []byte
		var err error
		if *file == "-" {
			doc, err = io.ReadAll(io.LimitReader(os.Stdin, loop.MaxDefinitionSize+1))
		} else {
			doc, err = os.ReadFile(*file)
		}
		if err != nil {
			return err
		}
		path := "/api/v1/loops"
		if *tenant != "" {
			path += "?tenant=" + url.QueryEscape(*tenant)
		}
		raw, _, err := c.do("POST", path, bytes.NewReader(doc), "application/yaml")
		if err != nil {
			// The hub's refusal lists every problem with its path, one
			// per line.
			return fmt.Errorf("%s: %w", *file, err)
		}
		if *asJSON {
			_, err := e.stdout.Write(raw)
			return err
		}
		var out struct {
			Loop    loop.Info `json:"loop"`
			Changed bool      `json:"changed"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("hub sent unexpected JSON: %w", err)
		}
		verb := "unchanged"
		if out.Changed {
			verb = "changed"
		}
		fmt.Fprintf(e.stdout, "loop %s version %d (%s)\n", out.Loop.Key, out.Loop.Version, verb)
		return nil
	}
}

func ctlLoopList(fs *flag.FlagSet) ctlRun {
	tenant := fs.String("tenant", "", "only this tenant's loops")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		q := addFilters(url.Values{}, map[string]string{"tenant": *tenant})
		var out struct {
			Loops     []loopEntry       `json:"loops"`
			SiteKills map[string]string `json:"site_kills"`
		}
		if done, err := getData(e, c, "/api/v1/loops?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Loops))
		for _, l := range out.Loops {
			o := l.Evidence.States
			rows = append(rows, []string{l.Loop.Key, strconv.Itoa(l.Loop.Version), string(l.Loop.Mode), orDash(l.Loop.Killed),
				strconv.Itoa(l.Stats.Objects), strconv.Itoa(l.Stats.On),
				strconv.Itoa(o[loop.StateSent] + o[loop.StateVerify]), strconv.Itoa(o[loop.StateDone]), strconv.Itoa(o[loop.StateFailed]), strconv.Itoa(o[loop.StateRefused]),
				strconv.Itoa(o[loop.StateAwaiting]), strconv.Itoa(o[loop.StateShadow]), strconv.Itoa(o[loop.StateError])})
		}
		if err := table(e.stdout, []string{"LOOP", "VERSION", "MODE", "KILLED", "OBJECTS", "ON", "ACTING", "DONE", "FAILED", "REFUSED", "AWAITING", "SHADOW", "ERROR"}, rows); err != nil {
			return err
		}
		for _, site := range slices.Sorted(mapKeys(out.SiteKills)) {
			fmt.Fprintf(e.stdout, "site %s killed: %s\n", site, out.SiteKills[site])
		}
		return nil
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func ctlLoopShow(fs *flag.FlagSet) ctlRun {
	version := fs.Int("version", 0, "this version (default: the current one)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		key, err := loopArg(c, args)
		if err != nil {
			return err
		}
		path := loopPath(key, "")
		if *version > 0 {
			path += "?version=" + strconv.Itoa(*version)
		}
		var out struct {
			Loop struct {
				loop.Info
				Def json.RawMessage `json:"definition"`
			} `json:"loop"`
			Stats *loop.LoopStats `json:"stats"`
		}
		if done, err := getData(e, c, path, *asJSON, &out); done || err != nil {
			return err
		}
		w := e.stdout
		l := out.Loop
		fmt.Fprintf(w, "loop      %s version %d\n", l.Key, l.Version)
		fmt.Fprintf(w, "mode      %s\n", l.Mode)
		if l.Killed != "" {
			fmt.Fprintf(w, "killed    %s\n", l.Killed)
		}
		fmt.Fprintf(w, "updated   %s\ndigest    %s\n", timeText(l.UpdatedAt), l.Digest)
		if s := out.Stats; s != nil {
			fmt.Fprintf(w, "objects   %d, decision on for %d\n", s.Objects, s.On)
			fmt.Fprintf(w, "records   %s\n", outcomesText(s.Outcomes))
			if s.LastAt != nil {
				fmt.Fprintf(w, "last      %s at %s\n", s.Last, timeText(*s.LastAt))
			}
		} else {
			fmt.Fprintln(w, "stats     none: the loop does not run at the hub")
		}
		y, err := yamlOf(l.Def)
		if err != nil {
			return fmt.Errorf("the definition: %w", err)
		}
		fmt.Fprintf(w, "\n%s", y)
		return nil
	}
}

// outcomesText lists the counts of evidence states, in the order of the
// lifecycle.
func outcomesText(o map[string]int) string {
	order := []string{loop.StateAwaiting, loop.StateSent, loop.StateVerify, loop.StateDone, loop.StateFailed, loop.StateRefused,
		loop.StateRejected, loop.StateExpired, loop.StateShadow, loop.StateRecorded, loop.StateError}
	var parts []string
	for _, st := range order {
		if o[st] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", st, o[st]))
		}
	}
	for _, st := range slices.Sorted(mapKeys(o)) {
		if !slices.Contains(order, st) && o[st] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", st, o[st]))
		}
	}
	if len(parts) == 0 {
		return "none since the hub started"
	}
	return strings.Join(parts, ", ")
}

// yamlOf writes a JSON document as block YAML, its keys in the order the
// hub wrote them. Empty objects are left out; lists of plain values, and
// short objects of single-word values ({min: 40, max: 120}), stay on one
// line.
func yamlOf(raw []byte) (string, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(raw, &n); err != nil {
		return "", err
	}
	restyle(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

func restyle(n *yaml.Node) {
	for _, c := range n.Content {
		restyle(c)
	}
	switch n.Kind {
	case yaml.ScalarNode:
		n.Style = 0 // the encoder quotes what would not read back as a string
		if strings.HasPrefix(n.Value, "'") {
			n.Style = yaml.DoubleQuotedStyle // a CEL string literal reads better in double quotes
		}
	case yaml.SequenceNode:
		n.Style = yaml.FlowStyle
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				n.Style = 0
			}
		}
	case yaml.MappingNode:
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := n.Content[i+1]; v.Kind != yaml.MappingNode || len(v.Content) > 0 {
				kept = append(kept, n.Content[i], v)
			}
		}
		n.Content = kept
		n.Style = 0
		width := 0
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode || strings.ContainsAny(c.Value, " \t\n") {
				return
			}
			width += len(c.Value) + 2
		}
		if len(n.Content) > 0 && width <= 60 {
			n.Style = yaml.FlowStyle
		}
	}
}

func ctlLoopVersions(fs *flag.FlagSet) ctlRun {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		key, err := loopArg(c, args)
		if err != nil {
			return err
		}
		var out struct {
			Versions []loop.Version `json:"versions"`
		}
		if done, err := getData(e, c, loopPath(key, "/versions"), *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Versions))
		for _, v := range out.Versions {
			mode := ""
			if v.Def != nil {
				mode = string(v.Def.Mode)
			}
			rows = append(rows, []string{strconv.Itoa(v.Version), orDash(mode), timeText(v.CreatedAt), v.Actor, short(v.Digest, 16)})
		}
		return table(e.stdout, []string{"VERSION", "MODE", "CREATED", "BY", "DIGEST"}, rows)
	}
}

func ctlLoopMode(fs *flag.FlagSet) ctlRun {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 2, "KEY active|shadow|disabled"); err != nil {
			return err
		}
		switch loop.Mode(args[1]) {
		case loop.Active, loop.Shadow, loop.Disabled:
		default:
			return usagef("mode %q: want active, shadow or disabled", args[1])
		}
		key, err := loopKey(c, args[0])
		if err != nil {
			return err
		}
		var out struct {
			Loop loop.Info `json:"loop"`
		}
		if done, err := callData(e, c, "POST", loopPath(key, "/mode"), map[string]string{"mode": args[1]}, *asJSON, &out); done || err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "loop %s version %d: %s\n", out.Loop.Key, out.Loop.Version, out.Loop.Mode)
		return nil
	}
}

func ctlLoopKill(fs *flag.FlagSet) ctlRun {
	reason := fs.String("reason", "", "why (required; recorded in the audit log)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "KEY (tenant:id)"); err != nil {
			return err
		}
		if strings.TrimSpace(*reason) == "" {
			return usagef("--reason is required: a kill switch says why")
		}
		key, err := loopKey(c, args[0])
		if err != nil {
			return err
		}
		if done, err := callData(e, c, "POST", loopPath(key, "/kill"), map[string]string{"reason": *reason}, *asJSON, nil); done || err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "loop %s killed: %s (every action refused until ctl loop release %s)\n", key, *reason, key)
		return nil
	}
}

func ctlLoopRelease(fs *flag.FlagSet) ctlRun {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		key, err := loopArg(c, args)
		if err != nil {
			return err
		}
		var out struct {
			Released bool `json:"released"`
		}
		if done, err := callData(e, c, "DELETE", loopPath(key, "/kill"), nil, *asJSON, &out); done || err != nil {
			return err
		}
		if out.Released {
			fmt.Fprintf(e.stdout, "loop %s released\n", key)
		} else {
			fmt.Fprintf(e.stdout, "loop %s was not killed\n", key)
		}
		return nil
	}
}

func sitePath(site, suffix string) (string, error) {
	if t, s, ok := strings.Cut(site, ":"); !ok || t == "" || s == "" || strings.Contains(s, "/") {
		return "", usagef("site %q: want tenant:site, the first segment of its objects' hierarchy path", site)
	}
	return "/api/v1/sites/" + url.PathEscape(site) + suffix, nil
}

func ctlSiteKill(fs *flag.FlagSet) ctlRun {
	reason := fs.String("reason", "", "why (required; recorded in the audit log)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "TENANT:SITE"); err != nil {
			return err
		}
		if strings.TrimSpace(*reason) == "" {
			return usagef("--reason is required: a kill switch says why")
		}
		path, err := sitePath(args[0], "/kill")
		if err != nil {
			return err
		}
		if done, err := callData(e, c, "POST", path, map[string]string{"reason": *reason}, *asJSON, nil); done || err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "site %s killed: %s (every loop's actions there refused until ctl site release %s)\n", args[0], *reason, args[0])
		return nil
	}
}

func ctlSiteRelease(fs *flag.FlagSet) ctlRun {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "TENANT:SITE"); err != nil {
			return err
		}
		path, err := sitePath(args[0], "/kill")
		if err != nil {
			return err
		}
		var out struct {
			Released bool `json:"released"`
		}
		if done, err := callData(e, c, "DELETE", path, nil, *asJSON, &out); done || err != nil {
			return err
		}
		if out.Released {
			fmt.Fprintf(e.stdout, "site %s released\n", args[0])
		} else {
			fmt.Fprintf(e.stdout, "site %s was not killed\n", args[0])
		}
		return nil
	}
}

// evidenceDetail is a record's refusal or outcome, short, for a table.
func evidenceDetail(ev *loop.Evidence) string { return short(ev.Summary(), 70) }

func evidenceRows(evs []*loop.Evidence) [][]string {
	rows := make([][]string, 0, len(evs))
	for _, ev := range evs {
		rows = append(rows, []string{strconv.FormatInt(ev.ID, 10), timeText(ev.At), fmt.Sprintf("%s@%d", ev.Loop, ev.Version),
			ev.Object, ev.Kind, ev.State, evidenceDetail(ev)})
	}
	return rows
}

var evidenceHeader = []string{"ID", "TIME", "LOOP", "OBJECT", "KIND", "STATE", "DETAIL"}

func ctlLoopEvidence(fs *flag.FlagSet) ctlRun {
	object := fs.String("object", "", "only this object's records")
	state := fs.String("state", "", "only records in these states, comma-separated (sent, done, refused, awaiting_approval, shadow, ...)")
	tenant := fs.String("tenant", "", "only this tenant's records")
	limit := fs.Int("limit", 50, "at most this many, the newest (at most 1000)")
	before := fs.Int64("before", 0, "records older than this id (the next page)")
	id := fs.Int64("id", 0, "explain this record: inputs, guards, action, approvals, steps, outcome")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if len(args) > 1 {
			return usagef("expected arguments: [KEY]")
		}
		if *id > 0 {
			if len(args) > 0 {
				return usagef("--id names one record: give no KEY with it")
			}
			return explainEvidence(e, c, *id, *asJSON)
		}
		q := addFilters(url.Values{}, map[string]string{"object": *object, "state": *state, "tenant": *tenant})
		q.Set("limit", strconv.Itoa(*limit))
		if *before > 0 {
			q.Set("before", strconv.FormatInt(*before, 10))
		}
		if len(args) == 1 {
			key, err := loopKey(c, args[0])
			if err != nil {
				return err
			}
			q.Set("loop", key)
		}
		var out struct {
			Evidence []*loop.Evidence `json:"evidence"`
		}
		if done, err := getData(e, c, "/api/v1/evidence?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		return table(e.stdout, evidenceHeader, evidenceRows(out.Evidence))
	}
}

func ctlLoopExplain(fs *flag.FlagSet) ctlRun {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID (an evidence record's id, from ctl loop evidence)"); err != nil {
			return err
		}
		id, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || id < 1 {
			return usagef("%q: an evidence id is a positive number", args[0])
		}
		return explainEvidence(e, c, id, *asJSON)
	}
}

func explainEvidence(e *env, c *ctlConn, id int64, asJSON bool) error {
	var out struct {
		Evidence loop.Evidence `json:"evidence"`
	}
	if done, err := getData(e, c, "/api/v1/evidence/"+strconv.FormatInt(id, 10), asJSON, &out); done || err != nil {
		return err
	}
	writeExplain(e.stdout, &out.Evidence)
	return nil
}

// writeExplain tells the whole story of one decision.
func writeExplain(w io.Writer, ev *loop.Evidence) {
	fmt.Fprintf(w, "evidence %d: %s\n", ev.ID, loop.KindText(ev.Kind))
	fmt.Fprintf(w, "  loop        %s version %d (%s), definition digest %s\n", ev.Loop, ev.Version, ev.Mode, short(ev.Digest, 16))
	fmt.Fprintf(w, "  object      %s\n", ev.Object)
	fmt.Fprintf(w, "  decided     %s\n", timeText(ev.At))
	if ev.Origin != "" {
		fmt.Fprintf(w, "  decided by  the loop at edge %s (its record %d)\n", ev.Origin, ev.OriginID)
	}
	fmt.Fprintf(w, "  state       %s\n", ev.State)

	fmt.Fprintln(w, "\ninputs")
	writeValues(w, "features", ev.Features)
	writeValues(w, "detector", ev.Detector)
	writeValues(w, "current", ev.Current)
	if m := ev.Model; m != nil {
		name := m.ID
		if m.Version != "" {
			name += "@" + m.Version
		}
		switch {
		case m.Error != "":
			fmt.Fprintf(w, "  model       %s: no scores: %s\n", name, m.Error)
		case m.Skipped != "":
			fmt.Fprintf(w, "  model       %s: not called: %s\n", name, m.Skipped)
		default:
			fmt.Fprintf(w, "  model       %s: %s\n", name, numbersText(m.Scores))
		}
	}
	fmt.Fprintf(w, "  digest      %s\n", ev.InputsDigest)

	if len(ev.Guards) > 0 {
		fmt.Fprintln(w, "\nguards")
		rows := make([][]string, 0, len(ev.Guards))
		for _, g := range ev.Guards {
			rows = append(rows, []string{"  " + g.Guard, string(g.Outcome), guardDetail(g)})
		}
		table(w, []string{"  GUARD", "RESULT", "DETAIL"}, rows)
		if ev.Refusal != "" && ev.State != loop.StateAwaiting {
			fmt.Fprintf(w, "  refused by  %s\n", ev.Refusal)
		}
	}

	if a := ev.Action; a != nil {
		fmt.Fprintln(w, "\naction")
		if a.Command != "" {
			fmt.Fprintf(w, "  command     %s %s\n", a.Command, fieldsText(a.Args))
		} else {
			fmt.Fprintf(w, "  desired     %s\n", fieldsText(a.Desired))
		}
		if len(a.Values) > 0 {
			fmt.Fprintf(w, "  after the guards  %s\n", numbersText(a.Values))
		}
		if a.CommandID != "" {
			fmt.Fprintf(w, "  command id  %s (ctl command get %s)\n", a.CommandID, a.CommandID)
		}
		if a.Version > 0 {
			fmt.Fprintf(w, "  desired state version %d\n", a.Version)
		}
		if a.SentAt != nil {
			fmt.Fprintf(w, "  sent        %s\n", timeText(*a.SentAt))
		}
		if a.VerifyBy != nil {
			fmt.Fprintf(w, "  verify by   %s\n", timeText(*a.VerifyBy))
		}
	}
	if ev.Alarm != "" || ev.Event != "" {
		fmt.Fprintln(w)
	}
	if ev.Alarm != "" {
		fmt.Fprintf(w, "alarm         %s", ev.Alarm)
		if alarm.IsID(ev.Alarm) {
			fmt.Fprintf(w, " (ctl alarm show %s)", ev.Alarm)
		}
		fmt.Fprintln(w)
	}
	if ev.Event != "" {
		fmt.Fprintf(w, "event         %s\n", ev.Event)
	}

	if ap := ev.Approval; ap != nil {
		who := "any operator but the requester"
		if len(ap.Approvers) > 0 {
			who = strings.Join(ap.Approvers, ", ")
		}
		fmt.Fprintf(w, "\napproval: %d required of %s, until %s\n", ap.Required, who, timeText(ap.Expires))
		if len(ap.Votes) == 0 {
			fmt.Fprintln(w, "  no votes")
		} else {
			rows := make([][]string, 0, len(ap.Votes))
			for _, v := range ap.Votes {
				rows = append(rows, []string{"  " + timeText(v.At), v.By, voteText(v), v.Note})
			}
			table(w, []string{"  TIME", "BY", "VOTE", "NOTE"}, rows)
		}
	}

	fmt.Fprintln(w, "\nsteps")
	rows := make([][]string, 0, len(ev.Steps))
	for _, s := range ev.Steps {
		rows = append(rows, []string{"  " + timeText(s.At), s.State, s.Detail})
	}
	table(w, []string{"  TIME", "STATE", "DETAIL"}, rows)

	fmt.Fprintln(w)
	switch {
	case ev.Error != "":
		fmt.Fprintf(w, "outcome: %s, %s\n", ev.State, ev.Error)
	case ev.Outcome != "":
		fmt.Fprintf(w, "outcome: %s, %s\n", ev.State, ev.Outcome)
	case !loop.Final(ev.State):
		fmt.Fprintf(w, "outcome: not yet (%s)\n", ev.State)
	default:
		fmt.Fprintf(w, "outcome: %s\n", ev.State)
	}
}

func voteText(v guard.Vote) string {
	if v.Approve {
		return "approve"
	}
	return "reject"
}

func guardDetail(g guard.Result) string {
	d := g.Detail
	if len(g.Inputs) > 0 {
		d += " (inputs: " + fieldsText(g.Inputs) + ")"
	}
	return d
}

// writeValues writes one group of named numbers on one line.
func writeValues(w io.Writer, name string, vals map[string]float64) {
	if len(vals) == 0 {
		return
	}
	fmt.Fprintf(w, "  %-11s %s\n", name, numbersText(vals))
}

func numbersText(vals map[string]float64) string {
	parts := make([]string, 0, len(vals))
	for _, k := range slices.Sorted(mapKeys(vals)) {
		parts = append(parts, k+"="+num(vals[k]))
	}
	return strings.Join(parts, " ")
}

func fieldsText(vals map[string]any) string {
	parts := make([]string, 0, len(vals))
	for _, k := range slices.Sorted(mapKeys(vals)) {
		v := vals[k]
		if f, ok := v.(float64); ok {
			parts = append(parts, k+"="+num(f))
		} else {
			parts = append(parts, k+"="+valueText(v))
		}
	}
	return strings.Join(parts, " ")
}

func ctlLoopApprovals(fs *flag.FlagSet) ctlRun {
	tenant := fs.String("tenant", "", "only this tenant's")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		q := addFilters(url.Values{}, map[string]string{"tenant": *tenant})
		var out struct {
			Approvals []*loop.Evidence `json:"approvals"`
		}
		if done, err := getData(e, c, "/api/v1/approvals?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Approvals))
		for _, ev := range out.Approvals {
			action, votes, until := "", "", ""
			if a := ev.Action; a != nil {
				if a.Command != "" {
					action = a.Command + " " + fieldsText(a.Args)
				} else {
					action = "desired " + fieldsText(a.Desired)
				}
			}
			if ap := ev.Approval; ap != nil {
				n := 0
				for _, v := range ap.Votes {
					if v.Approve {
						n++
					}
				}
				votes = fmt.Sprintf("%d of %d", n, ap.Required)
				until = timeText(ap.Expires)
			}
			rows = append(rows, []string{strconv.FormatInt(ev.ID, 10), timeText(ev.At), fmt.Sprintf("%s@%d", ev.Loop, ev.Version), ev.Object, action, votes, until})
		}
		return table(e.stdout, []string{"ID", "TIME", "LOOP", "OBJECT", "ACTION", "APPROVED", "EXPIRES"}, rows)
	}
}

func ctlLoopVote(approve bool) func(fs *flag.FlagSet) ctlRun {
	return func(fs *flag.FlagSet) ctlRun {
		note := fs.String("note", "", "a note kept with the vote")
		asJSON := fs.Bool("json", false, "print the hub's JSON answer")
		return func(e *env, c *ctlConn, args []string) error {
			if err := needArgs(args, 1, "ID (from ctl loop approvals)"); err != nil {
				return err
			}
			if _, err := strconv.ParseInt(args[0], 10, 64); err != nil {
				return usagef("%q: an evidence id is a number", args[0])
			}
			verb := "approve"
			if !approve {
				verb = "reject"
			}
			var out struct {
				Evidence loop.Evidence `json:"evidence"`
			}
			if done, err := callData(e, c, "POST", "/api/v1/evidence/"+args[0]+"/"+verb, map[string]string{"note": *note}, *asJSON, &out); done || err != nil {
				return err
			}
			ev := out.Evidence
			detail := ""
			if n := len(ev.Steps); n > 0 && ev.Steps[n-1].Detail != "" {
				detail = ": " + ev.Steps[n-1].Detail
			}
			fmt.Fprintf(e.stdout, "evidence %d (%s, %s) is %s%s\n", ev.ID, ev.Loop, ev.Object, ev.State, detail)
			return nil
		}
	}
}

func ctlLoopBypass(fs *flag.FlagSet) ctlRun {
	g := fs.String("guard", "", "the guard: permissive[:NAME], interlock[:NAME], bounds[:VALUE], max_step[:VALUE], max_rate[:VALUE], rate_limit[:object|:actuator] or cooldown")
	dur := fs.String("for", "", "how long it lasts once approved, e.g. 30m (at most 24h)")
	reason := fs.String("reason", "", "why (required)")
	object := fs.String("object", "", "only for this object (default: every object of the loop)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "KEY (tenant:id)"); err != nil {
			return err
		}
		switch {
		case *g == "":
			return usagef("--guard is required")
		case *dur == "":
			return usagef("--for is required: how long the bypass lasts, e.g. 30m")
		case strings.TrimSpace(*reason) == "":
			return usagef("--reason is required: a bypass says why")
		}
		if d, err := time.ParseDuration(*dur); err != nil || d <= 0 {
			return usagef("--for %q: want a positive duration such as 30m", *dur)
		}
		key, err := loopKey(c, args[0])
		if err != nil {
			return err
		}
		var out struct {
			Bypass loop.Bypass `json:"bypass"`
		}
		body := map[string]string{"guard": *g, "duration": *dur, "reason": *reason, "object": *object}
		if done, err := callData(e, c, "POST", loopPath(key, "/bypasses"), body, *asJSON, &out); done || err != nil {
			return err
		}
		b := out.Bypass
		fmt.Fprintf(e.stdout, "bypass %d of %s on %s%s for %s: %s; in force once someone else approves it (ctl loop bypass-approve %d)\n",
			b.ID, b.Guard, b.Loop, objectText(b.Object), durationText(b.DurationS), b.State, b.ID)
		return nil
	}
}

func objectText(o string) string {
	if o == "" {
		return ""
	}
	return " for " + o
}

func durationText(seconds float64) string {
	return time.Duration(seconds * float64(time.Second)).Round(time.Second).String()
}

func ctlLoopBypasses(fs *flag.FlagSet) ctlRun {
	all := fs.Bool("all", false, "ended, rejected and expired ones too")
	tenant := fs.String("tenant", "", "only this tenant's")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		q := addFilters(url.Values{}, map[string]string{"tenant": *tenant})
		if *all {
			q.Set("all", "true")
		}
		var out struct {
			Bypasses []*loop.Bypass `json:"bypasses"`
		}
		if done, err := getData(e, c, "/api/v1/bypasses?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Bypasses))
		for _, b := range out.Bypasses {
			until := "-"
			if b.Until != nil {
				until = timeText(*b.Until)
			}
			var by []string
			for _, v := range b.Votes {
				by = append(by, v.By+" "+voteText(v))
			}
			rows = append(rows, []string{strconv.FormatInt(b.ID, 10), b.Loop, orDash(b.Object), b.Guard, b.State, durationText(b.DurationS),
				b.RequestedBy, orDash(strings.Join(by, ", ")), until, b.Reason})
		}
		return table(e.stdout, []string{"ID", "LOOP", "OBJECT", "GUARD", "STATE", "FOR", "REQUESTED BY", "VOTES", "UNTIL", "REASON"}, rows)
	}
}

// ctlBypassAction approves, rejects or ends a bypass.
func ctlBypassAction(action string) func(fs *flag.FlagSet) ctlRun {
	return func(fs *flag.FlagSet) ctlRun {
		var note *string
		if action != "end" {
			note = fs.String("note", "", "a note kept with the vote")
		}
		asJSON := fs.Bool("json", false, "print the hub's JSON answer")
		return func(e *env, c *ctlConn, args []string) error {
			if err := needArgs(args, 1, "ID (from ctl loop bypasses)"); err != nil {
				return err
			}
			if _, err := strconv.ParseInt(args[0], 10, 64); err != nil {
				return usagef("%q: a bypass id is a number", args[0])
			}
			var in any
			if note != nil {
				in = map[string]string{"note": *note}
			}
			var out struct {
				Bypass loop.Bypass `json:"bypass"`
			}
			if done, err := callData(e, c, "POST", "/api/v1/bypasses/"+args[0]+"/"+action, in, *asJSON, &out); done || err != nil {
				return err
			}
			b := out.Bypass
			fmt.Fprintf(e.stdout, "bypass %d of %s on %s%s is %s", b.ID, b.Guard, b.Loop, objectText(b.Object), b.State)
			if b.Until != nil && b.State == "active" {
				fmt.Fprintf(e.stdout, " until %s", timeText(*b.Until))
			}
			fmt.Fprintln(e.stdout)
			return nil
		}
	}
}

func ctlLoopCompare(fs *flag.FlagSet) ctlRun {
	since := sinceFlag(fs, "24h")
	window := fs.String("window", "1m", "how far apart two decisions may be to count as the same")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 2, "SHADOW_KEY ACTIVE_KEY"); err != nil {
			return err
		}
		if d, err := time.ParseDuration(*since); err != nil || d <= 0 {
			return usagef("--since %q: want a positive duration such as 24h", *since)
		}
		if d, err := time.ParseDuration(*window); err != nil || d <= 0 {
			return usagef("--window %q: want a positive duration such as 1m", *window)
		}
		shadow, err := loopKey(c, args[0])
		if err != nil {
			return err
		}
		active, err := loopKey(c, args[1])
		if err != nil {
			return err
		}
		q := url.Values{"with": {active}, "since": {*since}, "window": {*window}}
		var out loop.Comparison
		if done, err := getData(e, c, loopPath(shadow, "/compare?"+q.Encode()), *asJSON, &out); done || err != nil {
			return err
		}
		w := e.stdout
		fmt.Fprintf(w, "%s beside %s since %s (same decision: within %s)\n", out.Shadow, out.Active, timeText(out.Since), durationText(out.WindowS))
		fmt.Fprintf(w, "both %d, only %s %d, only %s %d", out.Both, out.Shadow, out.ShadowOnly, out.Active, out.ActiveOnly)
		if n := out.Both + out.ShadowOnly + out.ActiveOnly; n > 0 {
			fmt.Fprintf(w, ": agreement %.1f %%\n\n", out.Agreement*100)
		} else {
			fmt.Fprintln(w, ": neither loop acted in that time")
			return nil
		}
		rows := make([][]string, 0, len(out.Objects))
		for _, o := range out.Objects {
			rows = append(rows, []string{o.Object, strconv.Itoa(o.Both), strconv.Itoa(o.ShadowOnly), strconv.Itoa(o.ActiveOnly)})
		}
		return table(w, []string{"OBJECT", "BOTH", "SHADOW ONLY", "ACTIVE ONLY"}, rows)
	}
}

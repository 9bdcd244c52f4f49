package cli

// The model registry from the command line: `wanwu ctl ml
// register|list|show|deploy|promote|rollback|rollouts|rollout`
// (`ctl model` is the thing models').

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

func mlPath(id, suffix string) string { return "/api/v1/ml/models/" + url.PathEscape(id) + suffix }

func ctlMLRegister(fs *flag.FlagSet) ctlRun {
	metaFile := fs.String("meta", "", "the model document (JSON, package ml's Meta)")
	onnxFile := fs.String("onnx", "", "the ONNX model")
	tenant := fs.String("tenant", "", "the model's tenant (default: the token's)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "none (the model is --meta FILE --onnx FILE)"); err != nil {
			return err
		}
		if *metaFile == "" || *onnxFile == "" {
			return usagef("--meta FILE and --onnx FILE are required")
		}
		meta, err := os.ReadFile(*metaFile)
		if err != nil {
			return err
		}
		if !json.Valid(meta) {
			return fmt.Errorf("%s: not JSON", *metaFile)
		}
		model, err := os.ReadFile(*onnxFile)
		if err != nil {
			return err
		}
		path := "/api/v1/ml/models"
		if *tenant != "" {
			path += "?tenant=" + url.QueryEscape(*tenant)
		}
		var out struct {
			Model   mlreg.Record `json:"model"`
			Created bool         `json:"created"`
		}
		in := map[string]any{"meta": json.RawMessage(meta), "onnx": model}
		if done, err := callData(e, c, "POST", path, in, *asJSON, &out); done || err != nil {
			return err
		}
		verb := "registered"
		if !out.Created {
			verb = "unchanged: registered before with the same content"
		}
		m := out.Model
		fmt.Fprintf(e.stdout, "model %s/%s version %s (%s)\nonnx  %d bytes, sha256 %s\nmeta  sha256 %s\n",
			m.Tenant, m.ID, m.Version, verb, m.Size, m.ONNXSHA256, m.MetaSHA256)
		return nil
	}
}

func ctlMLList(fs *flag.FlagSet) ctlRun {
	tenant := fs.String("tenant", "", "only this tenant's models")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		q := addFilters(url.Values{}, map[string]string{"tenant": *tenant})
		var out struct {
			Models []mlreg.Record `json:"models"`
		}
		if done, err := getData(e, c, "/api/v1/ml/models?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Models))
		for _, m := range out.Models {
			rows = append(rows, []string{m.Tenant, m.ID, m.Version, strconv.Itoa(m.Size), m.ONNXSHA256[:min(12, len(m.ONNXSHA256))], m.Actor, timeText(m.CreatedAt)})
		}
		return table(e.stdout, []string{"TENANT", "MODEL", "VERSION", "BYTES", "ONNX SHA256", "BY", "CREATED"}, rows)
	}
}

func ctlMLShow(fs *flag.FlagSet) ctlRun {
	version := fs.String("version", "", "this version (default: the newest)")
	tenant := fs.String("tenant", "", "the model's tenant (needed only when several have a model of this id)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID"); err != nil {
			return err
		}
		v := *version
		if v == "" {
			v = "latest"
		}
		path := mlPath(args[0], "/versions/"+url.PathEscape(v))
		if *tenant != "" {
			path += "?tenant=" + url.QueryEscape(*tenant)
		}
		var out struct {
			Model    mlreg.Record                   `json:"model"`
			Figures  map[string]*mlreg.VersionStats `json:"figures"`
			Rollouts []rollout.Plan                 `json:"rollouts"`
		}
		if done, err := getData(e, c, path, *asJSON, &out); done || err != nil {
			return err
		}
		m := out.Model
		w := e.stdout
		fmt.Fprintf(w, "model      %s/%s version %s\n", m.Tenant, m.ID, m.Version)
		fmt.Fprintf(w, "created    %s by %s\n", timeText(m.CreatedAt), m.Actor)
		fmt.Fprintf(w, "onnx       %d bytes, sha256 %s\n", m.Size, m.ONNXSHA256)
		fmt.Fprintf(w, "meta       sha256 %s\n", m.MetaSHA256)
		fmt.Fprintf(w, "signature  %x\n", m.Signature)
		if m.LatencyUS > 0 {
			fmt.Fprintf(w, "latency    %d µs per inference expected (trial inferences when the hub stored it)\n", m.LatencyUS)
		}
		y, err := yamlOf(m.Meta)
		if err != nil {
			return fmt.Errorf("the meta: %w", err)
		}
		fmt.Fprintf(w, "\n%s", y)
		mlFigures(w, out.Figures)
		for _, p := range out.Rollouts {
			role := "candidate"
			if p.Baseline == m.Version {
				role = "baseline"
			}
			fmt.Fprintf(w, "rollout    %s (%s, %s): wanwu ctl ml rollout %s\n", p.ID, role, p.State, p.ID)
		}
		return nil
	}
}

// mlFigures prints a version's figures by node (ctl ml show).
func mlFigures(w io.Writer, figures map[string]*mlreg.VersionStats) {
	if len(figures) == 0 {
		fmt.Fprintf(w, "\nfigures    none yet: the version has not scored at the hub, and no edge reported it\n")
		return
	}
	fmt.Fprintf(w, "\n")
	rows := [][]string{}
	for _, node := range slices.Sorted(maps.Keys(figures)) {
		f := figures[node]
		if f == nil {
			continue
		}
		var psi []string
		for _, in := range slices.Sorted(maps.Keys(f.PSI)) {
			if f.PSI[in] >= 0.1 {
				psi = append(psi, fmt.Sprintf("%s=%.2f", in, f.PSI[in]))
			}
		}
		drift := "none over 0.1"
		if len(f.PSI) == 0 {
			drift = "-"
		} else if len(psi) > 0 {
			drift = strings.Join(psi, " ")
		}
		var flagged []string
		for _, name := range slices.Sorted(maps.Keys(f.Flagged)) {
			flagged = append(flagged, fmt.Sprintf("%s %.1f%%", name, 100*f.Flagged[name]))
		}
		rows = append(rows, []string{node, strconv.FormatInt(f.OK, 10), strconv.FormatInt(f.Errors, 10), fmt.Sprintf("%.2f", f.PerSecond),
			fmt.Sprintf("%.3f / %.3f", f.LatencyMS["p50"], f.LatencyMS["p99"]),
			fmt.Sprintf("%.3g / %.3g / %.3g", f.Score["p50"], f.Score["p90"], f.Score["p99"]), strings.Join(flagged, " "), drift})
	}
	_ = table(w, []string{"NODE", "OK", "ERRORS", "PER S", "LATENCY MS P50/P99", "SCORE P50/P90/P99", "FLAGGED", "INPUT DRIFT (PSI)"}, rows)
}

func rolloutPath(id, suffix string) string {
	return "/api/v1/ml/rollouts/" + url.PathEscape(id) + suffix
}

func ctlMLDeploy(fs *flag.FlagSet) ctlRun {
	version := fs.String("version", "", "the candidate version (required)")
	baseline := fs.String("baseline", "", "the version it replaces (default: the version in effect)")
	edges := fs.String("edges", "", "comma-separated edge codes to stage it at")
	allEdges := fs.Bool("all-edges", false, "every edge whose loops use the model")
	atHub := fs.Bool("at-hub", false, "the loops the hub runs")
	sites := fs.String("sites", "", "comma-separated sites (tenant:site): only their objects; alone, wherever they run")
	canary := fs.Float64("canary", rollout.DefaultFraction, "share of the objects whose decisions the candidate makes at the canary stage")
	canaryObjects := fs.String("canary-objects", "", "comma-separated object codes always in the canary")
	shadowFor := fs.Duration("shadow-for", rollout.DefaultMinDuration, "shadow lasts at least this long")
	canaryFor := fs.Duration("canary-for", rollout.DefaultMinDuration, "canary lasts at least this long")
	minSamples := fs.Int("min-samples", rollout.DefaultMinSamples, "inferences a stage needs before promotion")
	judgeAfter := fs.Int("judge-after", rollout.DefaultJudgeAfter, "inferences before a failing gate rolls back")
	var gates gateFlags
	fs.Var(&gates, "gate", "FIGURE=MAX, repeatable (error_rate, latency_p99_ms, score_shift, disagreement, false_alarm_rate; default all of them)")
	tenant := fs.String("tenant", "", "the model's tenant (default: the token's)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ID (the model)"); err != nil {
			return err
		}
		if *version == "" {
			return usagef("--version is required")
		}
		plan := map[string]any{
			"artifact": args[0], "version": *version, "baseline": *baseline,
			"targets": map[string]any{"hub": *atHub, "all_edges": *allEdges, "edges": splitList(*edges), "sites": splitList(*sites)},
			"canary":  map[string]any{"fraction": *canary, "objects": splitList(*canaryObjects)},
			"stages": map[string]any{"shadow": map[string]any{"min_samples": *minSamples, "min_duration": shadowFor.String()},
				"canary": map[string]any{"min_samples": *minSamples, "min_duration": canaryFor.String()}, "judge_after": *judgeAfter},
		}
		if len(gates) > 0 {
			plan["gates"] = gates
		}
		path := "/api/v1/ml/rollouts"
		if *tenant != "" {
			path += "?tenant=" + url.QueryEscape(*tenant)
		}
		var out struct {
			Rollout rollout.Plan `json:"rollout"`
		}
		if done, err := callData(e, c, "POST", path, plan, *asJSON, &out); done || err != nil {
			return err
		}
		p := out.Rollout
		base := p.Baseline
		if base == "" {
			base = "none"
		}
		fmt.Fprintf(e.stdout, "rollout %s: %s version %s (baseline %s) in shadow at %s\n", p.ID, p.Artifact, p.Version, base, p.Targets.String())
		fmt.Fprintf(e.stdout, "follow it: wanwu ctl ml rollout %s\n", p.ID)
		return nil
	}
}

// gateFlags collects --gate FIGURE=MAX.
type gateFlags map[string]rollout.Gate

func (g *gateFlags) String() string { return fmt.Sprint(map[string]rollout.Gate(*g)) }

func (g *gateFlags) Set(s string) error {
	name, v, ok := strings.Cut(s, "=")
	max, err := strconv.ParseFloat(v, 64)
	if !ok || err != nil {
		return fmt.Errorf("want FIGURE=MAX, got %q", s)
	}
	if *g == nil {
		*g = gateFlags{}
	}
	(*g)[name] = rollout.Gate{Max: max}
	return nil
}

func ctlMLForce(back bool) func(fs *flag.FlagSet) ctlRun {
	return func(fs *flag.FlagSet) ctlRun {
		node := fs.String("node", "", "only this node (an edge's code, or hub); default: every target")
		reason := fs.String("reason", "", "why (audited)")
		to := ""
		if !back {
			fs.StringVar(&to, "to", rollout.Active, "the stage: canary or active")
		}
		asJSON := fs.Bool("json", false, "print the hub's JSON answer")
		return func(e *env, c *ctlConn, args []string) error {
			if err := needArgs(args, 1, "ROLLOUT (ro-N)"); err != nil {
				return err
			}
			verb, body := "promote", map[string]any{"node": *node, "reason": *reason, "stage": to}
			if back {
				verb = "rollback"
				delete(body, "stage")
			}
			var out struct {
				Rollout rollout.Plan `json:"rollout"`
			}
			if done, err := callData(e, c, "POST", rolloutPath(args[0], "/"+verb), body, *asJSON, &out); done || err != nil {
				return err
			}
			where := "every target"
			if *node != "" {
				where = *node
			}
			stage := to
			if back {
				stage = rollout.RolledBack
			}
			fmt.Fprintf(e.stdout, "rollout %s: %s at %s (the nodes move at their next evaluation); rollout %s\n", out.Rollout.ID, stage, where, out.Rollout.State)
			return nil
		}
	}
}

func ctlMLRollouts(fs *flag.FlagSet) ctlRun {
	tenant := fs.String("tenant", "", "only this tenant's")
	model := fs.String("model", "", "only this model's")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		q := addFilters(url.Values{}, map[string]string{"tenant": *tenant, "model": *model})
		var out struct {
			Rollouts []rollout.Plan `json:"rollouts"`
		}
		if done, err := getData(e, c, "/api/v1/ml/rollouts?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		rows := [][]string{}
		for _, p := range out.Rollouts {
			rows = append(rows, []string{p.ID, p.Tenant, p.Artifact, p.Version, p.Baseline, p.State, p.Targets.String(), p.CreatedBy, timeText(p.CreatedAt)})
		}
		return table(e.stdout, []string{"ROLLOUT", "TENANT", "MODEL", "VERSION", "BASELINE", "STATE", "TARGETS", "BY", "CREATED"}, rows)
	}
}

func ctlMLRollout(fs *flag.FlagSet) ctlRun {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "ROLLOUT (ro-N)"); err != nil {
			return err
		}
		var v struct {
			Rollout rollout.Plan        `json:"rollout"`
			Nodes   []rollout.NodeState `json:"nodes"`
			Records []rollout.Record    `json:"records"`
		}
		if done, err := getData(e, c, rolloutPath(args[0], ""), *asJSON, &v); done || err != nil {
			return err
		}
		p, w := v.Rollout, e.stdout
		fmt.Fprintf(w, "rollout    %s: %s/%s version %s replacing %s\n", p.ID, p.Tenant, p.Artifact, p.Version, orDash(p.Baseline))
		fmt.Fprintf(w, "state      %s (revision %d), created %s by %s\n", p.State, p.Rev, timeText(p.CreatedAt), p.CreatedBy)
		fmt.Fprintf(w, "targets    %s; canary %.0f%% of the objects%s\n", p.Targets.String(), 100*p.Canary.Fraction, listText(" and ", p.Canary.Objects))
		fmt.Fprintf(w, "stages     shadow ≥ %d samples and %s; canary ≥ %d samples and %s; gates judged after %d\n",
			p.Stages.Shadow.MinSamples, p.Stages.Shadow.MinDuration.D(), p.Stages.Canary.MinSamples, p.Stages.Canary.MinDuration.D(), p.Stages.JudgeAfter)
		var gates []string
		for _, name := range slices.Sorted(maps.Keys(p.Gates)) {
			gates = append(gates, fmt.Sprintf("%s ≤ %g", name, p.Gates[name].Max))
		}
		fmt.Fprintf(w, "gates      %s\n", strings.Join(gates, ", "))
		if p.Force != nil {
			fmt.Fprintf(w, "forced     %s by %s at %s: %s\n", p.Force.Stage, p.Force.By, timeText(p.Force.At), p.Force.Reason)
		}
		fmt.Fprintln(w)
		rows := [][]string{}
		for _, n := range v.Nodes {
			rows = append(rows, []string{n.Node, n.Stage, timeText(n.Since)})
		}
		if err := table(w, []string{"NODE", "STAGE", "SINCE"}, rows); err != nil {
			return err
		}
		fmt.Fprintln(w)
		rows = rows[:0]
		for _, r := range v.Records {
			var figs []string
			for _, name := range slices.Sorted(maps.Keys(r.Figures.Values)) {
				figs = append(figs, fmt.Sprintf("%s=%.3g", name, r.Figures.Values[name]))
			}
			rows = append(rows, []string{timeText(r.At), r.Node, orDash(r.From) + " → " + r.To, strconv.Itoa(r.Figures.Samples), strings.Join(figs, " "), r.Reason})
		}
		return table(w, []string{"AT", "NODE", "STAGE", "SAMPLES", "FIGURES", "WHY"}, rows)
	}
}

func listText(prefix string, xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return prefix + strings.Join(xs, ", ")
}

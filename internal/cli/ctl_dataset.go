package cli

// The learning loop's data from the command line: captured windows and
// their labels (`wanwu ctl ml windows|window|capture|label|train`) and
// dataset versions (`wanwu ctl dataset build|list|show|export`).

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/learn"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
)

func tenantQuery(tenant string) string {
	if tenant == "" {
		return ""
	}
	return "?tenant=" + url.QueryEscape(tenant)
}

func ctlMLWindows(fs *flag.FlagSet) ctlRun {
	tenant := fs.String("tenant", "", "the tenant (needed with a deployment-wide token)")
	object := fs.String("object", "", "one object's")
	reason := fs.String("reason", "", "alarm, decision or request")
	loop := fs.String("loop", "", "one loop's")
	unlabelled := fs.Bool("unlabelled", false, "only windows without a label (the label queue)")
	limit := fs.Int("limit", 100, "at most this many")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		q := addFilters(url.Values{}, map[string]string{"tenant": *tenant, "object": *object, "reason": *reason, "loop": *loop, "limit": strconv.Itoa(*limit)})
		if *unlabelled {
			q.Set("unlabelled", "true")
		}
		var out struct {
			Windows []dataset.Window `json:"windows"`
		}
		if done, err := getData(e, c, "/api/v1/ml/windows?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		rows := [][]string{}
		for _, w := range out.Windows {
			raw := "summaries"
			if w.Raw {
				raw = "raw"
			}
			rows = append(rows, []string{w.ID, w.Object, w.Reason, orDash(w.Ref), orDash(w.Loop), timeText(w.From), w.To.Sub(w.From).String(),
				fmt.Sprintf("%d (%s)", len(w.Summary), raw), w.Classification, orDash(w.Edge)})
		}
		return table(e.stdout, []string{"WINDOW", "OBJECT", "REASON", "REF", "LOOP", "FROM", "SPAN", "PROPERTIES", "CLASS", "EDGE"}, rows)
	}
}

func ctlMLWindow(fs *flag.FlagSet) ctlRun {
	tenant := fs.String("tenant", "", "the tenant (needed with a deployment-wide token)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "WINDOW"); err != nil {
			return err
		}
		var out struct {
			Window dataset.Window   `json:"window"`
			Labels []*dataset.Label `json:"labels"`
		}
		if done, err := getData(e, c, "/api/v1/ml/windows/"+url.PathEscape(args[0])+tenantQuery(*tenant), *asJSON, &out); done || err != nil {
			return err
		}
		w, o := out.Window, e.stdout
		fmt.Fprintf(o, "window     %s: %s, %s %s\n", w.ID, w.Object, w.Reason, w.Ref)
		fmt.Fprintf(o, "span       %s to %s (%s), captured %s%s\n", timeText(w.From), timeText(w.To), w.To.Sub(w.From), timeText(w.CapturedAt), listText(" at ", nonEmpty(w.Edge)))
		fmt.Fprintf(o, "model      %s; classification %s; loop %s\n", orDash(w.Model), w.Classification, orDash(w.Loop))
		var feats []string
		for _, k := range slices.Sorted(maps.Keys(w.Features)) {
			feats = append(feats, fmt.Sprintf("%s=%s", k, num(w.Features[k])))
		}
		if len(feats) > 0 {
			fmt.Fprintf(o, "features   %s\n", strings.Join(feats, " "))
		}
		rows := [][]string{}
		for _, p := range slices.Sorted(maps.Keys(w.Summary)) {
			s := w.Summary[p]
			kept := "raw"
			if len(w.Series[p]) == 0 {
				kept = "summary only"
			}
			rows = append(rows, []string{p, strconv.Itoa(s.N), num(s.Mean), num(s.Min), num(s.Max), num(s.Std), kept})
		}
		fmt.Fprintln(o)
		if err := table(o, []string{"PROPERTY", "N", "MEAN", "MIN", "MAX", "STD", "SERIES"}, rows); err != nil {
			return err
		}
		fmt.Fprintln(o)
		if len(out.Labels) == 0 {
			fmt.Fprintf(o, "no label: wanwu ctl ml label %s --kind true_positive|false_positive|normal\n", w.ID)
		}
		for _, l := range out.Labels {
			fmt.Fprintf(o, "label      %s%s by %s at %s%s\n", l.Kind, listText(" ", nonEmpty(l.Class)), l.By, timeText(l.At), listText(": ", nonEmpty(l.Note)))
		}
		return nil
	}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func ctlMLCapture(fs *flag.FlagSet) ctlRun {
	minutes := fs.Float64("minutes", 5, "the last this many minutes")
	note := fs.String("note", "", "why (kept as a normal label's note)")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "OBJECT"); err != nil {
			return err
		}
		var out struct {
			Window dataset.Window `json:"window"`
		}
		if _, err := c.json("POST", "/api/v1/ml/windows/capture", map[string]any{"object": args[0], "minutes": *minutes, "note": *note}, &out); err != nil {
			return err
		}
		w := out.Window
		fmt.Fprintf(e.stdout, "window %s: %s, %d properties over %s (%s)\n", w.ID, w.Object, len(w.Summary), w.To.Sub(w.From), w.Classification)
		return nil
	}
}

func ctlMLLabel(fs *flag.FlagSet) ctlRun {
	kind := fs.String("kind", "", "true_positive, false_positive, normal or class (required)")
	class := fs.String("class", "", "the class, with --kind class")
	note := fs.String("note", "", "a note")
	tenant := fs.String("tenant", "", "the tenant (needed with a deployment-wide token)")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "WINDOW"); err != nil {
			return err
		}
		if *kind == "" {
			return usagef("--kind is required")
		}
		var out struct {
			Label dataset.Label `json:"label"`
		}
		if _, err := c.json("POST", "/api/v1/ml/windows/"+url.PathEscape(args[0])+"/labels"+tenantQuery(*tenant),
			map[string]any{"kind": *kind, "class": *class, "note": *note}, &out); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "window %s labelled %s%s by %s\n", args[0], out.Label.Kind, listText(" ", nonEmpty(out.Label.Class)), out.Label.By)
		return nil
	}
}

// inputFlags collects --input NAME=PROPERTY.
type inputFlags []learn.Input

func (f *inputFlags) String() string { return fmt.Sprint([]learn.Input(*f)) }

func (f *inputFlags) Set(s string) error {
	name, prop, ok := strings.Cut(s, "=")
	if !ok || name == "" || prop == "" {
		return fmt.Errorf("want NAME=PROPERTY, got %q", s)
	}
	*f = append(*f, learn.Input{Name: name, Property: prop})
	return nil
}

func ctlMLTrain(fs *flag.FlagSet) ctlRun {
	ds := fs.String("dataset", "", "the dataset (required)")
	dsVersion := fs.String("dataset-version", "", "its version (default: the newest)")
	version := fs.Int("version", 0, "the model version to register (default: the next)")
	var inputs inputFlags
	fs.Var(&inputs, "input", "NAME=PROPERTY: the model input NAME (a loop feature) is the window property PROPERTY; repeat, in order")
	tenant := fs.String("tenant", "", "the tenant (needed with a deployment-wide token)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "MODEL (the id to register)"); err != nil {
			return err
		}
		if *ds == "" || len(inputs) == 0 {
			return usagef("--dataset and at least one --input NAME=PROPERTY are required")
		}
		var out struct {
			Model  mlreg.Record `json:"model"`
			Report learn.Report `json:"report"`
		}
		spec := learn.Spec{Dataset: *ds, DatasetVersion: *dsVersion, Model: args[0], Version: *version, Inputs: inputs}
		if done, err := callData(e, c, "POST", "/api/v1/ml/train"+tenantQuery(*tenant), spec, *asJSON, &out); done || err != nil {
			return err
		}
		r := out.Report
		fmt.Fprintf(e.stdout, "model %s version %s trained on %d rows of %d windows (%d faults kept to validate), threshold %s\n",
			out.Model.ID, out.Model.Version, r.Rows, r.Windows, r.FaultWindows, num(r.Threshold))
		fmt.Fprintf(e.stdout, "validation: %.2f%% of normal rows flagged", 100*r.NormalFlagged)
		if r.Recall >= 0 {
			fmt.Fprintf(e.stdout, ", %.0f%% of fault windows caught", 100*r.Recall)
		}
		fmt.Fprintf(e.stdout, "\nstage it: wanwu ctl ml deploy %s --version %s --all-edges\n", out.Model.ID, out.Model.Version)
		return nil
	}
}

func ctlDatasetBuild(fs *flag.FlagSet) ctlRun {
	object := fs.String("object", "", "only this object's windows")
	reason := fs.String("reason", "", "only alarm, decision or request windows")
	loop := fs.String("loop", "", "only this loop's")
	model := fs.String("model", "", "only this thing model's (id@version)")
	tenant := fs.String("tenant", "", "the tenant (needed with a deployment-wide token)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "NAME"); err != nil {
			return err
		}
		body := map[string]any{"name": args[0], "query": dataset.Query{Object: *object, Reason: *reason, Loop: *loop, Model: *model}}
		var out struct {
			Dataset dataset.Manifest `json:"dataset"`
		}
		if done, err := callData(e, c, "POST", "/api/v1/ml/datasets"+tenantQuery(*tenant), body, *asJSON, &out); done || err != nil {
			return err
		}
		return printManifest(e, &out.Dataset)
	}
}

func printManifest(e *env, m *dataset.Manifest) error {
	o := e.stdout
	fmt.Fprintf(o, "dataset    %s/%s version %d, built %s by %s\n", m.Tenant, m.Name, m.Version, timeText(m.CreatedAt), m.CreatedBy)
	fmt.Fprintf(o, "content    sha256 %s\n", m.ContentSHA256)
	fmt.Fprintf(o, "holds      %d windows, %d labels, %d points\n", m.Windows, m.Labels, m.Points)
	q := m.Quality
	fmt.Fprintf(o, "quality    completeness %.2f, timeliness %.2f, label coverage %.2f, agreement %.2f, class balance %.2f, duplicates %.2f\n",
		q.Completeness, q.Timeliness, q.LabelCoverage, q.LabelAgreement, q.ClassBalance, q.DuplicateRate)
	l := m.Lineage
	fmt.Fprintf(o, "lineage    %d objects, models %s, loops %s, edges %s, firmware %s, %s to %s\n", len(l.Devices),
		orDash(strings.Join(l.Models, ", ")), orDash(strings.Join(l.Loops, ", ")), orDash(strings.Join(l.Edges, ", ")),
		orDash(strings.Join(l.Firmware, ", ")), timeText(l.From), timeText(l.To))
	return nil
}

func ctlDatasetList(fs *flag.FlagSet) ctlRun {
	tenant := fs.String("tenant", "", "the tenant (needed with a deployment-wide token)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		var out struct {
			Datasets []dataset.Manifest `json:"datasets"`
		}
		if done, err := getData(e, c, "/api/v1/ml/datasets"+tenantQuery(*tenant), *asJSON, &out); done || err != nil {
			return err
		}
		rows := [][]string{}
		for _, m := range out.Datasets {
			rows = append(rows, []string{m.Name, strconv.Itoa(m.Version), strconv.Itoa(m.Windows), strconv.Itoa(m.Labels),
				fmt.Sprintf("%.2f", m.Quality.LabelCoverage), fmt.Sprintf("%.2f", m.Quality.Completeness), m.ContentSHA256[:12], timeText(m.CreatedAt)})
		}
		return table(e.stdout, []string{"DATASET", "VERSION", "WINDOWS", "LABELS", "LABELLED", "COMPLETE", "CONTENT", "BUILT"}, rows)
	}
}

func ctlDatasetShow(fs *flag.FlagSet) ctlRun {
	version := fs.String("version", "latest", "the version")
	tenant := fs.String("tenant", "", "the tenant (needed with a deployment-wide token)")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "NAME"); err != nil {
			return err
		}
		var out struct {
			Dataset dataset.Manifest `json:"dataset"`
		}
		path := "/api/v1/ml/datasets/" + url.PathEscape(args[0]) + "/versions/" + url.PathEscape(*version) + tenantQuery(*tenant)
		if done, err := getData(e, c, path, *asJSON, &out); done || err != nil {
			return err
		}
		return printManifest(e, &out.Dataset)
	}
}

func ctlDatasetExport(fs *flag.FlagSet) ctlRun {
	version := fs.String("version", "latest", "the version")
	out := fs.String("out", "", "the zip to write (required)")
	tenant := fs.String("tenant", "", "the tenant (needed with a deployment-wide token)")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "NAME"); err != nil {
			return err
		}
		if *out == "" {
			return usagef("--out FILE.zip is required")
		}
		path := "/api/v1/ml/datasets/" + url.PathEscape(args[0]) + "/versions/" + url.PathEscape(*version) + "/export" + tenantQuery(*tenant)
		raw, _, err := c.do("GET", path, nil, "")
		if err != nil {
			return err
		}
		if len(raw) < 4 || string(raw[:2]) != "PK" {
			return errors.New("the hub's answer is not a zip archive")
		}
		if err := os.WriteFile(*out, raw, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "wrote %s (%d bytes): manifest.json, windows.parquet, samples.parquet, summaries.parquet\n", *out, len(raw))
		return nil
	}
}

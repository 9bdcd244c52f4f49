package cli

// The model registry from the command line: `wanwu ctl ml register|list|show`
// (`ctl model` is the thing models').

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"

	"github.com/wanwu-iot/wanwu/internal/mlreg"
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
			Model mlreg.Record `json:"model"`
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
		y, err := yamlOf(m.Meta)
		if err != nil {
			return fmt.Errorf("the meta: %w", err)
		}
		fmt.Fprintf(w, "\n%s", y)
		return nil
	}
}

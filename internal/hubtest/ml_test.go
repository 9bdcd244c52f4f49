package hubtest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/console/consoletest"
	"github.com/wanwu-iot/wanwu/internal/hub"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
)

// TestMLRegistry registers the ml package's reference model through the
// API and reads it back: list, versions, one version (which verifies
// with the hub's public key), the same bytes; a viewer cannot register,
// a runtime refusal says why, and another tenant's token sees nothing.
func TestMLRegistry(t *testing.T) {
	h := Start(t)
	h.MustWanwu("ctl", "tenant", "create", "acme")
	h.MustWanwu("ctl", "tenant", "create", "beta")
	meta, err := os.ReadFile("../ml/testdata/pca8.meta.json")
	if err != nil {
		t.Fatal(err)
	}
	model, err := os.ReadFile("../ml/testdata/pca8.onnx")
	if err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"meta": rawJSON(meta), "onnx": model}
	viewer := mcToken(t, h, "ml-viewer", "viewer", "acme")
	operator := mcToken(t, h, "ml-operator", "operator", "acme")
	betaViewer := mcToken(t, h, "ml-beta", "viewer", "beta")

	if r := h.Do("POST", "/api/v1/ml/models", viewer, body); r.Status != http.StatusForbidden {
		t.Fatalf("a viewer registers: %d %s", r.Status, r.Body)
	}
	if r := h.Admin("POST", "/api/v1/ml/models", body); r.Status != http.StatusBadRequest {
		t.Fatalf("a deployment-wide token without ?tenant=: %d %s", r.Status, r.Body)
	}
	refused := h.Do("POST", "/api/v1/ml/models", operator, map[string]any{"meta": rawJSON(meta), "onnx": []byte("not onnx")})
	if refused.Status != http.StatusBadRequest || !bytes.Contains(refused.Body, []byte("not an ONNX model")) || !bytes.Contains(refused.Body, []byte(`"field": "onnx"`)) {
		t.Fatalf("not ONNX: %d %s", refused.Status, refused.Body)
	}

	var reg struct {
		Model   mlreg.Record `json:"model"`
		Created bool         `json:"created"`
	}
	r := h.Do("POST", "/api/v1/ml/models", operator, body)
	if r.Status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &reg)
	if reg.Model.Tenant != "acme" || reg.Model.ID != "pca8-reference" || reg.Model.Version != "1" || reg.Model.Actor != "ml-operator" || !reg.Created {
		t.Fatalf("registered %+v", reg)
	}
	if r := h.Do("POST", "/api/v1/ml/models", operator, body); r.Status != http.StatusOK {
		t.Fatalf("again, same content: %d %s", r.Status, r.Body)
	}

	var list struct {
		Models []mlreg.Record `json:"models"`
	}
	h.Do("GET", "/api/v1/ml/models", viewer, nil).JSON(t, &list)
	if len(list.Models) != 1 || list.Models[0].ONNXSHA256 != reg.Model.ONNXSHA256 {
		t.Fatalf("list: %+v", list)
	}
	var versions struct {
		Versions []mlreg.Record `json:"versions"`
	}
	h.Do("GET", "/api/v1/ml/models/pca8-reference", viewer, nil).JSON(t, &versions)
	if len(versions.Versions) != 1 || versions.Versions[0].Version != "1" {
		t.Fatalf("versions: %+v", versions)
	}

	var one struct {
		Model mlreg.Record `json:"model"`
	}
	h.Do("GET", "/api/v1/ml/models/pca8-reference/versions/1", viewer, nil).JSON(t, &one)
	dl := h.Do("GET", "/api/v1/ml/models/pca8-reference/versions/1/onnx", viewer, nil)
	if dl.Status != http.StatusOK || !bytes.Equal(dl.Body, model) {
		t.Fatalf("download: %d, %d bytes, want the %d registered", dl.Status, len(dl.Body), len(model))
	}
	one.Model.ONNX = dl.Body
	pubPEM, err := os.ReadFile(filepath.Join(h.Dir, hub.SigningPubFile))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := keys.ParsePublicKey(string(pubPEM))
	if err != nil {
		t.Fatal(err)
	}
	if err := mlreg.Verify(pub.(ed25519.PublicKey), &one.Model); err != nil {
		t.Fatalf("the served record does not verify with the hub's key: %v", err)
	}

	// Another tenant's token sees nothing of acme's.
	var betaList struct {
		Models []mlreg.Record `json:"models"`
	}
	h.Do("GET", "/api/v1/ml/models", betaViewer, nil).JSON(t, &betaList)
	if len(betaList.Models) != 0 {
		t.Fatalf("beta sees %+v", betaList.Models)
	}
	for _, path := range []string{
		"/api/v1/ml/models/pca8-reference", "/api/v1/ml/models/pca8-reference/versions/1",
		"/api/v1/ml/models/pca8-reference/versions/1/onnx", "/api/v1/ml/models?tenant=acme",
		"/api/v1/ml/models/pca8-reference/versions/1/onnx?tenant=acme",
	} {
		r := h.Do("GET", path, betaViewer, nil)
		if r.Status == http.StatusOK || bytes.Contains(r.Body, []byte(reg.Model.ONNXSHA256)) {
			t.Errorf("beta GET %s: %d %s", path, r.Status, r.Body)
		}
	}
	if r := h.Do("POST", "/api/v1/ml/models?tenant=acme", betaViewer, body); r.Status != http.StatusForbidden {
		t.Errorf("beta registers into acme: %d %s", r.Status, r.Body)
	}
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

// sensor8Model is a thing model whose eight properties feed the reference
// PCA model (internal/ml/testdata/pca8).
const sensor8Model = `{"id":"acme:sensor8","version":"1.0.0","properties":{
 "a":{"type":"number"},"b":{"type":"number"},"c":{"type":"number"},"d":{"type":"number"},
 "e":{"type":"number"},"f":{"type":"number"},"g":{"type":"number"},"h":{"type":"number"}}}`

const anomalyLoop = `
id: anomaly
tenant: acme
mode: active
placement: hub
on: {model: acme:sensor8}
perceive:
  a_mean: {property: a, fn: last}
  b_mean: {property: b, fn: last}
  c_mean: {property: c, fn: last}
  d_mean: {property: d, fn: last}
  e_mean: {property: e, fn: last}
  f_mean: {property: f, fn: last}
  g_mean: {property: g, fn: last}
  h_mean: {property: h, fn: last}
decide:
  model: {id: pca8-reference}
  when: score.anomaly == 1.0
act:
  alarm: {name: anomaly, severity: medium, message: "'reconstruction error ' + string(score.score)"}
`

// TestMLScoresInHubLoop: a model registered at the hub scores a loop's
// features there: the object reporting the reference's anomalous row gets
// the loop's alarm, with the model's version and scores in the evidence;
// the one reporting a normal row does not.
func TestMLScoresInHubLoop(t *testing.T) {
	h := Start(t)
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	h.MustAdmin(201, "POST", "/api/v1/models", json.RawMessage(sensor8Model))
	meta, model, rows := pca8(t)
	h.MustAdmin(201, "POST", "/api/v1/ml/models?tenant=acme", map[string]any{"meta": rawJSON(meta), "onnx": model})
	h.MustAdmin(201, "POST", "/api/v1/loops", anomalyLoop)
	report := func(code string, row []float64) {
		tok := newTokenObject(t, h, map[string]any{"code": code,
			"model": map[string]string{"id": "acme:sensor8", "version": "1.0.0"}}).token
		vals := map[string]float64{}
		for i, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
			vals[name] = row[i]
		}
		if r := h.Do("POST", "/api/v1/ingest/"+code+"/telemetry", tok, vals); r.Status >= 300 {
			t.Fatalf("telemetry of %s: %d %s", code, r.Status, r.Body)
		}
	}
	report("acme:normal-1", rows[0])
	report("acme:odd-1", rows[2])
	type record struct {
		ID     int64
		Object string
		Kind   string
		Model  *struct {
			ID, Version string
			Scores      map[string]float64
			Error       string
		}
	}
	var got []record
	eventually(t, "the anomalous object's alarm decided with the model", func() error {
		var out struct{ Evidence []record }
		h.MustAdmin(200, "GET", "/api/v1/evidence?loop=acme:anomaly", nil).JSON(t, &out)
		got = out.Evidence
		for _, r := range got {
			if r.Object == "acme:odd-1" && r.Kind == "action" {
				return nil
			}
		}
		return fmt.Errorf("evidence: %+v", got)
	})
	var odd int64
	for _, r := range got {
		if r.Object == "acme:odd-1" && r.Kind == "action" {
			odd = r.ID
		}
	}

	// The console: the registered version, its document, its bytes, and
	// the decision's model scores.
	cb := consoletest.New(t, h.URL, nil)
	list := cb.MustSignIn(h.AdminToken, "/ml").Text()
	if !strings.Contains(html.UnescapeString(list), "pca8-reference v1 anomaly 8 anomaly: score > 1.2399") {
		t.Errorf("/ml: %s", list)
	}
	page := cb.MustGet(200, "/ml/acme/pca8-reference/1").Text()
	for _, want := range []string{"pca8-reference v1 tenant acme", "a_mean", "h_mean", "score.anomaly is 1 when score is above 1.2399", "wanwu.ml/v1"} {
		if !strings.Contains(page, want) {
			t.Errorf("the version's page lacks %q: %s", want, page)
		}
	}
	if dl := cb.MustGet(200, "/ml/acme/pca8-reference/1/onnx"); dl.Body != string(model) || !strings.Contains(dl.Header.Get("Content-Disposition"), "pca8-reference-1.onnx") {
		t.Errorf("the download: %d bytes, %q", len(dl.Body), dl.Header.Get("Content-Disposition"))
	}
	if ev := cb.MustGet(200, fmt.Sprintf("/evidence/%d", odd)).Text(); !strings.Contains(ev, "Model pca8-reference@1 : score.anomaly=1 score.score=") {
		t.Errorf("the decision's page does not show the model's scores: %s", ev)
	}
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "beta"})
	beta := consoletest.New(t, h.URL, nil)
	if list := beta.MustSignIn(mcToken(t, h, "ml-beta-viewer", "viewer", "beta"), "/ml").Text(); strings.Contains(list, "pca8") || !strings.Contains(list, "No model registered yet") {
		t.Errorf("beta's /ml: %s", list)
	}
	if a := beta.Get("/ml/acme/pca8-reference/1"); a.Status != 404 && a.Status != 403 {
		t.Errorf("beta opens acme's model: %d", a.Status)
	}

	for _, r := range got {
		if r.Object == "acme:normal-1" && r.Kind == "action" {
			t.Errorf("the normal object's row was acted on: %+v", r)
		}
		if r.Object == "acme:odd-1" && r.Kind == "action" {
			if r.Model == nil || r.Model.ID != "pca8-reference" || r.Model.Version != "1" || r.Model.Scores["anomaly"] != 1 || r.Model.Scores["score"] <= 1.2399 {
				t.Errorf("the decision's model use: %+v", r.Model)
			}
		}
	}
}

// pca8 reads the reference model of package ml's testdata: its document,
// its bytes and the input rows onnxruntime scored.
func pca8(t *testing.T) (meta, model []byte, rows [][]float64) {
	t.Helper()
	var err error
	if meta, err = os.ReadFile("../ml/testdata/pca8.meta.json"); err != nil {
		t.Fatal(err)
	}
	if model, err = os.ReadFile("../ml/testdata/pca8.onnx"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../ml/testdata/pca8.inputs.json")
	if err != nil {
		t.Fatal(err)
	}
	var inputs struct{ Rows [][]float64 }
	if err := json.Unmarshal(b, &inputs); err != nil {
		t.Fatal(err)
	}
	return meta, model, inputs.Rows
}

package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/hubclient"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/scenario"
)

// TestDemoModel: the demo's spindle vectors are the same run to run (so is
// the model: a rerun registers nothing new), the model parses, and the
// registration's answers become the demo's line: created, unchanged, or
// a conflicting version kept without stopping the demo. A scenario
// without spindles trains nothing.
func TestDemoModel(t *testing.T) {
	sc, err := scenario.Builtin("demo")
	if err != nil {
		t.Fatal(err)
	}
	a, _, _ := demoModelData(sc)
	b, _, _ := demoModelData(sc)
	if len(a) != demoModelVectors || !slices.EqualFunc(a, b, slices.Equal[[]float64]) {
		t.Fatalf("vectors: %d, equal run to run: %v", len(a), slices.EqualFunc(a, b, slices.Equal[[]float64]))
	}
	var bodies [][]byte
	status := http.StatusCreated
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/ml/models" || r.URL.Query().Get("tenant") != "demo" {
			t.Errorf("%s %s", r.Method, r.URL)
		}
		body, _ := io.ReadAll(r.Body)
		bodies = append(bodies, body)
		w.WriteHeader(status)
		if status == http.StatusConflict {
			io.WriteString(w, `{"error":{"code":"conflict","message":"other content"}}`)
			return
		}
		io.WriteString(w, `{"model":{"id":"spindle-normal","version":"1"},"created":`+map[bool]string{true: "true", false: "false"}[status == http.StatusCreated]+`}`)
	}))
	defer srv.Close()
	hc := hubclient.New(srv.URL, "token")
	ctx := context.Background()
	for _, c := range []struct {
		status int
		want   string
	}{
		{http.StatusCreated, "threshold"},
		{http.StatusOK, "registered before with the same content"},
		{http.StatusConflict, "registered before with other content"},
	} {
		status = c.status
		line, err := trainDemoModel(ctx, hc, sc)
		if err != nil || !strings.Contains(line, c.want) || !strings.Contains(line, "spindle-normal") {
			t.Errorf("%d: %q, %v; want %q", c.status, line, err, c.want)
		}
	}
	if len(bodies) != 3 || string(bodies[0]) != string(bodies[1]) {
		t.Fatalf("the registrations differ run to run")
	}
	var in struct {
		Meta json.RawMessage `json:"meta"`
		ONNX []byte          `json:"onnx"`
	}
	if err := json.Unmarshal(bodies[0], &in); err != nil {
		t.Fatal(err)
	}
	meta, err := ml.ParseMeta(in.Meta)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ml.NewGonnx().Load(in.ONNX, meta)
	if err != nil {
		t.Fatal(err)
	}
	sess.Close()
	if meta.ID != demoModelID || len(meta.Inputs) != len(demoModelFeatures) || meta.Training.Vectors != demoModelVectors {
		t.Errorf("meta: %+v", meta)
	}
	city, err := scenario.Builtin("city")
	if err != nil {
		t.Fatal(err)
	}
	if line, err := trainDemoModel(ctx, hc, city); line != "" || err != nil || len(bodies) != 3 {
		t.Errorf("city: %q, %v", line, err)
	}
}

package ml

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const validMeta = `{
  "id": "spindle-anomaly",
  "version": 2,
  "kind": "anomaly",
  "input": "features",
  "inputs": [
    {"name": "vib_mean", "mean": 0.42, "std": 0.1},
    {"name": "temp", "mean": 61.5, "std": 4.2}
  ],
  "outputs": [{"name": "score", "kind": "score"}],
  "thresholds": {"anomaly": {"output": "score", "above": 3.2}},
  "budget": {"max_model_bytes": 65536, "max_nodes": 16, "deadline": "20ms"},
  "training": {
    "dataset": "cnc-a-2026w01", "dataset_version": "3", "vectors": 100000,
    "metrics": {"precision": 0.97, "recall": 0.93},
    "created_at": "2026-01-02T03:04:05Z"
  }
}`

func TestParseMetaValid(t *testing.T) {
	m, err := ParseMeta([]byte(validMeta))
	if err != nil {
		t.Fatal(err)
	}
	if m.Budget.Deadline.D().Milliseconds() != 20 || m.Thresholds["anomaly"].Above != 3.2 || len(m.Inputs) != 2 {
		t.Fatalf("parsed %+v", m)
	}
	// A round trip gives the same document.
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := ParseMeta(b)
	if err != nil {
		t.Fatalf("round trip: %v\n%s", err, b)
	}
	b2, _ := json.Marshal(m2)
	if string(b) != string(b2) {
		t.Fatalf("round trip changed it:\n%s\n%s", b, b2)
	}
}

func TestParseMetaErrors(t *testing.T) {
	tests := []struct {
		name   string
		old    string // replaced in validMeta
		new    string
		wantIn string // in the error
	}{
		{"not json", `{`, `[`, "invalid character"},
		{"wrong type", `"std": 0.1`, `"std": "0.1"`, "inputs.std"},
		{"unknown field", `"kind"`, `"kinds": 1, "kind"`, `unknown field "kinds"`},
		{"bad id", `"spindle-anomaly"`, `"Spindle Anomaly"`, "id: must match"},
		{"version", `"version": 2`, `"version": 0`, "version: must be 1 or more"},
		{"kind", `"kind": "anomaly"`, `"kind": "forecast"`, `kind: must be "anomaly"`},
		{"input", `"input": "features"`, `"input": ""`, "input: must name the graph input"},
		{"no inputs", `{"name": "vib_mean", "mean": 0.42, "std": 0.1},
    {"name": "temp", "mean": 61.5, "std": 4.2}`, ``, "inputs: must have 1 to"},
		{"feature name", `"vib_mean"`, `"vib-mean"`, "inputs[0].name: must match"},
		{"duplicate feature", `"temp"`, `"vib_mean"`, `inputs[1].name: "vib_mean" already names inputs[0]`},
		{"std zero", `"std": 4.2`, `"std": 0`, "inputs[1].std: must be a finite number above 0"},
		{"output kind", `"kind": "score"}`, `"kind": "label"}`, `outputs[0].kind: must be "score" or "class"`},
		{"anomaly without score", `"kind": "score"}`, `"kind": "class"}`, `outputs: an anomaly model needs a "score" output`},
		{"threshold output", `"output": "score"`, `"output": "scor"`, `thresholds.anomaly.output: must name an output, got "scor"`},
		{"threshold clash", `"anomaly": {`, `"score": {`, `thresholds.score: name clashes with the output "score"`},
		{"bytes budget", `"max_model_bytes": 65536`, `"max_model_bytes": 0`, "budget.max_model_bytes: must be 1 to"},
		{"nodes budget", `"max_nodes": 16`, `"max_nodes": 100000`, "budget.max_nodes: must be 1 to"},
		{"deadline", `"deadline": "20ms"`, `"deadline": "0s"`, "budget.deadline: must be above 0"},
		{"deadline syntax", `"deadline": "20ms"`, `"deadline": 20`, `must be a duration such as "20ms"`},
		{"dataset", `"dataset": "cnc-a-2026w01"`, `"dataset": ""`, "training.dataset: must name the dataset"},
		{"vectors", `"vectors": 100000`, `"vectors": 0`, "training.vectors: must be 1 or more"},
		{"created_at", `"created_at": "2026-01-02T03:04:05Z"`, `"created_at": "0001-01-01T00:00:00Z"`, "training.created_at: must be set"},
		{"trailing data", `"2026-01-02T03:04:05Z"
  }
}`, `"2026-01-02T03:04:05Z"
  }
} {}`, "data after the document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(validMeta, tt.old, tt.new, 1)
			if doc == validMeta {
				t.Fatalf("%q not in the document", tt.old)
			}
			_, err := ParseMeta([]byte(doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalidMeta) {
				t.Errorf("%v does not wrap ErrInvalidMeta", err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("error %q does not say %q", err, tt.wantIn)
			}
		})
	}
}

func TestParseMetaReportsEveryProblem(t *testing.T) {
	_, err := ParseMeta([]byte(`{"id": "x", "version": 1, "kind": "anomaly"}`))
	for _, field := range []string{"input:", "inputs:", "outputs:", "budget.max_model_bytes:", "budget.max_nodes:", "budget.deadline:", "training.dataset:", "training.vectors:", "training.created_at:"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("error %v does not name %s", err, field)
		}
	}
}

func FuzzParseMeta(f *testing.F) {
	f.Add([]byte(validMeta))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"id": "x", "version": 1, "kind": "anomaly", "inputs": [{"name": "a", "std": 1e308}]}`))
	f.Add([]byte(strings.Replace(validMeta, `"20ms"`, `"-1h"`, 1)))
	f.Add([]byte(strings.Replace(validMeta, `"std": 0.1`, `"std": NaN`, 1)))
	f.Add([]byte(strings.Replace(validMeta, `"output": "score"`, `"output": "temp"`, 1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMeta(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidMeta) {
				t.Fatalf("%v does not wrap ErrInvalidMeta", err)
			}
			return
		}
		// What is accepted is valid, and stays so through a round trip.
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseMeta(out); err != nil {
			t.Fatalf("round trip of an accepted document: %v\n%s", err, out)
		}
	})
}

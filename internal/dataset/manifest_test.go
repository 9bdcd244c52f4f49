package dataset_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/dataset"
)

// validManifest is testdata/manifest.json (the fuzz seed "valid" is it compacted).
func validManifest(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseManifest(t *testing.T) {
	valid := string(validManifest(t))
	m, err := dataset.ParseManifest([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "pumps" || m.Version != 2 || len(m.Files) != 3 || m.Quality.Completeness != 0.875 {
		t.Fatalf("parsed %+v", m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if m2, err := dataset.ParseManifest(b); err != nil || !reflect.DeepEqual(m, m2) {
		t.Fatalf("round trip: %v", err)
	}

	digest := strings.Repeat("ab", 32)
	tests := []struct {
		name, field, in string
	}{
		{"truncated", "manifest", valid[:len(valid)/2]},
		{"unknown field", "manifest", strings.Replace(valid, `"schema"`, `"colour": "red", "schema"`, 1)},
		{"trailing data", "manifest", valid + "{}"},
		{"other schema", "schema", strings.Replace(valid, `"wanwu.dataset/v1"`, `"wanwu.dataset/v2"`, 1)},
		{"bad tenant", "tenant", strings.Replace(valid, `"tenant": "acme"`, `"tenant": "ACME"`, 1)},
		{"bad name", "name", strings.Replace(valid, `"name": "pumps"`, `"name": "../pumps"`, 1)},
		{"version 0", "version", strings.Replace(valid, `"version": 2`, `"version": 0`, 1)},
		{"short digest", "content_sha256", strings.Replace(valid, digest, digest[:62], 1)},
		{"uppercase digest", "content_sha256", strings.Replace(valid, digest, strings.ToUpper(digest), 1)},
		{"bad file digest", "files", strings.Replace(valid, strings.Repeat("cd", 32), strings.Repeat("zz", 32), 1)},
		{"quality above 1", "quality.timeliness", strings.Replace(valid, `"timeliness": 0.75`, `"timeliness": 1.5`, 1)},
		{"negative quality", "quality.class_balance", strings.Replace(valid, `"class_balance": 1`, `"class_balance": -0.1`, 1)},
		{"negative count", "quality", strings.Replace(valid, `"timely": 3`, `"timely": -3`, 1)},
		{"dot-dot path", "files", strings.Replace(valid, `"windows.parquet"`, `"../windows.parquet"`, 1)},
		{"absolute path", "files", strings.Replace(valid, `"windows.parquet"`, `"/windows.parquet"`, 1)},
		{"unclean path", "files", strings.Replace(valid, `"windows.parquet"`, `"a//windows.parquet"`, 1)},
		{"backslash path", "files", strings.Replace(valid, `"windows.parquet"`, `"a\\windows.parquet"`, 1)},
		{"file twice", "files", strings.Replace(valid, `"samples.parquet"`, `"windows.parquet"`, 1)},
		{"negative rows", "files", strings.Replace(valid, `"rows": 45`, `"rows": -45`, 1)},
		{"too large", "manifest", valid + strings.Repeat(" ", dataset.MaxManifestBytes)},
		{"null", "schema", `null`},
		{"lineage backwards", "lineage", strings.Replace(valid, `"to": "2026-03-04T05:00:30Z"`, `"to": "2026-03-04T04:00:30Z"`, 1)},
		{"query of another tenant", "query", strings.Replace(valid, `"tenant": "acme",
    "reason"`, `"tenant": "other",
    "reason"`, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.in == valid {
				t.Fatal("the edit did not apply")
			}
			_, err := dataset.ParseManifest([]byte(tt.in))
			var fe *dataset.FieldError
			if !errors.Is(err, dataset.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("ParseManifest: %v, want ErrInvalid on %s", err, tt.field)
			}
		})
	}
}

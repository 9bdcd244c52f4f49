package tsdb

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSegmentSyncer: the syncer follows the newest segment through
// rotations, fsyncs it only when it grew, and tolerates a directory that
// does not exist yet (the WBL before the first out-of-order sample).
func TestSegmentSyncer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w := &segmentSyncer{dir: dir}
	defer w.close()
	if err := w.sync(); err != nil || w.newest != nil {
		t.Fatalf("missing dir: %v, newest %v", err, w.newest)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	appendTo := func(name, data string) {
		t.Helper()
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(data); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	for _, step := range []struct {
		name, write  string
		newest, next string
		synced       int64
	}{
		{"first segment", "00000000", "00000000", "00000001", 3},
		{"it grows", "00000000", "00000000", "00000001", 6},
		{"rotation", "00000001", "00000001", "00000002", 3},
		{"two at once", "00000003", "00000003", "00000004", 3},
	} {
		if step.name == "two at once" {
			appendTo("00000002", "abc")
		}
		appendTo(step.write, "abc")
		if err := w.sync(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if w.name != step.newest || w.next != step.next || w.synced != step.synced {
			t.Fatalf("%s: newest %s next %s synced %d, want %s %s %d", step.name, w.name, w.next, w.synced, step.newest, step.next, step.synced)
		}
	}
	// A file that is not a segment (a checkpoint directory, say) is ignored.
	if err := os.Mkdir(filepath.Join(dir, "checkpoint.00000001"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.sync(); err != nil || w.name != "00000003" {
		t.Fatalf("after a checkpoint: %v, newest %s", err, w.name)
	}
}

func TestNextSegmentName(t *testing.T) {
	for in, want := range map[string]string{"00000000": "00000001", "00000009": "00000010", "99999999": "100000000"} {
		if got := nextSegmentName(in); got != want {
			t.Errorf("nextSegmentName(%s) = %s, want %s", in, got, want)
		}
	}
}

package loop

import (
	"strings"
	"testing"

	"github.com/wanwu-iot/wanwu/examples/loops"
)

// TestExampleLoops checks that every shipped loop compiles against the
// shipped thing models.
func TestExampleLoops(t *testing.T) {
	e := newEnv(t, "hub", "")
	files, err := loops.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".yaml") {
			continue
		}
		b, _ := loops.FS.ReadFile(f.Name())
		info, _, err := e.engine.Define(e.ctx, "test", "demo", b)
		if err != nil {
			t.Errorf("%s: %v", f.Name(), err)
			continue
		}
		if want := strings.TrimSuffix(f.Name(), ".yaml"); info.Def.ID != want {
			t.Errorf("%s: id %q, want the file's name", f.Name(), info.Def.ID)
		}
		n++
	}
	if n < 5 {
		t.Fatalf("%d example loops, want at least 5", n)
	}
}

package scenario

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestDependencies: the physics stays apart from the hub, so that the
// simulator's devices are the SDK's devices and nothing of the hub's
// internals leaks into what they send. Of this module, the package links
// only the SDK (and what it links) and the small packages below.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/wanwu-iot/wanwu/internal/scenario").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/wanwu-iot/wanwu/"
	allowed := []string{
		"device", "internal/devtoken", "internal/keys", "internal/senml", "internal/jsontext", // the SDK and what it links
		"internal/scenario", "internal/thingmodel", "internal/code", "internal/netprofile", "examples/models",
	}
	for _, d := range strings.Fields(string(out)) {
		if p, ok := strings.CutPrefix(d, mod); ok && !slices.Contains(allowed, p) {
			t.Errorf("internal/scenario links %s", d)
		}
	}
}

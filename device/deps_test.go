package device

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: the SDK builds without the hub's heavy dependencies, so
// that a gateway binary stays small and cross-compiles. `go list -deps`
// names every package the device package's build links.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/wanwu-iot/wanwu/device").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list named only %d packages: %s", len(deps), out)
	}
	forbidden := []string{
		"modernc.org/sqlite",
		"github.com/nats-io/nats-server",
		"github.com/prometheus/prometheus",
		"github.com/prometheus/client_golang",
		"github.com/mochi-mqtt/server",
		"github.com/wanwu-iot/wanwu/internal/hub",
		"github.com/wanwu-iot/wanwu/internal/registry",
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("the device package links %s", d)
			}
		}
	}
}

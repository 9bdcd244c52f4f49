package hubtest

import (
	"os"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/cli"
)

// envTestMain makes the test binary act as the wanwu program itself, so that
// tests can run the real command line as a child process without building a
// separate binary (the re-exec pattern of os/exec's own tests).
const envTestMain = "WANWU_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envTestMain) == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	if broker := os.Getenv(envRuleClient); broker != "" {
		os.Exit(runRuleClient(broker))
	}
	os.Exit(m.Run())
}

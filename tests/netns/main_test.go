package netns

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/blocktree/blocktree/internal/testenv"
)

// btPath is the bt binary that TestMain builds for this test binary.
var btPath string

func TestMain(m *testing.M) {
	// BenchmarkBetweenNodes runs this binary as its echo peer, which
	// needs no bt binary.
	if spec := os.Getenv(echoPeerEnv); spec != "" {
		if err := runEchoPeer(spec); err != nil {
			fmt.Fprintf(os.Stderr, "echo peer: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(testenv.RunWithBT(m, "netns", &btPath))
}

// requireHost checks for root, /dev/fuse and the programs the tests run.
func requireHost(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "not running as root: the tests create network namespaces and mount FUSE file systems, so run them as root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Missing(t, "/dev/fuse is not available (%v): run the tests where the fuse module is loaded", err)
	}
	for _, name := range []string{"ip", "fusermount3", "swtpm"} {
		if _, err := exec.LookPath(name); err != nil {
			testenv.Missing(t, "%s is not installed: run scripts/install-deps.sh as root (ip is in iproute2)", name)
		}
	}
}

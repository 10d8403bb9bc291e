package netns

import (
	"fmt"
	"os"
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
	testenv.RequireNodeHost(t, "ip", "iptables")
}

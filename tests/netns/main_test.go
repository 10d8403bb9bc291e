package netns

import (
	"os"
	"testing"

	"github.com/blocktree/blocktree/internal/testenv"
)

// btPath is the bt binary that TestMain builds for this test binary.
var btPath string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithBT(m, "netns", &btPath))
}

// requireHost checks for root, /dev/fuse and the programs the tests run.
func requireHost(t testing.TB) {
	t.Helper()
	testenv.RequireNodeHost(t, "ip")
}

package posixsuite

import "testing"

// TestHostDirectory runs the suite on the host's file system, which checks
// the suite itself: every subtest must pass on a local Linux file system
// with no known differences declared.
func TestHostDirectory(t *testing.T) {
	Run(t, t.TempDir(), Options{})
}

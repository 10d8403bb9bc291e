// Package posixsuite is Blocktree's POSIX behaviour suite: Run checks,
// through real system calls on files under a directory, that a file system
// behaves as Linux's local file systems do, down to the exact errno of each
// failure.
//
// The suite runs against any directory: t.TempDir() on the host (which
// checks the suite itself), a FUSE mount of the storage engine, or later a
// mount served over the network. Every subtest works in a subdirectory of
// its own and removes it at the end, so subtests do not see each other's
// files.
//
// # Known differences
//
// A target declares where it differs from Linux's local file systems with
// the fields of Options. Each field names the behaviour, and the subtests
// it affects log what they leave out and why, instead of skipping in
// silence. A target with a zero Options must behave like ext4.
//
// # Helper processes
//
// POSIX record locks conflict only between processes, and the permission
// checks must run as a user other than root, so some subtests start a
// helper: the running test binary again, with POSIXSUITE_HELPER set in its
// environment. This package's init function finds that variable, runs the
// requested helper and exits before any test starts, so a test binary that
// imports the package needs no TestMain. The helper gets the directory
// under test as file descriptor 3 and reaches files through the *at system
// calls relative to it, so it does not depend on the search permission of
// the directories above.
//
// The permission checks run the helper with uid and gid 1000 and no
// supplementary groups (SysProcAttr.Credential). The test binary of `go
// test` lives in a directory that only root may enter, so the suite first
// copies the binary into a directory that uid 1000 can execute from. Those
// checks need root; without it they skip with a message, and with CI=true
// they fail instead.
package posixsuite

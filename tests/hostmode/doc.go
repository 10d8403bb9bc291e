// Package hostmode tests `bt node` as a user runs it: a real node process
// with a software TPM, its tree mounted through FUSE, and ordinary programs
// (tar, git, go, cp, rsync) working on the mount. The tests also crash the
// node with SIGKILL, damage its state directory on purpose, and check the
// errors of bad command lines.
//
// The tests need root, /dev/fuse, fusermount3 and swtpm, and some need
// git, rsync and tar. Without them they skip, unless CI=true, where they
// fail. scripts/install-deps.sh installs the Debian packages.
//
// `go test -short` unpacks GOROOT/src/crypto instead of all of GOROOT/src,
// runs 4 crash rounds instead of 10 and loops 3 seconds instead of 10 in
// TestSignalsDoNotFailFileCalls. The crash test logs its random seed, and
// BT_HOSTMODE_SEED=N repeats a run's kill points and workload choices
// (their timing still varies).
//
// The package has no code of its own: everything is in the _test.go files.
package hostmode

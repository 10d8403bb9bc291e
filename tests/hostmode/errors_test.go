package hostmode

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireOneLineError checks that bt failed and that its stderr, apart from
// log records (lines starting with "time="), is one line that contains
// every one of words.
func requireOneLineError(t *testing.T, res result, words ...string) {
	t.Helper()
	if res.code == 0 {
		t.Errorf("bt exited with 0, expected a failure\nstdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	}
	if strings.HasPrefix(res.stdout, "ready:") || strings.Contains(res.stdout, "\nready:") {
		t.Errorf("bt printed a ready line although it failed:\n%s", res.stdout)
	}
	var messages []string
	for line := range strings.SplitSeq(strings.TrimSpace(res.stderr), "\n") {
		if line != "" && !strings.HasPrefix(line, "time=") {
			messages = append(messages, line)
		}
	}
	if len(messages) != 1 {
		t.Fatalf("stderr has %d lines that are not log records, expected one error line:\n%s", len(messages), res.stderr)
	}
	t.Logf("exit status %d, error: %s", res.code, messages[0])
	for _, w := range words {
		if !strings.Contains(messages[0], w) {
			t.Errorf("the error %q does not contain %q", messages[0], w)
		}
	}
}

// requireUnmountedEmpty checks that bt left nothing mounted on mount and
// nothing in it.
func requireUnmountedEmpty(t *testing.T, mount string) {
	t.Helper()
	if isMounted(mount) {
		lazyUnmount(t, mount)
		t.Errorf("%s is mounted after bt node failed", mount)
	}
	entries, err := os.ReadDir(mount)
	if err != nil {
		t.Errorf("read mount point %s: %v", mount, err)
	} else if len(entries) > 0 {
		t.Errorf("mount point %s has %d entries after bt node failed, expected none", mount, len(entries))
	}
}

// newStoppedNode creates a node in a new state directory with extra
// options, writes one file into its tree and stops it.
func newStoppedNode(t *testing.T, extra ...string) string {
	t.Helper()
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount, extra...)
	writeFileSync(t, n.path("hello.txt"), []byte("hello\n"))
	n.stop()
	return state
}

// TestNodeStartErrors starts bt node with a bad state directory, mount
// point or TPM. Each must fail with one line that names the bad value and
// leave the state directory exactly as it was.
func TestNodeStartErrors(t *testing.T) {
	requireHost(t)
	existing := newStoppedNode(t)

	t.Run("missing state directory", func(t *testing.T) {
		base := t.TempDir()
		state := filepath.Join(base, "no-such-state")
		mount := filepath.Join(base, "mnt")
		if err := os.Mkdir(mount, 0o755); err != nil {
			t.Fatal(err)
		}
		before := takeSnapshot(t, base)
		res := runBT(t, "node", "--state", state, "--mount", mount)
		requireOneLineError(t, res, state)
		requireUnmountedEmpty(t, mount)
		compareSnapshots(t, "directory around the state directory", before, takeSnapshot(t, base))
	})

	t.Run("missing mount point", func(t *testing.T) {
		mount := filepath.Join(t.TempDir(), "no-such-mnt")
		before := takeSnapshot(t, existing)
		res := runBT(t, "node", "--state", existing, "--mount", mount)
		requireOneLineError(t, res, mount)
		if _, err := os.Stat(mount); err == nil {
			t.Errorf("bt node created the missing mount point %s", mount)
		}
		compareSnapshots(t, "state directory", before, takeSnapshot(t, existing))
	})

	// rejectOption starts the node with a bad option and checks that it
	// fails with an error that contains want and changes nothing.
	rejectOption := func(t *testing.T, option, value string, want ...string) {
		t.Helper()
		mount := filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(mount, 0o755); err != nil {
			t.Fatal(err)
		}
		before := takeSnapshot(t, existing)
		res := runBT(t, "node", "--state", existing, "--mount", mount, option, value)
		requireOneLineError(t, res, append([]string{option + " " + value}, want...)...)
		requireUnmountedEmpty(t, mount)
		compareSnapshots(t, "state directory", before, takeSnapshot(t, existing))
	}

	t.Run("checkpoint interval too short", func(t *testing.T) {
		for _, interval := range []string{"-5s", "500ms"} {
			rejectOption(t, "--checkpoint-interval", interval, "at least 1s")
		}
	})

	t.Run("bad listen address", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		for _, listen := range []string{"7420", "127.0.0.1:99999", "127.0.0.1:no-such-service", busy.Addr().String()} {
			rejectOption(t, "--listen", listen, "HOST:PORT")
		}
	})

	t.Run("busy mount point", func(t *testing.T) {
		mount := filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(mount, 0o755); err != nil {
			t.Fatal(err)
		}
		if output, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount).CombinedOutput(); err != nil {
			t.Fatalf("mount a tmpfs on %s: %v: %s", mount, err, output)
		}
		t.Cleanup(func() {
			if output, err := exec.Command("umount", mount).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", mount, err, output)
			}
		})
		mark := filepath.Join(mount, "on-the-tmpfs")
		if err := os.WriteFile(mark, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		before := takeSnapshot(t, existing)
		res := runBT(t, "node", "--state", existing, "--mount", mount)
		requireOneLineError(t, res, mount)
		if _, err := os.Stat(mark); err != nil {
			t.Errorf("the tmpfs on %s is hidden after bt node failed: %v", mount, err)
		}
		compareSnapshots(t, "state directory", before, takeSnapshot(t, existing))
	})

	t.Run("overlapping directories", func(t *testing.T) {
		base := t.TempDir()
		tree := filepath.Join(base, "tree")
		inside := filepath.Join(tree, "state")
		empty := filepath.Join(base, "empty")
		link := filepath.Join(base, "link")
		for _, dir := range []string{inside, empty} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(tree, link); err != nil {
			t.Fatal(err)
		}
		cases := []struct{ state, mount, want string }{
			{inside, tree, "is inside mount point"},
			// The link names the mount point by another path.
			{link, tree, "are the same directory"},
			{base, empty, "is inside state directory"},
			{empty, empty, "are the same directory"},
		}
		for _, c := range cases {
			before := takeSnapshot(t, base)
			res := runBT(t, "node", "--state", c.state, "--mount", c.mount)
			requireOneLineError(t, res, c.state, c.mount, c.want)
			requireUnmountedEmpty(t, empty)
			compareSnapshots(t, "directories", before, takeSnapshot(t, base))
		}
	})

	t.Run("node already running", func(t *testing.T) {
		first := filepath.Join(t.TempDir(), "mnt")
		second := filepath.Join(t.TempDir(), "mnt")
		for _, dir := range []string{first, second} {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		n := startNode(t, existing, first)
		if pids := swtpmProcesses(existing); len(pids) != 1 {
			t.Errorf("found swtpm pids %v for the running node, expected one: the search for leftover swtpm processes is broken", pids)
		}
		before := takeSnapshot(t, existing)
		res := runBT(t, "node", "--state", existing, "--mount", second)
		requireOneLineError(t, res, existing, fmt.Sprintf("(PID %d)", n.cmd.Process.Pid))
		requireUnmountedEmpty(t, second)
		compareSnapshots(t, "state directory of the running node", before, takeSnapshot(t, existing))
		requireContents(t, n.path("hello.txt"), []byte("hello\n"))
		n.stop()
	})

	t.Run("mount point of a running node", func(t *testing.T) {
		state, mount := newNodeDirs(t)
		n := startNode(t, state, mount)
		other, _ := newNodeDirs(t)
		before := takeSnapshot(t, other)
		res := runBT(t, "node", "--state", other, "--mount", mount)
		requireOneLineError(t, res, mount, "FUSE server", "another bt node")
		compareSnapshots(t, "state directory of the second node", before, takeSnapshot(t, other))
		writeFileSync(t, n.path("still-served.txt"), []byte("served\n"))
		requireContents(t, n.path("still-served.txt"), []byte("served\n"))
		n.stop()
	})

	t.Run("dead FUSE mount", func(t *testing.T) {
		state, mount := newNodeDirs(t)
		n := startNode(t, state, mount)
		writeFileSync(t, n.path("hello.txt"), []byte("hello\n"))
		// The kernel now keeps the root's attributes for a minute, so a
		// stat of the mount point after the crash gets no error.
		if _, err := os.Stat(mount); err != nil {
			t.Fatal(err)
		}
		n.crash()
		before := takeSnapshot(t, state)
		res := runBT(t, "node", "--state", state, "--mount", mount)
		requireOneLineError(t, res, mount, "fusermount3 -u -z")
		compareSnapshots(t, "state directory of the crashed node", before, takeSnapshot(t, state))
		lazyUnmount(t, mount)
	})

	t.Run("node directory as state directory", func(t *testing.T) {
		nodeDir := filepath.Join(existing, "node")
		mount := filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(mount, 0o755); err != nil {
			t.Fatal(err)
		}
		before := takeSnapshot(t, existing)
		res := runBT(t, "node", "--state", nodeDir, "--mount", mount)
		requireOneLineError(t, res, nodeDir, "--state "+existing)
		requireUnmountedEmpty(t, mount)
		compareSnapshots(t, "state directory", before, takeSnapshot(t, existing))
	})

	t.Run("missing TPM state", func(t *testing.T) {
		owner := newStoppedNode(t, "--tpm", "software")
		state, mount := newNodeDirs(t)
		copyTree(t, filepath.Join(owner, "node"), filepath.Join(state, "node"))
		if err := os.RemoveAll(filepath.Join(state, "node", "tpm")); err != nil {
			t.Fatal(err)
		}
		before := takeSnapshot(t, state)
		res := runBT(t, "node", "--state", state, "--mount", mount)
		requireOneLineError(t, res, state, "recover")
		requireUnmountedEmpty(t, mount)
		compareSnapshots(t, "state directory without its TPM state", before, takeSnapshot(t, state))
	})

	t.Run("TPM of another node", func(t *testing.T) {
		owner := newStoppedNode(t, "--tpm", "software")
		stranger := newStoppedNode(t, "--tpm", "software")
		state, mount := newNodeDirs(t)
		copyTree(t, filepath.Join(owner, "node"), filepath.Join(state, "node"))
		if err := os.RemoveAll(filepath.Join(state, "node", "tpm")); err != nil {
			t.Fatal(err)
		}
		copyTree(t, filepath.Join(stranger, "node", "tpm"), filepath.Join(state, "node", "tpm"))

		// The node learns that the keys do not unseal only from the running
		// software TPM, which rewrites node/tpm/tpm2-00.permall when it
		// starts and stops. The failed start must put that file back too.
		before := takeSnapshot(t, state)
		res := runBT(t, "node", "--state", state, "--mount", mount)
		requireOneLineError(t, res, state, "another TPM", "recover")
		requireUnmountedEmpty(t, mount)
		compareSnapshots(t, "state directory with another node's TPM", before, takeSnapshot(t, state))
	})

	t.Run("unusable TPM", func(t *testing.T) {
		state, mount := newNodeDirs(t)
		const device = "/nonexistent/path"
		res := runBT(t, "node", "--state", state, "--mount", mount, "--tpm", device)
		requireOneLineError(t, res, device)
		requireUnmountedEmpty(t, mount)
		compareSnapshots(t, "new state directory", snapshot{".": "drwxr-xr-x"}, takeSnapshot(t, state))
	})
}

// copyTree copies a directory tree with cp -a.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if output, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v: %s", from, to, err, output)
	}
}

// TestFsckCannotCheckExits3 checks that bt fsck separates a check that could
// not run (exit 3) from damage it found (exit 1).
func TestFsckCannotCheckExits3(t *testing.T) {
	requireHost(t)
	state, mount := newNodeDirs(t)
	if res := runBT(t, "fsck", "--state", state); res.code != 3 {
		t.Errorf("bt fsck of a directory without node state exited with %d, expected 3\nstderr:\n%s", res.code, res.stderr)
	}
	n := startNode(t, state, mount)
	res := runBT(t, "fsck", "--state", state)
	if res.code != 3 {
		t.Errorf("bt fsck of a running node exited with %d, expected 3\nstderr:\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "stop that node first") {
		t.Errorf("bt fsck of a running node does not say to stop the node\nstderr:\n%s", res.stderr)
	}
	n.stop()
	if res := runBT(t, "fsck", "--state", state); res.code != 0 {
		t.Errorf("bt fsck of the stopped node exited with %d, expected 0\nstderr:\n%s", res.code, res.stderr)
	}
	nodeDir := filepath.Join(state, "node")
	res = runBT(t, "fsck", "--state", nodeDir)
	if res.code != 3 || !strings.Contains(res.stderr, "--state "+state) {
		t.Errorf("bt fsck --state %s exited with %d, expected 3 and a hint to pass --state %s\nstderr:\n%s", nodeDir, res.code, state, res.stderr)
	}
}

package hostmode

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/testenv"
)

// readyTimeout bounds the wait for a node's "ready:" line. A node that
// loads a large tree replays and opens every block first.
const readyTimeout = 2 * time.Minute

// node is one running `bt node` process.
type node struct {
	t      testing.TB
	state  string // the --state directory
	mount  string // the --mount directory, absolute
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{} // closed when the process has exited
	done   bool          // stop or kill finished with the process
}

// syncBuffer is a bytes.Buffer that the process's output goroutine and the
// test may use at the same time.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startNode runs `bt node --state state --mount mount extra...` and waits for
// its "ready:" line. The cleanup kills the node and unmounts the tree if the
// test did not stop it.
func startNode(t testing.TB, state, mount string, extra ...string) *node {
	t.Helper()
	return startNodeWith(t, state, mount, nil, extra...)
}

// startNodeWith is startNode, and calls onReady, unless it is nil, the
// moment the ready line arrives.
func startNodeWith(t testing.TB, state, mount string, onReady func(*exec.Cmd), extra ...string) *node {
	t.Helper()
	mount, err := filepath.Abs(mount)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"node", "--state", state, "--mount", mount}, extra...)
	cmd := exec.Command(btPath, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, state: state, mount: mount, cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = n.stderr
	// The node's own process group also holds its swtpm, so a cleanup can
	// end both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bt node: %v", err)
	}
	t.Cleanup(n.cleanup)

	ready := make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(stdout)
		signaled := false
		for scanner.Scan() {
			if !signaled && strings.HasPrefix(scanner.Text(), "ready:") {
				if onReady != nil {
					onReady(cmd)
				}
				close(ready)
				signaled = true
			}
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(n.exited)
	}()

	// An onReady that stops the node may close both channels before the
	// select, which then picks either.
	select {
	case <-ready:
	case <-n.exited:
		select {
		case <-ready:
			return n
		default:
		}
		t.Fatalf("bt node --state %s exited with %v before it was ready\nstderr:\n%s", state, cmd.ProcessState, n.stderr)
	case <-time.After(readyTimeout):
		t.Fatalf("bt node --state %s printed no ready line within %s\nstderr:\n%s", state, readyTimeout, n.stderr)
	}
	// The node logs "node ready" before it prints the ready line, but its
	// stderr reaches n.stderr through a pipe and a copying goroutine, which
	// can lag. Waiting for that record makes every earlier one readable.
	for deadline := time.Now().Add(readyTimeout); !strings.Contains(n.log(), `msg="node ready"`); {
		if time.Now().After(deadline) {
			t.Fatalf("bt node --state %s printed its ready line, but its log has no \"node ready\" record after %s\nstderr:\n%s", state, readyTimeout, n.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

// log returns everything the node wrote to stderr so far.
func (n *node) log() string { return n.stderr.String() }

// path returns the absolute path of rel inside the mount.
func (n *node) path(rel string) string { return filepath.Join(n.mount, rel) }

// stop sends SIGTERM and requires a clean exit with status 0 and the tree
// unmounted.
func (n *node) stop() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		n.t.Fatalf("send SIGTERM to bt node: %v", err)
	}
	n.waitStopped(2 * time.Minute)
}

// waitStopped waits up to timeout for the node to exit after a SIGTERM
// and requires status 0, the tree unmounted and its processes gone.
func (n *node) waitStopped(timeout time.Duration) {
	n.t.Helper()
	select {
	case <-n.exited:
	case <-time.After(timeout):
		// SIGQUIT makes the Go runtime print every goroutine's stack to
		// stderr and exit, which shows where the node was stuck.
		n.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-n.exited:
		case <-time.After(10 * time.Second):
		}
		n.t.Fatalf("bt node did not exit within %s of SIGTERM; its goroutines after SIGQUIT are at the end\nstderr:\n%s", timeout, n.log())
	}
	n.done = true
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		n.t.Fatalf("bt node exited with status %d after SIGTERM, expected 0\nstderr:\n%s", code, n.log())
	}
	if isMounted(n.mount) {
		n.t.Fatalf("%s is still mounted after the node stopped", n.mount)
	}
	if !testenv.WaitGroupGone(n.cmd.Process.Pid, 5*time.Second) {
		n.t.Fatalf("bt node exited but left processes of its process group running")
	}
	if left := waitSwtpmGone(n.state, nil, 5*time.Second); len(left) > 0 {
		n.t.Fatalf("swtpm (pids %v) still runs on %s after the node stopped", left, n.state)
	}
}

// kill crashes the node and unmounts the dead FUSE mount lazily, as a
// user must before restarting.
func (n *node) kill() {
	n.t.Helper()
	n.crash()
	n.detachDead()
}

// detachDead checks that the mount of a crashed node is dead and detaches
// it. Processes still working in the tree get ENOENT from then on, not
// ENOTCONN, so a caller that checks their errors waits for them first.
func (n *node) detachDead() {
	n.t.Helper()
	// A directory listing always reaches the FUSE server, unlike stat,
	// which the kernel may serve from its attribute cache.
	if _, err := os.ReadDir(n.mount); !errors.Is(err, syscall.ENOTCONN) {
		n.t.Errorf("list %s after the node was killed: %v, expected ENOTCONN", n.mount, err)
	}
	lazyUnmount(n.t, n.mount)
}

// crash sends SIGKILL to the node process alone and waits for it and its
// swtpm to end. The FUSE mount stays, dead.
func (n *node) crash() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		n.t.Fatalf("send SIGKILL to bt node: %v", err)
	}
	<-n.exited
	n.done = true
	n.waitCrashed()
}

// waitCrashed waits until the killed node's process group and its swtpm,
// which the kernel kills when the node dies (PR_SET_PDEATHSIG), are gone.
func (n *node) waitCrashed() {
	n.t.Helper()
	if !testenv.WaitGroupGone(n.cmd.Process.Pid, 10*time.Second) {
		n.t.Fatalf("processes of the killed node's process group still run after 10 seconds")
	}
	if left := waitSwtpmGone(n.state, nil, 10*time.Second); len(left) > 0 {
		n.t.Fatalf("swtpm (pids %v) of the killed node still runs after 10 seconds", left)
	}
}

// cleanup ends whatever the test left running.
func (n *node) cleanup() {
	if !n.done {
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
		testenv.WaitGroupGone(n.cmd.Process.Pid, 10*time.Second)
	}
	for _, pid := range swtpmProcesses(n.state) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if isMounted(n.mount) {
		lazyUnmount(n.t, n.mount)
	}
	if n.t.Failed() {
		n.t.Logf("stderr of bt node --state %s:\n%s", n.state, tail(n.log(), 60))
	}
}

// swtpmProcesses returns the pids of the swtpm processes whose command
// line names a path in stateDir. Each test has its own state directory,
// so these are the software TPMs of the test's own nodes.
func swtpmProcesses(stateDir string) []int {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) != "swtpm" {
			continue
		}
		for _, arg := range args[1:] {
			if strings.Contains(arg, abs+string(filepath.Separator)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// waitSwtpmGone waits until every swtpm on stateDir, except the pids in
// keep, has exited, and returns the pids still running at the timeout.
func waitSwtpmGone(stateDir string, keep []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, pid := range swtpmProcesses(stateDir) {
			if !slices.Contains(keep, pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lazyUnmount detaches a mount with fusermount3 -u -z.
func lazyUnmount(t testing.TB, mount string) {
	t.Helper()
	if output, err := exec.Command("fusermount3", "-u", "-z", mount).CombinedOutput(); err != nil {
		t.Errorf("fusermount3 -u -z %s: %v: %s", mount, err, output)
	}
}

// isMounted reports whether something is mounted exactly at path.
func isMounted(path string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && unescapeMountPath(fields[4]) == path {
			return true
		}
	}
	return false
}

// unescapeMountPath undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountPath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// newNodeDirs creates an empty state directory and mount point under a
// test's temporary directory.
func newNodeDirs(t testing.TB) (state, mount string) {
	t.Helper()
	base := t.TempDir()
	state = filepath.Join(base, "state")
	mount = filepath.Join(base, "mnt")
	for _, dir := range []string{state, mount} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return state, mount
}

// waitLogLines returns the lines of the node's log that contain every one
// of words, waiting up to 10 seconds for the first. The node logs before it
// replies, but the line reaches n.stderr through a pipe, so it can arrive
// after the reply. It returns nil when no line came.
func (n *node) waitLogLines(words ...string) []string {
	for deadline := time.Now().Add(10 * time.Second); ; {
		lines := logLines(n.log(), words...)
		if len(lines) > 0 || time.Now().After(deadline) {
			return lines
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logLines returns the lines of log that contain every one of words.
func logLines(log string, words ...string) []string {
	var found []string
	for line := range strings.SplitSeq(log, "\n") {
		all := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				all = false
				break
			}
		}
		if all {
			found = append(found, line)
		}
	}
	return found
}

// TestStopWaitsWhileMountBusy stops a node whose mount a program still

// TestStopRightAfterReady sends SIGTERM the moment the node prints its
// ready line. A node that registered for signals after that line lost such
// a signal and served on, in 2 of 100 starts on a loaded machine.
func TestStopRightAfterReady(t *testing.T) {
	requireHost(t)
	for range 20 {
		state, mount := newNodeDirs(t)
		n := startNodeWith(t, state, mount, func(cmd *exec.Cmd) { cmd.Process.Signal(syscall.SIGTERM) })
		n.waitStopped(30 * time.Second)
	}
}

// works in. Like a local file system that refuses to unmount, the node
// keeps serving, prints what to do, and stops cleanly at the next signal
// once the program has ended.
func TestStopWaitsWhileMountBusy(t *testing.T) {
	requireHost(t)
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount)
	if err := os.Mkdir(n.path("busy"), 0o755); err != nil {
		t.Fatal(err)
	}
	user := exec.Command("sleep", "600")
	user.Dir = n.path("busy")
	if err := user.Start(); err != nil {
		t.Fatal(err)
	}
	defer user.Process.Kill()

	if err := n.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	busy := fmt.Sprintf("bt node: %s is busy, so the node goes on serving it", mount)
	testenv.Poll(t, 30*time.Second, "the node says it still serves", func() error {
		if !strings.Contains(n.log(), busy) {
			return errors.New("no such line in its stderr")
		}
		return nil
	})
	// fusermount3's output, which spans lines, is logged as one line of
	// text without escaped line breaks.
	lines := logLines(n.log(), `msg="unmount failed"`)
	if len(lines) != 1 || !strings.Contains(lines[0], "busy") || strings.Contains(lines[0], `\n`) {
		t.Errorf("expected one log line about the busy mount without escaped line breaks; got %q", lines)
	}
	select {
	case <-n.exited:
		t.Fatalf("bt node exited while its mount was busy\nstderr:\n%s", n.log())
	default:
	}
	if err := os.WriteFile(n.path("busy/after-signal"), []byte("still served"), 0o644); err != nil {
		t.Fatalf("write to the mount after the signal: %v", err)
	}

	user.Process.Kill()
	user.Wait()
	n.stop()
}

// TestCheckpointInterval starts a node with --checkpoint-interval 1s.
// Once the tree is quiet, the node checkpoints a change within seconds,
// where the default interval would wait 30 seconds after the start.
func TestCheckpointInterval(t *testing.T) {
	requireHost(t)
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount, "--checkpoint-interval", "1s")
	const written = `msg="checkpoint written"`
	before := len(logLines(n.log(), written))
	writeFileSync(t, n.path("changed.txt"), []byte("checkpoint me\n"))
	// The default interval would hold the change until 30 seconds after
	// the start.
	testenv.Poll(t, 12*time.Second, "a checkpoint after the change", func() error {
		if len(logLines(n.log(), written)) > before {
			return nil
		}
		return errors.New("no new checkpoint in the node's log")
	})
	n.stop()
}

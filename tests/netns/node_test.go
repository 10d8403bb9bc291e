package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/logbuf"
	"github.com/blocktree/blocktree/internal/testenv"
)

// netdPort is the TCP port every node's netd listens on, in its own
// namespace.
const netdPort = "7420"

// node is one host-mode node in its own network namespace.
type node struct {
	t         testing.TB
	ns        string
	dir       string
	addr      string // IPv4 address in the namespace
	principal string

	cmd    *exec.Cmd
	stderr *logbuf.Buffer
	exited <-chan struct{}
}

func newNode(t testing.TB, ns, addr string) *node {
	n := &node{t: t, ns: ns, addr: addr, dir: t.TempDir()}
	for _, d := range []string{n.state(), n.mount(), n.chains()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(n.peers(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// nodePair returns two nodes in namespaces joined by one veth pair. Each
// has started once, which created its keys and principal, and is
// stopped, so that each can issue chains to the other.
func nodePair(t *testing.T) (a, b *node) {
	t.Helper()
	p := prefix()
	nsA, nsB := namespace(t, p+"a"), namespace(t, p+"b")
	addrA, addrB := pointToPoint(t, nsA, nsB)
	a, b = newNode(t, nsA, addrA), newNode(t, nsB, addrB)
	for _, n := range []*node{a, b} {
		n.start()
		n.stop()
	}
	return a, b
}

func (n *node) state() string  { return filepath.Join(n.dir, "state") }
func (n *node) mount() string  { return filepath.Join(n.dir, "mnt") }
func (n *node) chains() string { return filepath.Join(n.dir, "chains") }
func (n *node) peers() string  { return filepath.Join(n.dir, "peers") }

// start runs bt node in the node's namespace and waits for its ready
// line. The first start creates the node and learns its principal.
func (n *node) start() {
	n.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", n.ns, btPath, "node",
		"--state", n.state(), "--mount", n.mount(), "--tpm", "software",
		"--listen", n.addr+":"+netdPort, "--peers", n.peers(), "--chains", n.chains())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	n.cmd, n.stderr = cmd, &logbuf.Buffer{}
	cmd.Stderr = n.stderr
	// ip netns exec runs bt in its own process, which keeps its swtpm in
	// this process group, so a cleanup can end both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start bt node in %s: %v", n.ns, err)
	}
	ready, exited := testenv.WatchReady(cmd, stdout)
	n.exited = exited
	n.t.Cleanup(func() { n.kill(cmd, exited) })
	select {
	case <-ready:
	case <-exited:
		n.t.Fatalf("bt node in %s exited before it was ready:\n%s", n.ns, n.stderr)
	case <-time.After(2 * time.Minute):
		n.t.Fatalf("bt node in %s printed no ready line within 2 minutes:\n%s", n.ns, n.stderr)
	}

	if n.principal == "" {
		out := n.bt("keys", "show", "--state", n.state())
		fields := strings.Fields(out.stdout)
		if out.code != 0 || len(fields) < 2 || fields[0] != "principal" {
			n.t.Fatalf("bt keys show --state %s: exit %d, output %q", n.state(), out.code, out.stdout)
		}
		n.principal = fields[1]
	}
}

// stop sends SIGTERM and requires a clean exit.
func (n *node) stop() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		n.t.Fatalf("SIGTERM to bt node in %s: %v", n.ns, err)
	}
	select {
	case <-n.exited:
	case <-time.After(time.Minute):
		n.t.Fatalf("bt node in %s did not stop within a minute of SIGTERM:\n%s", n.ns, n.stderr)
	}
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		n.t.Fatalf("bt node in %s exited with %d after SIGTERM, expected 0:\n%s", n.ns, code, n.stderr)
	}
	testenv.WaitGroupGone(n.cmd.Process.Pid, 10*time.Second)
}

// kill ends the process group of a node process unless it has exited,
// and logs the node's output when the test failed.
func (n *node) kill(cmd *exec.Cmd, exited <-chan struct{}) {
	select {
	case <-exited:
	default:
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	testenv.WaitGroupGone(cmd.Process.Pid, 10*time.Second)
	if n.t.Failed() {
		n.t.Logf("stderr of bt node in %s:\n%s", n.ns, n.stderr)
	}
}

// result is the outcome of one bt command.
type result struct {
	stdout, stderr string
	code           int
}

// bt runs bt with args in the node's namespace.
func (n *node) bt(args ...string) result {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.ns, btPath}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		n.t.Fatalf("bt %s: %v", strings.Join(args, " "), err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// ping runs bt ping from this node to other's echo service.
func (n *node) ping(other *node, extra ...string) result {
	n.t.Helper()
	return n.bt(append([]string{"ping", other.principal, "--state", n.state()}, extra...)...)
}

// addPeer lists other in this node's peers file.
func (n *node) addPeer(other *node) {
	n.t.Helper()
	f, err := os.OpenFile(n.peers(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s:%s\n", other.principal, other.addr, netdPort)
}

// grant makes the stopped node issuer issue this node a chain over prefix
// in issuer's tree, into this node's chains directory.
func (n *node) grant(issuer *node, prefix string) {
	n.t.Helper()
	out := filepath.Join(n.chains(), issuer.principal+".chain")
	os.Remove(out)
	res := issuer.bt("keys", "issue", "--state", issuer.state(), "--subject", n.principal, "--prefix", prefix, "--expires", "1h", "--out", out)
	if res.code != 0 {
		n.t.Fatalf("bt keys issue by %s for %s over %s: exit %d: %s", issuer.principal, n.principal, prefix, res.code, res.stderr)
	}
}

// tree returns the path of the node's tree, /PRINCIPAL.
func (n *node) tree() string { return "/" + n.principal }

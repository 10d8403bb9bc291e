package netns

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/logbuf"
)

// assertPinged checks that a bt ping of count round trips succeeded.
func assertPinged(t *testing.T, label string, r result, count int) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: bt ping exited with %d\nstdout:\n%s\nstderr:\n%s", label, r.code, r.stdout, r.stderr)
	}
	if got := strings.Count(r.stdout, "reply from "); got != count {
		t.Errorf("%s: %d replies, expected %d:\n%s", label, got, count, r.stdout)
	}
}

// assertPingFailed checks that a bt ping failed with one of the reasons.
func assertPingFailed(t *testing.T, label string, r result, reasons ...string) {
	t.Helper()
	if r.code != 1 {
		t.Fatalf("%s: bt ping exited with %d, expected 1\nstdout:\n%s\nstderr:\n%s", label, r.code, r.stdout, r.stderr)
	}
	for _, reason := range reasons {
		if strings.Contains(r.stderr, "bt ping: "+reason) {
			return
		}
	}
	t.Errorf("%s: bt ping failed with %q, expected one of %q", label, strings.TrimSpace(r.stderr), reasons)
}

func TestRoutingBetweenThreeNodes(t *testing.T) {
	requireHost(t)
	p := prefix()
	bridge := namespace(t, p+"br")
	nsA, nsB, nsC := namespace(t, p+"a"), namespace(t, p+"b"), namespace(t, p+"c")
	addrs := bridged(t, bridge, nsA, nsB, nsC)
	a, b, c := newNode(t, nsA, addrs[0]), newNode(t, nsB, addrs[1]), newNode(t, nsC, addrs[2])

	// The first start creates each node and its keys. A node issues chains
	// to others while it is stopped, because its key is sealed in its
	// state directory, which a running node locks.
	for _, n := range []*node{a, b, c} {
		n.start()
		n.stop()
	}
	b.grant(a, a.tree()+"/dev")
	c.grant(a, a.tree()+"/dev/"+a.principal+"/svc/other")
	a.grant(b, b.tree()+"/dev")
	b.addPeer(a)
	c.addPeer(a)
	a.addPeer(b)
	a.addPeer(c)
	for _, n := range []*node{a, b, c} {
		n.start()
	}

	assertPinged(t, "b to a", b.ping(a, "--count", "3"), 3)
	assertPinged(t, "a to b", a.ping(b, "--count", "3"), 3)

	// c's chain covers another service of a, not the echo service.
	assertPingFailed(t, "c to a", c.ping(a, "--count", "1"), "refused (unauthorized)")
	if lines := grepLines(a.stderr.String(), "circuit refused", "principal="+c.principal); len(lines) != 1 {
		t.Errorf("a logged %d refused circuits of c, expected 1:\n%s", len(lines), a.stderr)
	}
	// a holds no chain for c's tree at all.
	assertPingFailed(t, "a to c", a.ping(c, "--count", "1"), "refused (unauthorized)")
	// b is not in c's peers file.
	r := c.ping(b, "--count", "1")
	assertPingFailed(t, "c to b", r, "unreachable")
	t.Logf("c to b: %s", r.stderr)

	for _, n := range []*node{a, b, c} {
		if strings.Contains(n.stderr.String(), "panicked") {
			t.Errorf("node in %s logged a panic:\n%s", n.ns, n.stderr)
		}
		n.stop()
	}
}

func TestLinkCutAndRestore(t *testing.T) {
	requireHost(t)
	a, b := nodePair(t)
	nsA, nsB, addrA, addrB := a.ns, b.ns, a.addr, b.addr
	b.grant(a, a.tree()+"/dev")
	b.addPeer(a)
	a.start()
	b.start()
	assertPinged(t, "before the cut", b.ping(a, "--count", "2"), 2)

	// A long ping keeps requests in flight across the cut.
	long := startPing(t, b, a, "--count", "60", "--interval", "200ms", "--timeout", "2s")
	long.waitFor(t, "seq=3 ")
	restoreA := cut(t, nsA, addrB)
	restoreB := cut(t, nsB, addrA)

	assertPingFailed(t, "open while cut", b.ping(a, "--count", "1", "--timeout", "3s"), "unreachable", "timed out")
	out := long.wait(t)
	t.Logf("bt ping across the cut:\n%s", out)
	checkAtMostOnce(t, out)
	if !strings.Contains(out, "timed out") && !strings.Contains(out, "connection lost") {
		t.Errorf("no request failed across the cut:\n%s", out)
	}

	restoreA()
	restoreB()
	// The old link may recover or be replaced. Either way a new circuit
	// must work within a minute.
	deadline := time.Now().Add(time.Minute)
	for {
		r := b.ping(a, "--count", "2", "--timeout", "3s")
		if r.code == 0 {
			assertPinged(t, "after the cut", r, 2)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping still fails a minute after the link was restored:\n%s%s", r.stdout, r.stderr)
		}
		time.Sleep(time.Second)
	}

	a.stop()
	b.stop()
}

// checkAtMostOnce checks that bt ping's output shows each sequence number
// answered once at most and no duplicate.
func checkAtMostOnce(t *testing.T, out string) {
	t.Helper()
	if strings.Contains(out, "duplicate") {
		t.Errorf("bt ping saw a duplicate reply:\n%s", out)
	}
	seen := make(map[string]int)
	for _, m := range regexp.MustCompile(`(?m)^(?:reply from \S+: |late reply: )seq=(\d+)`).FindAllStringSubmatch(out, -1) {
		seen[m[1]]++
		if seen[m[1]] > 1 {
			t.Errorf("seq=%s answered %d times:\n%s", m[1], seen[m[1]], out)
		}
	}
}

// grepLines returns the lines of s that contain every word.
func grepLines(s string, words ...string) []string {
	var lines []string
	for _, line := range strings.Split(s, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok && line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

// runningPing is a bt ping in the background.
type runningPing struct {
	stdout *logbuf.Buffer
	stderr bytes.Buffer
	done   chan struct{}
	cancel context.CancelFunc
}

func startPing(t *testing.T, from, to *node, extra ...string) *runningPing {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	args := append([]string{"netns", "exec", from.ns, btPath, "ping", to.principal, "--state", from.state()}, extra...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	p := &runningPing{stdout: &logbuf.Buffer{}, done: make(chan struct{}), cancel: cancel}
	cmd.Stdout, cmd.Stderr = p.stdout, &p.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start bt ping: %v", err)
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// waitFor waits until the ping printed text.
func (p *runningPing) waitFor(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(p.stdout.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("bt ping printed no %q within a minute:\n%s%s", text, p.stdout, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wait waits for the ping to end and returns its output.
func (p *runningPing) wait(t *testing.T) string {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(3 * time.Minute):
		t.Fatal("bt ping did not end within 3 minutes")
	}
	return p.stdout.String() + p.stderr.String()
}

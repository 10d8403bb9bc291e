package netns

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/testenv"
)

func TestRemoteShell(t *testing.T) {
	requireHost(t)
	a, b := nodePair(t)
	addrA, addrB := a.addr, b.addr
	// b may reach a's shell; a may reach only b's echo service.
	shellOfA := a.tree() + "/dev/" + a.principal + "/svc/shell"
	b.grant(a, shellOfA)
	a.grant(b, b.tree()+"/dev/"+b.principal+"/svc/echo")
	a.addPeer(b)
	b.addPeer(a)
	a.start()
	b.start()

	// The command runs in a's network namespace, which alone has addrA.
	r := b.bt("shell", "--state", b.state(), "--tty", "never", a.principal, "--", "sh", "-c", "ip -4 -o addr show; echo err >&2; exit 7")
	if r.code != 7 {
		t.Fatalf("bt shell from b to a: exit %d, expected 7\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, " "+addrA+"/24") || strings.Contains(r.stdout, " "+addrB+"/24") {
		t.Errorf("the remote command's addresses are not those of a's namespace (%s):\n%s", addrA, r.stdout)
	}
	if r.stderr != "err\n" {
		t.Errorf("stderr of the remote command = %q, expected %q", r.stderr, "err\n")
	}
	// a logs the end of the session after it has sent the exit status, so
	// the line may come after bt shell has returned.
	for _, event := range []string{"shell session started", "shell session ended"} {
		testenv.Poll(t, 10*time.Second, "a logs "+event, func() error {
			if lines := grepLines(a.stderr.String(), event, "principal="+b.principal); len(lines) != 1 {
				return fmt.Errorf("%d lines %q with b's principal, expected 1:\n%s", len(lines), event, a.stderr)
			}
			return nil
		})
	}

	// The full address works as well.
	r = b.bt("shell", "--state", b.state(), shellOfA, "--", "sh", "-c", "exit 3")
	if r.code != 3 {
		t.Errorf("bt shell %s: exit %d, expected 3\nstderr:\n%s", shellOfA, r.code, r.stderr)
	}

	// a's chain covers b's echo service, not its shell.
	r = a.bt("shell", "--state", a.state(), b.principal, "--", "true")
	t.Logf("a to b: %s", r.stderr)
	want := "refused principal " + a.principal + " (unauthorized)"
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("bt shell from a to b: exit %d, stderr %q; expected exit 1 and %q", r.code, r.stderr, want)
	}
	if lines := grepLines(b.stderr.String(), "circuit refused", "principal="+a.principal); len(lines) != 1 {
		t.Errorf("b logged %d refused circuits of a, expected 1:\n%s", len(lines), b.stderr)
	}
	if strings.Contains(b.stderr.String(), "shell session started") {
		t.Errorf("b started a shell session although no caller was authorized:\n%s", b.stderr)
	}
	// The chain still reaches the echo service it covers.
	assertPinged(t, "a to b", a.ping(b, "--count", "1"), 1)

	for _, n := range []*node{a, b} {
		if strings.Contains(n.stderr.String(), "panicked") {
			t.Errorf("node in %s logged a panic:\n%s", n.ns, n.stderr)
		}
		n.stop()
	}
}

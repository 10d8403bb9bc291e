package netns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGrantFromRunningNode has a running node issue a chain through its
// key service (bt keys issue --run), in the text form a user copies from
// one console to another, and checks that the chain lets the other node
// reach it.
func TestGrantFromRunningNode(t *testing.T) {
	requireHost(t)
	p := prefix()
	nsA, nsB := namespace(t, p+"ga"), namespace(t, p+"gb")
	addrA, addrB := pointToPoint(t, nsA, nsB)
	a, b := newNode(t, nsA, addrA), newNode(t, nsB, addrB)
	a.start()
	b.addPeer(a)
	b.start()

	assertPingFailed(t, "before the grant", b.ping(a, "--count", "1", "--timeout", "5s"), "refused")

	echo := a.tree() + "/dev/" + a.principal + "/svc/echo"
	r := a.bt("keys", "issue", "--run", filepath.Join(a.state(), "run"), "--subject", b.principal, "--prefix", echo, "--expires", "1h", "--out", "-")
	if r.code != 0 {
		t.Fatalf("bt keys issue --run: exit %d: %s", r.code, r.stderr)
	}
	text := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(text, "blocktree-chain:") || strings.Contains(text, "\n") {
		t.Fatalf("bt keys issue --out - printed %q, expected one line of chain text", r.stdout)
	}
	if !strings.Contains(r.stderr, "granted "+b.principal) {
		t.Errorf("bt keys issue --out - reported %q on standard error, expected the grant", r.stderr)
	}
	if err := os.WriteFile(filepath.Join(b.chains(), a.principal+".chain"), []byte(text+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	assertPinged(t, "after the grant", b.ping(a, "--count", "2"), 2)
	a.stop()
	b.stop()
}

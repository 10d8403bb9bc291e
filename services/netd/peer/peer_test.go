package peer

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// assertSameChain checks that got encodes to the same bytes as want.
func assertSameChain(t *testing.T, label string, got, want capability.Chain) {
	t.Helper()
	gotBytes, err := got.MarshalBinary()
	if err != nil {
		t.Fatalf("%s: encode: %v", label, err)
	}
	wantBytes, err := want.MarshalBinary()
	if err != nil {
		t.Fatalf("%s: encode expected chain: %v", label, err)
	}
	if !bytes.Equal(gotBytes, wantBytes) {
		t.Errorf("%s has %d links that differ from the %d links sent", label, len(got), len(want))
	}
}

// assertEcho sends msg from one end of a link and checks that the other
// end reads it.
func assertEcho(t *testing.T, from, to *Link, msg string) {
	t.Helper()
	if _, err := from.Write([]byte(msg)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := from.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(to, buf); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if string(buf) != msg {
		t.Errorf("read %q, expected %q", buf, msg)
	}
}

func TestLinkBetweenTwoNodes(t *testing.T) {
	tree := newTestTree(t)
	credA, chainA := tree.node()
	credB, chainB := tree.node()

	ln, err := Listen(tree.config(credB, chainB, nil), loopback(t))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := acceptInBackground(t, ln)

	dialed, err := Dial(testContext(t), tree.config(credA, chainA, nil), "tcp", ln.Addr().String(), credB.Principal())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { dialed.Close() })
	served := nextAccepted(t, accepted)

	if dialed.Peer() != credB.Principal() {
		t.Errorf("dialer's Peer() = %s, expected the listener %s", dialed.Peer(), credB.Principal())
	}
	if served.Peer() != credA.Principal() {
		t.Errorf("listener's Peer() = %s, expected the dialer %s", served.Peer(), credA.Principal())
	}
	if dialed.Accepted() || !served.Accepted() {
		t.Errorf("Accepted() = %v on the dialer and %v on the listener, expected false and true", dialed.Accepted(), served.Accepted())
	}
	assertSameChain(t, "listener's Chain", served.Chain(), chainA)
	if served.Scope() != tree.space("") {
		t.Errorf("listener's Scope() = %q, expected %q", served.Scope(), tree.space(""))
	}
	if !served.Covers(tree.space("/" + credB.Principal().String() + "/svc/echo")) {
		t.Error("listener's Covers rejects a service inside the dialer's chain")
	}
	if served.Covers(capability.RootPath(tree.root.Principal()) + "/home") {
		t.Error("listener's Covers accepts a path outside the dialer's chain")
	}
	for _, end := range []*Link{dialed, served} {
		if expires, ok := end.Expires(); !ok || !expires.Equal(chainA[0].Expires) {
			t.Errorf("Expires() = %s, %v, expected the dialer's chain expiry %s, true", expires, ok, chainA[0].Expires)
		}
	}

	assertEcho(t, dialed, served, "from the dialer")
	assertEcho(t, served, dialed, "from the listener")
	if ln.Rejected() != 0 {
		t.Errorf("Rejected() = %d after a valid peer, expected 0", ln.Rejected())
	}
}

func TestLinkWithRootAndDelegatedNode(t *testing.T) {
	tree := newTestTree(t)
	admin := newCredential(t)
	node := newCredential(t)
	delegated := capability.Chain{
		tree.issue(tree.root, admin.Principal(), capability.RootPath(tree.root.Principal())),
		tree.issue(admin, node.Principal(), tree.space("")),
	}

	for _, rootListens := range []bool{true, false} {
		name := map[bool]string{true: "root listens", false: "node listens"}[rootListens]
		t.Run(name, func(t *testing.T) {
			listenCred, listenChain := node, delegated
			dialCred, dialChain := tree.root, capability.Chain(nil)
			if rootListens {
				listenCred, listenChain, dialCred, dialChain = dialCred, dialChain, listenCred, listenChain
			}
			ln, err := Listen(tree.config(listenCred, listenChain, nil), loopback(t))
			if err != nil {
				t.Fatalf("Listen: %v", err)
			}
			t.Cleanup(func() { ln.Close() })
			accepted := acceptInBackground(t, ln)

			dialed, err := Dial(testContext(t), tree.config(dialCred, dialChain, nil), "tcp", ln.Addr().String(), listenCred.Principal())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			t.Cleanup(func() { dialed.Close() })
			served := nextAccepted(t, accepted)

			if served.Peer() != dialCred.Principal() {
				t.Errorf("listener's Peer() = %s, expected %s", served.Peer(), dialCred.Principal())
			}
			assertSameChain(t, "listener's Chain", served.Chain(), dialChain)
			_, expires := served.Expires()
			if expires != rootListens {
				t.Errorf("Expires() reports %v; expected an expiry only for the delegated node's chain", expires)
			}
		})
	}
}

func TestDialWrongExpectedPrincipal(t *testing.T) {
	tree := newTestTree(t)
	credA, chainA := tree.node()
	credB, chainB := tree.node()
	credC, _ := tree.node()
	ln := listen(t, tree.config(credB, chainB, nil))
	accepted := acceptInBackground(t, ln)
	addr := ln.Addr().String()

	_, err := Dial(testContext(t), tree.config(credA, chainA, nil), "tcp", addr, credC.Principal())

	assertErrorIs(t, err, ErrWrongPeer)
	if err != nil {
		assertContains(t, "Dial error", err.Error(), "peer "+addr+" is "+credB.Principal().String(), "expected "+credC.Principal().String(), "check the address in the tree")
	}
	assertNothingAccepted(t, accepted)
}

// badPeer is a node whose chain other nodes of the tree must reject.
type badPeer struct {
	name  string
	make  func(tree *testTree, other *principal.Credential, otherChain capability.Chain) (*principal.Credential, capability.Chain)
	cause error // the capability error that Verify reports
	hint  string
}

var badPeers = []badPeer{
	{
		name: "chain of another tree",
		make: func(tree *testTree, _ *principal.Credential, _ capability.Chain) (*principal.Credential, capability.Chain) {
			return newTestTree(tree.t).node()
		},
		cause: capability.ErrWrongRoot,
		hint:  "check that the node belongs to tree",
	},
	{
		name: "root of another tree",
		make: func(tree *testTree, _ *principal.Credential, _ capability.Chain) (*principal.Credential, capability.Chain) {
			return newTestTree(tree.t).root, nil
		},
		cause: capability.ErrWrongWriter,
		hint:  "ends at its own principal",
	},
	{
		name: "chain stolen from another node",
		make: func(tree *testTree, _ *principal.Credential, otherChain capability.Chain) (*principal.Credential, capability.Chain) {
			return newCredential(tree.t), otherChain
		},
		cause: capability.ErrWrongWriter,
		hint:  "ends at its own principal",
	},
	{
		name: "expired writecap",
		make: func(tree *testTree, _ *principal.Credential, _ capability.Chain) (*principal.Credential, capability.Chain) {
			cred := newCredential(tree.t)
			now := time.Now()
			return cred, capability.Chain{tree.issueAt(tree.root, cred.Principal(), tree.space(""), now.Add(-2*time.Hour), now.Add(-time.Hour))}
		},
		cause: capability.ErrExpired,
		hint:  "renew the node's writecaps",
	},
	{
		name: "writecap not yet valid",
		make: func(tree *testTree, _ *principal.Credential, _ capability.Chain) (*principal.Credential, capability.Chain) {
			cred := newCredential(tree.t)
			now := time.Now()
			return cred, capability.Chain{tree.issueAt(tree.root, cred.Principal(), tree.space(""), now.Add(time.Hour), now.Add(2*time.Hour))}
		},
		cause: capability.ErrNotYetValid,
		hint:  "check that both clocks are right",
	},
	{
		name: "prefix in another tree",
		make: func(tree *testTree, _ *principal.Credential, _ capability.Chain) (*principal.Credential, capability.Chain) {
			cred := newCredential(tree.t)
			return cred, capability.Chain{tree.issue(tree.root, cred.Principal(), capability.RootPath(cred.Principal())+"/dev")}
		},
		cause: capability.ErrOutOfScope,
		hint:  "each prefix of the chain must lie inside the one before it",
	},
	{
		name: "first link issued by a non-root",
		make: func(tree *testTree, other *principal.Credential, _ capability.Chain) (*principal.Credential, capability.Chain) {
			cred := newCredential(tree.t)
			return cred, capability.Chain{tree.issue(other, cred.Principal(), tree.space(""))}
		},
		cause: capability.ErrWrongRoot,
		hint:  "check that the node belongs to tree",
	},
}

func TestListenerRejectsBadChain(t *testing.T) {
	for _, bad := range badPeers {
		t.Run(bad.name, func(t *testing.T) {
			tree := newTestTree(t)
			good, goodChain := tree.node()
			listener, listenerChain := tree.node()
			badCred, badChain := bad.make(tree, good, goodChain)
			logs := &logBuffer{}
			ln := listen(t, tree.config(listener, listenerChain, logs))
			accepted := acceptInBackground(t, ln)
			addr := ln.Addr().String()

			_, err := dialUnchecked(testContext(t), t, tree.config(badCred, badChain, nil), addr, listener.Principal())
			if err == nil {
				t.Fatal("Dial with a bad chain succeeded")
			}
			assertErrorIs(t, err, ErrRejected)
			assertContains(t, "Dial error", err.Error(), addr, "closed the link before accepting this node's writecap chain", "the peer's log")
			waitRejected(t, ln, 1)
			assertNothingAccepted(t, accepted)

			lines := rejectionLines(t, logs, 1)
			if len(lines) != 1 {
				t.Fatalf("logged %d rejections, expected 1:\n%s", len(lines), logs)
			}
			assertContains(t, "log line", lines[0], "level=WARN", "peer=127.0.0.1:", "principal="+badCred.Principal().String(), bad.cause.Error(), bad.hint, "rejected=1")

			// The listener goes on serving valid peers.
			link, err := Dial(testContext(t), tree.config(good, goodChain, nil), "tcp", addr, listener.Principal())
			if err != nil {
				t.Fatalf("Dial by a valid node after the rejection: %v", err)
			}
			link.Close()
			if served := nextAccepted(t, accepted); served.Peer() != good.Principal() {
				t.Errorf("accepted %s, expected the valid node %s", served.Peer(), good.Principal())
			}
		})
	}
}

func TestListenerAcceptsNarrowChain(t *testing.T) {
	tree := newTestTree(t)
	listener, _ := tree.node()
	dialer := newCredential(t)
	echo := tree.space("/" + listener.Principal().String() + "/svc/echo")
	chain := capability.Chain{tree.issue(tree.root, dialer.Principal(), echo)}
	ln := listen(t, tree.config(listener, nil, nil))
	accepted := acceptInBackground(t, ln)

	link, err := Dial(testContext(t), tree.config(dialer, chain, nil), "tcp", ln.Addr().String(), listener.Principal())
	if err != nil {
		t.Fatalf("Dial with a chain over one service: %v", err)
	}
	defer link.Close()
	served := nextAccepted(t, accepted)

	if served.Scope() != echo {
		t.Errorf("Scope() = %q, expected %q", served.Scope(), echo)
	}
	if !served.Covers(echo) {
		t.Errorf("Covers(%q) = false for the chain's own prefix", echo)
	}
	if other := tree.space("/" + listener.Principal().String() + "/svc/shell"); served.Covers(other) {
		t.Errorf("Covers(%q) = true outside the chain's prefix", other)
	}
}

func TestDialOwnChainChecked(t *testing.T) {
	tree := newTestTree(t)
	cred := newCredential(t)
	now := time.Now()
	expired := capability.Chain{tree.issueAt(tree.root, cred.Principal(), tree.space(""), now.Add(-2*time.Hour), now.Add(-time.Hour))}
	ln := loopback(t)
	defer ln.Close()

	_, err := Dial(testContext(t), tree.config(cred, expired, nil), "tcp", ln.Addr().String(), tree.root.Principal())
	assertErrorIs(t, err, capability.ErrExpired)
	if err != nil {
		assertContains(t, "Dial error", err.Error(), "would reject this node", cred.Principal().String(), "renew")
	}

	// A listener presents no chain, so its own does not matter.
	l, err := Listen(tree.config(cred, expired, nil), ln)
	if err != nil {
		t.Fatalf("Listen with an expired chain of its own: %v", err)
	}
	l.Close()
}

func TestConfigRejectsMissingFields(t *testing.T) {
	tree := newTestTree(t)
	cred, chain := tree.node()
	ctx := testContext(t)

	noNode := tree.config(nil, chain, nil)
	if _, err := Dial(ctx, noNode, "tcp", "127.0.0.1:1", tree.root.Principal()); err == nil || !strings.Contains(err.Error(), "Node is nil") {
		t.Errorf("Dial with no Node: error %v, expected one naming Node", err)
	}
	noRoot := tree.config(cred, chain, nil)
	noRoot.Root = principal.Principal{}
	if _, err := Dial(ctx, noRoot, "tcp", "127.0.0.1:1", tree.root.Principal()); err == nil || !strings.Contains(err.Error(), "Root is the zero principal") {
		t.Errorf("Dial with no Root: error %v, expected one naming Root", err)
	}
	if _, err := Dial(ctx, tree.config(cred, chain, nil), "tcp", "127.0.0.1:1", principal.Principal{}); err == nil || !strings.Contains(err.Error(), "expected principal is zero") {
		t.Errorf("Dial with no expected principal: error %v, expected one naming it", err)
	}
}

func TestLinkClosesWhenDialerChainExpires(t *testing.T) {
	tree := newTestTree(t)
	credA, _ := tree.node()
	credB := newCredential(t)
	expires := time.Now().Add(2 * time.Second)
	chainB := capability.Chain{tree.issueAt(tree.root, credB.Principal(), tree.space(""), time.Now().Add(-time.Hour), expires)}
	ln := listen(t, tree.config(credA, nil, nil))
	accepted := acceptInBackground(t, ln)

	link, err := Dial(testContext(t), tree.config(credB, chainB, nil), "tcp", ln.Addr().String(), credA.Principal())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer link.Close()
	served := nextAccepted(t, accepted)

	ends := map[string]*Link{"dialer": link, "listener": served}
	for name, end := range ends {
		if got, ok := end.Expires(); !ok || got.Unix() != expires.Unix() {
			t.Errorf("%s: Expires() = %s, %v, expected %s, true", name, got, ok, expires)
		}
		if err := end.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatalf("%s: SetDeadline: %v", name, err)
		}
	}
	for name, end := range ends {
		_, err = end.Read(make([]byte, 1))
		if err == nil {
			t.Fatalf("%s: Read returned data; expected the link to close", name)
		}
		if now := time.Now(); now.Unix() < expires.Unix() {
			t.Errorf("%s: link closed at %s, before the chain expired at %s", name, now, expires)
		}
	}
}

package peer

import (
	"bytes"
	"errors"
	"io"
	"net"
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
	assertSameChain(t, "dialer's PeerChain", dialed.PeerChain(), chainB)
	assertSameChain(t, "listener's PeerChain", served.PeerChain(), chainA)
	if expires, ok := dialed.Expires(); !ok || !expires.Equal(chainB[0].Expires) {
		t.Errorf("dialer's Expires() = %s, %v, expected %s, true", expires, ok, chainB[0].Expires)
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
			assertSameChain(t, "dialer's PeerChain", dialed.PeerChain(), listenChain)
			assertSameChain(t, "listener's PeerChain", served.PeerChain(), dialChain)

			rootEnd := map[bool]*Link{true: dialed, false: served}[rootListens]
			if _, ok := rootEnd.Expires(); ok {
				t.Error("Expires() reports an expiry for the root's empty chain")
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
		name: "prefix of its own node only",
		make: func(tree *testTree, _ *principal.Credential, _ capability.Chain) (*principal.Credential, capability.Chain) {
			cred := newCredential(tree.t)
			return cred, capability.Chain{tree.issue(tree.root, cred.Principal(), tree.space("/"+cred.Principal().String()))}
		},
		cause: capability.ErrOutOfScope,
		hint:  "give the node a writecap that covers",
	},
	{
		name: "prefix outside the node address space",
		make: func(tree *testTree, _ *principal.Credential, _ capability.Chain) (*principal.Credential, capability.Chain) {
			cred := newCredential(tree.t)
			return cred, capability.Chain{tree.issue(tree.root, cred.Principal(), capability.RootPath(tree.root.Principal())+"/home")}
		},
		cause: capability.ErrOutOfScope,
		hint:  "give the node a writecap that covers",
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
			assertContains(t, "Dial error", err.Error(), addr, "closed the link before sending its writecap chain", "check its log")
			waitRejected(t, ln, 1)
			assertNothingAccepted(t, accepted)

			lines := logs.Lines("peer rejected")
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

func TestDialRejectsBadChain(t *testing.T) {
	for _, bad := range badPeers {
		t.Run(bad.name, func(t *testing.T) {
			tree := newTestTree(t)
			good, goodChain := tree.node()
			other, otherChain := tree.node()
			badCred, badChain := bad.make(tree, other, otherChain)
			ln := listen(t, tree.config(badCred, badChain, nil))
			acceptInBackground(t, ln)
			addr := ln.Addr().String()

			link, err := Dial(testContext(t), tree.config(good, goodChain, nil), "tcp", addr, badCred.Principal())
			if err == nil {
				link.Close()
				t.Fatal("Dial accepted a listener with a bad chain")
			}

			assertErrorIs(t, err, ErrUnauthorized, bad.cause)
			var chainErr *capability.ChainError
			if !errors.As(err, &chainErr) {
				t.Errorf("Dial error %q wraps no *capability.ChainError", err)
			}
			assertContains(t, "Dial error", err.Error(), "peer "+addr, badCred.Principal().String(), NodeSpace(tree.root.Principal()), bad.hint)
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Dial error %q spans several lines", err)
			}
		})
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
		assertContains(t, "Dial error", err.Error(), "peers would reject this node", cred.Principal().String(), "renew")
	}

	_, err = Listen(tree.config(cred, expired, nil), ln)
	assertErrorIs(t, err, capability.ErrExpired)
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

func TestLinkClosesWhenPeerChainExpires(t *testing.T) {
	tree := newTestTree(t)
	credA, chainA := tree.node()
	credB := newCredential(t)
	expires := time.Now().Add(2 * time.Second)
	chainB := capability.Chain{tree.issueAt(tree.root, credB.Principal(), tree.space(""), time.Now().Add(-time.Hour), expires)}
	ln := listen(t, tree.config(credB, chainB, nil))
	accepted := acceptInBackground(t, ln)

	link, err := Dial(testContext(t), tree.config(credA, chainA, nil), "tcp", ln.Addr().String(), credB.Principal())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer link.Close()
	nextAccepted(t, accepted)
	if got, ok := link.Expires(); !ok || got.Unix() != expires.Unix() {
		t.Errorf("Expires() = %s, %v, expected %s, true", got, ok, expires)
	}

	if err := link.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	_, err = link.Read(make([]byte, 1))
	if err == nil {
		t.Fatal("Read returned data; expected the link to close")
	}
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read error %v, expected the link closed at the chain's expiry", err)
	}
	if now := time.Now(); now.Unix() < expires.Unix() {
		t.Errorf("link closed at %s, before the chain expired at %s", now, expires)
	}
}

package route

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/logbuf"
	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// testNode is a host-mode node in this process: the root of its own tree,
// with a router and an echo service.
type testNode struct {
	t        *testing.T
	cred     *principal.Credential
	dir      string // run directory, peers file and chains directory
	router   *Router
	logs     *logbuf.Buffer
	addr     string // the router's link listener
	stopEcho context.CancelFunc
}

func newTestNode(t *testing.T) *testNode {
	t.Helper()
	return newTestNodeWith(t, func(*Options) {})
}

// newTestNodeWith returns a started node whose router options change
// sets.
func newTestNodeWith(t *testing.T, change func(*Options)) *testNode {
	t.Helper()
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatalf("GenerateCredential: %v", err)
	}
	n := &testNode{t: t, cred: cred, dir: t.TempDir(), logs: &logbuf.Buffer{}}
	if err := os.Mkdir(n.chainsDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.peersFile(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	n.start(change)
	return n
}

func (n *testNode) principal() principal.Principal { return n.cred.Principal() }
func (n *testNode) runDir() string                 { return filepath.Join(n.dir, "run") }
func (n *testNode) peersFile() string              { return filepath.Join(n.dir, "peers") }
func (n *testNode) chainsDir() string              { return filepath.Join(n.dir, "chains") }

// address returns the address of this node's service name.
func (n *testNode) address(name string) string {
	return endpoint.Service(n.principal(), n.principal(), name).String()
}

// start starts the router and the echo service, on the same link address
// as before when the node ran already.
func (n *testNode) start(change func(*Options)) {
	n.t.Helper()
	listenAddr := "127.0.0.1:0"
	if n.addr != "" {
		listenAddr = n.addr
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		n.t.Fatalf("listen: %v", err)
	}
	opts := Options{
		Node: n.cred, Root: n.principal(), RunDir: n.runDir(), Listener: ln,
		PeersFile: n.peersFile(), ChainsDir: n.chainsDir(),
		Keepalive: time.Second, HandshakeTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	change(&opts)
	r, err := New(opts)
	if err != nil {
		n.t.Fatalf("New: %v", err)
	}
	n.router = r
	n.addr = r.Addr().String()

	echo, err := endpoint.Register(n.runDir(), endpoint.Service(n.principal(), n.principal(), endpoint.EchoName))
	if err != nil {
		n.t.Fatalf("Register echo: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stopEcho = cancel
	go endpoint.ServeEcho(ctx, echo, opts.Logger)
	n.t.Cleanup(n.stop)
}

func (n *testNode) stop() {
	if n.router == nil {
		return
	}
	n.stopEcho()
	n.router.Close()
	n.router = nil
}

// addPeer adds other to this node's peers file.
func (n *testNode) addPeer(other *testNode) {
	n.t.Helper()
	f, err := os.OpenFile(n.peersFile(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", other.principal(), other.addr)
}

// grantedBy makes issuer issue a chain to n over prefix in issuer's tree and
// stores it in n's chains directory, replacing an earlier one.
func (n *testNode) grantedBy(issuer *testNode, prefix string) {
	n.t.Helper()
	now := time.Now()
	w, err := capability.Issue(issuer.cred.Signing, n.principal(), prefix, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		n.t.Fatalf("Issue: %v", err)
	}
	data, err := capability.Chain{w}.MarshalBinary()
	if err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.chainsDir(), issuer.principal().String()+ChainSuffix), data, 0o644); err != nil {
		n.t.Fatal(err)
	}
}

// dial opens a connection from this node to address.
func (n *testNode) dial(ctx context.Context, address string) (*bus.Conn, error) {
	return endpoint.Dial(ctx, n.runDir(), n.principal(), address)
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// roundTrip sends one message on conn and checks that the echo returns it.
func roundTrip(t *testing.T, ctx context.Context, conn *bus.Conn, kind uint32, payload string) {
	t.Helper()
	if err := conn.Send(ctx, kind, []byte(payload)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msg, err := conn.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	defer msg.Release()
	if msg.Kind != kind || string(msg.Data) != payload {
		t.Fatalf("echo returned kind %d %q, expected kind %d %q", msg.Kind, msg.Data, kind, payload)
	}
}

// pair returns two nodes where b may reach a's services under prefix of
// a's tree; an empty prefix grants /A/dev.
func pair(t *testing.T, prefix string) (a, b *testNode) {
	return pairWith(t, prefix, func(*Options) {})
}

// pairWith is pair with router options that change sets on both nodes.
func pairWith(t *testing.T, prefix string, change func(*Options)) (a, b *testNode) {
	a, b = newTestNodeWith(t, change), newTestNodeWith(t, change)
	if prefix == "" {
		prefix = capability.RootPath(a.principal()) + "/dev"
	}
	b.addPeer(a)
	b.grantedBy(a, prefix)
	return a, b
}

// copyChain copies from's chain file for its own tree into to's chains
// directory.
func copyChain(from, to *testNode) error {
	name := from.principal().String() + ChainSuffix
	data, err := os.ReadFile(filepath.Join(from.chainsDir(), name))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(to.chainsDir(), name), data, 0o644)
}

// serveSink registers the service sink on n, which accepts one connection
// and never reads from it, until the test ends.
func serveSink(t *testing.T, n *testNode) {
	t.Helper()
	sink, err := endpoint.Register(n.runDir(), endpoint.Service(n.principal(), n.principal(), "sink"))
	if err != nil {
		t.Fatalf("Register sink: %v", err)
	}
	stuck := make(chan struct{})
	t.Cleanup(func() {
		close(stuck)
		sink.Close()
	})
	go func() {
		conn, _, err := sink.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		<-stuck
	}()
}

// msgBody returns the body of a MSG frame.
func msgBody(kind uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(payload)), kind)
	return append(b, payload...)
}

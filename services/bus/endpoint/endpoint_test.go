package endpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/crypto/capability"
)

func TestParseAddress(t *testing.T) {
	root, node := newCredential(t).Principal(), newCredential(t).Principal()
	base := "/" + root.String() + "/dev/" + node.String()

	a, err := Parse(base + "/svc/echo")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if a.Root != root || a.Node != node || a.Kind != KindService || a.Name != "echo" {
		t.Fatalf("Parse returned %+v", a)
	}
	if a.String() != base+"/svc/echo" {
		t.Fatalf("String() = %q", a.String())
	}
	if _, err := Parse(base + "/proc/web-1.x_y"); err != nil {
		t.Fatalf("Parse proc address: %v", err)
	}

	for _, bad := range []string{
		"",
		base,
		base + "/svc",
		base + "/svc/echo/extra",
		base + "/bin/echo",
		base + "/svc/Echo",
		base + "/svc/-echo",
		base + "/svc/" + strings.Repeat("a", MaxNameLen+1),
		"/" + root.String() + "/etc/" + node.String() + "/svc/echo",
		"/" + root.String() + "/dev/btnotaprincipal/svc/echo",
		base + "/svc/../echo",
		"relative/dev/x/svc/echo",
	} {
		if _, err := Parse(bad); !errors.Is(err, ErrInvalidAddress) {
			t.Errorf("Parse(%q) = %v, expected ErrInvalidAddress", bad, err)
		}
	}
}

func TestSocketPathTooLong(t *testing.T) {
	a := Service(newCredential(t).Principal(), newCredential(t).Principal(), "echo")
	if _, err := SocketPath("/run/bt/bus", a); err != nil {
		t.Fatalf("SocketPath with the default run directory: %v", err)
	}
	_, err := SocketPath("/"+strings.Repeat("d", 100), a)
	if err == nil || !strings.Contains(err.Error(), "shorter run directory") {
		t.Fatalf("SocketPath of a long run directory = %v, expected an error that asks for a shorter one", err)
	}
}

// acceptOne accepts one connection on l in the background.
func acceptOne(l *Listener) <-chan accepted {
	ch := make(chan accepted, 1)
	go func() {
		c, o, err := l.Accept()
		ch <- accepted{c, o, err}
	}()
	return ch
}

type accepted struct {
	conn   *bus.Conn
	origin Origin
	err    error
}

func TestDialLocalSpeaksForNode(t *testing.T) {
	ctx := testContext(t)
	node := newCredential(t).Principal()
	run := t.TempDir()
	a := Service(node, node, "echo")
	l := register(t, run, a)

	ch := acceptOne(l)
	conn, err := Dial(ctx, run, node, a.String())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	got := <-ch
	if got.err != nil {
		t.Fatalf("Accept: %v", got.err)
	}
	defer got.conn.Close()
	if got.origin.Principal != node || len(got.origin.Chain) != 0 || got.origin.Remote {
		t.Fatalf("origin = %+v, expected the node %s with no chain", got.origin, node)
	}

	if err := conn.Send(ctx, 7, []byte("ping")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msg, err := got.conn.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	if msg.Kind != 7 || string(msg.Data) != "ping" {
		t.Fatalf("received kind %d %q, expected the message after the hello", msg.Kind, msg.Data)
	}
}

func TestDialOriginClaimWithChain(t *testing.T) {
	ctx := testContext(t)
	nodeCred, remote := newCredential(t), newCredential(t)
	node := nodeCred.Principal()
	run := t.TempDir()
	a := Service(node, node, "echo")
	l := register(t, run, a)

	chain := issue(t, nodeCred, remote.Principal(), capability.RootPath(node)+"/dev")
	ch := acceptOne(l)
	conn, err := DialOrigin(ctx, run, a, &Origin{Principal: remote.Principal(), Chain: chain})
	if err != nil {
		t.Fatalf("DialOrigin: %v", err)
	}
	defer conn.Close()
	got := <-ch
	if got.err != nil {
		t.Fatalf("Accept: %v", got.err)
	}
	defer got.conn.Close()
	if got.origin.Principal != remote.Principal() || !got.origin.Remote || len(got.origin.Chain) != 1 {
		t.Fatalf("origin = %+v, expected remote %s with its chain", got.origin, remote.Principal())
	}
}

func TestAcceptRejectsUncoveredClaim(t *testing.T) {
	ctx := testContext(t)
	nodeCred, remote := newCredential(t), newCredential(t)
	node := nodeCred.Principal()
	run := t.TempDir()
	a := Service(node, node, "echo")
	l := register(t, run, a)

	cases := map[string]*Origin{
		"chain for another service": {Principal: remote.Principal(), Chain: issue(t, nodeCred, remote.Principal(), Service(node, node, "other").String())},
		"no chain":                  {Principal: remote.Principal()},
		"chain of another subject":  {Principal: remote.Principal(), Chain: issue(t, nodeCred, newCredential(t).Principal(), capability.RootPath(node))},
	}
	want := uint64(0)
	for name, origin := range cases {
		ch := acceptOne(l)
		conn, err := DialOrigin(ctx, run, a, origin)
		if err != nil {
			t.Fatalf("%s: DialOrigin: %v", name, err)
		}
		got := <-ch
		conn.Close()
		if !errors.Is(got.err, ErrHello) {
			t.Errorf("%s: Accept = %v, expected ErrHello", name, got.err)
		}
		want++
		if l.Rejected() != want {
			t.Errorf("%s: Rejected() = %d, expected %d", name, l.Rejected(), want)
		}
	}
}

func TestMayClaimOnlyRootOrOwnUser(t *testing.T) {
	if !mayClaim(0, 1000) {
		t.Error("root may not claim")
	}
	if !mayClaim(1000, 1000) {
		t.Error("the endpoint's own user may not claim")
	}
	if mayClaim(1001, 1000) {
		t.Error("another user may claim")
	}
}

func TestAcceptRejectsMissingHello(t *testing.T) {
	ctx := testContext(t)
	node := newCredential(t).Principal()
	run := t.TempDir()
	a := Service(node, node, "echo")
	l := register(t, run, a)
	path, _ := SocketPath(run, a)

	ch := acceptOne(l)
	conn, err := bus.Dial(path)
	if err != nil {
		t.Fatalf("bus.Dial: %v", err)
	}
	defer conn.Close()
	if err := conn.Send(ctx, 7, []byte("no hello")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := <-ch; !errors.Is(got.err, ErrHello) {
		t.Fatalf("Accept = %v, expected ErrHello", got.err)
	}
	if _, err := conn.Recv(ctx); !errors.Is(err, bus.ErrPeerGone) {
		t.Fatalf("Recv after the rejection = %v, expected ErrPeerGone", err)
	}
}

func TestDialWithoutEndpoint(t *testing.T) {
	node := newCredential(t).Principal()
	_, err := Dial(testContext(t), t.TempDir(), node, Service(node, node, "none").String())
	if !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("Dial = %v, expected ErrNoEndpoint", err)
	}
}

func TestRegisterReplacesStaleSocket(t *testing.T) {
	node := newCredential(t).Principal()
	run := t.TempDir()
	a := Service(node, node, "echo")
	first, err := Register(run, a)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if _, err := Register(run, a); err == nil {
		t.Fatal("second Register on a live endpoint succeeded")
	}
	first.Close()
	// A crashed process leaves its socket file behind.
	path, _ := SocketPath(run, a)
	if err := makeStaleSocket(path); err != nil {
		t.Fatalf("make a stale socket: %v", err)
	}
	again, err := Register(run, a)
	if err != nil {
		t.Fatalf("Register over a stale socket: %v", err)
	}
	again.Close()
}

// fakeNetd serves one open request on the netd endpoint with reply.
func fakeNetd(t *testing.T, run string, node Address, reply func(a Address) (uint32, []byte)) <-chan Origin {
	t.Helper()
	l, err := Register(run, Service(node.Root, node.Node, NetdName))
	if err != nil {
		t.Fatalf("Register netd: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	origins := make(chan Origin, 1)
	go func() {
		conn, origin, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		origins <- origin
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		msg, err := conn.Recv(ctx)
		if err != nil || msg.Kind != KindOpen {
			return
		}
		a, _, err := DecodeOpen(msg.Data)
		if err != nil {
			return
		}
		kind, payload := reply(a)
		if kind == 0 {
			<-ctx.Done()
			return
		}
		conn.Send(ctx, kind, payload)
		conn.Recv(ctx) // hold the connection until the client closes it
	}()
	return origins
}

func TestDialRemoteThroughNetd(t *testing.T) {
	self := newCredential(t).Principal()
	other := newCredential(t).Principal()
	dest := Service(other, other, "echo")
	here := Service(self, self, NetdName)

	cases := []struct {
		name    string
		kind    uint32
		payload []byte
		want    error
	}{
		{"opened", KindOpened, nil, nil},
		{"unreachable", KindOpenFailed, EncodeOpenFailed(CodeUnreachable, "connect refused"), ErrUnreachable},
		{"unauthorized", KindOpenFailed, EncodeOpenFailed(CodeUnauthorized, "chain does not cover"), ErrUnauthorized},
		{"no endpoint", KindOpenFailed, EncodeOpenFailed(CodeNoEndpoint, "nothing at svc/echo"), ErrNoEndpoint},
		{"no reply", 0, nil, ErrTimedOut},
		{"malformed reply", KindOpenFailed, []byte{99}, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := t.TempDir()
			requested := make(chan Address, 1)
			origins := fakeNetd(t, run, here, func(a Address) (uint32, []byte) {
				requested <- a
				return c.kind, c.payload
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			conn, err := Dial(ctx, run, self, dest.String())
			if c.want == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				conn.Close()
				if got := <-requested; got != dest {
					t.Fatalf("netd received a request for %s, expected %s", got, dest)
				}
				if o := <-origins; o.Principal != self || o.Remote {
					t.Fatalf("netd saw origin %+v, expected the node", o)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Dial = %v, expected %v", err, c.want)
			}
		})
	}
}

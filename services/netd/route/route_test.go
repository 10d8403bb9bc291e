package route

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/capability"
)

func TestEchoAcrossNodes(t *testing.T) {
	ctx := testContext(t)
	a, b := pair(t, "")

	conn, err := b.dial(ctx, a.address(endpoint.EchoName))
	if err != nil {
		t.Fatalf("Dial from b to a's echo: %v", err)
	}
	defer conn.Close()
	for i := range 100 {
		roundTrip(t, ctx, conn, uint32(i), fmt.Sprintf("message %d", i))
	}
	large := string(make([]byte, 300<<10))
	roundTrip(t, ctx, conn, 1, large)

	if got := b.router.Counters().LinksDialed; got != 1 {
		t.Errorf("b dialed %d links, expected 1", got)
	}
	if got := a.router.Counters().LinksAccepted; got != 1 {
		t.Errorf("a accepted %d links, expected 1", got)
	}

	// A second circuit shares the link.
	second, err := b.dial(ctx, a.address(endpoint.EchoName))
	if err != nil {
		t.Fatalf("second Dial: %v", err)
	}
	defer second.Close()
	roundTrip(t, ctx, second, 2, "second circuit")
	if got := b.router.Counters().LinksDialed; got != 1 {
		t.Errorf("b dialed %d links for two circuits, expected 1", got)
	}
}

func TestRemoteOriginReachesService(t *testing.T) {
	ctx := testContext(t)
	a, b := pair(t, "")
	svc, err := endpoint.Register(a.runDir(), endpoint.Service(a.principal(), a.principal(), "whoami"))
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	defer svc.Close()
	origins := make(chan endpoint.Origin, 1)
	go func() {
		conn, origin, err := svc.Accept()
		if err != nil {
			return
		}
		conn.Close()
		origins <- origin
	}()

	conn, err := b.dial(ctx, a.address("whoami"))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	select {
	case o := <-origins:
		if o.Principal != b.principal() || !o.Remote || len(o.Chain) != 1 {
			t.Fatalf("service saw origin %s remote=%v with %d links, expected b %s with its chain", o.Principal, o.Remote, len(o.Chain), b.principal())
		}
	case <-ctx.Done():
		t.Fatal("service accepted nothing")
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := testContext(t)
	a, b := pair(t, "")
	stranger := newTestNode(t)

	_, err := b.dial(ctx, a.address("none"))
	assertIs(t, "no service", err, endpoint.ErrNoEndpoint)

	_, err = b.dial(ctx, stranger.address(endpoint.EchoName))
	assertIs(t, "node not in the peers file", err, endpoint.ErrUnreachable)

	b.addPeer(stranger)
	_, err = b.dial(ctx, stranger.address(endpoint.EchoName))
	assertIs(t, "no chain for the tree", err, endpoint.ErrUnauthorized)
	if want := "put it there as " + stranger.principal().String() + ChainSuffix; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v does not name the chain file: expected %q", err, want)
	}

	// A chain from stranger's tree that stranger's router does not accept
	// for b: issued for another principal.
	stranger.grantedBy(stranger, capability.RootPath(stranger.principal()))
	if err := copyChain(stranger, b); err != nil {
		t.Fatal(err)
	}
	_, err = b.dial(ctx, stranger.address(endpoint.EchoName))
	assertIs(t, "chain of another principal", err, endpoint.ErrUnauthorized)

	// A node that is down.
	closed := newTestNode(t)
	closed.stop()
	b.addPeer(closed)
	b.grantedBy(closed, capability.RootPath(closed.principal()))
	_, err = b.dial(ctx, closed.address(endpoint.EchoName))
	assertIs(t, "node down", err, endpoint.ErrUnreachable)
}

func TestUnauthorizedOpenCounted(t *testing.T) {
	ctx := testContext(t)
	a, b := newTestNode(t), newTestNode(t)
	b.addPeer(a)
	b.grantedBy(a, a.address("other"))

	_, err := b.dial(ctx, a.address(endpoint.EchoName))
	assertIs(t, "chain for another service", err, endpoint.ErrUnauthorized)
	if got := a.router.Counters().UnauthorizedOpens; got != 1 {
		t.Errorf("a counted %d unauthorized opens, expected 1", got)
	}
	if len(a.logs.Lines("circuit refused")) != 1 {
		t.Errorf("a logged no refused circuit:\n%s", a.logs)
	}

	// The link stays up for the services that the chain covers.
	svc, err := endpoint.Register(a.runDir(), endpoint.Service(a.principal(), a.principal(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	go endpoint.ServeEcho(ctx, svc, a.router.opts.Logger)
	conn, err := b.dial(ctx, a.address("other"))
	if err != nil {
		t.Fatalf("Dial to the covered service: %v", err)
	}
	defer conn.Close()
	roundTrip(t, ctx, conn, 5, "covered")
}

func TestLinkLossFailsCircuitsAndRedials(t *testing.T) {
	ctx := testContext(t)
	a, b := pair(t, "")
	conn, err := b.dial(ctx, a.address(endpoint.EchoName))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	roundTrip(t, ctx, conn, 1, "before")

	a.stop()
	if _, err := conn.Recv(ctx); !errors.Is(err, bus.ErrPeerGone) {
		t.Fatalf("Recv after the link was lost = %v, expected ErrPeerGone", err)
	}
	_, err = b.dial(ctx, a.address(endpoint.EchoName))
	assertIs(t, "open while the node is down", err, endpoint.ErrUnreachable)

	a.start(func(*Options) {})
	again, err := b.dial(ctx, a.address(endpoint.EchoName))
	if err != nil {
		t.Fatalf("Dial after the node came back: %v", err)
	}
	defer again.Close()
	roundTrip(t, ctx, again, 2, "after")
	if got := b.router.Counters().LinksDialed; got != 2 {
		t.Errorf("b dialed %d links, expected 2", got)
	}
}

func TestSlowCircuitDoesNotStallOthers(t *testing.T) {
	ctx := testContext(t)
	a, b := pair(t, "")
	serveSink(t, a)

	slow, err := b.dial(ctx, a.address("sink"))
	if err != nil {
		t.Fatalf("Dial sink: %v", err)
	}
	defer slow.Close()
	// Fill the sink's ring, the router's queue (one window) and the link.
	payload := make([]byte, 64<<10)
	sendCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	sent := 0
	for sendCtx.Err() == nil {
		if err := slow.Send(sendCtx, 9, payload); err != nil {
			break
		}
		sent += len(payload)
	}
	if sent < DefaultWindow {
		t.Fatalf("sent only %d bytes before the sender blocked, expected the window and the rings to take more than %d", sent, DefaultWindow)
	}

	conn, err := b.dial(ctx, a.address(endpoint.EchoName))
	if err != nil {
		t.Fatalf("Dial echo beside the stalled circuit: %v", err)
	}
	defer conn.Close()
	roundTrip(t, ctx, conn, 3, "not stalled")
}

func assertIs(t *testing.T, label string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, expected one wrapping %v", label, err, want)
	}
}

func TestNetdRejectsRemoteOrigin(t *testing.T) {
	ctx := testContext(t)
	a, b := pair(t, "")
	// A process claims to speak for a, with a chain from b's tree that
	// covers b's netd, and asks b's netd to relay. netd relays only for
	// its own node.
	now := time.Now()
	w, err := capability.Issue(b.cred.Signing, a.principal(), capability.RootPath(b.principal()), now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	netd := endpoint.Service(b.principal(), b.principal(), endpoint.NetdName)
	conn, err := endpoint.DialOrigin(ctx, b.runDir(), netd, &endpoint.Origin{Principal: a.principal(), Chain: capability.Chain{w}})
	if err != nil {
		t.Fatalf("DialOrigin: %v", err)
	}
	defer conn.Close()
	if err := conn.Send(ctx, endpoint.KindOpen, endpoint.EncodeOpen(a.address(endpoint.EchoName), 0)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msg, err := conn.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	defer msg.Release()
	if msg.Kind != endpoint.KindOpenFailed || len(msg.Data) == 0 || endpoint.Code(msg.Data[0]) != endpoint.CodeUnauthorized {
		t.Fatalf("netd replied kind %#x %q, expected an open failure with CodeUnauthorized", msg.Kind, msg.Data)
	}
	if got := b.router.Counters().RejectedLocal; got != 1 {
		t.Errorf("RejectedLocal = %d, expected 1", got)
	}
}

func TestEchoStreamBothWays(t *testing.T) {
	ctx := testContext(t)
	a, b := pair(t, "")
	conn, err := b.dial(ctx, a.address(endpoint.EchoName))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()

	// Sending and receiving at once keeps both directions' windows full,
	// so each router waits for credit and for messages at the same time.
	// Each message's first and last byte are its number, so an echo built
	// from a reused frame body that still belonged to another message
	// does not match.
	const count = 300
	payload := make([]byte, 200<<10)
	sent := make(chan error, 1)
	go func() {
		for i := range count {
			payload[0], payload[len(payload)-1] = byte(i), byte(i)
			if err := conn.Send(ctx, uint32(i), payload); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	for i := range count {
		msg, err := conn.Recv(ctx)
		if err != nil {
			t.Fatalf("Recv of echo %d: %v", i, err)
		}
		if msg.Kind != uint32(i) || len(msg.Data) != len(payload) || msg.Data[0] != byte(i) {
			t.Fatalf("echo %d: kind %d, %d bytes, first byte %d", i, msg.Kind, len(msg.Data), msg.Data[0])
		}
		if last := msg.Data[len(msg.Data)-1]; last != byte(i) {
			t.Fatalf("echo %d: last byte %d, expected %d", i, last, byte(i))
		}
		msg.Release()
	}
	if err := <-sent; err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func TestOneWayStreamKeepsFlowing(t *testing.T) {
	ctx := testContext(t)
	a, b := pair(t, "")
	drain, err := endpoint.Register(a.runDir(), endpoint.Service(a.principal(), a.principal(), "drain"))
	if err != nil {
		t.Fatal(err)
	}
	defer drain.Close()
	const count = 60
	received := make(chan int, 1)
	go func() {
		conn, _, err := drain.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		n := 0
		for n < count {
			msg, err := conn.Recv(ctx)
			if err != nil {
				break
			}
			msg.Release()
			n++
		}
		received <- n
	}()

	// Only credit comes back on this circuit, so the sending router's
	// wait for credit must not miss a wake-up while nothing else arrives.
	conn, err := b.dial(ctx, a.address("drain"))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	payload := make([]byte, 200<<10)
	for i := range count {
		if err := conn.Send(ctx, 1, payload); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	select {
	case n := <-received:
		if n != count {
			t.Fatalf("drain received %d messages, expected %d", n, count)
		}
	case <-ctx.Done():
		t.Fatal("the stream stalled: drain did not receive every message")
	}
}

func TestConcurrentCircuitsShareFlushes(t *testing.T) {
	ctx := testContext(t)
	// Without PINGs, whose flush would send a frame left in the buffer,
	// such a frame stalls its circuit until the test's deadline.
	a, b := pairWith(t, "", func(opts *Options) { opts.Keepalive = time.Hour })

	// Small messages on several circuits at once make the writers of the
	// link queue for it, so most of them leave the flush to the next one.
	const circuits, messages = 16, 300
	errs := make(chan error, circuits)
	for c := range circuits {
		go func() {
			conn, err := b.dial(ctx, a.address(endpoint.EchoName))
			if err != nil {
				errs <- fmt.Errorf("circuit %d: Dial: %w", c, err)
				return
			}
			defer conn.Close()
			errs <- echoSequence(ctx, conn, c, messages)
		}()
	}
	for range circuits {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// echoSequence sends messages small messages on conn, one at a time, and
// checks each echo.
func echoSequence(ctx context.Context, conn *bus.Conn, circuit, messages int) error {
	for i := range messages {
		want := fmt.Sprintf("circuit %d message %d", circuit, i)
		if err := conn.Send(ctx, uint32(i), []byte(want)); err != nil {
			return fmt.Errorf("circuit %d: Send %d: %w", circuit, i, err)
		}
		msg, err := conn.Recv(ctx)
		if err != nil {
			return fmt.Errorf("circuit %d: Recv of echo %d: %w", circuit, i, err)
		}
		got := string(msg.Data)
		msg.Release()
		if msg.Kind != uint32(i) || got != want {
			return fmt.Errorf("circuit %d: echo %d is kind %d, %q; expected kind %d, %q", circuit, i, msg.Kind, got, i, want)
		}
	}
	return nil
}

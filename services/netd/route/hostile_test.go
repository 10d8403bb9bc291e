package route

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/netd/peer"
)

// rawLink makes a peer link from b to a, as b's router would, and returns
// it for a test to write frames on.
func rawLink(t *testing.T, a, b *testNode) *peer.Link {
	t.Helper()
	chains, err := LoadChains(b.chainsDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := peer.Config{Node: b.cred, Root: a.principal(), Chain: chains[a.principal()]}
	l, err := peer.Dial(testContext(t), cfg, "tcp", a.addr, a.principal())
	if err != nil {
		t.Fatalf("peer.Dial: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// sendFrame writes frame on l and flushes it.
func sendFrame(l *peer.Link, frame []byte) error {
	if _, err := l.Write(frame); err != nil {
		return err
	}
	return l.Flush()
}

// assertLinkClosed checks that a closes the link after bad frames.
func assertLinkClosed(t *testing.T, l *peer.Link) {
	t.Helper()
	l.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, err := readFrame(l)
		if err == nil {
			continue // a PING
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the router kept the link open after a malformed frame")
		}
		return
	}
}

func TestMalformedFramesCloseLink(t *testing.T) {
	cases := map[string][]byte{
		"bad version":      {9, byte(FramePing), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"unknown type":     {FrameVersion, 99, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0},
		"ping on circuit":  appendFrame(nil, Frame{Type: FramePing, Circuit: 5}),
		"body too large":   {FrameVersion, byte(FrameMsg), 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff},
		"OPENED to lister": appendFrame(nil, Frame{Type: FrameOpened, Circuit: 1}),
		"open of garbage":  appendFrame(nil, Frame{Type: FrameOpen, Circuit: 1, Body: openBody(0, "not an address")}),
	}
	a, b := pair(t, "")
	want := uint64(0)
	for name, frame := range cases {
		t.Run(name, func(t *testing.T) {
			l := rawLink(t, a, b)
			if err := sendFrame(l, frame); err != nil {
				t.Fatalf("Write: %v", err)
			}
			assertLinkClosed(t, l)
			want++
			if got := a.router.Counters().MalformedFrames; got != want {
				t.Errorf("MalformedFrames = %d, expected %d", got, want)
			}
		})
	}
	if lines := a.logs.Lines("malformed frame"); len(lines) != len(cases) {
		t.Errorf("logged %d malformed frames, expected %d", len(lines), len(cases))
	}

	// The router still serves well-behaved nodes.
	conn, err := b.dial(testContext(t), a.address(endpoint.EchoName))
	if err != nil {
		t.Fatalf("Dial after the malformed frames: %v", err)
	}
	defer conn.Close()
	roundTrip(t, testContext(t), conn, 1, "still serving")
}

func TestPeerBeyondCreditClosesLink(t *testing.T) {
	a, b := pair(t, "")
	serveSink(t, a)

	l := rawLink(t, a, b)
	open := appendFrame(nil, Frame{Type: FrameOpen, Circuit: 1, Body: openBody(0, a.address("sink"))})
	if err := sendFrame(l, open); err != nil {
		t.Fatal(err)
	}
	l.SetReadDeadline(time.Now().Add(10 * time.Second))
	if f, err := readFrame(l); err != nil || f.Type != FrameOpened {
		t.Fatalf("reply to OPEN: %+v, %v; expected OPENED", f, err)
	}

	// The sink's ring takes at most two messages and the router's queue
	// one window, so this peer, which ignores credit, overruns it.
	big := appendFrame(nil, Frame{Type: FrameMsg, Circuit: 1, Body: msgBody(1, make([]byte, MaxMessage))})
	for range 8 {
		if err := sendFrame(l, big); err != nil {
			break
		}
	}
	assertLinkClosed(t, l)
	if got := a.router.Counters().MalformedFrames; got != 1 {
		t.Errorf("MalformedFrames = %d, expected 1", got)
	}
	if lines := a.logs.Lines("malformed frame", "credit window"); len(lines) != 1 {
		t.Errorf("logged %d credit violations, expected 1:\n%s", len(lines), a.logs)
	}
}

func TestRootDialerCoversWholeTree(t *testing.T) {
	a := newTestNode(t)
	if got := peer.Scope(a.principal(), nil); got != capability.RootPath(a.principal()) {
		t.Fatalf("Scope of the root's empty chain = %q, expected the whole tree", got)
	}
}

func TestOpenForOtherNodeRefused(t *testing.T) {
	a, b := pair(t, "")
	other := newTestNode(t)
	l := rawLink(t, a, b)
	open := appendFrame(nil, Frame{Type: FrameOpen, Circuit: 1, Body: openBody(0, other.address(endpoint.EchoName))})
	if err := sendFrame(l, open); err != nil {
		t.Fatal(err)
	}
	l.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := readFrame(l)
	if err != nil {
		t.Fatalf("read the reply to OPEN: %v", err)
	}
	if f.Type != FrameError || endpoint.Code(f.Body[0]) != endpoint.CodeUnreachable {
		t.Fatalf("reply to OPEN for another node: %+v, expected ERROR with CodeUnreachable", f)
	}
}

func TestDialerRejectsBadReply(t *testing.T) {
	a, b := pair(t, "")
	// a's router goes away, and a fake netd with a's key takes its
	// address and answers every OPEN with an ERROR of an unknown code.
	a.stop()
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		t.Fatalf("listen on a's address: %v", err)
	}
	fake, err := peer.Listen(peer.Config{Node: a.cred, Root: a.principal(), Logger: slog.New(slog.DiscardHandler)}, ln)
	if err != nil {
		t.Fatalf("peer.Listen: %v", err)
	}
	defer fake.Close()
	go func() {
		l, err := fake.Accept()
		if err != nil {
			return
		}
		defer l.Close()
		f, err := readFrame(l)
		if err != nil || f.Type != FrameOpen {
			return
		}
		sendFrame(l, appendFrame(nil, Frame{Type: FrameError, Circuit: f.Circuit, Body: []byte{99}}))
		readFrame(l) // waits for b to close the link
	}()

	_, err = b.dial(testContext(t), a.address(endpoint.EchoName))
	assertIs(t, "reply with an unknown code", err, endpoint.ErrPeerGone)
	if got := b.router.Counters().MalformedFrames; got != 1 {
		t.Errorf("b counted %d malformed frames, expected 1", got)
	}
}

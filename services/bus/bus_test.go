package bus

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus/ring"
)

func mustSend(t testing.TB, c *Conn, kind uint32, payload []byte) {
	t.Helper()
	if err := c.Send(testContext(t), kind, payload); err != nil {
		t.Fatalf("Send kind %d, %d bytes: %v", kind, len(payload), err)
	}
}

func mustRecv(t testing.TB, c *Conn) Message {
	t.Helper()
	msg, err := c.Recv(testContext(t))
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return msg
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*31)
	}
	return b
}

func TestSendRecvBothWays(t *testing.T) {
	client, server := connPair(t, Dialer{}, ListenConfig{})

	mustSend(t, client, 1, []byte("ping"))
	msg := mustRecv(t, server)
	if msg.Kind != 1 || string(msg.Data) != "ping" {
		t.Errorf("server received kind %d %q, want kind 1 %q", msg.Kind, msg.Data, "ping")
	}

	mustSend(t, server, 2, []byte("pong"))
	msg = mustRecv(t, client)
	if msg.Kind != 2 || string(msg.Data) != "pong" {
		t.Errorf("client received kind %d %q, want kind 2 %q", msg.Kind, msg.Data, "pong")
	}

	mustSend(t, client, 3, nil)
	if msg := mustRecv(t, server); msg.Kind != 3 || len(msg.Data) != 0 {
		t.Errorf("server received kind %d with %d bytes, want kind 3, empty", msg.Kind, len(msg.Data))
	}
}

func TestPeerCredentials(t *testing.T) {
	client, server := connPair(t, Dialer{}, ListenConfig{})
	for name, c := range map[string]*Conn{"client": client, "server": server} {
		peer := c.Peer()
		if peer.PID != os.Getpid() || peer.UID != uint32(os.Getuid()) || peer.GID != uint32(os.Getgid()) {
			t.Errorf("%s: Peer() = %+v, want this process (pid %d, uid %d, gid %d)",
				name, peer, os.Getpid(), os.Getuid(), os.Getgid())
		}
	}
}

func TestPeerGroups(t *testing.T) {
	client, server := connPair(t, Dialer{}, ListenConfig{})
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatalf("Getgroups: %v", err)
	}
	want := make([]uint32, len(groups))
	for i, g := range groups {
		want[i] = uint32(g)
	}
	slices.Sort(want)

	for name, c := range map[string]*Conn{"client": client, "server": server} {
		got, err := c.PeerGroups()
		if err != nil {
			t.Fatalf("%s: PeerGroups: %v", name, err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: PeerGroups() = %v, want this process's groups %v", name, got, want)
		}
	}

	client.Close()
	if _, err := client.PeerGroups(); err == nil {
		t.Error("PeerGroups after Close succeeded")
	}
}

// TestPeerGroupsOfOtherCredentials gives the listener and the dialer
// different supplementary groups, as setgroups(2) as root can, and checks
// that each end reads the other's groups from the time it listened or
// connected.
func TestPeerGroupsOfOtherCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the test needs root for setgroups, and CI=true requires every test to run")
		}
		t.Skip("the test needs root for setgroups; skipped outside CI")
	}
	original, err := syscall.Getgroups()
	if err != nil {
		t.Fatalf("Getgroups: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Setgroups(original); err != nil {
			t.Errorf("restore the groups %v: %v", original, err)
		}
	})
	setGroups := func(groups []int) {
		t.Helper()
		if err := syscall.Setgroups(groups); err != nil {
			t.Fatalf("Setgroups(%v): %v", groups, err)
		}
	}

	setGroups([]int{4101, 4102})
	path := filepath.Join(t.TempDir(), "bus.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()
	setGroups([]int{4201, 4202, 4203})
	client, server := acceptPair(t, ln, path)
	setGroups(original)

	check := func(name string, c *Conn, want []uint32) {
		t.Helper()
		got, err := c.PeerGroups()
		if err != nil {
			t.Fatalf("%s: PeerGroups: %v", name, err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: PeerGroups() = %v, want %v", name, got, want)
		}
	}
	check("listener's end", server, []uint32{4201, 4202, 4203})
	check("dialer's end", client, []uint32{4101, 4102})
}

func TestRecvCopiesSmallAndViewsLarge(t *testing.T) {
	client, server := connPair(t, Dialer{CopyThreshold: 100}, ListenConfig{CopyThreshold: 100})

	small := pattern(99, 1)
	large := pattern(100, 2)
	mustSend(t, client, 1, small)
	mustSend(t, client, 2, large)

	msg := mustRecv(t, server)
	if msg.InPlace() || !bytes.Equal(msg.Data, small) {
		t.Errorf("99-byte message: InPlace = %v, equal = %v; want a copy with the sent bytes", msg.InPlace(), bytes.Equal(msg.Data, small))
	}
	msg = mustRecv(t, server)
	if !msg.InPlace() || !bytes.Equal(msg.Data, large) {
		t.Errorf("100-byte message: InPlace = %v, equal = %v; want a view with the sent bytes", msg.InPlace(), bytes.Equal(msg.Data, large))
	}
	mem := server.SharedMemory()
	if start := &mem[0]; !(uintptrOf(&msg.Data[0]) >= uintptrOf(start) && uintptrOf(&msg.Data[0]) < uintptrOf(start)+uintptr(len(mem))) {
		t.Error("in-place message data is not inside the shared memory")
	}
	msg.Release()
	msg.Release() // a second Release does nothing
}

func TestReleaseOutOfOrder(t *testing.T) {
	const ringSize = 4096
	d := Dialer{RingSize: ringSize, CopyThreshold: 1}
	client, server := connPair(t, d, ListenConfig{CopyThreshold: 1})

	// Three messages of a quarter ring each; the fourth waits for space.
	payload := make([]byte, ringSize/4-ring.RecordHeaderSize)
	for i := range 3 {
		mustSend(t, client, uint32(i), payload)
	}
	first, second, third := mustRecv(t, server), mustRecv(t, server), mustRecv(t, server)

	// Releasing the later two frees nothing while the first is held.
	second.Release()
	third.Release()
	mustSend(t, client, 3, payload) // fits in the last quarter
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := client.Send(ctx, 4, payload); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send while the first message is held: err = %v, want context.DeadlineExceeded", err)
	}

	first.Release()
	mustSend(t, client, 4, payload)
	for _, want := range []uint32{3, 4} {
		msg := mustRecv(t, server)
		if msg.Kind != want {
			t.Errorf("received kind %d, want %d", msg.Kind, want)
		}
		msg.Release()
	}
}

func TestSendBlocksUntilPeerReleases(t *testing.T) { forEachWakeup(t, testSendBlocksUntilPeerReleases) }

func testSendBlocksUntilPeerReleases(t *testing.T) {
	const ringSize = 4096
	client, server := connPair(t, Dialer{RingSize: ringSize}, ListenConfig{})
	payload := make([]byte, ringSize/2-ring.RecordHeaderSize)
	mustSend(t, client, 1, payload)
	mustSend(t, client, 2, payload)

	sent := make(chan error, 1)
	go func() { sent <- client.Send(context.Background(), 3, payload) }()
	select {
	case err := <-sent:
		t.Fatalf("Send into a full ring returned %v before the peer released anything", err)
	case <-time.After(50 * time.Millisecond):
	}

	msg := mustRecv(t, server)
	msg.Release()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("blocked Send: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send still blocked 5 s after the peer released a message")
	}
	for _, want := range []uint32{2, 3} {
		if msg := mustRecv(t, server); msg.Kind != want {
			t.Errorf("received kind %d, want %d", msg.Kind, want)
		}
	}
}

func TestSendTooLarge(t *testing.T) {
	client, _ := connPair(t, Dialer{RingSize: 4096}, ListenConfig{})
	if client.MaxPayload() != 2048-8 {
		t.Errorf("MaxPayload = %d, want %d", client.MaxPayload(), 2048-8)
	}
	err := client.Send(testContext(t), 1, make([]byte, client.MaxPayload()+1))
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("Send above MaxPayload: err = %v, want ErrTooLarge", err)
	}
	mustSend(t, client, 1, make([]byte, client.MaxPayload()))
}

func TestReserveCommit(t *testing.T) {
	client, server := connPair(t, Dialer{}, ListenConfig{})
	ctx := testContext(t)

	r, err := client.Reserve(ctx, 7, 64<<10)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	want := pattern(64<<10, 3)
	copy(r.Bytes(), want)
	if err := r.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := r.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}

	cancelled, err := client.Reserve(ctx, 8, 10)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	cancelled.Cancel()
	mustSend(t, client, 9, []byte("after cancel"))

	msg := mustRecv(t, server)
	if msg.Kind != 7 || !bytes.Equal(msg.Data, want) {
		t.Errorf("received kind %d with %d bytes, want kind 7 with the 64 KiB written in place", msg.Kind, len(msg.Data))
	}
	msg.Release()
	if msg := mustRecv(t, server); msg.Kind != 9 {
		t.Errorf("message after the cancelled reservation has kind %d, want 9", msg.Kind)
	}
}

func TestReserveTruncate(t *testing.T) {
	client, server := connPair(t, Dialer{}, ListenConfig{})
	ctx := testContext(t)

	r, err := client.Reserve(ctx, 7, 64<<10)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	want := pattern(10000, 5)
	copy(r.Bytes(), want)
	if err := r.Truncate(10000); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	if len(r.Bytes()) != 10000 {
		t.Errorf("Bytes after Truncate(10000) has %d bytes", len(r.Bytes()))
	}
	if err := r.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := r.Truncate(0); err == nil {
		t.Error("Truncate after Commit succeeded")
	}
	mustSend(t, client, 9, []byte("after truncate"))

	msg := mustRecv(t, server)
	if msg.Kind != 7 || !bytes.Equal(msg.Data, want) {
		t.Errorf("received kind %d with %d bytes, want kind 7 with the 10000 bytes kept", msg.Kind, len(msg.Data))
	}
	msg.Release()
	if msg := mustRecv(t, server); msg.Kind != 9 || string(msg.Data) != "after truncate" {
		t.Errorf("message after the truncated one = kind %d %q, want kind 9", msg.Kind, msg.Data)
	}
}

func TestRecvHonoursContext(t *testing.T) { forEachWakeup(t, testRecvHonoursContext) }

func testRecvHonoursContext(t *testing.T) {
	_, server := connPair(t, Dialer{}, ListenConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := server.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv: err = %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Recv returned %v after its deadline", elapsed)
	}
}

func TestCloseStopsRecvAndSend(t *testing.T) { forEachWakeup(t, testCloseStopsRecvAndSend) }

func testCloseStopsRecvAndSend(t *testing.T) {
	client, server := connPair(t, Dialer{RingSize: 4096}, ListenConfig{})
	recvDone := make(chan error, 1)
	go func() {
		_, err := client.Recv(context.Background())
		recvDone <- err
	}()
	payload := make([]byte, client.MaxPayload())
	mustSend(t, client, 1, payload)
	mustSend(t, client, 1, payload)
	sendDone := make(chan error, 1)
	go func() { sendDone <- client.Send(context.Background(), 1, payload) }()
	time.Sleep(50 * time.Millisecond)

	if err := client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, ch := range map[string]chan error{"Recv": recvDone, "Send": sendDone} {
		select {
		case err := <-ch:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s during Close: err = %v, want ErrClosed", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still blocked 5 s after Close", name)
		}
	}
	if err := client.Send(context.Background(), 1, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: err = %v, want ErrClosed", err)
	}
	if err := client.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// The peer gets what was committed, then ErrPeerGone.
	for range 2 {
		mustRecv(t, server).Release()
	}
	if _, err := server.Recv(testContext(t)); !errors.Is(err, ErrPeerGone) {
		t.Errorf("Recv after the peer closed: err = %v, want ErrPeerGone", err)
	}
	if err := server.Send(testContext(t), 1, nil); !errors.Is(err, ErrPeerGone) {
		t.Errorf("Send after the peer closed: err = %v, want ErrPeerGone", err)
	}
}

func TestCloseReleasesFdsAndMemory(t *testing.T) {
	// Let the runtime open its poller fds before counting.
	client, server := connPair(t, Dialer{}, ListenConfig{})
	client.Close()
	server.Close()

	before := openFds(t)
	for range 5 {
		client, server := connPair(t, Dialer{}, ListenConfig{})
		mustSend(t, client, 1, make([]byte, 8192))
		held := mustRecv(t, server) // a view, still held at Close
		_ = held
		client.Close()
		server.Close()
	}
	if after := openFds(t); after != before {
		t.Errorf("%d fds open after closing 5 connections, want %d as before", after, before)
	}
	if m := busMappings(t); len(m) != 0 {
		t.Errorf("bus memory still mapped after Close: %q", m)
	}
}

// TestBusyStreamSendsNoSignals checks the wake-up protocol on real
// eventfds: a producer signals only a consumer that is about to sleep.
func TestBusyStreamSendsNoSignals(t *testing.T) { forEachWakeup(t, testBusyStreamSendsNoSignals) }

func testBusyStreamSendsNoSignals(t *testing.T) {
	client, server := connPair(t, Dialer{}, ListenConfig{})

	// The server sleeps in Recv, so the first message signals it.
	got := make(chan Message, 1)
	go func() {
		msg, err := server.Recv(context.Background())
		if err != nil {
			t.Errorf("Recv: %v", err)
		}
		got <- msg
	}()
	waitUntil(t, func() bool { return consumerArmed(server) }, "the server to arm its wake-up")
	mustSend(t, client, 0, []byte("first"))
	<-got
	if n := client.SignalsSent(); n != 1 {
		t.Fatalf("client sent %d signals for a message to a sleeping server, want 1", n)
	}

	// While the server is awake and has records waiting, commits do not
	// signal, and releases do not signal a client that never waited.
	const messages = 1000
	for round := range 10 {
		for i := range messages {
			mustSend(t, client, uint32(i), pattern(100, byte(round)))
		}
		for i := range messages {
			msg := mustRecv(t, server)
			if msg.Kind != uint32(i) {
				t.Fatalf("round %d: received kind %d, want %d", round, msg.Kind, i)
			}
			msg.Release()
		}
	}
	if n := client.SignalsSent(); n != 1 {
		t.Errorf("client sent %d signals in total after a busy stream, want still 1", n)
	}
	if n := server.SignalsSent(); n != 0 {
		t.Errorf("server sent %d signals, want 0: the client never waited for space", n)
	}
}

// consumerArmed reports whether c's consumer set its waiting flag.
func consumerArmed(c *Conn) bool {
	mem := c.SharedMemory()
	size := len(mem) / 2
	// The listener consumes ring A, which starts at offset 0.
	flag := mem[128:132]
	if c.isDialer() {
		flag = mem[size+128 : size+132]
	}
	return !bytes.Equal(flag, []byte{0, 0, 0, 0})
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 5 s waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRecvParksGoroutines checks that a sleeping Recv waits in the
// netpoller: many of them must not take an OS thread each.
func TestRecvParksGoroutines(t *testing.T) { forEachWakeup(t, testRecvParksGoroutines) }

func testRecvParksGoroutines(t *testing.T) {
	const conns = 64
	var servers []*Conn
	for range conns {
		_, server := connPair(t, Dialer{RingSize: 4096}, ListenConfig{})
		servers = append(servers, server)
	}
	runtime.GC()
	before := threads(t)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if _, err := s.Recv(ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("Recv: err = %v, want context.Canceled", err)
			}
		})
	}
	for _, s := range servers {
		waitUntil(t, func() bool { return consumerArmed(s) }, "every Recv to arm its wake-up")
	}
	time.Sleep(50 * time.Millisecond)
	during := threads(t)
	cancel()
	wg.Wait()

	if during-before > conns/4 {
		t.Errorf("%d goroutines sleeping in Recv raised the thread count from %d to %d", conns, before, during)
	}
}

func TestTwoGoroutineStream(t *testing.T) { forEachWakeup(t, testTwoGoroutineStream) }

func testTwoGoroutineStream(t *testing.T) {
	client, server := connPair(t, Dialer{RingSize: 64 << 10}, ListenConfig{CopyThreshold: 512})
	messages := 200_000
	if testing.Short() {
		messages = 20_000
	}
	size := func(i int) int { return (i * 7919) % 2000 }

	go func() {
		for i := range messages {
			if err := client.Send(context.Background(), uint32(i), pattern(size(i), byte(i))); err != nil {
				t.Errorf("Send %d: %v", i, err)
				return
			}
		}
	}()
	for i := range messages {
		msg := mustRecv(t, server)
		if msg.Kind != uint32(i) || !bytes.Equal(msg.Data, pattern(size(i), byte(i))) {
			t.Fatalf("message %d: kind %d with %d bytes, want kind %d with %d bytes of its pattern", i, msg.Kind, len(msg.Data), i, size(i))
		}
		msg.Release()
	}
	t.Logf("%d messages: client sent %d signals, server %d", messages, client.SignalsSent(), server.SignalsSent())
}

// TestSpinPolicy checks when a Recv polls before it sleeps: until two
// Recvs in a row had to sleep, then only as a probe every spinProbeEvery
// Recvs, and again after a Recv got its message without sleeping.
func TestSpinPolicy(t *testing.T) {
	var p spinPolicy
	for i := range maxSpinMisses {
		if !p.shouldSpin() {
			t.Fatalf("Recv %d after %d sleeps does not poll", i, i)
		}
		p.record(true)
	}
	polls := 0
	for range 3 * spinProbeEvery {
		if p.shouldSpin() {
			polls++
		}
		p.record(true)
	}
	if polls != 3 {
		t.Errorf("%d Recvs that all slept polled %d times, expected 3 probes", 3*spinProbeEvery, polls)
	}
	p.record(false)
	if !p.shouldSpin() {
		t.Errorf("a Recv after one that got its message without sleeping does not poll")
	}
}

// TestLocalLinkPairsEndsInOneProcess checks that two ends in this process
// wake each other through one shared local link, and that the registry
// keeps nothing once the setups are done, also after a rejected one.
func TestLocalLinkPairsEndsInOneProcess(t *testing.T) {
	client, server := connPair(t, Dialer{}, ListenConfig{})
	if client.dataWake == nil || server.dataWake == nil {
		t.Fatal("ends in one process do not use a local link")
	}
	if client.dataWake != server.recvWaiter.local || server.dataWake != client.recvWaiter.local {
		t.Error("one end's data wake-ups do not reach the other end's Recv")
	}
	if client.roomWake != server.sendWaiter.local || server.roomWake != client.sendWaiter.local {
		t.Error("one end's room wake-ups do not reach the other end's Send")
	}

	lc := ListenConfig{MaxRingSize: 4096}
	ln, err := lc.Listen(filepath.Join(t.TempDir(), "small.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go ln.Accept()
	if c, err := (&Dialer{RingSize: 8192}).Dial(ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("Dial with a ring above the listener's maximum succeeded")
	}

	localLinks.mu.Lock()
	left := len(localLinks.links)
	localLinks.mu.Unlock()
	if left != 0 {
		t.Errorf("%d local links left in the registry after the setups", left)
	}

	useEventfds(t)
	client, server = connPair(t, Dialer{}, ListenConfig{})
	if client.dataWake != nil || server.dataWake != nil || client.recvWaiter.local != nil {
		t.Error("local link in use with local wake-ups turned off")
	}
}

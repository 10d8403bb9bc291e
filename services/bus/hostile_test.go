package bus

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus/ring"
	"github.com/blocktree/blocktree/services/bus/shm"
	"golang.org/x/sys/unix"
)

// Offsets in the connection memory for a ring size of hostileRingSize.
const (
	hostileRingSize = 4096
	ringAStart      = 0
	ringBStart      = ring.HeaderSize + hostileRingSize
	headAt          = 0   // in a ring header
	tailAt          = 64  // in a ring header
	dataAt          = 192 // start of a ring's data area
)

// TestHostilePeerCorruptsRing plays a dialer that, after the setup, writes
// garbage into the ring that the listener reads. The listener must return
// ErrCorrupt, stay usable for other connections, and drop the connection.
func TestHostilePeerCorruptsRing(t *testing.T) {
	cases := []struct {
		name     string
		scribble func(mem []byte)
	}{
		{"head beyond the data area", func(mem []byte) {
			binary.NativeEndian.PutUint64(mem[ringAStart+headAt:], 1<<40)
		}},
		{"head moved backwards", func(mem []byte) {
			binary.NativeEndian.PutUint64(mem[ringAStart+headAt:], 8)
		}},
		{"record length too large", func(mem []byte) {
			// The next record, at position 16, claims 1 GiB.
			binary.NativeEndian.PutUint32(mem[ringAStart+dataAt+16:], 1<<30)
			binary.NativeEndian.PutUint64(mem[ringAStart+headAt:], 64)
		}},
		{"padding record with a wrong length", func(mem []byte) {
			binary.NativeEndian.PutUint32(mem[ringAStart+dataAt+16:], 8)
			binary.NativeEndian.PutUint32(mem[ringAStart+dataAt+20:], ring.PaddingKind)
			binary.NativeEndian.PutUint64(mem[ringAStart+headAt:], 64)
		}},
		{"random garbage over header and data", func(mem []byte) {
			rng := rand.New(rand.NewPCG(7, 7))
			for i := range ring.Size(hostileRingSize) {
				mem[ringAStart+i] = byte(rng.Uint32())
			}
		}},
	}

	path := filepath.Join(t.TempDir(), "bus.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hostile, server := acceptPair(t, ln, path)

			// One valid 16-byte record, received, so that head is at 16.
			mustSend(t, hostile, 1, []byte("valid"))
			mustRecv(t, server)

			tc.scribble(hostile.SharedMemory())
			var err error
			for range 100 {
				var msg Message
				if msg, err = server.Recv(testContext(t)); err != nil {
					break
				}
				msg.Release()
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Recv after the peer scribbled: err = %v, want ErrCorrupt", err)
			}
			if _, again := server.Recv(testContext(t)); !errors.Is(again, ErrCorrupt) {
				t.Errorf("second Recv: err = %v, want ErrCorrupt again", again)
			}
			if err := server.Send(testContext(t), 1, nil); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Send on the broken connection: err = %v, want ErrCorrupt", err)
			}
			if _, err := hostile.Recv(testContext(t)); !errors.Is(err, ErrPeerGone) {
				t.Errorf("the hostile peer's Recv: err = %v, want ErrPeerGone after the listener dropped it", err)
			}
		})
	}

	// The listener still serves well-behaved peers.
	client, server := acceptPair(t, ln, path)
	mustSend(t, client, 1, []byte("after the hostile peers"))
	if msg := mustRecv(t, server); string(msg.Data) != "after the hostile peers" {
		t.Errorf("received %q from a new peer", msg.Data)
	}
}

// TestHostilePeerCorruptsTail plays a listener-side consumer that writes a
// tail past head into the ring that the dialer sends on.
func TestHostilePeerCorruptsTail(t *testing.T) {
	client, server := connPair(t, Dialer{RingSize: hostileRingSize}, ListenConfig{})
	payload := make([]byte, client.MaxPayload())
	mustSend(t, client, 1, payload)
	mustSend(t, client, 1, payload)

	binary.NativeEndian.PutUint64(server.SharedMemory()[ringAStart+tailAt:], 1<<50)
	err := client.Send(testContext(t), 1, payload)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Send after the peer wrote a bad tail: err = %v, want ErrCorrupt", err)
	}
	if _, err := client.Recv(testContext(t)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Recv on the broken connection: err = %v, want ErrCorrupt", err)
	}
}

// acceptPair dials ln and accepts the connection.
func acceptPair(t *testing.T, ln *Listener, path string) (client, server *Conn) {
	t.Helper()
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("Accept: %v", err)
		}
		accepted <- c
	}()
	d := Dialer{RingSize: hostileRingSize}
	client, err := d.Dial(path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	server = <-accepted
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// rawSetup connects to path and sends msg with fds, as a dialer that does
// not use this package would. It returns the listener's reply, or the
// error of reading it.
func rawSetup(t *testing.T, path string, msg []byte, fds []int) (reply, error) {
	t.Helper()
	sock, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer sock.Close()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := sock.WriteMsgUnix(msg, oob, nil); err != nil {
		t.Fatalf("send setup: %v", err)
	}
	sock.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, replySize)
	if _, err := io.ReadFull(sock, buf); err != nil {
		return reply{}, err
	}
	return decodeReply(buf)
}

// setupFiles makes the fds of a setup: a memfd made by makeMemory and
// four eventfds. They are closed when the test ends; the listener gets
// copies.
func setupFiles(t *testing.T, makeMemory func() int) []int {
	t.Helper()
	fds := []int{makeMemory()}
	for range 4 {
		fd, err := newEventfd()
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	t.Cleanup(func() { closeFds(fds) })
	return fds
}

func memfd(t *testing.T, size int, seals int) int {
	t.Helper()
	fd, err := unix.MemfdCreate("hostile", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		t.Fatal(err)
	}
	if seals != 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
			t.Fatal(err)
		}
	}
	return fd
}

func TestAcceptRejectsBadSetup(t *testing.T) {
	const ringSize = 4096
	size := memorySize(ringSize)
	goodSetup := encodeSetup(setup{version: Version, ringSize: ringSize})
	sealed := func() int { return memfd(t, size, shm.RequiredSeals) }

	cases := []struct {
		name       string
		msg        []byte
		fds        func() []int
		wantStatus uint16 // the reply's status
		wantErr    string // in Accept's error
	}{
		{"memfd without seals", goodSetup,
			func() []int { return setupFiles(t, func() int { return memfd(t, size, 0) }) },
			statusInvalidSetup, "missing"},
		{"memfd without F_SEAL_SHRINK", goodSetup,
			func() []int {
				return setupFiles(t, func() int { return memfd(t, size, unix.F_SEAL_GROW|unix.F_SEAL_SEAL) })
			},
			statusInvalidSetup, "missing"},
		{"memfd too small", goodSetup,
			func() []int {
				return setupFiles(t, func() int { return memfd(t, size-4096, shm.RequiredSeals) })
			},
			statusInvalidSetup, "expected"},
		{"unknown version", encodeSetup(setup{version: Version + 1, ringSize: ringSize}),
			func() []int { return setupFiles(t, sealed) },
			statusVersionUnsupported, "version"},
		{"ring size not a power of two", encodeSetup(setup{version: Version, ringSize: ringSize + 8}),
			func() []int { return setupFiles(t, sealed) },
			statusInvalidSetup, "power of two"},
		{"ring size above the maximum", encodeSetup(setup{version: Version, ringSize: 1 << 30}),
			func() []int { return setupFiles(t, sealed) },
			statusInvalidSetup, "power of two"},
		{"pipe instead of an eventfd", goodSetup,
			func() []int {
				fds := setupFiles(t, sealed)
				var p [2]int
				if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { closeFds(p[:]) })
				return append(append([]int(nil), fds[:4]...), p[0])
			},
			statusInvalidSetup, "want an eventfd"},
	}

	path := filepath.Join(t.TempDir(), "bus.sock")
	ln, err := (&ListenConfig{MaxRingSize: 1 << 20}).Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			acceptErr := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if c != nil {
					c.Close()
				}
				acceptErr <- err
			}()

			r, err := rawSetup(t, path, tc.msg, tc.fds())
			if err != nil {
				t.Errorf("read reply: %v, want a reply with status %d", err, tc.wantStatus)
			} else if r.status != tc.wantStatus {
				t.Errorf("reply status = %d, want %d", r.status, tc.wantStatus)
			}

			err = <-acceptErr
			if !errors.Is(err, ErrSetup) {
				t.Fatalf("Accept: err = %v, want ErrSetup", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Accept error %q does not mention %q", err, tc.wantErr)
			}
		})
	}

	framing := []struct {
		name string
		msg  []byte
		fds  func() []int
	}{
		{"no fds", goodSetup, func() []int { return nil }},
		{"too few fds", goodSetup, func() []int { return setupFiles(t, sealed)[:3] }},
		{"too many fds", goodSetup, func() []int {
			fds := setupFiles(t, sealed)
			return append(append([]int(nil), fds...), fds[1], fds[2])
		}},
		{"wrong magic", append([]byte("HTTP"), goodSetup[4:]...), func() []int { return setupFiles(t, sealed) }},
	}
	for _, tc := range framing {
		t.Run(tc.name, func(t *testing.T) {
			acceptErr := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if c != nil {
					c.Close()
				}
				acceptErr <- err
			}()
			if _, err := rawSetup(t, path, tc.msg, tc.fds()); err == nil {
				t.Error("the listener replied to a malformed setup, want the socket closed")
			}
			if err := <-acceptErr; !errors.Is(err, ErrSetup) {
				t.Errorf("Accept: err = %v, want ErrSetup", err)
			}
		})
	}

	// The listener still accepts a well-formed dialer.
	client, server := acceptPair(t, ln, path)
	mustSend(t, client, 1, []byte("ok"))
	if msg := mustRecv(t, server); string(msg.Data) != "ok" {
		t.Errorf("received %q after the rejected setups", msg.Data)
	}
}

func TestDialReportsRejection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bus.sock")
	ln, err := (&ListenConfig{MaxRingSize: 4096}).Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()

	d := Dialer{RingSize: 8192}
	c, err := d.Dial(path)
	if err == nil {
		c.Close()
		t.Fatal("Dial with a ring above the listener's maximum succeeded")
	}
	if !strings.Contains(err.Error(), "rejected") {
		t.Errorf("Dial error %q does not say that the listener rejected the setup", err)
	}
}

// TestHostilePeerClearsNonblock plays a peer that clears O_NONBLOCK on the
// shared eventfds, which would make a plain read(2) or a write(2) to a full
// counter block a thread.
func TestHostilePeerClearsNonblock(t *testing.T) {
	useEventfds(t)
	client, server := connPair(t, Dialer{RingSize: hostileRingSize}, ListenConfig{})
	clearNonblock := func(fd int) {
		t.Helper()
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^unix.O_NONBLOCK); err != nil {
			t.Fatal(err)
		}
	}

	// The client's dataFd is the eventfd that the server's Recv sleeps on.
	clearNonblock(client.dataFd)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := server.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv on a blocking eventfd: err = %v, want context.DeadlineExceeded", err)
	}
	mustSend(t, client, 1, []byte("still works"))
	if msg := mustRecv(t, server); string(msg.Data) != "still works" {
		t.Errorf("received %q", msg.Data)
	}

	// The server's dataFd wakes the client. Fill its counter, clear
	// O_NONBLOCK and claim that the client sleeps: a plain write would
	// block the server's Send.
	var max [8]byte
	binary.NativeEndian.PutUint64(max[:], 0xffff_ffff_ffff_fffe)
	if _, err := unix.Write(server.dataFd, max[:]); err != nil {
		t.Fatal(err)
	}
	clearNonblock(server.dataFd)
	binary.NativeEndian.PutUint32(client.SharedMemory()[ringBStart+128:], 1)

	signalsBefore := server.SignalsSent()
	sent := make(chan error, 1)
	go func() { sent <- server.Send(context.Background(), 2, []byte("wake")) }()
	select {
	case err := <-sent:
		if err != nil {
			t.Errorf("Send: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send blocked 5 s on the wake-up write")
	}
	if n := server.SignalsSent() - signalsBefore; n != 1 {
		t.Errorf("Send made %d wake-up writes, want 1 to the client that claimed to sleep", n)
	}
}

package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// helperSocketEnv names the variable that makes TestHelperProcess act as
// the child of TestCrossProcess, and holds the socket path.
const helperSocketEnv = "BUS_TEST_HELPER_SOCKET"

// Message kinds of the cross-process exchange.
const (
	kindHello      = 1 // child to parent: a greeting
	kindEcho       = 2 // parent to child: send this back
	kindEchoed     = 3 // child to parent: the echoed payload
	kindLarge      = 4 // parent to child: a large payload
	kindDigest     = 5 // child to parent: SHA-256 of the large payload
	kindLargeReply = 6 // child to parent: a large payload written in place
	kindWait       = 7 // parent to child: block in Recv until killed
)

const largeSize = 256 << 10

// largePayload returns the deterministic payload that both processes know.
func largePayload(seed byte) []byte { return pattern(largeSize, seed) }

// TestHelperProcess is the child process of TestCrossProcess. It does
// nothing unless helperSocketEnv is set.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperSocketEnv)
	if path == "" {
		t.Skip("runs only as the child of TestCrossProcess")
	}
	if err := runHelper(path); err != nil {
		fmt.Fprintf(os.Stderr, "helper process: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runHelper(path string) error {
	ctx := context.Background()
	c, err := Dial(path)
	if err != nil {
		return err
	}
	defer c.Close()

	if err := c.Send(ctx, kindHello, []byte("hello from the child")); err != nil {
		return err
	}
	for {
		msg, err := c.Recv(ctx)
		if err != nil {
			return err
		}
		switch msg.Kind {
		case kindEcho:
			err = c.Send(ctx, kindEchoed, msg.Data)
		case kindLarge:
			if !msg.InPlace() {
				return fmt.Errorf("large payload of %d bytes was copied, want a view", len(msg.Data))
			}
			digest := sha256.Sum256(msg.Data)
			msg.Release()
			err = c.Send(ctx, kindDigest, digest[:])
		case kindWait:
			r, rerr := c.Reserve(ctx, kindLargeReply, largeSize)
			if rerr != nil {
				return rerr
			}
			copy(r.Bytes(), largePayload(9))
			if err := r.Commit(); err != nil {
				return err
			}
			// Block until the parent kills this process.
			_, err = c.Recv(ctx)
			return fmt.Errorf("Recv returned while waiting to be killed: %v", err)
		default:
			return fmt.Errorf("unexpected message kind %d", msg.Kind)
		}
		if err != nil {
			return err
		}
	}
}

func TestCrossProcess(t *testing.T) {
	// Let the runtime open its poller fds before counting.
	warm, err := net.Listen("unix", filepath.Join(t.TempDir(), "warm.sock"))
	if err != nil {
		t.Fatal(err)
	}
	warm.Close()
	fdsBefore := openFds(t)

	path := filepath.Join(t.TempDir(), "bus.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperSocketEnv+"="+path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper process: %v", err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if c.dataWake != nil || c.recvWaiter.local != nil {
		t.Error("connection to another process uses a local link instead of its eventfds")
	}
	if err := ln.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	if peer := c.Peer(); peer.PID != cmd.Process.Pid || peer.UID != uint32(os.Getuid()) || peer.GID != uint32(os.Getgid()) {
		t.Errorf("Peer() = %+v, want the child's pid %d, uid %d, gid %d", peer, cmd.Process.Pid, os.Getuid(), os.Getgid())
	}

	msg := mustRecv(t, c)
	if msg.Kind != kindHello || string(msg.Data) != "hello from the child" {
		t.Errorf("first message = kind %d %q, want the child's greeting", msg.Kind, msg.Data)
	}

	mustSend(t, c, kindEcho, []byte("echo me"))
	if msg := mustRecv(t, c); msg.Kind != kindEchoed || string(msg.Data) != "echo me" {
		t.Errorf("echo reply = kind %d %q, want kind %d %q", msg.Kind, msg.Data, kindEchoed, "echo me")
	}

	large := largePayload(5)
	mustSend(t, c, kindLarge, large)
	want := sha256.Sum256(large)
	if msg := mustRecv(t, c); msg.Kind != kindDigest || !bytes.Equal(msg.Data, want[:]) {
		t.Errorf("child's digest of the large payload = kind %d %x, want kind %d %x", msg.Kind, msg.Data, kindDigest, want)
	}

	mustSend(t, c, kindWait, nil)
	msg = mustRecv(t, c)
	if msg.Kind != kindLargeReply || !msg.InPlace() {
		t.Errorf("large reply = kind %d, in place %v; want kind %d in place", msg.Kind, msg.InPlace(), kindLargeReply)
	}
	if got, want := sha256.Sum256(msg.Data), sha256.Sum256(largePayload(9)); got != want {
		t.Errorf("large reply has SHA-256 %x, want %x", got, want)
	}
	msg.Release()

	// A Recv that is already waiting when the child dies must end.
	recvDone := make(chan error, 1)
	go func() {
		_, err := c.Recv(context.Background())
		recvDone <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill helper process: %v", err)
	}
	killed = true
	killedAt := time.Now()
	select {
	case err := <-recvDone:
		if !errors.Is(err, ErrPeerGone) {
			t.Errorf("Recv after the peer was killed: err = %v, want ErrPeerGone", err)
		}
		t.Logf("Recv returned %v after the kill", time.Since(killedAt))
	case <-time.After(2 * time.Second):
		t.Fatal("Recv still blocked 2 s after the peer was killed")
	}
	if _, err := c.Recv(testContext(t)); !errors.Is(err, ErrPeerGone) {
		t.Errorf("second Recv after the kill: err = %v, want ErrPeerGone", err)
	}
	if err := c.Send(testContext(t), kindEcho, nil); !errors.Is(err, ErrPeerGone) {
		t.Errorf("Send after the kill: err = %v, want ErrPeerGone", err)
	}
	cmd.Wait()

	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if after := openFds(t); after != fdsBefore {
		t.Errorf("%d fds open after Close, want %d as before the test", after, fdsBefore)
	}
	if m := busMappings(t); len(m) != 0 {
		t.Errorf("bus memory still mapped after Close: %q", m)
	}
}

package bus

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// SignalsSent returns the number of eventfd writes this end made.
func (c *Conn) SignalsSent() uint64 { return c.signals.Load() }

// SharedMemory returns this end's mapping of the connection's memory.
func (c *Conn) SharedMemory() []byte { return c.region.Bytes() }

// connPair returns the dialer's and the listener's end of a new connection
// over a socket in a temporary directory. Both are closed when the test
// ends.
func connPair(t testing.TB, d Dialer, lc ListenConfig) (client, server *Conn) {
	t.Helper()
	ln, err := lc.Listen(filepath.Join(t.TempDir(), "bus.sock"))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()

	type accepted struct {
		c   *Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()

	client, err = d.Dial(ln.Addr().String())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	a := <-ch
	if a.err != nil {
		client.Close()
		t.Fatalf("Accept: %v", a.err)
	}
	t.Cleanup(func() {
		client.Close()
		a.c.Close()
	})
	return client, a.c
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openFds returns the number of open fds of this process.
func openFds(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("list open fds: %v", err)
	}
	return len(entries) - 1 // the directory fd of ReadDir itself
}

// busMappings returns the lines of /proc/self/maps that map bus memory.
func busMappings(t testing.TB) []string {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatalf("read /proc/self/maps: %v", err)
	}
	var found []string
	for _, line := range strings.Split(string(maps), "\n") {
		if strings.Contains(line, "memfd:blocktree-bus") {
			found = append(found, line)
		}
	}
	return found
}

// threads returns the number of OS threads of this process.
func threads(t testing.TB) int {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("read /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if value, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(value))
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

func uintptrOf(b *byte) uintptr { return uintptr(unsafe.Pointer(b)) }

func (c *Conn) isDialer() bool { return c.role == dialer }

// useEventfds makes the connections that the test sets up in this process
// wake each other through their eventfds, as two processes do, instead of
// through a local link.
func useEventfds(t *testing.T) {
	saved := localWakeups
	localWakeups = false
	t.Cleanup(func() { localWakeups = saved })
}

// forEachWakeup runs test once with each way of waking a peer in this
// process: a local link's channels and the eventfds.
func forEachWakeup(t *testing.T, test func(t *testing.T)) {
	t.Run("channels", test)
	t.Run("eventfds", func(t *testing.T) {
		useEventfds(t)
		test(t)
	})
}

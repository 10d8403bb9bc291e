// Package bustest makes bus connections for the tests of packages that
// build on package bus.
package bustest

import (
	"path/filepath"
	"testing"

	"github.com/blocktree/blocktree/services/bus"
)

// Pair returns the dialer's and the listener's end of a new connection
// over a socket in a temporary directory, made with d and lc. Both ends
// are closed when the test ends.
func Pair(t testing.TB, d bus.Dialer, lc bus.ListenConfig) (client, server *bus.Conn) {
	t.Helper()
	ln, err := lc.Listen(filepath.Join(t.TempDir(), "bus.sock"))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()

	type accepted struct {
		conn *bus.Conn
		err  error
	}
	ch := make(chan accepted, 1)
	go func() {
		conn, err := ln.Accept()
		ch <- accepted{conn, err}
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
		a.conn.Close()
	})
	return client, a.conn
}

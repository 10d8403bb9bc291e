package rpc

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus"
)

// connPair returns the dialer's and the listener's end of a new bus
// connection over a Unix socket in a temporary directory. Both are closed
// when the test ends.
func connPair(t *testing.T) (client, server *bus.Conn) {
	t.Helper()
	ln, err := bus.Listen(filepath.Join(t.TempDir(), "bus.sock"))
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

	client, err = bus.Dial(ln.Addr().String())
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

// startServer runs srv.Serve on conn in a goroutine. When the test ends it
// closes conn and checks that Serve returned.
func startServer(t *testing.T, srv *Server, conn *bus.Conn) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), conn) }()
	t.Cleanup(func() {
		conn.Close()
		select {
		case err := <-done:
			if !errors.Is(err, bus.ErrClosed) && !errors.Is(err, bus.ErrPeerGone) {
				t.Errorf("Serve returned %v, want an error wrapping ErrClosed or ErrPeerGone", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s after its connection closed")
		}
	})
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

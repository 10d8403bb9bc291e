package rpc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/bustest"
)

// connPair returns the dialer's and the listener's end of a new bus
// connection over a Unix socket in a temporary directory. Both are closed
// when the test ends.
func connPair(t *testing.T) (client, server *bus.Conn) {
	t.Helper()
	return bustest.Pair(t, bus.Dialer{}, bus.ListenConfig{})
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

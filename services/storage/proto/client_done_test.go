package proto

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// isClosed reports whether done is closed, without waiting.
func isClosed(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func TestClientDoneOpenWhileConnected(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)

	if isClosed(client.Done()) {
		t.Error("Done is closed right after Dial")
	}
	if err := client.Err(); err != nil {
		t.Errorf("Err right after Dial = %v, expected nil", err)
	}

	if _, err := client.GetAttr(context.Background(), &fsapi.Caller{}, fsapi.RootIno); err != nil {
		t.Fatalf("GetAttr: %v", err)
	}
	if isClosed(client.Done()) {
		t.Error("Done is closed after a request succeeded")
	}
	if err := client.Err(); err != nil {
		t.Errorf("Err after a request succeeded = %v, expected nil", err)
	}
}

func TestClientDoneWhenServerStops(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	if _, err := client.GetAttr(context.Background(), &fsapi.Caller{}, fsapi.RootIno); err != nil {
		t.Fatalf("GetAttr: %v", err)
	}

	// The client is idle, so only its reader can notice that the server
	// closed the connection.
	srv.stop()
	select {
	case <-client.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done was not closed within 5s of the server stopping")
	}

	cause := client.Err()
	if cause == nil {
		t.Fatal("Err = nil after Done was closed, expected the cause")
	}
	if errors.Is(cause, net.ErrClosed) {
		t.Errorf("Err = %v wraps net.ErrClosed, the cause after Close, although the client did not call Close", cause)
	}
	if again := client.Err(); again != cause {
		t.Errorf("second Err = %v, expected the same cause %v", again, cause)
	}

	_, err := client.Lookup(context.Background(), &fsapi.Caller{}, fsapi.RootIno, "x")
	checkConnDown(t, "Lookup after Done", err)
	if !errors.Is(err, cause) {
		t.Errorf("Lookup after Done = %v, expected it to wrap the cause %v", err, cause)
	}

	// Close after the failure keeps the first cause.
	if err := client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if after := client.Err(); after != cause {
		t.Errorf("Err after Close = %v, expected the first cause %v", after, cause)
	}
}

func TestClientDoneAfterClose(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client, err := Dial(srv.path, ClientOptions{})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	if !isClosed(client.Done()) {
		t.Error("Done is open after Close returned")
	}
	if err := client.Err(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Err after Close = %v, expected it to wrap net.ErrClosed", err)
	}
}

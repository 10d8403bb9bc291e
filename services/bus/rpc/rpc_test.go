package rpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo returns the body followed by the method, so that a reply shows
// which request it belongs to.
func echo(_ context.Context, method uint32, body []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint32(bytes.Clone(body), method), nil
}

func TestCallConcurrentMatching(t *testing.T) {
	clientConn, serverConn := connPair(t)
	startServer(t, &Server{Handler: echo}, serverConn)
	client := NewClient(clientConn)
	ctx := testContext(t)

	const goroutines, callsEach = 16, 63 // 1008 calls
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range callsEach {
				// Every tenth body is above the bus's 4 KiB copy threshold,
				// so its reply is read in place from shared memory.
				size := 16
				if i%10 == 0 {
					size = 8 << 10
				}
				body := bytes.Repeat(fmt.Appendf(nil, "g%d-i%d;", g, i), size/8)
				method := uint32(g<<16 | i)

				reply, err := client.Call(ctx, method, body)
				if err != nil {
					errs <- fmt.Errorf("call %d of goroutine %d: %w", i, g, err)
					return
				}
				want := binary.BigEndian.AppendUint32(body, method)
				if !bytes.Equal(reply, want) {
					errs <- fmt.Errorf("call %d of goroutine %d got a reply of %d bytes that does not match its request", i, g, len(reply))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := client.LateReplies(); n != 0 {
		t.Errorf("LateReplies = %d, want 0", n)
	}
}

func TestCallTimeoutDropsLateReply(t *testing.T) {
	clientConn, serverConn := connPair(t)
	client := NewClient(clientConn)

	// The server side is driven by hand, so that the reply is sent only
	// after the call has timed out.
	callDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := client.Call(ctx, 1, []byte("slow"))
		callDone <- err
	}()

	msg, err := serverConn.Recv(testContext(t))
	if err != nil {
		t.Fatalf("Recv of the request: %v", err)
	}
	request, err := decodeMessage(msg)
	if err != nil {
		t.Fatalf("decode the request: %v", err)
	}
	if request.Deadline == 0 {
		t.Error("request carries no deadline, want the deadline of the call's context")
	}

	err = <-callDone
	if !errors.Is(err, ErrTimedOut) {
		t.Fatalf("Call returned %v, want an error wrapping ErrTimedOut", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Call returned %v, want it to wrap context.DeadlineExceeded too", err)
	}

	reply := Frame{Type: TypeReply, ID: request.ID, Method: request.Method, Body: []byte("too late")}
	if err := sendFrame(testContext(t), serverConn, reply); err != nil {
		t.Fatalf("send the late reply: %v", err)
	}
	waitFor(t, "the late reply to be counted", func() bool { return client.LateReplies() == 1 })

	// The client still works after dropping the late reply.
	startServer(t, &Server{Handler: echo}, serverConn)
	got, err := client.Call(testContext(t), 2, []byte("next"))
	if err != nil {
		t.Fatalf("Call after the late reply: %v", err)
	}
	if want := binary.BigEndian.AppendUint32([]byte("next"), 2); !bytes.Equal(got, want) {
		t.Errorf("Call after the late reply returned %q, want %q", got, want)
	}
}

func TestCallRemoteError(t *testing.T) {
	clientConn, serverConn := connPair(t)
	handler := func(context.Context, uint32, []byte) ([]byte, error) {
		return []byte("ignored"), errors.New("no such file: /a/b")
	}
	startServer(t, &Server{Handler: handler}, serverConn)
	client := NewClient(clientConn)

	reply, err := client.Call(testContext(t), 42, nil)
	var remote *RemoteError
	if !errors.As(err, &remote) {
		t.Fatalf("Call returned %v, want a *RemoteError", err)
	}
	if remote.Message != "no such file: /a/b" {
		t.Errorf("RemoteError.Message = %q, want %q", remote.Message, "no such file: /a/b")
	}
	if remote.Method != 42 {
		t.Errorf("RemoteError.Method = %d, want 42", remote.Method)
	}
	if reply != nil {
		t.Errorf("Call returned the reply %q with the error, want nil", reply)
	}
}

func TestCallPeerGone(t *testing.T) {
	clientConn, serverConn := connPair(t)
	const calls = 8
	var started sync.WaitGroup
	started.Add(calls)
	handler := func(ctx context.Context, _ uint32, _ []byte) ([]byte, error) {
		started.Done()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	startServer(t, &Server{Handler: handler}, serverConn)
	client := NewClient(clientConn)

	ctx := testContext(t)
	results := make(chan error, calls)
	for i := range calls {
		go func() {
			_, err := client.Call(ctx, uint32(i), nil)
			results <- err
		}()
	}
	started.Wait()

	closed := time.Now()
	if err := serverConn.Close(); err != nil {
		t.Fatalf("close the server's end: %v", err)
	}
	for range calls {
		select {
		case err := <-results:
			if !errors.Is(err, ErrPeerGone) {
				t.Errorf("Call returned %v, want an error wrapping ErrPeerGone", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("an outstanding call did not return within 5 s after the peer closed")
		}
	}
	t.Logf("all %d outstanding calls failed %v after the peer closed", calls, time.Since(closed))

	if _, err := client.Call(ctx, 99, nil); !errors.Is(err, ErrPeerGone) {
		t.Errorf("Call after the connection ended returned %v, want an error wrapping ErrPeerGone", err)
	}
}

func TestServeDropsMalformedFrames(t *testing.T) {
	clientConn, serverConn := connPair(t)
	srv := &Server{Handler: echo}
	startServer(t, srv, serverConn)
	client := NewClient(clientConn)
	ctx := testContext(t)

	valid := AppendFrame(nil, Frame{Type: TypeRequest, ID: 1 << 60, Method: 3})
	wrongVersion := bytes.Clone(valid)
	wrongVersion[0] = 7
	raw := []struct {
		kind    uint32
		payload []byte
	}{
		{Kind, nil},
		{Kind, valid[:HeaderSize-1]},
		{Kind, wrongVersion},
		{Kind + 1, valid},
		{Kind, AppendFrame(nil, Frame{Type: TypeReply, ID: 1 << 60})},
	}
	for _, m := range raw {
		if err := clientConn.Send(ctx, m.kind, m.payload); err != nil {
			t.Fatalf("raw Send: %v", err)
		}
	}

	// The server handles messages in order, so the reply to this call
	// arrives after it has looked at every raw message.
	if _, err := client.Call(ctx, 1, []byte("still serving")); err != nil {
		t.Fatalf("Call after the malformed frames: %v", err)
	}
	if n := srv.MalformedFrames(); n != uint64(len(raw)) {
		t.Errorf("MalformedFrames = %d, want %d", n, len(raw))
	}
	if n := client.LateReplies(); n != 0 {
		t.Errorf("client LateReplies = %d, want 0 because no malformed frame gets a reply", n)
	}
}

func TestServeDropsExpiredRequest(t *testing.T) {
	clientConn, serverConn := connPair(t)
	var handled atomic.Int32
	handler := func(ctx context.Context, method uint32, body []byte) ([]byte, error) {
		if method == 13 {
			handled.Add(1)
		}
		return echo(ctx, method, body)
	}
	srv := &Server{Handler: handler}
	startServer(t, srv, serverConn)
	client := NewClient(clientConn)
	ctx := testContext(t)

	expired := Frame{Type: TypeRequest, ID: 1 << 60, Deadline: time.Now().Add(-time.Second).UnixNano(), Method: 13}
	if err := clientConn.Send(ctx, Kind, AppendFrame(nil, expired)); err != nil {
		t.Fatalf("send the expired request: %v", err)
	}
	if _, err := client.Call(ctx, 1, nil); err != nil {
		t.Fatalf("Call after the expired request: %v", err)
	}

	if n := handled.Load(); n != 0 {
		t.Errorf("handler ran %d times for the expired request, want 0", n)
	}
	if n := srv.ExpiredRequests(); n != 1 {
		t.Errorf("ExpiredRequests = %d, want 1", n)
	}
	if n := client.LateReplies(); n != 0 {
		t.Errorf("client LateReplies = %d, want 0 because the expired request gets no reply", n)
	}
}

func TestHandlerGetsDeadline(t *testing.T) {
	clientConn, serverConn := connPair(t)
	seen := make(chan time.Time, 1)
	handler := func(ctx context.Context, _ uint32, _ []byte) ([]byte, error) {
		d, _ := ctx.Deadline()
		seen <- d
		return nil, nil
	}
	startServer(t, &Server{Handler: handler}, serverConn)
	client := NewClient(clientConn)

	want := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), want)
	defer cancel()
	if _, err := client.Call(ctx, 1, nil); err != nil {
		t.Fatalf("Call: %v", err)
	}
	if got := <-seen; !got.Equal(time.Unix(0, want.UnixNano())) {
		t.Errorf("handler's deadline = %v, want %v", got, want)
	}
}

func TestClientDropsMalformedFrame(t *testing.T) {
	clientConn, serverConn := connPair(t)
	client := NewClient(clientConn)
	if err := serverConn.Send(testContext(t), Kind, []byte("not a frame")); err != nil {
		t.Fatalf("raw Send: %v", err)
	}
	waitFor(t, "the malformed frame to be counted", func() bool { return client.MalformedFrames() == 1 })

	startServer(t, &Server{Handler: echo}, serverConn)
	if _, err := client.Call(testContext(t), 1, nil); err != nil {
		t.Fatalf("Call after the malformed frame: %v", err)
	}
}

func TestCallTooLarge(t *testing.T) {
	clientConn, serverConn := connPair(t)
	startServer(t, &Server{Handler: echo}, serverConn)
	client := NewClient(clientConn)

	_, err := client.Call(testContext(t), 1, make([]byte, clientConn.MaxPayload()))
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("Call returned %v, want an error wrapping ErrTooLarge", err)
	}
}

package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/blocktree/blocktree/services/bus"
)

var (
	// ErrTimedOut is wrapped by the error of Call when the deadline of its
	// context passed before the reply arrived. The outcome is unknown: the
	// server may have run the request.
	ErrTimedOut = errors.New("rpc call timed out before a reply")
	// ErrPeerGone is wrapped by the error of Call when the connection ended
	// while the call was outstanding, or before it was sent. The outcome is
	// unknown. It is the same value as bus.ErrPeerGone.
	ErrPeerGone = bus.ErrPeerGone
	// ErrTooLarge is wrapped by the error of Call when the request does not
	// fit one bus message. The request was not sent. It is the same value
	// as bus.ErrTooLarge.
	ErrTooLarge = bus.ErrTooLarge
)

// RemoteError is the error of Call when the server's handler returned an
// error. Message is the text of that error.
type RemoteError struct {
	Method  uint32
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("rpc method %d failed on the server: %s", e.Method, e.Message)
}

// Client sends requests over one bus connection and matches the replies to
// them by request id. Call may run from many goroutines at once. The
// Client's reader is the only receiver on the connection, so nothing else
// may call Recv on it. The reader runs until the connection ends; close the
// Conn to stop it.
type Client struct {
	conn   *bus.Conn
	logger *slog.Logger

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan callResult // calls waiting for their reply, by request id
	err     error                      // cause of the reader's stop, wrapping ErrPeerGone, or nil while it runs

	lateReplies atomic.Uint64
	malformed   atomic.Uint64
}

type callResult struct {
	body []byte
	err  error
}

// NewClient returns a Client that calls the peer over conn and starts its
// reader. It logs through slog.Default().
func NewClient(conn *bus.Conn) *Client {
	c := &Client{
		conn:    conn,
		logger:  slog.Default(),
		pending: make(map[uint64]chan callResult),
	}
	go c.readReplies()
	return c
}

// LateReplies returns the number of replies dropped because no call waited
// for their request id, mostly replies that arrived after their call's
// deadline.
func (c *Client) LateReplies() uint64 { return c.lateReplies.Load() }

// MalformedFrames returns the number of received messages dropped because
// they were not valid reply frames.
func (c *Client) MalformedFrames() uint64 { return c.malformed.Load() }

// Call sends a request for method with body and waits for its reply. The
// deadline of ctx travels with the request, and the server drops the
// request once it has passed. Call never retries. Its errors wrap
// ErrTimedOut when the deadline passed, ErrPeerGone when the connection
// ended, or ErrTooLarge when the request does not fit one message. An
// error of the handler is a *RemoteError. A ctx cancelled without a
// deadline gives an error wrapping ctx.Err().
func (c *Client) Call(ctx context.Context, method uint32, body []byte) ([]byte, error) {
	id, replyCh, err := c.register()
	if err != nil {
		return nil, fmt.Errorf("rpc call of method %d: %w", method, err)
	}

	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = max(d.UnixNano(), 1) // 0 on the wire means no deadline
	}
	request := Frame{Type: TypeRequest, ID: id, Deadline: deadline, Method: method, Body: body}
	if err := sendFrame(ctx, c.conn, request); err != nil {
		c.unregister(id)
		return nil, c.callError(method, id, len(body), err)
	}

	select {
	case r := <-replyCh:
		return r.body, r.err
	case <-ctx.Done():
	}
	if c.unregister(id) {
		return nil, c.callError(method, id, len(body), ctx.Err())
	}
	// The reader took the call out of pending, so its result is on the way.
	r := <-replyCh
	return r.body, r.err
}

// register assigns a request id and records the call as pending.
func (c *Client) register() (uint64, chan callResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, nil, c.err
	}
	c.nextID++
	ch := make(chan callResult, 1)
	c.pending[c.nextID] = ch
	return c.nextID, ch, nil
}

// unregister removes a pending call and reports whether it was still
// pending.
func (c *Client) unregister(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pending[id]
	delete(c.pending, id)
	return ok
}

// callError maps an error of sending or waiting to the errors that Call
// documents.
func (*Client) callError(method uint32, id uint64, bodyLen int, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("rpc call of method %d, request %d: %w: %w", method, id, ErrTimedOut, err)
	case errors.Is(err, bus.ErrPeerGone):
		return fmt.Errorf("rpc call of method %d, request %d: %w", method, id, err)
	case errors.Is(err, bus.ErrClosed), errors.Is(err, bus.ErrCorrupt):
		return fmt.Errorf("rpc call of method %d, request %d: %w: %w", method, id, ErrPeerGone, err)
	case errors.Is(err, bus.ErrTooLarge):
		return fmt.Errorf("rpc call of method %d: request body of %d bytes plus the %d-byte header: %w", method, bodyLen, HeaderSize, err)
	}
	return fmt.Errorf("rpc call of method %d, request %d: %w", method, id, err)
}

// readReplies receives frames until the connection ends, hands each reply
// to its call, and then fails every call still pending.
func (c *Client) readReplies() {
	var loggedMalformed bool
	for {
		msg, err := c.conn.Recv(context.Background())
		if err != nil {
			c.stop(err)
			return
		}
		f, err := decodeMessage(msg)
		if err == nil && f.Type == TypeRequest {
			err = fmt.Errorf("%w: request %d received by a client", ErrMalformed, f.ID)
		}
		if err != nil {
			c.malformed.Add(1)
			if !loggedMalformed {
				loggedMalformed = true
				c.logger.Warn("rpc client dropped a malformed frame; later ones are only counted",
					"peer_pid", c.conn.Peer().PID, "error", err)
			}
			continue
		}
		c.deliver(f)
	}
}

// deliver hands a reply or error reply to the call that waits for it.
func (c *Client) deliver(f Frame) {
	c.mu.Lock()
	ch, ok := c.pending[f.ID]
	delete(c.pending, f.ID)
	c.mu.Unlock()
	if !ok {
		c.lateReplies.Add(1)
		return
	}

	if f.Type == TypeError {
		ch <- callResult{err: &RemoteError{Method: f.Method, Message: string(f.Body)}}
		return
	}
	ch <- callResult{body: f.Body}
}

// stop records why the connection ended and fails every pending call.
func (c *Client) stop(cause error) {
	err := cause
	if !errors.Is(cause, bus.ErrPeerGone) {
		err = fmt.Errorf("%w: %w", ErrPeerGone, cause)
	}
	err = fmt.Errorf("rpc connection ended: %w", err)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
	for id, ch := range c.pending {
		ch <- callResult{err: fmt.Errorf("rpc request %d: %w", id, err)}
		delete(c.pending, id)
	}
}

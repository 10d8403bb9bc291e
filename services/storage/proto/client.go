package proto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// ClientOptions configures Dial.
type ClientOptions struct {
	// Logger receives the client's records. Nil means slog.Default().
	Logger *slog.Logger
}

// Client is a connection to the storage daemon that implements fsapi.FS.
// It is safe for concurrent use: requests share the connection and each
// waits for the response with its id.
//
// Handles belong to the connection, so handles that a Client opened are
// invalid on any other Client, and the daemon releases them when the
// Client's connection ends.
type Client struct {
	path string
	conn *net.UnixConn
	log  *slog.Logger

	nextID  atomic.Uint64
	writeMu sync.Mutex // serializes frames on conn

	mu      sync.Mutex
	pending map[uint64]*call
	// lateOpens are Open, Create and OpenDir requests that the caller
	// abandoned. A handle that still arrives for one is released at once.
	lateOpens map[uint64]lateOpen
	down      error // cause of the connection failure; nil while the connection is up

	readerDone chan struct{}
	downCh     chan struct{} // closed when down is set
}

// call is one request waiting for its response.
type call struct {
	op   Op
	done chan struct{} // closed when resp or err is set
	resp Response
	// frame is the pooled buffer that resp.Data points into, if any.
	frame *[]byte
	err   error
}

// recycle returns the buffer behind resp.Data to the pool.
func (cl *call) recycle() {
	if cl.frame != nil {
		putBuffer(cl.frame)
		cl.frame = nil
		cl.resp.Data = nil
	}
}

type lateOpen struct {
	op  Op
	ino fsapi.Ino
}

// errClientClosed is the cause of ConnError after Close.
var errClientClosed = fmt.Errorf("client closed: %w", net.ErrClosed)

// Dial connects to the storage daemon's Unix socket at path.
func Dial(path string, opts ClientOptions) (*Client, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("dial storage daemon at %s: %w", path, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	c := &Client{
		path:       path,
		conn:       conn,
		log:        logger.With("path", path),
		pending:    make(map[uint64]*call),
		lateOpens:  make(map[uint64]lateOpen),
		readerDone: make(chan struct{}),
		downCh:     make(chan struct{}),
	}
	go c.readResponses()
	return c, nil
}

// Close closes the connection. Requests still waiting fail with a
// ConnError, and so do later ones. The daemon releases the handles that the
// connection opened.
func (c *Client) Close() error {
	c.fail(errClientClosed)
	<-c.readerDone
	return nil
}

// Done returns a channel that is closed when the connection goes down,
// because of Close or because the daemon went away. Err then returns the
// cause.
func (c *Client) Done() <-chan struct{} { return c.downCh }

// Err returns the cause of the connection failure, or nil while the
// connection is up. After Close the cause wraps net.ErrClosed.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down
}

// fail marks the connection down with cause, closes it and fails every
// waiting request. Only the first cause is kept.
func (c *Client) fail(cause error) {
	c.mu.Lock()
	if c.down == nil {
		c.down = cause
		close(c.downCh)
		if cause != errClientClosed {
			c.log.Warn("storage daemon connection is down", "error", cause, "waiting", len(c.pending))
		}
	}
	pending := c.pending
	c.pending = make(map[uint64]*call)
	c.mu.Unlock()

	c.conn.Close()
	for _, cl := range pending {
		cl.err = c.connError(cl.op)
		close(cl.done)
	}
}

func (c *Client) connError(op Op) error {
	return &ConnError{Op: op, Path: c.path, Err: c.down}
}

// readResponses delivers each response to its call until the connection
// fails. A response that does not decode, or whose Op differs from its
// request's, fails the connection, because the stream cannot be trusted.
func (c *Client) readResponses() {
	defer close(c.readerDone)
	frames := newFrameReader(c.conn)
	for {
		buf, msg, err := frames.next()
		if err != nil {
			c.fail(fmt.Errorf("read response: %w", err))
			return
		}
		var resp Response
		if err := DecodeResponse(msg, &resp); err != nil {
			putBuffer(buf)
			c.fail(fmt.Errorf("invalid response: %w", err))
			return
		}

		c.mu.Lock()
		cl := c.pending[resp.ID]
		if cl != nil && cl.op != resp.Op {
			c.mu.Unlock()
			putBuffer(buf)
			c.fail(fmt.Errorf("invalid response: %s response to %s request %d", resp.Op, cl.op, resp.ID))
			return
		}
		delete(c.pending, resp.ID)
		late, isLate := c.lateOpens[resp.ID]
		delete(c.lateOpens, resp.ID)
		c.mu.Unlock()

		switch {
		case cl != nil:
			cl.resp = resp
			if resp.Data != nil {
				cl.frame = buf
			} else {
				putBuffer(buf)
			}
			close(cl.done)
		case isLate && resp.Op == late.op && resp.Errno == 0:
			putBuffer(buf)
			go c.releaseLate(late, resp.Handle)
		default:
			// The response to a request whose caller gave up.
			putBuffer(buf)
		}
	}
}

// releaseLate releases a handle whose Open, Create or OpenDir the caller
// abandoned, because no caller received the handle.
func (c *Client) releaseLate(late lateOpen, h fsapi.HandleID) {
	var err error
	if late.op == OpOpenDir {
		err = c.ReleaseDir(context.Background(), late.ino, h)
	} else {
		err = c.Release(context.Background(), late.ino, h)
	}
	if err != nil && !errors.Is(err, ErrConnDown) {
		c.log.Warn("releasing the handle of an abandoned request failed", "op", late.op.String(), "ino", uint64(late.ino), "handle", uint64(h), "error", err)
	}
}

// do sends req and waits for its response. The response's Errno is already
// turned into an *Error. A caller that uses resp.Data calls recycle when
// done with it.
//
// When ctx ends first, do returns EINTR at once and sends OpInterrupt, so
// that the daemon cancels the request's context too. A request that has
// already taken effect in the daemon stays in effect.
func (c *Client) do(ctx context.Context, req *Request) (*call, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: req.Op, Errno: syscall.EINTR, Err: err}
	}
	req.ID = c.nextID.Add(1)
	buf := getBuffer(frameHeaderSize + 512 + len(req.Data) + 4*len(req.Caller.Groups))
	frame, err := AppendRequest(beginFrame(*buf), req)
	if err != nil {
		putBuffer(buf)
		errno := syscall.EINVAL
		var fe *fieldError
		if errors.As(err, &fe) {
			errno = fe.errno
		}
		return nil, &Error{Op: req.Op, Errno: errno, Err: err}
	}
	finishFrame(frame)

	cl := &call{op: req.Op, done: make(chan struct{})}
	c.mu.Lock()
	if c.down != nil {
		c.mu.Unlock()
		*buf = frame
		putBuffer(buf)
		return nil, c.connError(req.Op)
	}
	c.pending[req.ID] = cl
	c.mu.Unlock()

	// NOTE: ctx does not bound the write. While the daemon reads nothing
	// from the connection (see ServerOptions.MaxInflight), the write and
	// every request queued behind it block until the daemon reads again or
	// the connection fails.
	c.writeMu.Lock()
	_, err = c.conn.Write(frame)
	c.writeMu.Unlock()
	*buf = frame
	putBuffer(buf)
	if err != nil {
		c.fail(fmt.Errorf("send %s request: %w", req.Op, err))
	}

	select {
	case <-cl.done:
	case <-ctx.Done():
		if c.abandon(req, cl) {
			return nil, &Error{Op: req.Op, Errno: syscall.EINTR, Err: ctx.Err()}
		}
		// The response arrived, or the connection failed, while ctx
		// ended; cl.done is about to close.
		<-cl.done
	}
	if cl.err != nil {
		return nil, cl.err
	}
	if cl.resp.Errno != 0 {
		cl.recycle()
		return nil, &Error{Op: req.Op, Errno: syscall.Errno(cl.resp.Errno)}
	}
	return cl, nil
}

// abandon stops waiting for cl and sends OpInterrupt. It returns false if
// the reader or fail has already taken cl, which then completes soon.
func (c *Client) abandon(req *Request, cl *call) bool {
	c.mu.Lock()
	if c.pending[req.ID] != cl {
		c.mu.Unlock()
		return false
	}
	delete(c.pending, req.ID)
	if req.Op.opensHandle() {
		c.lateOpens[req.ID] = lateOpen{op: req.Op, ino: req.Ino}
	}
	c.mu.Unlock()

	// A goroutine, so that a full socket cannot delay the caller.
	go c.interrupt(req.ID)
	return true
}

// interrupt sends OpInterrupt for the request id. A failed write fails the
// connection, which the reader then reports.
func (c *Client) interrupt(id uint64) {
	var b [frameHeaderSize + 32]byte
	frame, err := AppendRequest(beginFrame(b[:0]), &Request{Op: OpInterrupt, ID: id})
	if err != nil {
		panic(fmt.Sprintf("proto: encode interrupt: %v", err))
	}
	finishFrame(frame)
	c.writeMu.Lock()
	_, err = c.conn.Write(frame)
	c.writeMu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("send interrupt of request %d: %w", id, err))
	}
}

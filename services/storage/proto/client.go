package proto

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/ring"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// ClientOptions configures Dial.
type ClientOptions struct {
	// Logger receives the client's records. Nil means slog.Default().
	Logger *slog.Logger
}

// Client is a connection to the storage daemon that implements fsapi.FS
// and fsapi.ViewReader. It is safe for concurrent use: requests share the
// connection and each waits for the response with its id.
//
// Handles belong to the connection, so handles that a Client opened are
// invalid on any other Client, and the daemon releases them when the
// Client's connection ends.
type Client struct {
	path string
	conn *bus.Conn
	mem  *sharedMemory // closes conn once no view or reservation uses its memory
	log  *slog.Logger

	nextID atomic.Uint64

	// ctx ends when the connection goes down. It stops the reader and
	// every send that waits for ring space.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	pending map[uint64]*call
	// lateOpens are Open, Create and OpenDir requests that the caller
	// abandoned. A handle that still arrives for one is released at once.
	lateOpens map[uint64]lateOpen
	down      error // cause of the connection failure; nil while the connection is up
	// changes queues the change notifications of the subscription,
	// nil until Subscribe; subscribed receives the daemon's reply to
	// the subscribe while Subscribe waits for it.
	changes    *changeQueue
	subscribed chan syscall.Errno

	readerDone chan struct{}
	downCh     chan struct{} // closed when down is set

	// receiving is held by the goroutine that receives and delivers
	// responses on a connection to a daemon in this process: the reader,
	// or a caller in receiveResponses.
	receiving sync.Mutex
	// server is the daemon's side of the connection when the daemon is in
	// this process and has accepted the connection, nil until then.
	server atomic.Pointer[serverConn]
}

// call is one request waiting for its response.
type call struct {
	op   Op
	done chan struct{} // closed when resp or err is set
	resp Response
	// msg is the message that resp.Data points into, if any.
	msg heldMessage
	err error
}

// recycle releases the message behind resp.Data.
func (cl *call) recycle() {
	cl.msg.release()
	cl.resp.Data = nil
}

type lateOpen struct {
	op  Op
	ino fsapi.Ino
}

// errClientClosed is the cause of ConnError after Close.
var errClientClosed = fmt.Errorf("client closed: %w", net.ErrClosed)

// Dial connects to the storage daemon's bus endpoint, the Unix socket at
// path, with rings of RingSize bytes.
func Dial(path string, opts ClientOptions) (*Client, error) {
	d := bus.Dialer{RingSize: RingSize}
	conn, err := d.Dial(path)
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
		mem:        newSharedMemory(conn),
		log:        logger.With("path", path),
		pending:    make(map[uint64]*call),
		lateOpens:  make(map[uint64]lateOpen),
		readerDone: make(chan struct{}),
		downCh:     make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.readResponses()
	go func() {
		<-c.readerDone
		c.mem.close()
	}()
	return c, nil
}

// Close closes the connection. Requests still waiting fail with a
// ConnError, and so do later ones. Close waits until every view that
// ReadView returned is released. The daemon releases the handles that the
// connection opened.
func (c *Client) Close() error {
	c.fail(errClientClosed)
	<-c.readerDone
	c.mem.close()
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

// fail marks the connection down with cause, stops the reader and fails
// every waiting request. Only the first cause is kept. The connection
// itself closes once the views still in use are released.
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

	c.cancel()
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
// request's, fails the connection, because the daemon cannot be trusted.
func (c *Client) readResponses() {
	defer close(c.readerDone)
	if c.conn.LocalLink() != nil {
		c.readLocalResponses()
		return
	}
	for {
		msg, err := c.conn.Recv(c.ctx)
		if err != nil {
			c.fail(fmt.Errorf("receive response: %w", err))
			return
		}
		if !c.handleResponse(msg) {
			return
		}
	}
}

// readLocalResponses is readResponses for a daemon in this process. The
// callers receive the responses that the daemon sends quietly (see do),
// so this loop delivers only what it finds waiting when it wakes up.
func (c *Client) readLocalResponses() {
	if err := receiveLocal(c.ctx, c.conn, &c.receiving, c.handleResponse); err != nil {
		c.fail(fmt.Errorf("receive response: %w", err))
	}
}

// receiveResponses delivers, on the calling goroutine, the responses that
// wait, unless another goroutine is receiving them already. Errors are left
// to readLocalResponses, which gets them too.
func (c *Client) receiveResponses() {
	for c.receiving.TryLock() {
		err := receiveWaiting(c.ctx, c.conn, c.handleResponse)
		c.receiving.Unlock()
		// A goroutine whose TryLock failed while this one held the lock
		// relies on it to deliver a response that came meanwhile. The
		// Unlock in do orders that response's commit before the failed
		// TryLock.
		if err != nil || !c.conn.Waiting() {
			return
		}
	}
}

// receiveInline lets a Client whose daemon is in this process handle its
// requests on the calling goroutine (see do). Tests turn it off to check
// the behaviour of a client in another process.
var receiveInline = true

// localServer returns the daemon's side of the connection if the daemon
// is in this process and has accepted the connection, and nil otherwise.
func (c *Client) localServer() *serverConn {
	if !receiveInline {
		return nil
	}
	if sc := c.server.Load(); sc != nil {
		return sc
	}
	link := c.conn.LocalLink()
	if link == nil {
		return nil
	}
	v, ok := localServers.Load(link)
	if !ok {
		return nil
	}
	sc := v.(*serverConn)
	c.server.Store(sc)
	return sc
}

// handleResponse delivers one message from the daemon and reports whether
// the connection goes on.
func (c *Client) handleResponse(msg bus.Message) bool {
	held, ok := receive(c.mem, msg)
	if !ok {
		return false
	}
	if msg.Kind == busKindVersions {
		versions, err := decodeVersions(msg.Data)
		held.release()
		if err != nil {
			c.fail(fmt.Errorf("invalid response: %w", err))
		} else {
			c.fail(versions)
		}
		return false
	}
	if msg.Kind == busKindSubscribed || msg.Kind == busKindNotification {
		err := c.receiveNotify(msg.Kind, msg.Data)
		held.release()
		if err != nil {
			c.fail(err)
			return false
		}
		return true
	}
	if msg.Kind != busKindResponse {
		held.release()
		c.fail(fmt.Errorf("invalid response: bus message kind %#x, expected %#x", msg.Kind, busKindResponse))
		return false
	}
	// DecodeResponse reads each value once, so a daemon that changes
	// the shared memory meanwhile garbles only this response's data.
	var resp Response
	if err := DecodeResponse(msg.Data, &resp); err != nil {
		held.release()
		c.fail(fmt.Errorf("invalid response: %w", err))
		return false
	}

	c.mu.Lock()
	cl := c.pending[resp.ID]
	if cl != nil && cl.op != resp.Op {
		c.mu.Unlock()
		held.release()
		c.fail(fmt.Errorf("invalid response: %s response to %s request %d", resp.Op, cl.op, resp.ID))
		return false
	}
	delete(c.pending, resp.ID)
	late, isLate := c.lateOpens[resp.ID]
	delete(c.lateOpens, resp.ID)
	c.mu.Unlock()

	switch {
	case cl != nil:
		cl.resp = resp
		if resp.Data != nil {
			cl.msg = held
		} else {
			held.release()
		}
		close(cl.done)
	case isLate && resp.Op == late.op && resp.Errno == 0:
		held.release()
		if late.op == OpCreate || late.op == OpCreateAttrs {
			// The request named the parent directory, and the handle
			// belongs to the new file.
			late.ino = resp.Attr.Ino
		}
		go c.releaseLate(late, resp.Handle)
	default:
		// The response to a request whose caller gave up.
		held.release()
	}
	return true
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
// When ctx ends while the request waits for ring space, do returns EINTR
// and nothing is sent. When ctx ends after the request was sent, do
// returns EINTR at once and sends OpInterrupt, so that the daemon cancels
// the request's context too. A request that has already taken effect in
// the daemon stays in effect.
//
// With the daemon in this process, the calling goroutine usually handles
// the request itself, and a quick one runs to its end there (see
// Request.quick). ctx then cannot end the wait early, and a failure of the
// connection ends it only when the file system returns.
func (c *Client) do(ctx context.Context, req *Request) (*call, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: req.Op, Errno: syscall.EINTR, Err: err}
	}
	req.ID = c.nextID.Add(1)

	// The data of a Write is not encoded here but copied once, straight
	// into the ring, by sendReserved.
	var writeData []byte
	if req.Op == OpWrite {
		writeData, req.Data = req.Data, nil
		if len(writeData) > argData.limit() {
			fe := &fieldError{action: "encode", message: "request", op: req.Op, field: argData.String(), errno: argData.errno(), err: tooLong(len(writeData), argData.limit())}
			return nil, &Error{Op: req.Op, Errno: fe.errno, Err: fe}
		}
	}
	buf := getBuffer(512 + len(req.Data) + 4*len(req.Caller.Groups))
	msg, err := AppendRequest(*buf, req)
	if err != nil {
		putBuffer(buf)
		errno := syscall.EINVAL
		var fe *fieldError
		if errors.As(err, &fe) {
			errno = fe.errno
		}
		return nil, &Error{Op: req.Op, Errno: errno, Err: err}
	}

	cl := &call{op: req.Op, done: make(chan struct{})}
	c.mu.Lock()
	if c.down != nil {
		c.mu.Unlock()
		*buf = msg
		putBuffer(buf)
		return nil, c.connError(req.Op)
	}
	c.pending[req.ID] = cl
	c.mu.Unlock()

	// With the daemon in this process, the request and its response go
	// through the rings as always. But if no other goroutine is receiving
	// requests, this goroutine handles its request and receives the
	// responses itself instead of waking the goroutines that wait for them.
	server := c.localServer()
	quiet := false
	if req.Op == OpWrite || server != nil {
		quiet, err = c.sendReserved(ctx, msg, writeData, req.Op == OpWrite, server)
	} else {
		err = c.conn.Send(ctx, busKindRequest, msg)
	}
	if quiet {
		release := true
		if err == nil {
			release = server.handleThrough(req.ID)
		}
		// This Unlock is also what orders the quiet commits above before
		// the TryLock in receiveResponses, which reads the lock's state
		// without synchronizing when it fails.
		if release {
			server.receiving.Unlock()
		}
		c.receiveResponses()
	}
	*buf = msg
	putBuffer(buf)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			c.mu.Lock()
			if c.pending[req.ID] == cl {
				delete(c.pending, req.ID)
			}
			c.mu.Unlock()
			return nil, &Error{Op: req.Op, Errno: syscall.EINTR, Err: ctx.Err()}
		}
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

// sendReserved sends the encoded request head through a reservation in the
// send ring. For a Write, head is the request encoded with empty data, so
// it ends with the data's u32 length, which the Write layout puts last,
// and the data is written once, straight into the ring. With server set,
// sendReserved commits without waking the daemon if it can take
// server.receiving, and reports that it did. The caller then calls
// server.handleThrough and releases the lock.
func (c *Client) sendReserved(ctx context.Context, head, data []byte, write bool, server *serverConn) (bool, error) {
	if !c.mem.hold() {
		return false, bus.ErrClosed
	}
	defer c.mem.done()
	// A reservation that waits for ring space holds the memory, so the
	// wait must end when the connection goes down.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	r, err := c.conn.Reserve(ctx, busKindRequest, len(head)+len(data))
	if err != nil {
		return false, err
	}
	if write {
		putWriteRequest(r.Bytes(), head, data)
	} else {
		ring.Copy(r.Bytes(), head)
	}
	if server != nil && server.receiving.TryLock() {
		return true, r.CommitQuiet()
	}
	return false, r.Commit()
}

// putWriteRequest writes the encoding of a Write request into dst, which
// has room for exactly head and data. head is the request encoded with
// empty data.
func putWriteRequest(dst, head, data []byte) {
	n := copy(dst, head)
	binary.BigEndian.PutUint32(dst[n-4:], uint32(len(data)))
	ring.Copy(dst[n:], data)
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

	// A goroutine, so that a full ring cannot delay the caller.
	go c.interrupt(req.ID)
	return true
}

// interrupt sends OpInterrupt for the request id. A failed send fails the
// connection, which the reader then reports.
func (c *Client) interrupt(id uint64) {
	var b [32]byte
	msg, err := AppendRequest(b[:0], &Request{Op: OpInterrupt, ID: id})
	if err != nil {
		panic(fmt.Sprintf("proto: encode interrupt: %v", err))
	}
	if err := c.conn.Send(c.ctx, busKindRequest, msg); err != nil && c.ctx.Err() == nil {
		c.fail(fmt.Errorf("send interrupt of request %d: %w", id, err))
	}
}

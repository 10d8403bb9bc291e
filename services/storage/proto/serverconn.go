package proto

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync"
	"syscall"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// serverConn is the server's side of one connection.
type serverConn struct {
	srv  *server
	conn *net.UnixConn
	log  *slog.Logger

	// trusted peers name the Caller of each request. Others act as
	// peerCaller, built from the kernel's credentials at connect time.
	trusted    bool
	peerCaller fsapi.Caller
	principal  principal.Principal

	// ctx is the parent of every request's context. It ends when the
	// connection ends or Serve returns.
	ctx    context.Context
	cancel context.CancelFunc

	writeMu   sync.Mutex // serializes frames on conn
	closeOnce sync.Once

	requests sync.WaitGroup
	slots    chan struct{} // one token per running request

	mu       sync.Mutex
	handles  map[fsapi.HandleID]*openHandle
	inflight map[uint64]context.CancelFunc // by request id, for OpInterrupt
}

// openHandle is a handle that the connection opened and has not released.
type openHandle struct {
	ino fsapi.Ino
	dir bool
	// owners are the POSIX lock owners that called SetLk on the handle,
	// with the Caller of their last SetLk, so that the server can unlock
	// them when the connection ends.
	owners map[uint64]fsapi.Caller
}

// close closes the socket and cancels the connection's requests. It is safe
// to call more than once and from any goroutine.
func (sc *serverConn) close() {
	sc.closeOnce.Do(func() {
		sc.cancel()
		sc.conn.Close()
	})
}

// serve reads requests until the connection ends, then cleans up.
func (sc *serverConn) serve() {
	defer sc.cleanup()
	frames := newFrameReader(sc.conn)
	for {
		buf, msg, err := frames.next()
		if err != nil {
			sc.logReadError(err)
			return
		}
		req := new(Request)
		if err := DecodeRequest(msg, req); err != nil {
			putBuffer(buf)
			sc.log.Warn("malformed request; closing the connection", "error", err)
			return
		}
		if req.Op == OpInterrupt {
			putBuffer(buf)
			sc.interrupt(req.ID)
			continue
		}
		if !sc.start(req, buf) {
			putBuffer(buf)
			return
		}
	}
}

func (sc *serverConn) logReadError(err error) {
	switch {
	case errors.Is(err, io.EOF):
		sc.log.Debug("peer closed the connection")
	case sc.ctx.Err() != nil || errors.Is(err, net.ErrClosed):
		sc.log.Debug("connection closed by the server", "error", err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errFrameTooLarge):
		sc.log.Warn("malformed frame; closing the connection", "error", err)
	default:
		sc.log.Info("reading from the connection failed", "error", err)
	}
}

// start runs req in a new goroutine once a slot is free. It returns false,
// leaving buf to the caller, if the connection must close: because it
// ended while waiting, or because req reuses the id of a running request.
func (sc *serverConn) start(req *Request, buf *[]byte) bool {
	select {
	case sc.slots <- struct{}{}:
	case <-sc.ctx.Done():
		return false
	}
	ctx, cancel := context.WithCancel(sc.ctx)

	sc.mu.Lock()
	if _, running := sc.inflight[req.ID]; running {
		sc.mu.Unlock()
		cancel()
		<-sc.slots
		sc.log.Warn("malformed request: id is already in use; closing the connection", "op", req.Op.String(), "id", req.ID)
		return false
	}
	sc.inflight[req.ID] = cancel
	sc.mu.Unlock()

	sc.requests.Add(1)
	go sc.run(ctx, req, buf)
	return true
}

// interrupt cancels the context of the running request id. An id that is
// not running has finished, or never existed, and is ignored.
func (sc *serverConn) interrupt(id uint64) {
	sc.mu.Lock()
	cancel := sc.inflight[id]
	sc.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// run executes one request and sends its response.
func (sc *serverConn) run(ctx context.Context, req *Request, buf *[]byte) {
	defer sc.requests.Done()

	resp := Response{Op: req.Op, ID: req.ID}
	readBuf := sc.dispatch(ctx, req, &resp)
	putBuffer(buf) // req.Data of a Write aliased it

	sc.mu.Lock()
	cancel := sc.inflight[req.ID]
	delete(sc.inflight, req.ID)
	sc.mu.Unlock()
	cancel()

	sc.send(&resp)
	if readBuf != nil {
		putBuffer(readBuf)
	}
	<-sc.slots
}

// send writes resp as one frame. A response that the file system made too
// large to encode goes out as EIO. A failed write closes the connection,
// because the stream may hold part of a frame.
func (sc *serverConn) send(resp *Response) {
	buf := getBuffer(frameHeaderSize + 256 + len(resp.Data))
	frame, err := AppendResponse(beginFrame(*buf), resp)
	if err != nil {
		sc.log.Error("file system returned a result that cannot be encoded; sending EIO", "op", resp.Op.String(), "error", err)
		failed := Response{Op: resp.Op, ID: resp.ID, Errno: uint32(syscall.EIO)}
		frame, _ = AppendResponse(beginFrame(*buf), &failed)
	}
	finishFrame(frame)

	sc.writeMu.Lock()
	_, err = sc.conn.Write(frame)
	sc.writeMu.Unlock()
	*buf = frame
	putBuffer(buf)

	if err != nil {
		if sc.ctx.Err() == nil {
			sc.log.Info("sending a response failed; closing the connection", "op", resp.Op.String(), "error", err)
		}
		sc.close()
	}
}

// caller returns the Caller under which req runs.
func (sc *serverConn) caller(req *Request) *fsapi.Caller {
	var c fsapi.Caller
	if sc.trusted {
		c = req.Caller
		if c.Principal.IsZero() {
			c.Principal = sc.principal
		}
	} else {
		c = sc.peerCaller
		c.Groups = slices.Clone(c.Groups)
	}
	return &c
}

// errno converts an error of the file system to the errno of a response.
// Context errors become EINTR. Errors that are not a syscall.Errno are a
// bug of the file system; they are logged and become EIO.
func (sc *serverConn) errno(op Op, err error) uint32 {
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		return uint32(errno)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return uint32(syscall.EINTR)
	}
	if ok, suppressed := sc.srv.failed.allow(); ok {
		sc.log.Error("file system returned an error without an errno; sending EIO", "op", op.String(), "error", err, "suppressed", suppressed)
	}
	return uint32(syscall.EIO)
}

// addHandle records a handle that the connection opened.
func (sc *serverConn) addHandle(h fsapi.HandleID, ino fsapi.Ino, dir bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if old, ok := sc.handles[h]; ok {
		sc.log.Error("file system returned a handle that the connection already holds", "handle", uint64(h), "ino", uint64(old.ino))
	}
	sc.handles[h] = &openHandle{ino: ino, dir: dir}
}

// ownsHandle reports whether the connection holds h, opened on ino as a
// directory (dir) or a file.
func (sc *serverConn) ownsHandle(h fsapi.HandleID, ino fsapi.Ino, dir bool) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	oh := sc.handles[h]
	return oh != nil && oh.ino == ino && oh.dir == dir
}

// takeHandle removes h from the connection's handles, with the same checks
// as ownsHandle, and reports whether it was there.
func (sc *serverConn) takeHandle(h fsapi.HandleID, ino fsapi.Ino, dir bool) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	oh := sc.handles[h]
	if oh == nil || oh.ino != ino || oh.dir != dir {
		return false
	}
	delete(sc.handles, h)
	return true
}

// addLockOwner records that owner called SetLk on the file handle h, and
// reports whether the connection holds h.
func (sc *serverConn) addLockOwner(h fsapi.HandleID, ino fsapi.Ino, owner uint64, c *fsapi.Caller) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	oh := sc.handles[h]
	if oh == nil || oh.ino != ino || oh.dir {
		return false
	}
	if oh.owners == nil {
		oh.owners = make(map[uint64]fsapi.Caller)
	}
	oh.owners[owner] = *c
	return true
}

// cleanup runs when the connection has ended: it waits for the running
// requests, then unlocks the POSIX locks of the connection's lock owners
// and releases the handles that the peer left open.
func (sc *serverConn) cleanup() {
	sc.close()
	sc.requests.Wait()

	// The connection's context has ended, but cleanup must still reach
	// the file system.
	ctx := context.WithoutCancel(sc.ctx)
	sc.mu.Lock()
	handles := sc.handles
	sc.handles = nil
	sc.mu.Unlock()

	fs := sc.srv.fs
	for h, oh := range handles {
		for owner, c := range oh.owners {
			unlock := fsapi.Lock{Start: 0, End: math.MaxUint64, Type: syscall.F_UNLCK, PID: c.PID}
			if err := fs.SetLk(ctx, &c, oh.ino, h, owner, unlock, false); err != nil {
				sc.log.Warn("unlocking a lock owner of a closed connection failed", "ino", uint64(oh.ino), "handle", uint64(h), "owner", owner, "error", err)
			}
		}
		var err error
		if oh.dir {
			err = fs.ReleaseDir(ctx, oh.ino, h)
		} else {
			err = fs.Release(ctx, oh.ino, h)
		}
		if err != nil {
			sc.log.Warn("releasing a handle of a closed connection failed", "ino", uint64(oh.ino), "handle", uint64(h), "dir", oh.dir, "error", err)
		}
	}
	sc.log.Debug("connection closed", "handles", len(handles))
}

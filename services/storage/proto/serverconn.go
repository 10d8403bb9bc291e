package proto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"syscall"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// serverConn is the server's side of one connection.
type serverConn struct {
	srv  *server
	conn *bus.Conn
	mem  *sharedMemory // closes conn once no request uses its memory
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

	closeOnce sync.Once

	// receiving is held by the goroutine that receives and handles the
	// requests of a client in this process: serveLocal, or a client
	// goroutine that sends a request and then calls handleThrough. cleanup
	// takes it for good.
	receiving sync.Mutex
	// quietCtx is ctx for the requests that run inline with quiet set.
	quietCtx context.Context

	requests sync.WaitGroup // running requests and the notification sender
	slots    chan struct{}  // one token per running request

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

// close cancels the connection's requests and closes the connection as
// soon as no request uses its shared memory, so that the peer gets
// ErrPeerGone even while requests that do not use the memory still run.
// It is safe to call more than once and from any goroutine, and does not
// wait.
func (sc *serverConn) close() {
	sc.closeOnce.Do(func() {
		sc.cancel()
		go sc.mem.close()
	})
}

// serve reads requests until the connection ends, then cleans up.
func (sc *serverConn) serve() {
	defer sc.cleanup()
	if sc.conn.LocalLink() != nil {
		sc.serveLocal()
		return
	}
	for {
		msg, err := sc.conn.Recv(sc.ctx)
		if err != nil {
			sc.logReadError(err)
			return
		}
		if _, ok := sc.handle(msg, 0); !ok {
			return
		}
	}
}

// serveLocal serves a client in this process. The client handles its own
// requests when no other goroutine does (handleThrough), so this loop
// handles only the requests that it finds waiting when it wakes up.
func (sc *serverConn) serveLocal() {
	if err := receiveLocal(sc.ctx, sc.conn, &sc.receiving, sc.handleAny); err != nil {
		sc.logReadError(err)
	}
}

// handleAny is handle for a message that no goroutine is waiting for.
func (sc *serverConn) handleAny(msg bus.Message) bool {
	_, ok := sc.handle(msg, 0)
	return ok
}

// handleThrough handles, on the calling goroutine, the waiting requests up
// to the one with id, which a client in this process sent with
// bus.Reservation.CommitQuiet after it took sc.receiving. The response to
// that request goes out without waking the client's reader, because the
// caller receives it next. It stops after id even if more requests wait,
// because the goroutine that handles requests must not hold a response of
// its own in the ring while it may wait for space there. A later request
// was committed with Commit by a goroutine that found sc.receiving taken,
// so serveLocal receives it. Errors are left to serveLocal, which gets
// them too.
//
// When every slot for running requests is taken, the next request may
// have to wait for one, and then so would the caller, whatever its
// context. handleThrough then hands sc.receiving and the waiting requests
// to a new goroutine and returns false. It returns true when the caller
// releases sc.receiving itself. NOTE: a slot taken between that check and
// the request's start still makes the caller wait until a request ends.
func (sc *serverConn) handleThrough(id uint64) bool {
	for {
		if len(sc.slots) == cap(sc.slots) {
			go func() {
				defer sc.receiving.Unlock()
				// Errors reach serveLocal too.
				_ = receiveWaiting(sc.ctx, sc.conn, sc.handleAny)
			}()
			return false
		}
		msg, err := sc.conn.TryRecv()
		if err != nil {
			return true
		}
		handled, ok := sc.handle(msg, id)
		if !ok || handled == id {
			return true
		}
	}
}

// handle handles one message from the client. It returns the id of the
// request that the message carried, if any, and whether the connection
// goes on. The response to request own, if it runs inline, goes out
// without waking the client's reader. No request has id 0.
func (sc *serverConn) handle(msg bus.Message, own uint64) (uint64, bool) {
	held, ok := receive(sc.mem, msg)
	if !ok {
		return 0, false
	}
	if msg.Kind == busKindSubscribe {
		err := decodeSubscribe(msg.Data)
		held.release()
		if errors.Is(err, wire.ErrUnknownVersion) {
			sc.sendVersions(err)
			return 0, true
		}
		if err != nil {
			sc.srv.dropMalformed(sc.log, "decode", err)
			return 0, true
		}
		sc.subscribe()
		return 0, true
	}
	if msg.Kind != busKindRequest {
		held.release()
		sc.srv.dropMalformed(sc.log, "bus message kind", fmt.Errorf("kind %#x, expected %#x", msg.Kind, busKindRequest))
		return 0, true
	}

	// DecodeRequest reads each value from the payload once, so the
	// checks below hold whatever the peer writes to the shared memory
	// meanwhile.
	req := new(Request)
	if err := DecodeRequest(msg.Data, req); err != nil {
		held.release()
		if errors.Is(err, wire.ErrUnknownVersion) {
			sc.sendVersions(err)
			return 0, true
		}
		sc.srv.dropMalformed(sc.log, "decode", err)
		return 0, true
	}
	if req.Op != OpWrite {
		// Only Write passes its data to the file system in place. A
		// SetXattr value is checked and then stored, so it must not
		// change after the check.
		req.Data = bytes.Clone(req.Data)
		held.release()
	} else if msg.InPlace() {
		sc.srv.inPlaceWrites.Add(1)
	}
	if req.Op == OpInterrupt {
		// req.ID names the request to interrupt, not this message.
		sc.interrupt(req.ID)
		return 0, true
	}
	if sc.srv.opts.Activity != nil {
		sc.srv.opts.Activity()
	}
	if req.quick() && len(sc.slots) == 0 {
		// Nothing else runs on the connection, so the request runs
		// here without a goroutine of its own (see Request.quick).
		sc.runInline(req, held, own != 0 && req.ID == own)
		return req.ID, true
	}
	if !sc.start(req, held) {
		held.release()
		if sc.ctx.Err() != nil {
			return req.ID, false
		}
	}
	return req.ID, true
}

// sendVersions replies to a message of a version that the server does not
// implement with the versions that it does, after which the client fails
// its connection with a VersionError.
func (sc *serverConn) sendVersions(cause error) {
	sc.log.Warn("client speaks another protocol version; replying with this server's versions", "error", cause)
	err := sc.conn.Send(sc.ctx, busKindVersions, appendVersions(nil, requestVersions, notifyVersions))
	sc.logSendError("versions", err)
}

func (sc *serverConn) logReadError(err error) {
	switch {
	case errors.Is(err, bus.ErrPeerGone):
		sc.log.Debug("peer closed the connection")
	case sc.ctx.Err() != nil || errors.Is(err, bus.ErrClosed):
		sc.log.Debug("connection closed by the server", "error", err)
	case errors.Is(err, bus.ErrCorrupt):
		sc.log.Warn("peer corrupted the connection's shared memory; closing the connection", "error", err)
	default:
		sc.log.Info("receiving from the connection failed", "error", err)
	}
}

// start runs req in a new goroutine once a slot is free; the goroutine
// releases held when the request no longer needs the message. It returns
// false, leaving held to the caller, if the connection ended while
// waiting or if req reuses the id of a running request, which it counts
// as malformed.
func (sc *serverConn) start(req *Request, held heldMessage) bool {
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
		sc.srv.dropMalformed(sc.log, "duplicate id", fmt.Errorf("%s request id %d is already running", req.Op, req.ID))
		return false
	}
	sc.inflight[req.ID] = cancel
	sc.mu.Unlock()

	sc.requests.Add(1)
	go sc.run(ctx, req, held)
	return true
}

// runInline executes req in the goroutine that receives requests, which
// is serveLocal, serve or a client goroutine in handleThrough. Unlike
// start, it does not register req for OpInterrupt: the receiver cannot
// see an interrupt until req has finished anyway.
func (sc *serverConn) runInline(req *Request, held heldMessage, quiet bool) {
	sc.srv.inline.Add(1)
	ctx := sc.ctx
	if quiet {
		ctx = sc.quietCtx
	}
	resp := Response{Op: req.Op, ID: req.ID}
	sent := sc.dispatch(ctx, req, &resp)
	held.release()
	if !sent {
		sc.send(&resp, quiet)
	}
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
func (sc *serverConn) run(ctx context.Context, req *Request, held heldMessage) {
	defer sc.requests.Done()

	resp := Response{Op: req.Op, ID: req.ID}
	sent := sc.dispatch(ctx, req, &resp)
	// The data of a Write is in the message; releasing it before sending
	// the response frees the request ring independently of the response
	// ring.
	held.release()

	sc.mu.Lock()
	cancel := sc.inflight[req.ID]
	delete(sc.inflight, req.ID)
	sc.mu.Unlock()
	cancel()

	if !sent {
		sc.send(&resp, false)
	}
	<-sc.slots
}

// send encodes resp and sends it, with quiet set without waking the
// client (see handleThrough). A response that the file system made too
// large to encode goes out as EIO. A failed send ends the connection, and
// the reader then cleans up.
func (sc *serverConn) send(resp *Response, quiet bool) {
	buf := getBuffer(256 + len(resp.Data))
	msg, err := AppendResponse(*buf, resp)
	if err != nil {
		sc.log.Error("file system returned a result that cannot be encoded; sending EIO", "op", resp.Op.String(), "error", err)
		failed := Response{Op: resp.Op, ID: resp.ID, Errno: uint32(syscall.EIO)}
		msg, _ = AppendResponse(*buf, &failed)
	}
	send := sc.conn.Send
	if quiet {
		send = sc.conn.SendQuiet
	}
	err = send(sc.ctx, busKindResponse, msg)
	*buf = msg
	putBuffer(buf)
	sc.logSendError(resp.Op.String()+" response", err)
}

// logSendError logs a failed send unless the connection is ending anyway.
func (sc *serverConn) logSendError(message string, err error) {
	if err != nil && sc.ctx.Err() == nil && !errors.Is(err, bus.ErrPeerGone) {
		sc.log.Info("sending a message failed; closing the connection", "message", message, "error", err)
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
	// Held for good, so that no client goroutine handles a request of the
	// ended connection (handleThrough) from here on.
	sc.receiving.Lock()
	localServers.Delete(sc.conn.LocalLink())
	if sc.srv.opts.Notifier != nil {
		sc.srv.opts.Notifier.unsubscribe(sc)
	}
	sc.requests.Wait()
	sc.mem.close()

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

// subscribe registers the connection with the Notifier and starts the
// goroutine that replies to the subscribe and then sends the notifications.
// A second subscribe is replied to again and changes nothing. Without a
// Notifier the reply is EOPNOTSUPP.
func (sc *serverConn) subscribe() {
	notifier := sc.srv.opts.Notifier
	if notifier == nil {
		sc.requests.Go(func() { sc.sendSubscribed(syscall.EOPNOTSUPP) })
		return
	}
	perMessage := changesPerMessage(sc.conn.MaxPayload())
	if perMessage < 1 {
		// The peer chose rings too small for a change of the longest name.
		sc.requests.Go(func() { sc.sendSubscribed(syscall.EMSGSIZE) })
		return
	}
	q, first := notifier.subscribe(sc)
	if !first {
		sc.requests.Go(func() { sc.sendSubscribed(0) })
		return
	}
	sc.log.Debug("connection subscribed to change notifications")
	sc.requests.Go(func() {
		if sc.sendSubscribed(0) {
			sc.sendNotifications(q, perMessage)
		}
	})
}

// sendSubscribed sends the reply to a subscribe and reports whether it
// went out.
func (sc *serverConn) sendSubscribed(errno syscall.Errno) bool {
	var b [16]byte
	err := sc.conn.Send(sc.ctx, busKindSubscribed, appendSubscribed(b[:0], errno))
	sc.logSendError("subscribed", err)
	return err == nil
}

// sendNotifications sends the changes of q, up to perMessage in each
// message, until the connection ends. Only this goroutine waits for ring
// space, so a peer that does not read delays no request: its queue
// overflows instead.
func (sc *serverConn) sendNotifications(q *changeQueue, perMessage int) {
	var reported uint64
	buf := getBuffer(4096)
	defer putBuffer(buf)
	for {
		select {
		case <-q.ready:
		case <-sc.ctx.Done():
			return
		}
		changes := q.take(perMessage)
		if len(changes) == 0 {
			continue
		}
		if losses := q.overflows(); losses != reported {
			sc.log.Warn("dropped the change notifications of a subscriber that did not read them in time; sending it a change of everything", "overflows", losses)
			reported = losses
		}
		msg, err := AppendNotification((*buf)[:0], changes)
		if err != nil {
			// The file system reported a change that does not encode. The
			// subscriber must still learn that something changed.
			sc.log.Error("file system reported a change that cannot be encoded; sending a change of everything instead", "error", err)
			msg, _ = AppendNotification((*buf)[:0], []fsapi.Change{{Kind: fsapi.ChangeAll}})
		}
		*buf = msg
		err = sc.conn.Send(sc.ctx, busKindNotification, msg)
		sc.logSendError("notification", err)
		if err != nil {
			return
		}
	}
}

// localServers maps the bus.Conn.LocalLink of each served connection whose
// client is in this process to its *serverConn, so that the client can
// handle its requests itself (handleThrough).
var localServers sync.Map

// quietKey is the context key that marks a request running inline for a
// client in this process, whose response goes out without a wake-up.
type quietKey struct{}

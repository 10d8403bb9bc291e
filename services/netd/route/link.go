package route

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/netd/peer"
)

// link multiplexes circuits over one peer.Link. Its reader goroutine
// handles every frame; writes are serialized by wmu.
type link struct {
	r  *Router
	pl *peer.Link

	wmu     sync.Mutex
	writers atomic.Int32 // goroutines in writeParts, holding wmu or waiting for it

	mu       sync.Mutex
	circuits map[uint32]*circuit
	nextID   uint32
	err      error // the reason the link failed; nil while it runs

	done chan struct{} // closed by fail
}

func newLink(r *Router, pl *peer.Link) *link {
	return &link{r: r, pl: pl, circuits: make(map[uint32]*circuit), done: make(chan struct{})}
}

func (l *link) start() {
	l.r.goSafe("link reader", l.read)
	l.r.goSafe("link keepalive", l.keepalive)
}

// logAttrs returns the log keys that name the link's peer.
func (l *link) logAttrs() []any {
	return []any{"peer", l.pl.RemoteAddr().String(), "principal", l.pl.Peer().String()}
}

// deadAfter is how long the link may stay silent before it is closed.
func (l *link) deadAfter() time.Duration { return 3 * l.r.opts.Keepalive }

// write sends one frame. A failed write fails the link.
func (l *link) write(f Frame) error { return l.writeParts(appendFrame(nil, f)) }

// copyLimit is the payload size from which writeMsg writes a payload
// from where it lies instead of copying it behind the frame header: the
// largest plaintext of one TLS record (RFC 8446, section 5.1).
const copyLimit = 16 << 10

// writeMsg sends a MSG frame on circuit. A smaller payload than
// copyLimit is copied behind the header, so that the frame fills one TLS
// record and one write. A larger one is written from payload itself,
// which saves a copy and costs one small record for the header.
func (l *link) writeMsg(circuit, kind uint32, payload []byte) error {
	if len(payload) < copyLimit {
		b := appendMsgHeader(make([]byte, 0, frameHeaderSize+4+len(payload)), circuit, kind, len(payload))
		return l.writeParts(append(b, payload...))
	}
	return l.writeParts(appendMsgHeader(nil, circuit, kind, len(payload)), payload)
}

// writeParts sends the concatenation of parts, which must be whole
// frames, with no other frame between them. A failed write fails the
// link.
//
// The link's TLS records collect in a buffer (peer.Link.Write), and the
// last of the writers that queue for wmu flushes it, so frames that come
// together share write system calls. A writer that finds another one
// waiting leaves the flush to it.
func (l *link) writeParts(parts ...[]byte) error {
	l.writers.Add(1)
	l.wmu.Lock()
	defer l.wmu.Unlock()
	err := l.bufferParts(parts)
	if l.writers.Add(-1) == 0 && err == nil {
		err = l.pl.Flush()
	}
	if err != nil {
		if failed := l.failure(); failed != nil {
			return failed
		}
		err = fmt.Errorf("link to %s: write: %w: %w", l.pl.Peer(), endpoint.ErrPeerGone, err)
		l.fail(err)
	}
	return err
}

// bufferParts writes parts to the link's buffer. It returns the reason
// the link failed, or the error of a write to the socket when the buffer
// filled up.
func (l *link) bufferParts(parts [][]byte) error {
	if err := l.failure(); err != nil {
		return err
	}
	// A peer that stops reading blocks the write; the deadline turns that
	// into a failed link instead of a stuck writer.
	_ = l.pl.SetWriteDeadline(time.Now().Add(l.deadAfter()))
	for _, b := range parts {
		if _, err := l.pl.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func (l *link) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// fail closes the link and ends every circuit on it. Their local
// connections close, so local processes get bus.ErrPeerGone, and opens
// that wait for a reply fail with err.
func (l *link) fail(err error) {
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return
	}
	l.err = err
	close(l.done)
	circuits := l.circuits
	l.circuits = map[uint32]*circuit{}
	l.mu.Unlock()

	l.pl.Close()
	l.r.forget(l)
	for _, c := range circuits {
		c.fail(err)
	}
	if l.r.ctx.Err() == nil {
		l.r.opts.Logger.Info("link closed", append(l.logAttrs(), "circuits", len(circuits), "error", err)...)
	}
}

// malformed counts and logs a frame that breaks the protocol and fails
// the link.
func (l *link) malformed(err error) {
	l.r.malformed.Add(1)
	l.r.logLimited("malformed frame from peer; closing the link", append(l.logAttrs(), "error", err)...)
	l.fail(fmt.Errorf("link to %s: %w: %w", l.pl.Peer(), endpoint.ErrPeerGone, err))
}

// keepalive sends a PING every interval, so that the peer's read
// deadline passes only on a dead link.
func (l *link) keepalive() {
	t := time.NewTicker(l.r.opts.Keepalive)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
			if l.write(Frame{Type: FramePing}) != nil {
				return
			}
		}
	}
}

// read handles frames until the link fails. Every frame's content is
// checked before use, and a panic here is recovered by goSafe, which
// then leaves the link to fail below.
func (l *link) read() {
	defer func() {
		l.fail(fmt.Errorf("link to %s: reader stopped: %w", l.pl.Peer(), endpoint.ErrPeerGone))
	}()
	for {
		_ = l.pl.SetReadDeadline(time.Now().Add(l.deadAfter()))
		f, err := readFrame(l.pl)
		if errors.Is(err, ErrMalformed) {
			l.malformed(err)
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: %w", endpoint.ErrPeerGone, err)
			}
			l.fail(fmt.Errorf("link to %s: read: %w", l.pl.Peer(), err))
			return
		}
		if err := l.handle(f); err != nil {
			l.malformed(err)
			return
		}
	}
}

// handle acts on one frame. An error means the peer broke the protocol.
func (l *link) handle(f Frame) error {
	if f.Type == FramePing {
		return nil
	}
	if f.Type == FrameOpen {
		if !l.pl.Accepted() {
			return fmt.Errorf("%w: OPEN on a link that this node dialed", ErrMalformed)
		}
		return l.serveOpen(f)
	}
	if (f.Type == FrameOpened || f.Type == FrameError) && l.pl.Accepted() {
		return fmt.Errorf("%w: frame type %d on a link that this node accepted", ErrMalformed, f.Type)
	}

	l.mu.Lock()
	c := l.circuits[f.Circuit]
	l.mu.Unlock()
	if c == nil {
		// This side closed the circuit and the peer had not seen the
		// CLOSE yet.
		return nil
	}
	switch f.Type {
	case FrameOpened:
		return c.opened(nil)
	case FrameError:
		code := endpoint.Code(f.Body[0])
		if !code.Valid() {
			return fmt.Errorf("%w: ERROR with unknown code %d on circuit %d", ErrMalformed, code, c.id)
		}
		l.forget(c)
		return c.opened(&endpoint.RemoteError{Code: code, Reason: string(f.Body[1:])})
	case FrameMsg:
		return c.push(binary.BigEndian.Uint32(f.Body[:4]), f.Body)
	case FrameCredit:
		return c.addCredit(binary.BigEndian.Uint32(f.Body))
	case FrameClose:
		c.remoteClose()
	}
	return nil
}

// serveOpen checks an OPEN from the dialer and connects the circuit to the
// local endpoint in the background, so the reader goes on.
func (l *link) serveOpen(f Frame) error {
	deadline := int64(binary.BigEndian.Uint64(f.Body[:8]))
	address := string(f.Body[8:])
	a, err := endpoint.Parse(address)
	if err != nil {
		return fmt.Errorf("%w: OPEN: %w", ErrMalformed, err)
	}
	if deadline < 0 {
		return fmt.Errorf("%w: OPEN with negative deadline %d", ErrMalformed, deadline)
	}

	c := newCircuit(l, f.Circuit, a.String())
	l.mu.Lock()
	if _, used := l.circuits[f.Circuit]; used {
		l.mu.Unlock()
		return fmt.Errorf("%w: OPEN of circuit %d, which is open", ErrMalformed, f.Circuit)
	}
	l.circuits[f.Circuit] = c
	l.mu.Unlock()

	if code, reason := l.authorize(a); code != 0 {
		l.forget(c)
		// A failed write fails the link itself; it is no protocol error.
		_ = l.write(Frame{Type: FrameError, Circuit: f.Circuit, Body: endpoint.EncodeOpenFailed(code, reason)})
		return nil
	}
	l.r.goSafe("remote circuit", func() { c.connectLocal(a, deadline) })
	return nil
}

// authorize decides whether the dialer may open a circuit to a, and
// returns the error code and reason when not.
func (l *link) authorize(a endpoint.Address) (endpoint.Code, string) {
	r := l.r
	if a.Root != r.opts.Root || a.Node != r.self {
		return endpoint.CodeUnreachable, fmt.Sprintf("%s is not on node %s of tree %s: netd relays only to its own node", a, r.self, r.opts.Root)
	}
	if !l.pl.Covers(a.String()) {
		r.unauthorized.Add(1)
		r.logLimited("circuit refused: the chain does not cover the address", append(l.logAttrs(), "path", a.String(), "scope", l.pl.Scope())...)
		return endpoint.CodeUnauthorized, fmt.Sprintf("the chain of %s covers %s, not %s", l.pl.Peer(), l.pl.Scope(), a)
	}
	return 0, ""
}

// open requests a circuit to a from the listener and waits for the reply.
func (l *link) open(ctx context.Context, a endpoint.Address, deadline int64) (*circuit, error) {
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return nil, l.err
	}
	l.nextID++
	if l.nextID == 0 {
		l.nextID = 1
	}
	c := newCircuit(l, l.nextID, a.String())
	l.circuits[c.id] = c
	l.mu.Unlock()

	if err := l.write(Frame{Type: FrameOpen, Circuit: c.id, Body: openBody(deadline, a.String())}); err != nil {
		return nil, err
	}
	select {
	case err := <-c.openResult:
		if err != nil {
			c.close(false)
			return nil, fmt.Errorf("open %s on %s: %w", a, l.pl.Peer(), err)
		}
		return c, nil
	case <-ctx.Done():
		c.close(true)
		return nil, fmt.Errorf("open %s on %s: %w: %w", a, l.pl.Peer(), endpoint.ErrTimedOut, ctx.Err())
	}
}

// forget removes c from the link's circuits.
func (l *link) forget(c *circuit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.circuits[c.id] == c {
		delete(l.circuits, c.id)
	}
}

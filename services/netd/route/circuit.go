package route

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/endpoint"
)

// circuit is one relayed connection on a link: a local bus connection on
// each end, and frames in between. Each direction has a credit window:
// the sender sends MSG frames while it has credit, and the receiver
// returns credit once it has handed the messages to its local connection.
// So a receiver's queue never exceeds the window, and a slow local
// process stalls only its own circuit.
type circuit struct {
	id      uint32
	l       *link
	address string

	openResult chan error // the reply to OPEN, on the dialer's side

	mu           sync.Mutex
	conn         *bus.Conn // nil until attached
	credit       int       // bytes this side may still send
	queue        []queued  // messages from the peer, not yet delivered
	queued       int       // their cost in bytes
	remoteClosed bool      // the peer sent CLOSE; deliver the queue, then end
	replied      bool      // OPENED or ERROR arrived
	closed       bool

	// Each has capacity 1 and its own waiter, so no wake-up is lost to
	// the other goroutine.
	creditCh chan struct{} // credit came; pump waits on it
	queueCh  chan struct{} // the queue grew or the peer closed; deliver waits on it
	done     chan struct{} // closed by close

	// ctx is cancelled by close, which interrupts the local connection's
	// Send and Recv.
	ctx    context.Context
	cancel context.CancelFunc
}

type queued struct {
	kind    uint32
	payload []byte
	body    []byte // the MSG frame's body, for putBody after delivery
}

func newCircuit(l *link, id uint32, address string) *circuit {
	ctx, cancel := context.WithCancel(context.Background())
	return &circuit{
		ctx: ctx, cancel: cancel,
		id: id, l: l, address: address,
		openResult: make(chan error, 1),
		credit:     l.r.opts.Window,
		creditCh:   make(chan struct{}, 1),
		queueCh:    make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
}

func cost(payload []byte) int { return len(payload) + msgOverhead }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// opened delivers the peer's reply to OPEN. A second reply breaks the
// protocol.
func (c *circuit) opened(err error) error {
	c.mu.Lock()
	again := c.replied
	c.replied = true
	c.mu.Unlock()
	if again {
		return fmt.Errorf("%w: second reply to OPEN of circuit %d", ErrMalformed, c.id)
	}
	c.result(err)
	return nil
}

// result hands err to the open that waits, unless it has a result.
func (c *circuit) result(err error) {
	select {
	case c.openResult <- err:
	default:
	}
}

// push queues the message of a MSG frame's body from the peer: its kind
// and the payload after it. A peer that sends beyond its credit breaks
// the protocol.
func (c *circuit) push(kind uint32, body []byte) error {
	payload := body[4:]
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.remoteClosed {
		return fmt.Errorf("%w: MSG on circuit %d after CLOSE", ErrMalformed, c.id)
	}
	if c.queued+cost(payload) > c.l.r.opts.Window {
		return fmt.Errorf("%w: circuit %d: peer sent %d bytes beyond the %d-byte credit window", ErrMalformed, c.id, c.queued+cost(payload)-c.l.r.opts.Window, c.l.r.opts.Window)
	}
	c.queue = append(c.queue, queued{kind, payload, body})
	c.queued += cost(payload)
	signal(c.queueCh)
	return nil
}

// addCredit adds credit returned by the peer. More credit than the window
// breaks the protocol.
func (c *circuit) addCredit(n uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if int64(c.credit)+int64(n) > int64(c.l.r.opts.Window) {
		return fmt.Errorf("%w: circuit %d: credit of %d bytes would exceed the %d-byte window", ErrMalformed, c.id, int64(c.credit)+int64(n), c.l.r.opts.Window)
	}
	c.credit += int(n)
	signal(c.creditCh)
	return nil
}

// remoteClose handles the peer's CLOSE: the messages queued before it are
// still delivered, and then the circuit ends.
func (c *circuit) remoteClose() {
	c.mu.Lock()
	c.remoteClosed = true
	attached := c.conn != nil
	c.mu.Unlock()
	signal(c.queueCh)
	switch {
	case attached:
		// deliver ends the circuit once the queue is empty.
	case c.l.pl.Accepted():
		// The dialer gave up before the local endpoint replied.
		c.close(false)
	default:
		// A CLOSE in place of OPENED; after OPENED, attach starts deliver.
		c.result(fmt.Errorf("circuit %d closed by the peer before it opened: %w", c.id, endpoint.ErrPeerGone))
	}
}

// attach connects the circuit to its local connection and starts relaying.
func (c *circuit) attach(conn *bus.Conn) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		conn.Close()
		return
	}
	c.conn = conn
	c.mu.Unlock()
	c.l.r.goSafe("circuit send", c.pump)
	c.l.r.goSafe("circuit deliver", c.deliver)
}

// connectLocal dials the local endpoint for an OPEN, with the dialer's
// principal and chain as the origin, and replies.
func (c *circuit) connectLocal(a endpoint.Address, deadline int64) {
	r := c.l.r
	ctx, cancel := r.openContext(deadline)
	defer cancel()
	origin := &endpoint.Origin{Principal: c.l.pl.Peer(), Chain: c.l.pl.Chain(), Remote: true}
	conn, err := endpoint.DialOrigin(ctx, r.opts.RunDir, a, origin)
	if err != nil {
		r.opts.Logger.Info("circuit to a local endpoint failed", append(c.l.logAttrs(), "path", a.String(), "error", err)...)
		c.l.forget(c)
		_ = c.l.write(Frame{Type: FrameError, Circuit: c.id, Body: endpoint.EncodeOpenFailed(endpoint.CodeOf(err), err.Error())})
		return
	}
	if err := c.l.write(Frame{Type: FrameOpened, Circuit: c.id}); err != nil {
		conn.Close()
		return
	}
	r.opts.Logger.Debug("circuit served", append(c.l.logAttrs(), "path", a.String(), "circuit", c.id)...)
	c.attach(conn)
}

// pump relays messages from the local connection to the peer as credit
// allows.
func (c *circuit) pump() {
	for {
		msg, err := c.conn.Recv(c.ctx)
		if err != nil {
			c.close(true)
			return
		}
		need := cost(msg.Data)
		if len(msg.Data) > MaxMessage {
			msg.Release()
			c.l.r.opts.Logger.Warn("message above the relay limit; closing the circuit", append(c.l.logAttrs(), "path", c.address, "bytes", len(msg.Data), "limit", MaxMessage)...)
			c.close(true)
			return
		}
		if !c.takeCredit(need) {
			msg.Release()
			return
		}
		// The payload goes to the link from the bus ring, where it stays
		// reserved until the write returns.
		err = c.l.writeMsg(c.id, msg.Kind, msg.Data)
		msg.Release()
		if err != nil {
			return
		}
	}
}

// takeCredit waits until need bytes of credit are available and takes
// them, or returns false when the circuit ends.
func (c *circuit) takeCredit(need int) bool {
	for {
		c.mu.Lock()
		if c.credit >= need {
			c.credit -= need
			c.mu.Unlock()
			return true
		}
		c.mu.Unlock()
		select {
		case <-c.creditCh:
		case <-c.done:
			return false
		}
	}
}

// deliver hands the peer's messages to the local connection in order and
// returns their credit.
func (c *circuit) deliver() {
	returned := 0
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			ended := c.remoteClosed
			c.mu.Unlock()
			if returned > 0 {
				if c.l.write(Frame{Type: FrameCredit, Circuit: c.id, Body: creditBody(uint32(returned))}) != nil {
					return
				}
				returned = 0
			}
			if ended {
				c.close(false)
				return
			}
			select {
			case <-c.queueCh:
			case <-c.done:
				return
			}
			continue
		}
		m := c.queue[0]
		c.queue = c.queue[1:]
		c.queued -= cost(m.payload)
		c.mu.Unlock()

		// Send copies the payload into the bus ring, so the body can be
		// reused as soon as it returns.
		err := c.conn.Send(c.ctx, m.kind, m.payload)
		putBody(m.body)
		if errors.Is(err, bus.ErrPeerGone) {
			// The local process has left. pump forwards the messages it
			// sent before leaving and then ends the circuit, so closing
			// here could cut off the last of them, such as a shell's exit
			// status.
			return
		}
		if err != nil {
			c.close(true)
			return
		}
		returned += cost(m.payload)
		if returned >= c.l.r.opts.Window/4 {
			if c.l.write(Frame{Type: FrameCredit, Circuit: c.id, Body: creditBody(uint32(returned))}) != nil {
				return
			}
			returned = 0
		}
	}
}

// close ends the circuit once. It closes the local connection, whose
// process then gets bus.ErrPeerGone, and sends CLOSE to the peer when
// sendClose is set.
func (c *circuit) close(sendClose bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	conn := c.conn
	close(c.done)
	c.mu.Unlock()
	c.cancel()

	c.l.forget(c)
	if conn != nil {
		conn.Close()
	}
	if sendClose {
		_ = c.l.write(Frame{Type: FrameClose, Circuit: c.id})
	}
}

// fail ends the circuit because its link failed.
func (c *circuit) fail(err error) {
	c.result(err)
	c.close(false)
}

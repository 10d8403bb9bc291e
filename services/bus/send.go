package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/blocktree/blocktree/services/bus/ring"
)

// Send copies payload into the send ring as one message of the given kind
// and wakes the peer if it sleeps in Recv. While the ring is full, Send
// waits for the peer to release messages, until ctx is done. Kind
// ring.PaddingKind is reserved.
func (c *Conn) Send(ctx context.Context, kind uint32, payload []byte) error {
	return c.send(ctx, kind, payload, c.commit)
}

// send is Send with commit publishing the message.
func (c *Conn) send(ctx context.Context, kind uint32, payload []byte, commit func() error) error {
	if err := c.begin(); err != nil {
		return err
	}
	defer c.end()
	if err := c.acquire(ctx, c.sendSlot); err != nil {
		return err
	}
	defer func() { <-c.sendSlot }()

	buf, err := c.reserve(ctx, kind, len(payload))
	if err != nil {
		return err
	}
	ring.Copy(buf, payload)
	return commit()
}

// Reservation is space for one message in the send ring, which the caller
// fills in place and then publishes with Commit or drops with Cancel. It
// holds the connection's sending side: other Sends wait until it ends.
type Reservation struct {
	c    *Conn
	data []byte
	done bool
}

// Reserve waits, as Send does, for space for a message of n bytes and
// returns it as a Reservation. Writing a large payload straight into the
// reservation saves the copy that Send makes.
func (c *Conn) Reserve(ctx context.Context, kind uint32, n int) (*Reservation, error) {
	if err := c.begin(); err != nil {
		return nil, err
	}
	defer c.end()
	if err := c.acquire(ctx, c.sendSlot); err != nil {
		return nil, err
	}

	buf, err := c.reserve(ctx, kind, n)
	if err != nil {
		<-c.sendSlot
		return nil, err
	}
	return &Reservation{c: c, data: buf}, nil
}

// Bytes returns the message's payload memory, in the shared memory. It is
// invalid after Commit, Cancel or the connection's Close.
func (r *Reservation) Bytes() []byte { return r.data }

// Truncate shortens the message to the first n bytes of Bytes, which
// must not exceed its reserved size. A sender that has only an upper
// bound when it reserves, such as a read of a file that may end early,
// reserves the bound and truncates to what it wrote.
func (r *Reservation) Truncate(n int) error {
	if r.done {
		return errors.New("bus reservation: Truncate after Commit or Cancel")
	}
	if err := r.c.producer.Truncate(n); err != nil {
		return fmt.Errorf("bus reservation: %w", err)
	}
	r.data = r.data[:n:n]
	return nil
}

// Commit publishes the message to the peer. It returns ErrClosed if the
// connection was closed meanwhile, and an error if the reservation ended
// already.
func (r *Reservation) Commit() error {
	return r.commit(r.c.commit)
}

// commit is Commit with commit publishing the message.
func (r *Reservation) commit(commit func() error) error {
	if r.done {
		return errors.New("bus reservation: Commit after Commit or Cancel")
	}
	r.done = true
	defer func() { <-r.c.sendSlot }()

	if err := r.c.begin(); err != nil {
		return err
	}
	defer r.c.end()
	return commit()
}

// Cancel drops the message, which the peer never receives. It does
// nothing after Commit or Cancel.
func (r *Reservation) Cancel() {
	if r.done {
		return
	}
	r.done = true
	r.c.producer.Cancel()
	<-r.c.sendSlot
}

// reserve waits for space in the send ring. The caller holds sendSlot.
func (c *Conn) reserve(ctx context.Context, kind uint32, n int) ([]byte, error) {
	for {
		if err := c.failure(); err != nil {
			return nil, err
		}

		buf, err := c.producer.Reserve(kind, n)
		if err == nil {
			return buf, nil
		}
		if !errors.Is(err, ring.ErrFull) {
			return nil, c.sendError(err)
		}

		// Sleep only if the ring is still full after requesting a wake-up,
		// as the package ring documentation explains.
		c.producer.ArmWakeup()
		buf, err = c.producer.Reserve(kind, n)
		if err == nil {
			c.producer.DisarmWakeup()
			return buf, nil
		}
		if !errors.Is(err, ring.ErrFull) {
			return nil, c.sendError(err)
		}
		// The receiver frees space only once it receives, and it may sleep
		// through messages that were committed without waking it.
		if c.quietCommits.Swap(false) {
			c.signal(c.dataFd, c.dataWake)
		}
		if err := c.sendWaiter.wait(ctx, c.stopped); err != nil {
			return nil, err
		}
	}
}

// commit publishes the open reservation.
func (c *Conn) commit() error {
	if err := c.producer.Commit(); err != nil {
		return fmt.Errorf("bus send: %w", err)
	}
	return nil
}

// sendError wraps an error of the send ring, and stops the connection for a
// corruption.
func (c *Conn) sendError(err error) error {
	err = fmt.Errorf("bus send to pid %d: %w", c.peer.PID, err)
	if errors.Is(err, ring.ErrCorrupt) {
		c.fail(err)
	}
	return err
}

// stopped reports whether the connection stopped, for waiter.wait.
func (c *Conn) stopped() bool { return c.failure() != nil }

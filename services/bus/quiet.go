package bus

import (
	"context"
	"errors"
	"fmt"
)

// When both ends of a connection are in one process, a sender can receive
// and handle its own message instead of waking the goroutine that sleeps
// in the receiver's Recv. Waking a goroutine costs more than handling a
// small message, because the Go runtime may wake an idle thread on
// another CPU for it. The receiving side then guards its receiving with a
// lock. Its own goroutine waits with WaitMessage, which does not take the
// message, and receives with TryRecv under the lock. A sender that gets
// the lock with TryLock commits quietly (SendQuiet, CommitQuiet) and
// receives through TryRecv on the other end until it has handled its
// message. A sender that finds the lock taken commits as usual, which
// wakes the receiver's goroutine. So every quiet message has a goroutine
// that receives it.

// LocalLink returns a value that is equal on the two ends of a connection
// whose ends are both in this process, and nil on every other connection.
// A process uses it to find the receiving end of its own connection.
func (c *Conn) LocalLink() any {
	if c.local == nil {
		return nil
	}
	return c.local
}

// SendQuiet is Send without waking the peer's Recv or WaitMessage. The
// caller must see to it that the message is received, as described above.
func (c *Conn) SendQuiet(ctx context.Context, kind uint32, payload []byte) error {
	return c.send(ctx, kind, payload, c.commitQuiet)
}

// CommitQuiet is Commit without waking the peer, under the rule of
// SendQuiet.
func (r *Reservation) CommitQuiet() error {
	return r.commit(r.c.commitQuiet)
}

func (c *Conn) commitQuiet() error {
	if err := c.producer.CommitQuiet(); err != nil {
		return fmt.Errorf("bus send: %w", err)
	}
	c.quietCommits.Store(true)
	return nil
}

// TryRecv returns the next message without waiting. It returns an error
// wrapping ring.ErrEmpty when none is waiting, and otherwise the errors of
// Recv. It may run while another goroutine waits in Recv or WaitMessage.
func (c *Conn) TryRecv() (Message, error) {
	if err := c.begin(); err != nil {
		return Message{}, err
	}
	defer c.end()
	return c.tryRecv(false)
}

// Waiting reports whether a message waits to be received. It also returns
// true when the ring is broken, so that the caller's next receive gets the
// error.
func (c *Conn) Waiting() bool {
	if c.begin() != nil {
		return false
	}
	defer c.end()
	c.consumerMu.Lock()
	defer c.consumerMu.Unlock()
	waiting, err := c.consumer.Pending()
	return waiting || err != nil
}

// WaitMessage waits until a message can be received, ctx is done or the
// connection stops, without receiving the message. It returns nil when a
// message waits, and otherwise the error that Recv would return. After the
// peer is gone, it returns nil while messages that the peer committed
// before are waiting.
func (c *Conn) WaitMessage(ctx context.Context) error {
	if err := c.begin(); err != nil {
		return err
	}
	defer c.end()
	if err := c.acquire(ctx, c.recvSlot); err != nil {
		return err
	}
	defer func() { <-c.recvSlot }()

	for {
		waiting, err := c.pending()
		if waiting || err != nil {
			return err
		}
		if err := c.recvWaiter.wait(ctx, c.stopped); err != nil {
			return err
		}
	}
}

// pending reports whether a message waits, after requesting a wake-up if
// none does. Like tryRecv, it returns the connection's failure once no
// message is left.
func (c *Conn) pending() (bool, error) {
	c.consumerMu.Lock()
	defer c.consumerMu.Unlock()

	if err := c.failure(); err != nil && !errors.Is(err, ErrPeerGone) {
		return false, err
	}
	waiting, err := c.consumer.Pending()
	if err == nil && !waiting {
		// As in tryRecv, check again after requesting the wake-up.
		c.consumer.ArmWakeup()
		waiting, err = c.consumer.Pending()
		if waiting {
			c.consumer.DisarmWakeup()
		}
	}
	if err == nil && !waiting {
		failure := c.failure()
		if failure == nil {
			return false, nil
		}
		// The peer's last commits came before its socket closed.
		if waiting, err = c.consumer.Pending(); err == nil && !waiting {
			return false, failure
		}
	}
	if err != nil {
		err = fmt.Errorf("bus receive from pid %d: %w", c.peer.PID, err)
		c.fail(err)
		return false, err
	}
	return true, nil
}

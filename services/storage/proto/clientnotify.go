package proto

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

var (
	_ fsapi.Subscriber  = (*Client)(nil)
	_ fsapi.AttrOpener  = (*Client)(nil)
	_ fsapi.DirReporter = (*Client)(nil)
)

// Subscribe sends the daemon a subscribe message and waits for its reply.
// From then on the daemon reports every change that another connection
// makes. The changes wait in a queue of DefaultMaxQueuedChanges distinct
// changes. When the caller does not call Next often enough, the queue
// drops them and Next reports ChangeAll. A daemon without notifications
// makes Subscribe fail with EOPNOTSUPP. A second call returns the same
// subscription.
//
// The subscription ends with the connection. A change made while no
// connection is up is never reported, so a client that connects again
// must assume that anything may have changed.
func (c *Client) Subscribe(ctx context.Context) (fsapi.Subscription, error) {
	c.mu.Lock()
	switch {
	case c.down != nil:
		c.mu.Unlock()
		return nil, c.subscriptionError()
	case c.changes != nil && c.subscribed == nil:
		c.mu.Unlock()
		return &subscription{c: c, q: c.changes}, nil
	case c.subscribed != nil:
		c.mu.Unlock()
		return nil, errors.New("subscribe: another Subscribe of this client is waiting for the daemon's reply: call Subscribe from one goroutine")
	}
	reply := make(chan syscall.Errno, 1)
	q := newChangeQueue(DefaultMaxQueuedChanges)
	c.subscribed = reply
	c.changes = q
	c.mu.Unlock()

	var b [8]byte
	err := c.conn.Send(ctx, busKindSubscribe, appendSubscribe(b[:0]))
	if err == nil {
		select {
		case errno := <-reply:
			if errno != 0 {
				err = fmt.Errorf("subscribe at %s: the storage daemon sends no change notifications: %w", c.path, errno)
			}
		case <-c.downCh:
			err = c.subscriptionError()
		case <-ctx.Done():
			err = fmt.Errorf("subscribe: no reply from the storage daemon at %s: %w", c.path, ctx.Err())
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.subscribed = nil
	if err != nil {
		c.changes = nil
		return nil, err
	}
	return &subscription{c: c, q: q}, nil
}

// receiveNotify handles a message of the notification kinds for the
// reader, and returns an error for one that does not decode. It ignores
// a reply that no Subscribe waits for and notifications without a
// subscription: both arrive when Subscribe gave up waiting.
func (c *Client) receiveNotify(kind uint32, data []byte) error {
	if kind == busKindSubscribed {
		errno, err := decodeSubscribed(data)
		if err != nil {
			return fmt.Errorf("invalid message: %w", err)
		}
		c.mu.Lock()
		reply := c.subscribed
		c.mu.Unlock()
		if reply != nil {
			select {
			case reply <- errno:
			default: // an earlier reply, to a Subscribe that gave up, is waiting
			}
		}
		return nil
	}

	changes, err := DecodeNotification(data)
	if err != nil {
		return fmt.Errorf("invalid message: %w", err)
	}
	c.mu.Lock()
	q := c.changes
	c.mu.Unlock()
	if q != nil {
		q.add(changes)
	}
	return nil
}

func (c *Client) subscriptionError() error {
	return fmt.Errorf("change notifications from %s: %w: %w", c.path, ErrConnDown, c.Err())
}

// subscription is the fsapi.Subscription of a Client.
type subscription struct {
	c *Client
	q *changeQueue
}

// Next waits for changes. Changes that arrived before the connection went
// down are still returned, and then Next fails with an error that wraps
// ErrConnDown.
func (s *subscription) Next(ctx context.Context) ([]fsapi.Change, error) {
	q := s.q
	for {
		if changes := q.take(0); len(changes) > 0 {
			return changes, nil
		}
		select {
		case <-q.ready:
		case <-s.c.downCh:
			if changes := q.take(0); len(changes) > 0 {
				return changes, nil
			}
			return nil, s.c.subscriptionError()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

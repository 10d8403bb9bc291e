package proto

import (
	"context"
	"sync"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// DefaultMaxQueuedChanges is the number of distinct changes that wait for
// one subscriber, on the server and in the client, before they are dropped
// and reported as one fsapi.ChangeAll, when NewNotifier gets 0.
const DefaultMaxQueuedChanges = 4096

// Notifier sends the changes that the file system reports to every
// connection that subscribed, except the one whose request made them. The
// storage daemon passes Publish to its engine and the Notifier to Serve.
// Create one with NewNotifier, because the zero value is not usable.
type Notifier struct {
	maxQueued int

	mu   sync.Mutex
	subs map[*serverConn]*changeQueue
}

// NewNotifier returns a Notifier that queues up to maxQueued distinct
// changes per subscriber (DefaultMaxQueuedChanges if maxQueued is 0 or
// less).
func NewNotifier(maxQueued int) *Notifier {
	if maxQueued <= 0 {
		maxQueued = DefaultMaxQueuedChanges
	}
	return &Notifier{maxQueued: maxQueued, subs: make(map[*serverConn]*changeQueue)}
}

// Publish queues changes for every subscriber except the connection whose
// request ctx belongs to. It never blocks on a subscriber: a subscriber
// whose queue is full loses its queued changes and gets one ChangeAll in
// their place. The engine calls it under its lock, so notifications are
// queued in the order the changes took effect, before the response of the
// request that made them is sent.
func (n *Notifier) Publish(ctx context.Context, changes []fsapi.Change) {
	if len(changes) == 0 {
		return
	}
	origin, _ := ctx.Value(originKey{}).(*serverConn)
	n.mu.Lock()
	defer n.mu.Unlock()
	for sc, q := range n.subs {
		if sc != origin {
			q.add(changes)
		}
	}
}

// subscribe registers sc and returns its queue. A second call for the same
// connection returns the same queue.
func (n *Notifier) subscribe(sc *serverConn) (*changeQueue, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if q, ok := n.subs[sc]; ok {
		return q, false
	}
	q := newChangeQueue(n.maxQueued)
	n.subs[sc] = q
	return q, true
}

func (n *Notifier) unsubscribe(sc *serverConn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.subs, sc)
}

// originKey is the context key under which a request's context carries its
// serverConn, so that Publish skips the connection that made a change.
type originKey struct{}

// changeQueue holds the changes for one subscriber until they are
// delivered. add never blocks: it merges a change that is already pending,
// and when more than max distinct changes would be pending it drops them
// all and records the loss, which take then reports first, as one
// ChangeAll. The order of the pending changes does not matter to a
// subscriber, because each only tells it to drop something it cached.
type changeQueue struct {
	max   int
	ready chan struct{} // holds a token while changes or a loss are pending

	mu      sync.Mutex
	pending []fsapi.Change
	queued  map[fsapi.Change]struct{}
	lost    bool
	losses  uint64 // number of times the queue overflowed
}

func newChangeQueue(max int) *changeQueue {
	return &changeQueue{max: max, ready: make(chan struct{}, 1), queued: make(map[fsapi.Change]struct{})}
}

// add queues changes. A ChangeAll among them, or an overflow, replaces
// everything pending before it.
func (q *changeQueue) add(changes []fsapi.Change) {
	q.mu.Lock()
	for _, c := range changes {
		if _, ok := q.queued[c]; ok {
			continue
		}
		if c.Kind == fsapi.ChangeAll || len(q.pending) >= q.max {
			if c.Kind != fsapi.ChangeAll {
				q.losses++
			}
			q.lost = true
			clear(q.queued)
			q.pending = q.pending[:0]
			if c.Kind == fsapi.ChangeAll {
				continue
			}
		}
		q.queued[c] = struct{}{}
		q.pending = append(q.pending, c)
	}
	q.mu.Unlock()

	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take removes and returns up to max pending changes, a ChangeAll first
// if changes were lost, or all of them if max is 0 or less. It returns
// nil when nothing is pending.
func (q *changeQueue) take(max int) []fsapi.Change {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []fsapi.Change
	if q.lost {
		out = append(out, fsapi.Change{Kind: fsapi.ChangeAll})
		q.lost = false
	}
	n := len(q.pending)
	if max > 0 {
		n = min(n, max-len(out))
	}
	for _, c := range q.pending[:n] {
		delete(q.queued, c)
	}
	out = append(out, q.pending[:n]...)
	q.pending = append(q.pending[:0], q.pending[n:]...)
	if len(q.pending) > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return out
}

// overflows returns the number of times the queue dropped its changes.
func (q *changeQueue) overflows() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.losses
}

package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/blocktree/blocktree/services/bus/ring"
	"github.com/blocktree/blocktree/services/bus/shm"
	"golang.org/x/sys/unix"
)

var (
	// ErrPeerGone is returned by Send and Recv after the peer closed its
	// end or exited. Recv returns it once the records that the peer
	// committed before are all received.
	ErrPeerGone = errors.New("bus peer closed the connection or exited")
	// ErrClosed is returned by every operation after Close.
	ErrClosed = fmt.Errorf("bus connection closed: %w", net.ErrClosed)
	// ErrTooLarge is wrapped by the error of Send and Reserve for a payload
	// above Conn.MaxPayload.
	ErrTooLarge = ring.ErrTooLarge
	// ErrCorrupt is wrapped by the error of Send and Recv when the peer
	// broke a ring's invariants in shared memory. The connection is then
	// broken. Its socket is closed, so the peer gets ErrPeerGone, and every
	// later operation returns the same error.
	ErrCorrupt = ring.ErrCorrupt
)

// Defaults.
const (
	DefaultRingSize      = 1 << 20
	DefaultCopyThreshold = 4 << 10
)

// Cred is the identity of the peer process, recorded by the kernel when the
// socket connected (SO_PEERCRED).
type Cred struct {
	PID int
	UID uint32
	GID uint32
}

// Conn is one end of a bus connection. Send and Recv may run concurrently
// with each other; concurrent Sends are served one at a time, and so are
// concurrent Recvs.
type Conn struct {
	role          role
	sock          *net.UnixConn
	region        *shm.Region
	peer          Cred
	copyThreshold int

	// sendSlot is held by a Send, or by a Reservation until its Commit or
	// Cancel, because the ring has a single producer.
	sendSlot   chan struct{}
	producer   *ring.Producer
	sendWaiter *waiter       // the peer released records in the send ring
	dataFd     int           // eventfd that wakes the peer's Recv
	dataWake   chan struct{} // replaces dataFd on a local link

	// recvSlot is held by a Recv, including its sleep.
	recvSlot chan struct{}
	// recvSpin decides whether a Recv polls before it sleeps. Only the
	// holder of recvSlot uses it.
	recvSpin spinPolicy
	// recvClock learns the rate of incoming messages, so that a Recv can
	// sleep with a timer and poll when the next one is due. Only the
	// holder of recvSlot uses it.
	recvClock  arrivalClock
	recvWaiter *waiter       // the peer committed records to the receive ring
	roomFd     int           // eventfd that wakes the peer's Send
	roomWake   chan struct{} // replaces roomFd on a local link

	// consumerMu guards consumer and heldRecords, which Recv and
	// Message.Release use. It is never held while sleeping.
	consumerMu  sync.Mutex
	consumer    *ring.Consumer
	heldRecords []*holdToken // records from Next, oldest first, not yet released in the ring
	copied      holdToken    // entry in heldRecords for a copied message, always released

	mu     sync.Mutex
	err    error // cause of the stop (ErrPeerGone, a corruption, or ErrClosed); nil while running
	closed bool
	active int        // running operations that use the shared memory or the fds
	idle   *sync.Cond // signalled, with mu, when active drops to 0 after Close

	closedCh   chan struct{} // closed by Close
	readerDone chan struct{} // closed when watchPeer returns

	local *localLink // shared with the peer's Conn when both ends are this process
	// quietCommits is set by SendQuiet and CommitQuiet, and cleared when
	// a send that waits for space wakes the peer for them.
	quietCommits atomic.Bool

	signals     atomic.Uint64 // eventfd writes, for tests
	timedSleeps atomic.Uint64 // timed sleeps of Recv, for tests
}

// role is the end of the connection that a Conn is. It decides the ring
// that the Conn sends on and the eventfds that it sleeps on.
type role int

const (
	dialer role = iota
	listener
)

// connParts are the resources that newConn takes over.
type connParts struct {
	sock          *net.UnixConn
	region        *shm.Region
	eventFds      [4]int // indexed by fdDialerData-1 and so on
	ringSize      int
	peer          Cred
	copyThreshold int
	local         *localLink // nil unless both ends are this process
}

// newConn builds a Conn from a completed setup. It takes ownership of all
// parts, also when it fails.
func newConn(r role, p connParts) (*Conn, error) {
	c := &Conn{
		role:          r,
		sock:          p.sock,
		region:        p.region,
		peer:          p.peer,
		copyThreshold: p.copyThreshold,
		sendSlot:      make(chan struct{}, 1),
		recvSlot:      make(chan struct{}, 1),
		recvClock:     newArrivalClock(),
		dataFd:        -1,
		roomFd:        -1,
		closedCh:      make(chan struct{}),
		readerDone:    make(chan struct{}),
	}
	c.idle = sync.NewCond(&c.mu)
	c.copied = holdToken{c: c, released: true}

	fd := func(i int) int { return p.eventFds[i-1] }
	// Ring A carries dialer to listener, ring B listener to dialer.
	mem := p.region.Bytes()
	ringA := mem[:ring.Size(p.ringSize)]
	ringB := mem[ring.Size(p.ringSize):memorySize(p.ringSize)]
	sendRing, recvRing := ringA, ringB
	sendWaitIdx, recvWaitIdx, dataIdx, roomIdx := fdDialerRoom, fdListenData, fdDialerData, fdListenRoom
	if r == listener {
		sendRing, recvRing = ringB, ringA
		sendWaitIdx, recvWaitIdx, dataIdx, roomIdx = fdListenRoom, fdDialerData, fdListenData, fdDialerRoom
	}
	sendWait, recvWait := fd(sendWaitIdx), fd(recvWaitIdx)
	c.dataFd, c.roomFd = fd(dataIdx), fd(roomIdx)

	abort := func(err error) (*Conn, error) {
		c.sock.Close()
		c.release()
		return nil, err
	}
	var err error
	if c.sendWaiter, err = newWaiter(sendWait, "bus-send-room"); err != nil {
		unix.Close(recvWait)
		return abort(err)
	}
	if c.recvWaiter, err = newWaiter(recvWait, "bus-recv-data"); err != nil {
		return abort(err)
	}
	if p.local != nil {
		c.local = p.local
		c.sendWaiter.useLocal(p.local.wake[sendWaitIdx-1])
		c.recvWaiter.useLocal(p.local.wake[recvWaitIdx-1])
		c.dataWake, c.roomWake = p.local.wake[dataIdx-1], p.local.wake[roomIdx-1]
	}
	if c.producer, err = ring.NewProducer(sendRing, func() { c.signal(c.dataFd, c.dataWake) }); err != nil {
		return abort(err)
	}
	if c.consumer, err = ring.NewConsumer(recvRing, func() { c.signal(c.roomFd, c.roomWake) }); err != nil {
		return abort(err)
	}

	go c.watchPeer()
	return c, nil
}

// signal wakes the peer through an eventfd, or through ch on a local link.
// If that fails, the connection stops with the error, because the peer
// would otherwise sleep forever.
func (c *Conn) signal(fd int, ch chan struct{}) {
	c.signals.Add(1)
	if ch != nil {
		wakeLocal(ch)
		return
	}
	if err := signalEventfd(fd); err != nil {
		c.fail(fmt.Errorf("bus wake-up of pid %d: %w", c.peer.PID, err))
	}
}

// watchPeer waits for the end of the setup socket. Nothing is sent on it
// after the setup, so a read returns only when the peer closes it or exits,
// or when this side closes it.
func (c *Conn) watchPeer() {
	defer close(c.readerDone)
	var buf [1]byte
	n, err := c.sock.Read(buf[:])
	if n > 0 {
		c.fail(fmt.Errorf("bus peer pid %d sent data on the setup socket after the setup: %w", c.peer.PID, ErrPeerGone))
		return
	}
	_ = err // EOF, a reset, or ErrClosed after our own Close: all mean the connection ended.
	c.fail(ErrPeerGone)
}

// fail stops the connection with err unless it stopped already, and wakes
// every sleeping Send and Recv so that they see it.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	closed := c.closed
	c.mu.Unlock()

	if closed {
		return // Close interrupts and releases everything itself.
	}
	c.sendWaiter.interrupt()
	c.recvWaiter.interrupt()
	if errors.Is(err, ErrCorrupt) {
		// The peer's end then reads EOF and stops with ErrPeerGone.
		c.sock.Close()
	}
}

// failure returns why the connection stopped, or nil.
func (c *Conn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// begin registers an operation that will use the shared memory or the fds,
// so that Close waits for it before releasing them.
func (c *Conn) begin() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.active++
	return nil
}

func (c *Conn) end() {
	c.mu.Lock()
	c.active--
	if c.active == 0 && c.closed {
		c.idle.Broadcast()
	}
	c.mu.Unlock()
}

// acquire takes a slot channel, giving up when ctx is done or the
// connection is closed.
func (c *Conn) acquire(ctx context.Context, slot chan struct{}) error {
	select {
	case slot <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closedCh:
		return ErrClosed
	}
}

// Peer returns the peer's pid, uid and gid as the kernel recorded them.
// The pid refers to the peer process as it was at connect time.
func (c *Conn) Peer() Cred { return c.peer }

// MaxPayload returns the largest payload that Send and Reserve accept.
func (c *Conn) MaxPayload() int { return c.producer.MaxPayload() }

// Close ends the connection: the peer gets ErrPeerGone, running Sends and
// Recvs return ErrClosed, and the shared memory and every fd are released.
// Message data and Reservation memory become invalid, so nothing may use
// them during or after Close. Later calls return nil.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.err = ErrClosed
	close(c.closedCh)
	c.mu.Unlock()

	c.sendWaiter.interrupt()
	c.recvWaiter.interrupt()
	err := c.sock.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil // closed by fail after a corruption
	}
	<-c.readerDone

	c.mu.Lock()
	for c.active > 0 {
		c.idle.Wait()
	}
	c.mu.Unlock()

	if releaseErr := c.release(); err == nil {
		err = releaseErr
	}
	return err
}

// release frees the memory and the fds other than the socket.
func (c *Conn) release() error {
	var errs []error
	if c.sendWaiter != nil {
		errs = append(errs, c.sendWaiter.close())
	}
	if c.recvWaiter != nil {
		errs = append(errs, c.recvWaiter.close())
	}
	for _, fd := range []int{c.dataFd, c.roomFd} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	errs = append(errs, c.region.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close bus connection: %w", err)
	}
	return nil
}

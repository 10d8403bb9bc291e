package proto

import (
	"sync"

	"github.com/blocktree/blocktree/services/bus"
)

// RingSize is the size of each direction's ring on a connection, which
// Dial requests from the daemon. A bus message is at most half a ring. The
// largest message, a Write request or Read response of fsapi.MaxWrite
// bytes plus its other fields (MaxMessageSize), is just above 1 MiB. So
// 2 MiB rings would be 8 bytes short, and 4 MiB is the smallest power of
// two that fits. The two rings take 8 MiB of shared memory per
// connection, mapped by both processes; the kernel backs the pages as
// messages first touch them.
const RingSize = 4 << 20

// Bus message kinds of the protocol: the same values as the message kinds
// inside the payloads, so a receiver can reject a stray message before it
// decodes anything.
const (
	busKindRequest  = uint32(KindRequest)
	busKindResponse = uint32(KindResponse)
)

// sharedMemory guards a bus connection's shared memory against Close
// while code outside package bus still uses it: a Message view that was
// not released yet, or a Reservation being filled. bus.Conn.Close unmaps
// the memory at once, so a view or reservation in use at that moment
// would fault. Holders register with hold and end with done; close waits
// for them and then closes the connection.
type sharedMemory struct {
	conn *bus.Conn

	mu      sync.Mutex
	users   int
	closing bool
	idle    *sync.Cond    // signalled when users drops to 0 while closing
	closed  chan struct{} // closed once conn is closed
}

func newSharedMemory(conn *bus.Conn) *sharedMemory {
	m := &sharedMemory{conn: conn, closed: make(chan struct{})}
	m.idle = sync.NewCond(&m.mu)
	return m
}

// hold registers a user of the memory. It returns false once close has
// started, and the caller must then not touch the memory.
func (m *sharedMemory) hold() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return false
	}
	m.users++
	return true
}

// done ends a hold.
func (m *sharedMemory) done() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users--
	if m.users == 0 && m.closing {
		m.idle.Broadcast()
	}
}

// close waits until no hold is left and closes the connection. Every call
// returns once the connection is closed.
func (m *sharedMemory) close() {
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		<-m.closed
		return
	}
	m.closing = true
	for m.users > 0 {
		m.idle.Wait()
	}
	m.mu.Unlock()

	m.conn.Close()
	close(m.closed)
}

// heldMessage is a received message whose Data may be a view into the
// shared memory. release frees its ring space and its hold.
type heldMessage struct {
	mem  *sharedMemory
	msg  bus.Message
	held bool // mem.hold succeeded for msg
}

// receive wraps msg, taking a hold if msg is a view. It returns false if
// the memory is closing; the message is then released and must not be
// used.
func receive(mem *sharedMemory, msg bus.Message) (heldMessage, bool) {
	if !msg.InPlace() {
		return heldMessage{mem: mem, msg: msg}, true
	}
	if !mem.hold() {
		msg.Release()
		return heldMessage{}, false
	}
	return heldMessage{mem: mem, msg: msg, held: true}, true
}

func (h *heldMessage) release() {
	h.msg.Release()
	if h.held {
		h.held = false
		h.mem.done()
	}
}

// readResponseHeaderSize is the size of a successful Read response
// without its data: kind u16, version u8, op u16, id u64, errno u32, data
// length u32.
const readResponseHeaderSize = 2 + 1 + 2 + 8 + 4 + 4

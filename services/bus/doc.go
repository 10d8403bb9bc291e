// Package bus connects two local processes with a pair of shared-memory
// rings: the bottom layer of Blocktree's message bus. A message is a kind
// (u32) and a payload of bytes. A connection carries messages both ways, in
// order and with back-pressure. Large payloads do not pass through the
// kernel, so they are copied at most once, into the shared memory.
//
// # Connection
//
// A listener waits on a Unix stream socket (Listen, Accept). The dialer
// (Dial) connects and creates:
//
//   - one memfd from package shm, sealed against shrinking and growing,
//     holding two rings from package ring: ring A carries messages from the
//     dialer to the listener, ring B from the listener to the dialer;
//   - four non-blocking eventfds, one for each reason to sleep: data in
//     ring A, space in ring A, data in ring B, space in ring B.
//
// It sends the five fds with SCM_RIGHTS together with the setup message,
// 12 bytes in big-endian order:
//
//	magic    u32  0x62746273 ("btbs")
//	version  u16  1
//	reserved u16  0
//	ring     u32  data area of each ring in bytes, a power of two
//
// The memfd is 2 × (ring.HeaderSize + ring) bytes: ring A, then ring B. The
// listener rejects the setup unless it carries exactly five fds, a known
// version and a ring size within its limit (ListenConfig.MaxRingSize),
// unless the memfd has the seals and exactly that size, and unless each
// other fd is an eventfd. It then maps the memory, reads the dialer's pid,
// uid and gid with SO_PEERCRED, and replies with 8 bytes:
//
//	magic    u32  0x62746273
//	version  u16  the listener's version
//	status   u16  0 accepted, 1 version not supported, 2 setup invalid
//
// After a rejection the listener closes the socket, and Accept returns an
// error wrapping ErrSetup. The dialer reads the peer's credentials the same
// way, so Peer works on both ends.
//
// Four eventfds instead of two: with one eventfd per side, a Send waiting
// for space and a Recv waiting for data in the same process would read the
// same counter, and the read of one would swallow the wake-up of the
// other. Sharing would need a goroutine that reads the eventfd and wakes
// the right waiter, an extra hop on every wake-up, which costs more than
// two fds.
//
// # Sending and receiving
//
// Send copies the payload into the ring. Reserve returns space inside the
// ring for the caller to fill, so a large payload is written once, into
// the shared memory, and Commit publishes it. While the ring is full, both
// wait for the peer to release messages, until their context is done.
// Payloads above half the ring size (Conn.MaxPayload) fail with
// ErrTooLarge; the ring size is set by the dialer (Dialer.RingSize, 1 MiB
// by default).
//
// Recv returns a payload below the copy threshold (4 KiB by default) as a
// private copy and frees its ring space at once. A larger payload is a view
// into the shared memory that stays valid, and holds its ring space, until
// Message.Release. Ring space comes back in the order of receipt, so one
// message held for long stalls the sender once the ring fills.
//
// The peer can write to the shared memory at any time, including a payload
// that the receiver is reading. Package ring checks every position and
// record header it reads, so a hostile peer can garble its own messages
// but cannot crash or hang this side: a broken invariant fails the
// connection with an error wrapping ErrCorrupt, and the connection's
// socket is closed. Code that decodes a view must likewise read each value
// once, or copy the payload first.
//
// # Waiting
//
// Send and Recv sleep on eventfds read through Go's netpoller: a sleeping
// goroutine is parked and holds no OS thread. Package ring's flag protocol
// makes a side signal an eventfd only when the other side announced that
// it is about to sleep, so a busy stream costs no system calls. Before it
// announces that, Recv polls the ring for up to 20 µs, so a quick reply
// also avoids the eventfd write and the wake-up. After two Recvs in a row
// had to sleep anyway, a connection stops polling, because on a loaded
// machine the poll takes time from the processes that would send; it polls
// again once a message is waiting when Recv starts, and as a probe every
// 16 Recvs.
//
// Messages that come at a steady rate, such as one request every
// millisecond, would each cost the receiver a full wake-up, tens of
// microseconds on a virtual machine. Recv therefore keeps the last 16
// times between messages. From the shortest and longest of them, leaving
// out the two extremes at each end, it computes a window for the next
// message that opens one wake-up early. When that window is at most a
// quarter of the median interval, and the median is at most 10 ms, Recv
// sleeps with a kernel timer in ppoll(2) until the window opens and then
// polls the ring until it closes. The eventfd stays armed during the
// timed sleep, so a message that comes early still wakes it. The poll
// takes at most a quarter of a core per connection. A timed sleep holds an
// OS thread, so at most four Recvs of a process sleep that way at once.
// It cannot be interrupted, so it sleeps in pieces of at most 1 ms and a
// Recv in it notices Close, a dead peer or the end of its context within
// 1 ms. Connections within one process (below) never sleep with a timer.
//
// When both ends are in one process, as the storage daemon and the FUSE
// server are in a host-mode node, they wake each other through Go channels
// instead (a local link, found at setup through the memfd's identity and
// SO_PEERCRED). The eventfds still exist, but neither end sleeps on them. A
// channel send makes the sleeper runnable on the sender's own thread, so a
// request and its reply need no cross-thread wake-up. Through a host-mode
// mount this made creating files about 1.6 times and deleting them about
// 1.7 times as fast as with eventfd wake-ups.
//
// Even a channel wake-up costs more than a small request, because the Go
// runtime may wake an idle thread on another CPU to run the sleeper. So
// on a local link a sender may skip it. It commits with SendQuiet or
// Reservation.CommitQuiet and receives the message itself through the
// other end's TryRecv, under a lock that the receiving side defines. The
// receiver's own goroutine then waits with WaitMessage, which does not
// take the message, and receives under the same lock. A sender that must
// wait for space in the ring first wakes a receiver that it left asleep
// that way, since only the receiver frees space.
//
// The peer shares each eventfd's open file description and could clear its
// O_NONBLOCK flag. Reads therefore use preadv2(2) with RWF_NOWAIT, which
// never blocks, and a wake-up sets O_NONBLOCK again before it writes.
// Eventfds honour RWF_NOWAIT in Linux 6.1, the appliance's kernel
// (fs/eventfd.c checks IOCB_NOWAIT and sets FMODE_NOWAIT), and later.
//
// # End of a connection
//
// Nothing is sent on the setup socket after the setup, but both ends keep
// it open: the kernel closes it when a process exits, however it exits.
// Each Conn has a goroutine that reads it; end of file there means the
// peer is gone, and every waiting and later Send returns ErrPeerGone at
// once, as does Recv after the messages committed before. Close releases
// the mapping and all fds; the kernel frees the memory when the second
// process has released it too.
package bus

// Package ring is a lock-free single-producer, single-consumer queue of
// variable-size records in memory that two processes share, such as a
// mapping from package shm. One process owns the Producer and the other the
// Consumer. Nothing in the shared memory is a Go pointer: the ends exchange
// byte positions, and each turns a position into an index of its own
// mapping.
//
// # Layout
//
// A ring of capacity C (a power of two) takes Size(C) = HeaderSize + C
// bytes, in the byte order of the machine, since both ends run on it:
//
//	offset   0  head              u64  written by the producer
//	offset  64  tail              u64  written by the consumer
//	offset 128  consumer waiting  u32  set by the consumer, cleared by the producer
//	offset 132  producer waiting  u32  set by the producer, cleared by the consumer
//	offset 192  data area, C bytes
//
// head, tail and the two flags each sit on their own 64-byte cache line
// (the flags share one), so the two ends do not write the same line on
// every record.
//
// head and tail are byte positions that only grow; position p is at index
// p mod C of the data area. The bytes from tail to head hold committed
// records that the consumer has not released, so head-tail is never more
// than C. Both start at 0, so the memory must be zeroed before either end
// is made.
//
// A record is an 8-byte header, the payload length (u32) and the kind
// (u32), then the payload, padded to a multiple of 8 bytes. Records start
// at multiples of 8 and never cross the end of the data area. When a record
// does not fit before the end, the producer first writes a padding record
// (kind PaddingKind) whose length covers the rest of the data area, and
// puts the record at index 0. A record is at most half the data area
// (MaxPayload), which guarantees that it fits once the ring is empty.
//
// # Producing and consuming
//
// The producer reserves space (Reserve), fills the payload in place and
// publishes it by storing the new head (Commit). The consumer reads head,
// returns records in place (Next), and frees them in order by storing the
// new tail (Release). Stores and loads of head, tail and the flags use
// sync/atomic. Go's atomic operations are sequentially consistent, and on
// MAP_SHARED memory they act on the same physical memory in both processes,
// so the store of head makes the payload written before it visible to the
// consumer that loads that head, and likewise for tail and freed space.
//
// # An untrusted peer
//
// Each end trusts only its own copy of its position and the capacity that
// its caller passed, never the shared copies. Every value it reads from
// shared memory (head or tail, a record's length and kind) is loaded once
// into a local variable and checked before use: head and tail must not
// move backwards, head must stay within C bytes of tail, tail must not pass
// head, both must be multiples of 8, and a record or padding record must
// lie within the published bytes, below the end of the data area, with a
// length up to MaxPayload. A check that fails returns an error wrapping
// ErrCorrupt and leaves that end broken. The loop in Next skips at most one
// padding record, so a hostile peer can spoil the records it sends but
// cannot crash or hang the other end. The payload bytes themselves remain
// writable by the peer while the consumer reads them.
//
// # Wake-ups
//
// Each end sleeps on an event that the caller provides (package bus uses
// an eventfd per direction and purpose) and signals the other end only when
// that end announced that it is about to sleep. A consumer that finds the
// ring empty sets its waiting flag (ArmWakeup), checks head again (Next),
// and sleeps only if the ring is still empty. A producer stores head
// (Commit), then reads the consumer's waiting flag, and if it is set clears
// it and signals. The producer waiting on a full ring does the same with
// its own flag and tail, and the consumer's Release signals it.
//
// No wake-up is lost. The consumer's store of its flag and its load of
// head, and the producer's store of head and its load of the flag, are
// sequentially consistent, so they fall into one order. If the consumer's
// load of head comes after the producer's store of head, the consumer sees
// the record and does not sleep. Otherwise the consumer's store of the flag
// comes before its load of head and so before the producer's store of head
// and load of the flag, and the producer sees the flag and signals. The
// event is a counter (an eventfd), so a signal sent before the consumer
// starts to sleep wakes it at once. Both may happen, which costs a spurious
// wake-up and nothing else.
//
// While the consumer finds a record at every Next, as in a busy stream, it
// never sets its flag, so the producer pays one atomic load per record and
// makes no system call; the same holds for the producer's flag while the
// ring has free space.
package ring

package ring

import (
	"errors"
	"sync/atomic"
)

// Record is a committed record, seen in place in shared memory.
type Record struct {
	Kind uint32
	// Data is the payload inside the ring. It stays valid until the record
	// is released. A hostile producer can change these bytes while the
	// consumer reads them, so a decoder must read each value once, or copy
	// Data first.
	Data []byte
}

// Consumer is the reading end of a ring. It is not safe for concurrent use.
type Consumer struct {
	s    shared
	wake func()

	tail uint64 // released position, the value last stored to shared tail
	read uint64 // position after the last record that Next returned
	head uint64 // last head read from shared memory and checked

	// ends is a queue of the end positions of records that Next returned
	// and Release has not released yet, oldest first from ends[first].
	ends  []uint64
	first int

	err error // permanent error after corruption
}

// NewConsumer returns the consumer of the ring in mem, whose length is
// Size(capacity) for a power-of-two capacity. The memory must be zeroed
// when the first end of the ring is made, because both ends start at
// position 0. wakeProducer is called, from Release, when the producer
// asked to be woken; it must not block.
func NewConsumer(mem []byte, wakeProducer func()) (*Consumer, error) {
	s, err := newShared(mem)
	if err != nil {
		return nil, err
	}
	return &Consumer{s: s, wake: wakeProducer}, nil
}

// Capacity returns the size of the data area in bytes.
func (c *Consumer) Capacity() int { return int(c.s.capacity) }

// Next returns the oldest committed record that Next has not returned yet.
// It returns ErrEmpty when there is none, and an error wrapping ErrCorrupt
// when a value in shared memory breaks the ring's invariants. The ring is
// then broken for good.
//
// Every value from shared memory is read once and checked before use, so
// a hostile producer can spoil its own records but cannot make Next
// panic, return a slice outside the data area, or loop.
func (c *Consumer) Next() (Record, error) {
	if c.err != nil {
		return Record{}, c.err
	}

	// The producer writes a padding record only directly before a real
	// record and never at offset 0, so at most one padding record is
	// skipped before a real one.
	for range 2 {
		if c.read == c.head {
			if err := c.loadHead(); err != nil {
				return Record{}, err
			}
			if c.read == c.head {
				return Record{}, ErrEmpty
			}
		}

		index := c.read & c.s.mask
		available := c.head - c.read
		length, kind := c.s.recordHeader(index)

		if kind == PaddingKind {
			room := c.s.capacity - index
			switch {
			case index == 0:
				return Record{}, corrupt(&c.err, "padding record at offset 0 (position %d)", c.read)
			case uint64(length) != room-RecordHeaderSize:
				return Record{}, corrupt(&c.err, "padding record at position %d has length %d, want %d to the end of the data area",
					c.read, length, room-RecordHeaderSize)
			case room > available:
				return Record{}, corrupt(&c.err, "padding record at position %d ends past head %d", c.read, c.head)
			}
			c.read += room
			continue
		}

		if uint64(length) > uint64(MaxPayload(int(c.s.capacity))) {
			return Record{}, corrupt(&c.err, "record at position %d has length %d, maximum %d",
				c.read, length, MaxPayload(int(c.s.capacity)))
		}
		size := recordSize(uint64(length))
		if size > available {
			return Record{}, corrupt(&c.err, "record of %d bytes at position %d ends past head %d", size, c.read, c.head)
		}
		if index+size > c.s.capacity {
			return Record{}, corrupt(&c.err, "record of %d bytes at position %d crosses the end of the data area", size, c.read)
		}

		c.read += size
		c.pushEnd(c.read)
		start := index + RecordHeaderSize
		end := start + uint64(length)
		return Record{Kind: kind, Data: c.s.data[start:end:end]}, nil
	}
	return Record{}, corrupt(&c.err, "two padding records in a row at position %d", c.read)
}

// Pending reports whether a committed record waits for Next, without
// taking it. It returns an error wrapping ErrCorrupt, as Next does, when
// the producer's head breaks the ring's invariants.
func (c *Consumer) Pending() (bool, error) {
	if c.err != nil {
		return false, c.err
	}
	if c.read == c.head {
		if err := c.loadHead(); err != nil {
			return false, err
		}
	}
	return c.read != c.head, nil
}

// loadHead reads the producer's head once and checks it: it must not move
// backwards, must not be more than the capacity ahead of the released tail,
// and must sit on a record boundary.
func (c *Consumer) loadHead() error {
	head := atomic.LoadUint64(c.s.head)
	switch {
	case head < c.head:
		return corrupt(&c.err, "head moved backwards from %d to %d", c.head, head)
	case head-c.tail > c.s.capacity:
		return corrupt(&c.err, "head %d is %d bytes ahead of tail %d, more than the capacity %d",
			head, head-c.tail, c.tail, c.s.capacity)
	case head%RecordHeaderSize != 0:
		return corrupt(&c.err, "head %d is not a multiple of %d", head, RecordHeaderSize)
	}
	c.head = head
	return nil
}

// Release frees the oldest record that Next returned and Release has not
// freed yet, so records are released in the order Next returned them. Its
// Data must not be used afterwards. Release wakes the producer if it asked
// for that.
func (c *Consumer) Release() error {
	end, ok := c.popEnd()
	if !ok {
		return errors.New("ring release: no record is held; every record from Next is released already")
	}
	c.tail = end
	atomic.StoreUint64(c.s.tail, end)

	// Same ordering as in Producer.Commit: the store of tail comes before
	// the load of producerWaiting.
	if atomic.LoadUint32(c.s.producerWaiting) != 0 && atomic.SwapUint32(c.s.producerWaiting, 0) != 0 {
		c.wake()
	}
	return nil
}

// Held returns the number of records that Next returned and Release has
// not freed yet.
func (c *Consumer) Held() int { return len(c.ends) - c.first }

// ArmWakeup requests that the producer call the consumer's wake function
// at its next Commit. A consumer that got ErrEmpty calls ArmWakeup, calls Next
// again, and sleeps only if that returns ErrEmpty too; otherwise it calls
// DisarmWakeup.
func (c *Consumer) ArmWakeup() { atomic.StoreUint32(c.s.consumerWaiting, 1) }

// DisarmWakeup withdraws ArmWakeup. A wake-up that the producer sent before
// it may still arrive.
func (c *Consumer) DisarmWakeup() { atomic.StoreUint32(c.s.consumerWaiting, 0) }

func (c *Consumer) pushEnd(end uint64) {
	// Move the held entries to the front instead of growing the slice, so
	// a caller that always holds one record does not grow it forever.
	if c.first > 0 && len(c.ends) == cap(c.ends) {
		n := copy(c.ends, c.ends[c.first:])
		c.ends = c.ends[:n]
		c.first = 0
	}
	c.ends = append(c.ends, end)
}

func (c *Consumer) popEnd() (uint64, bool) {
	if c.first == len(c.ends) {
		return 0, false
	}
	end := c.ends[c.first]
	c.first++
	if c.first == len(c.ends) {
		c.ends = c.ends[:0]
		c.first = 0
	}
	return end, true
}

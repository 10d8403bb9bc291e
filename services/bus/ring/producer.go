package ring

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Producer is the writing end of a ring. It is not safe for concurrent use.
type Producer struct {
	s    shared
	wake func()

	head     uint64 // committed position, the value last stored to shared head
	next     uint64 // position after the open reservation; equal to head when none is open
	tail     uint64 // last tail read from shared memory and checked
	reserved bool
	// index, kind and length describe the open reservation's record, for
	// Truncate.
	index  uint64
	kind   uint32
	length int
	err    error // permanent error after corruption
}

// NewProducer returns the producer of the ring in mem, whose length is
// Size(capacity) for a power-of-two capacity. The memory must be zeroed
// when the first end of the ring is made, because both ends start at
// position 0. wakeConsumer is called, from Commit, when the consumer asked
// to be woken; it must not block.
func NewProducer(mem []byte, wakeConsumer func()) (*Producer, error) {
	s, err := newShared(mem)
	if err != nil {
		return nil, err
	}
	return &Producer{s: s, wake: wakeConsumer}, nil
}

// Capacity returns the size of the data area in bytes.
func (p *Producer) Capacity() int { return int(p.s.capacity) }

// MaxPayload returns the largest payload that Reserve accepts.
func (p *Producer) MaxPayload() int { return MaxPayload(int(p.s.capacity)) }

// Reserve opens a record of the given kind with n bytes of payload and
// returns the payload's memory inside the ring, for the caller to fill
// before Commit. The consumer reads none of it before Commit. At most one
// reservation is open at a time.
//
// Reserve returns ErrFull when the free space is too small now, an error
// wrapping ErrTooLarge when n exceeds MaxPayload, and an error wrapping
// ErrCorrupt when the consumer's tail in shared memory is invalid.
func (p *Producer) Reserve(kind uint32, n int) ([]byte, error) {
	if p.err != nil {
		return nil, p.err
	}
	if p.reserved {
		return nil, errors.New("ring reserve: a reservation is already open; call Commit or Cancel first")
	}
	if kind == PaddingKind {
		return nil, fmt.Errorf("ring reserve: kind %#x is reserved for padding records", kind)
	}
	if n < 0 || n > p.MaxPayload() {
		return nil, fmt.Errorf("ring reserve: payload of %d bytes, maximum %d for a %d-byte ring: %w",
			n, p.MaxPayload(), p.s.capacity, ErrTooLarge)
	}

	size := recordSize(uint64(n))
	index := p.head & p.s.mask
	room := p.s.capacity - index // bytes up to the end of the data area
	need := size
	if room < size {
		need = room + size
	}
	if p.s.capacity-(p.head-p.tail) < need {
		if err := p.loadTail(); err != nil {
			return nil, err
		}
		if p.s.capacity-(p.head-p.tail) < need {
			return nil, ErrFull
		}
	}

	// The space up to head+need is free and unpublished, so the consumer
	// reads none of it before Commit.
	position := p.head
	if room < size {
		p.s.putRecordHeader(index, uint32(room-RecordHeaderSize), PaddingKind)
		position += room
		index = 0
	}
	p.s.putRecordHeader(index, uint32(n), kind)
	p.next = position + size
	p.reserved = true
	p.index, p.kind, p.length = index, kind, n

	start := index + RecordHeaderSize
	end := start + uint64(n)
	return p.s.data[start:end:end], nil
}

// loadTail reads the consumer's tail once and checks it: it must not move
// backwards, must not pass the committed head, and must sit on a record
// boundary, which is a multiple of RecordHeaderSize.
func (p *Producer) loadTail() error {
	tail := atomic.LoadUint64(p.s.tail)
	switch {
	case tail < p.tail:
		return corrupt(&p.err, "tail moved backwards from %d to %d", p.tail, tail)
	case tail > p.head:
		return corrupt(&p.err, "tail %d is past head %d", tail, p.head)
	case tail%RecordHeaderSize != 0:
		return corrupt(&p.err, "tail %d is not a multiple of %d", tail, RecordHeaderSize)
	}
	p.tail = tail
	return nil
}

// Commit publishes the open reservation to the consumer and wakes the
// consumer if it asked for that.
func (p *Producer) Commit() error {
	if err := p.CommitQuiet(); err != nil {
		return err
	}

	// The store of head above comes before this load of consumerWaiting in
	// the single order of all atomic operations, which makes a lost wake-up
	// impossible (doc.go gives the argument). The plain load before the
	// swap keeps a busy stream, during which the flag is clear, free of
	// read-modify-write instructions.
	if atomic.LoadUint32(p.s.consumerWaiting) != 0 && atomic.SwapUint32(p.s.consumerWaiting, 0) != 0 {
		p.wake()
	}
	return nil
}

// CommitQuiet publishes the open reservation like Commit, but does not
// wake the consumer even if it asked for that. The caller must make sure
// that the record is received anyway, for example by running the
// consumer's receive loop itself. The consumer's request for a wake-up
// stays, so the next Commit wakes it.
func (p *Producer) CommitQuiet() error {
	if !p.reserved {
		return errors.New("ring commit: no reservation is open")
	}
	p.reserved = false
	p.head = p.next
	atomic.StoreUint64(p.s.head, p.head)
	return nil
}

// Truncate shortens the open reservation's payload to its first n bytes,
// for a producer that learns the payload's size only while it fills the
// payload in place. The space after the new end returns to the ring at
// Commit.
func (p *Producer) Truncate(n int) error {
	if !p.reserved {
		return errors.New("ring truncate: no reservation is open")
	}
	if n < 0 || n > p.length {
		return fmt.Errorf("ring truncate: length %d is outside the reserved %d bytes", n, p.length)
	}
	p.s.putRecordHeader(p.index, uint32(n), p.kind)
	p.next -= recordSize(uint64(p.length)) - recordSize(uint64(n))
	p.length = n
	return nil
}

// Cancel drops the open reservation, which the consumer never reads.
func (p *Producer) Cancel() {
	p.reserved = false
	p.next = p.head
}

// Write copies payload into a new record of the given kind and commits it.
func (p *Producer) Write(kind uint32, payload []byte) error {
	buf, err := p.Reserve(kind, len(payload))
	if err != nil {
		return err
	}
	Copy(buf, payload)
	return p.Commit()
}

// ArmWakeup requests that the consumer call the producer's wake function
// when it next releases a record. A producer that got ErrFull calls ArmWakeup,
// calls Reserve again, and sleeps only if that returns ErrFull too;
// otherwise it calls DisarmWakeup.
func (p *Producer) ArmWakeup() { atomic.StoreUint32(p.s.producerWaiting, 1) }

// DisarmWakeup withdraws ArmWakeup. A wake-up that the consumer sent before
// it may still arrive.
func (p *Producer) DisarmWakeup() { atomic.StoreUint32(p.s.producerWaiting, 0) }

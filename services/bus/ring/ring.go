package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// Layout of the ring header. Each field that one side writes often has a
// cache line of its own, so the producer's stores to head do not slow the
// consumer's stores to tail and the other way round.
const (
	cacheLine = 64

	headOffset            = 0 * cacheLine // u64, written by the producer
	tailOffset            = 1 * cacheLine // u64, written by the consumer
	consumerWaitingOffset = 2 * cacheLine // u32, set by the consumer, cleared by the producer
	producerWaitingOffset = 2*cacheLine + 4

	// HeaderSize is the size of the ring header that precedes the data area.
	HeaderSize = 3 * cacheLine

	// RecordHeaderSize is the size of a record's header: the payload length
	// and the kind, both u32. Records start at multiples of it.
	RecordHeaderSize = 8
)

// Limits on the data area.
const (
	MinCapacity = 64
	MaxCapacity = 1 << 30
)

// PaddingKind marks a padding record, which fills the data area from its
// position to the end so that the next record starts at offset 0. Callers
// cannot use it as a record kind.
const PaddingKind = math.MaxUint32

var (
	// ErrEmpty is returned by Next when no committed record is left.
	ErrEmpty = errors.New("ring empty")
	// ErrFull is returned by Reserve when the free space cannot hold the
	// record yet. It clears when the consumer releases records.
	ErrFull = errors.New("ring full")
	// ErrTooLarge is returned by Reserve for a payload above MaxPayload,
	// which this ring can never hold.
	ErrTooLarge = errors.New("record larger than the ring can hold")
	// ErrCorrupt is wrapped by every error about a value from shared memory
	// that breaks the ring's invariants. The ring stays broken: every later
	// Next or Reserve returns the same error.
	ErrCorrupt = errors.New("ring corrupt")
)

// Size returns the bytes of shared memory that a ring with a data area of
// capacity bytes needs.
func Size(capacity int) int { return HeaderSize + capacity }

// MaxPayload returns the largest payload a ring of capacity bytes can hold.
// Records are limited to half the data area because a record never wraps.
// In the worst case the free space of an empty ring is split between the
// end and the start of the data area. Only a record of at most half the
// capacity is sure to fit in one of the two parts.
func MaxPayload(capacity int) int { return capacity/2 - RecordHeaderSize }

// recordSize returns the bytes that a record with n bytes of payload takes
// in the data area.
func recordSize(n uint64) uint64 {
	return (RecordHeaderSize + n + RecordHeaderSize - 1) &^ (RecordHeaderSize - 1)
}

// shared is one ring's view of its shared memory. The pointers point into
// the mapping; the capacity comes from the caller, never from the memory.
type shared struct {
	head            *uint64
	tail            *uint64
	consumerWaiting *uint32
	producerWaiting *uint32
	data            []byte
	capacity        uint64
	mask            uint64
}

func newShared(mem []byte) (shared, error) {
	if len(mem) <= HeaderSize {
		return shared{}, fmt.Errorf("invalid ring memory of %d bytes: want more than the %d-byte header", len(mem), HeaderSize)
	}
	capacity := len(mem) - HeaderSize
	if capacity < MinCapacity || capacity > MaxCapacity || capacity&(capacity-1) != 0 {
		return shared{}, fmt.Errorf("ring data area of %d bytes: want a power of two from %d to %d", capacity, MinCapacity, MaxCapacity)
	}
	// 64-bit atomics need 8-byte alignment. A mapping starts at a page.
	if uintptr(unsafe.Pointer(&mem[0]))%8 != 0 {
		return shared{}, fmt.Errorf("ring memory at %p is not 8-byte aligned", &mem[0])
	}

	return shared{
		head:            (*uint64)(unsafe.Pointer(&mem[headOffset])),
		tail:            (*uint64)(unsafe.Pointer(&mem[tailOffset])),
		consumerWaiting: (*uint32)(unsafe.Pointer(&mem[consumerWaitingOffset])),
		producerWaiting: (*uint32)(unsafe.Pointer(&mem[producerWaitingOffset])),
		data:            mem[HeaderSize:len(mem):len(mem)],
		capacity:        uint64(capacity),
		mask:            uint64(capacity - 1),
	}, nil
}

func (s *shared) putRecordHeader(index uint64, length uint32, kind uint32) {
	binary.NativeEndian.PutUint32(s.data[index:], length)
	binary.NativeEndian.PutUint32(s.data[index+4:], kind)
}

// recordHeader reads the header at index once; the caller checks it.
func (s *shared) recordHeader(index uint64) (length uint32, kind uint32) {
	header := s.data[index : index+RecordHeaderSize]
	return binary.NativeEndian.Uint32(header[0:4]), binary.NativeEndian.Uint32(header[4:8])
}

// corrupt records err as the ring's permanent error.
func corrupt(dst *error, format string, args ...any) error {
	*dst = fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	return *dst
}

package ring

import (
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"
)

const fuzzCapacity = 256

// FuzzRing treats image as a hostile peer's ring (header and data area)
// and moves as the peer's position, one u64 per step. The consumer must
// return records inside the data area or an error, and never panic or
// loop. The producer, facing a hostile tail, must do the same.
func FuzzRing(f *testing.F) {
	// A valid ring with a padding record: three records, then one that
	// wraps to offset 0.
	valid := newTestRing(f, fuzzCapacity)
	for i := range 3 {
		mustWrite(f, valid.p, uint32(i), make([]byte, 50+i))
		mustNext(f, valid.c)
		mustRelease(f, valid.c)
	}
	mustWrite(f, valid.p, 3, make([]byte, 100))
	mustWrite(f, valid.p, 4, nil)
	f.Add(uint64(0), append([]byte(nil), valid.mem...), []byte{})
	f.Add(uint64(192), append([]byte(nil), valid.mem...), []byte{})
	f.Add(uint64(192), append([]byte(nil), valid.mem...), binary.NativeEndian.AppendUint64(nil, 8))
	f.Add(uint64(0), []byte{}, []byte{})
	f.Add(uint64(8), make([]byte, Size(fuzzCapacity)), binary.NativeEndian.AppendUint64(nil, 1<<40))

	f.Fuzz(func(t *testing.T, start uint64, image []byte, moves []byte) {
		// Positions grow by at most a few GB/s, so they stay far below
		// 2^62 for centuries. Larger starts would only test wrap-around
		// of u64 positions, which the ring does not handle.
		start = start % (1 << 62) &^ (RecordHeaderSize - 1)

		fuzzConsumer(t, start, image, moves)
		fuzzProducer(t, start, image, moves)
	})
}

func fuzzConsumer(t *testing.T, start uint64, image, moves []byte) {
	r := newTestRing(t, fuzzCapacity)
	copy(r.mem, image)
	r.c.tail, r.c.read, r.c.head = start, start, start
	dataStart := uintptr(unsafe.Pointer(&r.mem[HeaderSize]))
	dataEnd := dataStart + fuzzCapacity

	// The consumer reads head again only when it has returned every record
	// up to the head it read before. After a move it may thus return up to
	// capacity/8 records up to the old head, and capacity/8 more up to the
	// new one, before ErrEmpty. A longer run is a loop.
	stepsSinceMove := 0
	for {
		if len(moves) >= 8 {
			r.putU64(headOffset, binary.NativeEndian.Uint64(moves))
			moves = moves[8:]
			stepsSinceMove = 0
		}
		stepsSinceMove++
		if stepsSinceMove > 2*fuzzCapacity/RecordHeaderSize+2 {
			t.Fatalf("consumer made %d steps without a move of head", stepsSinceMove)
		}

		rec, err := r.c.Next()
		if errors.Is(err, ErrEmpty) {
			if len(moves) < 8 {
				return
			}
			continue
		}
		if errors.Is(err, ErrCorrupt) {
			if _, again := r.c.Next(); again != err {
				t.Fatalf("Next after %v returned %v", err, again)
			}
			return
		}
		if err != nil {
			t.Fatalf("Next: unexpected error %v", err)
		}

		if len(rec.Data) > MaxPayload(fuzzCapacity) {
			t.Fatalf("record of %d bytes above MaxPayload", len(rec.Data))
		}
		if len(rec.Data) > 0 {
			first := uintptr(unsafe.Pointer(&rec.Data[0]))
			if first < dataStart || first+uintptr(len(rec.Data)) > dataEnd {
				t.Fatalf("record data outside the data area")
			}
		}
		if rec.Kind == PaddingKind {
			t.Fatal("Next returned a padding record")
		}
		if err := r.c.Release(); err != nil {
			t.Fatalf("Release: %v", err)
		}
	}
}

func fuzzProducer(t *testing.T, start uint64, image, moves []byte) {
	r := newTestRing(t, fuzzCapacity)
	copy(r.mem, image)
	r.p.head, r.p.next, r.p.tail = start, start, start
	dataStart := uintptr(unsafe.Pointer(&r.mem[HeaderSize]))
	dataEnd := dataStart + fuzzCapacity

	for step := 0; step < 100; step++ {
		if len(moves) >= 8 {
			r.putU64(tailOffset, binary.NativeEndian.Uint64(moves))
			moves = moves[8:]
		}
		n := step * 13 % (MaxPayload(fuzzCapacity) + 1)

		buf, err := r.p.Reserve(uint32(step), n)
		if errors.Is(err, ErrFull) {
			continue
		}
		if errors.Is(err, ErrCorrupt) {
			return
		}
		if err != nil {
			t.Fatalf("Reserve %d bytes: unexpected error %v", n, err)
		}
		if len(buf) != n {
			t.Fatalf("Reserve %d bytes returned %d", n, len(buf))
		}
		if n > 0 {
			first := uintptr(unsafe.Pointer(&buf[0]))
			if first < dataStart || first+uintptr(n) > dataEnd {
				t.Fatalf("reserved memory outside the data area")
			}
		}
		if err := r.p.Commit(); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
}

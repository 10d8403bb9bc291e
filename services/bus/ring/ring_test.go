package ring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// newMemory returns zeroed, 8-byte-aligned memory for a ring of capacity
// bytes.
func newMemory(capacity int) []byte {
	words := make([]uint64, Size(capacity)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), Size(capacity))
}

type testRing struct {
	mem           []byte
	p             *Producer
	c             *Consumer
	consumerWakes atomic.Int64 // calls of the producer's wake function
	producerWakes atomic.Int64 // calls of the consumer's wake function
}

func newTestRing(t testing.TB, capacity int) *testRing {
	t.Helper()
	r := &testRing{mem: newMemory(capacity)}
	var err error
	r.p, err = NewProducer(r.mem, func() { r.consumerWakes.Add(1) })
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	r.c, err = NewConsumer(r.mem, func() { r.producerWakes.Add(1) })
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return r
}

func (r *testRing) putU64(offset int, v uint64) {
	binary.NativeEndian.PutUint64(r.mem[offset:], v)
}

func (r *testRing) u64(offset int) uint64 {
	return binary.NativeEndian.Uint64(r.mem[offset:])
}

func (r *testRing) putRecordHeader(index int, length, kind uint32) {
	binary.NativeEndian.PutUint32(r.mem[HeaderSize+index:], length)
	binary.NativeEndian.PutUint32(r.mem[HeaderSize+index+4:], kind)
}

func mustWrite(t testing.TB, p *Producer, kind uint32, payload []byte) {
	t.Helper()
	if err := p.Write(kind, payload); err != nil {
		t.Fatalf("Write kind %d, %d bytes: %v", kind, len(payload), err)
	}
}

func mustNext(t testing.TB, c *Consumer) Record {
	t.Helper()
	rec, err := c.Next()
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return rec
}

func mustRelease(t testing.TB, c *Consumer) {
	t.Helper()
	if err := c.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func TestNewRejectsBadMemory(t *testing.T) {
	cases := map[string][]byte{
		"header only":        newMemory(0)[:HeaderSize],
		"not a power of two": newMemory(1024)[:Size(1000)],
		"below minimum":      newMemory(32),
		"unaligned":          newMemory(1024)[4 : 4+Size(512)],
	}
	for name, mem := range cases {
		if _, err := NewProducer(mem, func() {}); err == nil {
			t.Errorf("%s: NewProducer accepted %d bytes", name, len(mem))
		}
		if _, err := NewConsumer(mem, func() {}); err == nil {
			t.Errorf("%s: NewConsumer accepted %d bytes", name, len(mem))
		}
	}
}

func TestWriteNextRelease(t *testing.T) {
	r := newTestRing(t, 1024)

	if _, err := r.c.Next(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Next on a new ring: err = %v, want ErrEmpty", err)
	}
	mustWrite(t, r.p, 7, []byte("hello"))
	mustWrite(t, r.p, 8, nil)

	rec := mustNext(t, r.c)
	if rec.Kind != 7 || string(rec.Data) != "hello" {
		t.Errorf("first record = kind %d %q, want kind 7 %q", rec.Kind, rec.Data, "hello")
	}
	if cap(rec.Data) != len(rec.Data) {
		t.Errorf("record data has capacity %d beyond its length %d, so append would write into the ring", cap(rec.Data), len(rec.Data))
	}
	rec = mustNext(t, r.c)
	if rec.Kind != 8 || len(rec.Data) != 0 {
		t.Errorf("second record = kind %d, %d bytes, want kind 8, empty", rec.Kind, len(rec.Data))
	}
	if _, err := r.c.Next(); !errors.Is(err, ErrEmpty) {
		t.Errorf("Next after the last record: err = %v, want ErrEmpty", err)
	}
	if got := r.u64(headOffset); got != 16+8 {
		t.Errorf("shared head = %d, want 24 (a 16-byte and an 8-byte record)", got)
	}
}

func TestTruncateShortensRecord(t *testing.T) {
	r := newTestRing(t, 1024)

	buf, err := r.p.Reserve(7, 100)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	copy(buf, "hello, and bytes that are cut off")
	if err := r.p.Truncate(101); err == nil {
		t.Error("Truncate beyond the reserved length succeeded")
	}
	if err := r.p.Truncate(5); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	if err := r.p.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := r.p.Truncate(0); err == nil {
		t.Error("Truncate without an open reservation succeeded")
	}
	mustWrite(t, r.p, 8, []byte("next"))

	rec := mustNext(t, r.c)
	if rec.Kind != 7 || string(rec.Data) != "hello" {
		t.Errorf("truncated record = kind %d %q, want kind 7 %q", rec.Kind, rec.Data, "hello")
	}
	rec = mustNext(t, r.c)
	if rec.Kind != 8 || string(rec.Data) != "next" {
		t.Errorf("record after the truncated one = kind %d %q, want kind 8 %q", rec.Kind, rec.Data, "next")
	}
	if got := r.u64(headOffset); got != 16+16 {
		t.Errorf("shared head = %d, want 32 (two 16-byte records)", got)
	}
}

func TestReleaseInOrder(t *testing.T) {
	r := newTestRing(t, 1024)
	mustWrite(t, r.p, 1, make([]byte, 10)) // 24 bytes
	mustWrite(t, r.p, 2, make([]byte, 1))  // 16 bytes
	mustNext(t, r.c)
	mustNext(t, r.c)

	if r.c.Held() != 2 {
		t.Fatalf("Held = %d, want 2", r.c.Held())
	}
	mustRelease(t, r.c)
	if got := r.u64(tailOffset); got != 24 {
		t.Errorf("shared tail after the first Release = %d, want 24, the end of the first record", got)
	}
	mustRelease(t, r.c)
	if got := r.u64(tailOffset); got != 40 {
		t.Errorf("shared tail after the second Release = %d, want 40", got)
	}
	if err := r.c.Release(); err == nil {
		t.Error("Release with no record held succeeded")
	}
}

func TestHeldQueueDoesNotGrow(t *testing.T) {
	r := newTestRing(t, 1024)
	mustWrite(t, r.p, 1, nil)
	mustNext(t, r.c)
	// Always hold one record while the next arrives.
	for i := range 10000 {
		mustWrite(t, r.p, uint32(i), nil)
		mustNext(t, r.c)
		mustRelease(t, r.c)
	}
	if cap(r.c.ends) > 16 {
		t.Errorf("queue of held records has capacity %d after 10000 rounds of holding one record", cap(r.c.ends))
	}
}

func TestWrapAroundWithPadding(t *testing.T) {
	const capacity = 256
	r := newTestRing(t, capacity)

	// 3 records of 64 bytes leave 64 bytes before the end of the data area.
	for i := range 3 {
		mustWrite(t, r.p, uint32(i), bytes.Repeat([]byte{byte(i)}, 56))
	}
	for range 3 {
		mustNext(t, r.c)
		mustRelease(t, r.c)
	}

	// A 96-byte record does not fit in the last 64 bytes, so a padding
	// record fills them and the record goes to offset 0.
	payload := bytes.Repeat([]byte{0xee}, 88)
	mustWrite(t, r.p, 9, payload)

	length := binary.NativeEndian.Uint32(r.mem[HeaderSize+192:])
	kind := binary.NativeEndian.Uint32(r.mem[HeaderSize+196:])
	if kind != PaddingKind || length != 64-RecordHeaderSize {
		t.Errorf("header at offset 192 = length %d kind %#x, want a padding record of length 56", length, kind)
	}
	if got := r.u64(headOffset); got != 192+64+96 {
		t.Errorf("head = %d, want 352 (192 + 64 padding + 96)", got)
	}

	rec := mustNext(t, r.c)
	if rec.Kind != 9 || !bytes.Equal(rec.Data, payload) {
		t.Errorf("record after the padding = kind %d, %d bytes, want kind 9 with the 88 bytes written", rec.Kind, len(rec.Data))
	}
	if got := &rec.Data[0]; got != &r.mem[HeaderSize+RecordHeaderSize] {
		t.Error("record after the padding is not at offset 0 of the data area")
	}
	mustRelease(t, r.c)
	if got := r.u64(tailOffset); got != 352 {
		t.Errorf("tail after releasing the record = %d, want 352, which frees the padding too", got)
	}
}

func TestFullRing(t *testing.T) {
	r := newTestRing(t, 256)
	for i := range 4 {
		mustWrite(t, r.p, uint32(i), make([]byte, 56))
	}
	if _, err := r.p.Reserve(0, 0); !errors.Is(err, ErrFull) {
		t.Fatalf("Reserve on a full ring: err = %v, want ErrFull", err)
	}

	mustNext(t, r.c)
	if _, err := r.p.Reserve(0, 0); !errors.Is(err, ErrFull) {
		t.Fatalf("Reserve after Next without Release: err = %v, want ErrFull", err)
	}
	mustRelease(t, r.c)
	mustWrite(t, r.p, 5, make([]byte, 56))
}

func TestFullRingNeedsRoomForPadding(t *testing.T) {
	r := newTestRing(t, 256)
	// Move to position 192 with an empty ring.
	for range 3 {
		mustWrite(t, r.p, 0, make([]byte, 56))
		mustNext(t, r.c)
		mustRelease(t, r.c)
	}
	mustWrite(t, r.p, 0, make([]byte, 56)) // fills 192..256; 192 bytes free at the start

	// 128 bytes are free at the start, plus what is released; a 128-byte
	// record needs no padding here since position 256 is offset 0.
	if _, err := r.p.Reserve(0, MaxPayload(256)); err != nil {
		t.Fatalf("Reserve %d bytes at offset 0 with 192 free: %v", MaxPayload(256), err)
	}
	r.p.Cancel()
}

func TestMaxPayloadFitsAtEveryOffset(t *testing.T) {
	const capacity = 256
	max := MaxPayload(capacity)
	for offset := 0; offset < capacity; offset += 8 {
		r := newTestRing(t, capacity)
		// Advance the empty ring to offset with empty records.
		for range offset / RecordHeaderSize {
			mustWrite(t, r.p, 0, nil)
			mustNext(t, r.c)
			mustRelease(t, r.c)
		}
		payload := bytes.Repeat([]byte{byte(offset)}, max)
		mustWrite(t, r.p, 1, payload)
		rec := mustNext(t, r.c)
		if !bytes.Equal(rec.Data, payload) {
			t.Errorf("offset %d: maximum-size record read back wrong", offset)
		}
	}
}

func TestTooLarge(t *testing.T) {
	r := newTestRing(t, 1024)
	_, err := r.p.Reserve(1, MaxPayload(1024)+1)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Reserve above MaxPayload: err = %v, want ErrTooLarge", err)
	}
	if errors.Is(err, ErrFull) {
		t.Errorf("Reserve above MaxPayload: err = %v also matches ErrFull", err)
	}
	if _, err := r.p.Reserve(1, -1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Reserve of -1 bytes: err = %v, want ErrTooLarge", err)
	}
	if _, err := r.p.Reserve(1, MaxPayload(1024)); err != nil {
		t.Errorf("Reserve of MaxPayload on an empty ring: %v", err)
	}
}

func TestReserveRules(t *testing.T) {
	r := newTestRing(t, 1024)
	if _, err := r.p.Reserve(PaddingKind, 1); err == nil {
		t.Error("Reserve accepted PaddingKind")
	}
	if err := r.p.Commit(); err == nil {
		t.Error("Commit without a reservation succeeded")
	}

	buf, err := r.p.Reserve(3, 4)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if _, err := r.p.Reserve(3, 4); err == nil {
		t.Error("second Reserve while one is open succeeded")
	}
	if _, err := r.c.Next(); !errors.Is(err, ErrEmpty) {
		t.Errorf("Next before Commit: err = %v, want ErrEmpty", err)
	}
	copy(buf, "abcd")
	if err := r.p.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if rec := mustNext(t, r.c); string(rec.Data) != "abcd" {
		t.Errorf("record = %q, want %q", rec.Data, "abcd")
	}

	if _, err := r.p.Reserve(4, 4); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	r.p.Cancel()
	if _, err := r.c.Next(); !errors.Is(err, ErrEmpty) {
		t.Errorf("Next after Cancel: err = %v, want ErrEmpty", err)
	}
	mustWrite(t, r.p, 5, []byte("x"))
	if rec := mustNext(t, r.c); rec.Kind != 5 {
		t.Errorf("record after a cancelled reservation has kind %d, want 5", rec.Kind)
	}
}

func TestWakeOnlyWhenArmed(t *testing.T) {
	r := newTestRing(t, 1024)

	for range 10 {
		mustWrite(t, r.p, 0, nil)
	}
	if n := r.consumerWakes.Load(); n != 0 {
		t.Errorf("%d consumer wake-ups without ArmWakeup, want 0", n)
	}

	r.c.ArmWakeup()
	mustWrite(t, r.p, 0, nil)
	mustWrite(t, r.p, 0, nil)
	if n := r.consumerWakes.Load(); n != 1 {
		t.Errorf("%d consumer wake-ups after one ArmWakeup and two commits, want 1", n)
	}

	for range 3 {
		mustNext(t, r.c)
		mustRelease(t, r.c)
	}
	if n := r.producerWakes.Load(); n != 0 {
		t.Errorf("%d producer wake-ups without ArmWakeup, want 0", n)
	}
	r.p.ArmWakeup()
	mustNext(t, r.c)
	mustRelease(t, r.c)
	mustNext(t, r.c)
	mustRelease(t, r.c)
	if n := r.producerWakes.Load(); n != 1 {
		t.Errorf("%d producer wake-ups after one ArmWakeup and two releases, want 1", n)
	}

	r.c.ArmWakeup()
	r.c.DisarmWakeup()
	mustWrite(t, r.p, 0, nil)
	if n := r.consumerWakes.Load(); n != 1 {
		t.Errorf("%d consumer wake-ups after DisarmWakeup, want still 1", n)
	}
}

func TestCommitQuietDoesNotWake(t *testing.T) {
	r := newTestRing(t, 1024)

	pending, err := r.c.Pending()
	if err != nil || pending {
		t.Fatalf("Pending on an empty ring = %v, %v, want false, nil", pending, err)
	}
	r.c.ArmWakeup()
	if _, err := r.p.Reserve(0, 3); err != nil {
		t.Fatal(err)
	}
	if err := r.p.CommitQuiet(); err != nil {
		t.Fatal(err)
	}
	if n := r.consumerWakes.Load(); n != 0 {
		t.Errorf("%d consumer wake-ups after CommitQuiet, want 0", n)
	}
	pending, err = r.c.Pending()
	if err != nil || !pending {
		t.Errorf("Pending after CommitQuiet = %v, %v, want true, nil", pending, err)
	}
	if rec := mustNext(t, r.c); len(rec.Data) != 3 {
		t.Errorf("record of %d bytes, want 3", len(rec.Data))
	}
	pending, err = r.c.Pending()
	if err != nil || pending {
		t.Errorf("Pending after Next took the only record = %v, %v, want false, nil", pending, err)
	}

	// The consumer's request for a wake-up survives CommitQuiet.
	mustWrite(t, r.p, 0, nil)
	if n := r.consumerWakes.Load(); n != 1 {
		t.Errorf("%d consumer wake-ups after a Commit that followed CommitQuiet, want 1", n)
	}
	if err := r.p.CommitQuiet(); err == nil {
		t.Error("CommitQuiet without a reservation succeeded")
	}
}

// TestConsumerRejectsCorruption plays a hostile producer that writes bad
// values into the shared header and records.
func TestConsumerRejectsCorruption(t *testing.T) {
	const capacity = 256
	cases := []struct {
		name    string
		corrupt func(r *testRing)
	}{
		{"head beyond capacity", func(r *testRing) { r.putU64(headOffset, capacity+8) }},
		{"head unaligned", func(r *testRing) { r.putU64(headOffset, 12) }},
		{"head near max uint64", func(r *testRing) { r.putU64(headOffset, ^uint64(0)&^7) }},
		{"length above max", func(r *testRing) {
			r.putRecordHeader(0, uint32(MaxPayload(capacity)+1), 1)
			r.putU64(headOffset, 128)
		}},
		{"length 4 GiB", func(r *testRing) {
			r.putRecordHeader(0, ^uint32(0)-1, 1)
			r.putU64(headOffset, 128)
		}},
		{"record past head", func(r *testRing) {
			r.putRecordHeader(0, 64, 1)
			r.putU64(headOffset, 16)
		}},
		{"padding at offset 0", func(r *testRing) {
			r.putRecordHeader(0, capacity-8, PaddingKind)
			r.putU64(headOffset, capacity)
		}},
		{"padding with wrong length", func(r *testRing) {
			r.putRecordHeader(0, 0, 1)
			r.putRecordHeader(8, 8, PaddingKind)
			r.putU64(headOffset, 64)
		}},
		{"padding past head", func(r *testRing) {
			r.putRecordHeader(0, 0, 1)
			r.putRecordHeader(8, capacity-16, PaddingKind)
			r.putU64(headOffset, 64)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRing(t, capacity)
			tc.corrupt(r)

			var err error
			for range 3 {
				if _, err = r.c.Next(); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Next: err = %v, want ErrCorrupt", err)
			}
			if _, again := r.c.Next(); again != err {
				t.Errorf("Next after corruption: err = %v, want the same error %v", again, err)
			}
		})
	}
}

func TestConsumerRejectsHeadMovingBack(t *testing.T) {
	r := newTestRing(t, 256)
	mustWrite(t, r.p, 1, nil)
	mustWrite(t, r.p, 1, nil)
	mustNext(t, r.c)
	mustNext(t, r.c)
	r.putU64(headOffset, 8)
	if _, err := r.c.Next(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Next after head moved back: err = %v, want ErrCorrupt", err)
	}
}

// TestProducerRejectsCorruption plays a hostile consumer that writes bad
// tails.
func TestProducerRejectsCorruption(t *testing.T) {
	cases := map[string]uint64{
		"tail past head":  1000,
		"tail unaligned":  4,
		"tail backwards":  8, // after the consumer stored 64
		"tail max uint64": ^uint64(0),
	}
	for name, tail := range cases {
		t.Run(name, func(t *testing.T) {
			r := newTestRing(t, 256)
			for range 4 {
				mustWrite(t, r.p, 0, make([]byte, 56))
			}
			mustNext(t, r.c)
			mustRelease(t, r.c)
			mustWrite(t, r.p, 0, make([]byte, 56)) // reads tail 64

			mustNext(t, r.c)
			r.putU64(tailOffset, tail)
			_, err := r.p.Reserve(0, 56)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Reserve with tail %d: err = %v, want ErrCorrupt", tail, err)
			}
		})
	}
}

// TestStress runs a producer and a consumer in two goroutines with the
// wake-up protocol, and checks the kind and every byte of each record.
// Channels with one slot stand in for eventfds: a send that finds the slot
// full is dropped, as an eventfd adds to a counter that is already set.
func TestStress(t *testing.T) {
	records := 2_000_000
	if testing.Short() {
		records = 200_000
	}
	const capacity = 64 << 10
	r := &testRing{mem: newMemory(capacity)}
	consumerEvent := make(chan struct{}, 1)
	producerEvent := make(chan struct{}, 1)
	signal := func(ch chan struct{}) func() {
		return func() {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	p, err := NewProducer(r.mem, signal(consumerEvent))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConsumer(r.mem, signal(producerEvent))
	if err != nil {
		t.Fatal(err)
	}

	// A lost wake-up would leave one side asleep forever.
	sleep := func(ch chan struct{}, who string) error {
		select {
		case <-ch:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New(who + " slept 10 s: a wake-up was lost")
		}
	}
	size := func(rng *rand.Rand) int {
		if rng.IntN(64) == 0 {
			return rng.IntN(8 << 10)
		}
		return rng.IntN(200)
	}
	fill := func(b []byte, record int) {
		for i := range b {
			b[i] = byte(record*131 + i*7)
		}
	}

	producerDone := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range records {
			n := size(rng)
			for {
				buf, err := p.Reserve(uint32(i), n)
				if err == nil {
					fill(buf, i)
					break
				}
				if !errors.Is(err, ErrFull) {
					producerDone <- err
					return
				}
				p.ArmWakeup()
				if buf, err = p.Reserve(uint32(i), n); err == nil {
					p.DisarmWakeup()
					fill(buf, i)
					break
				}
				if err := sleep(producerEvent, "producer"); err != nil {
					producerDone <- err
					return
				}
			}
			if err := p.Commit(); err != nil {
				producerDone <- err
				return
			}
		}
		producerDone <- nil
	}()

	rng := rand.New(rand.NewPCG(1, 2))
	want := make([]byte, 8<<10)
	var sleeps int
	for i := range records {
		n := size(rng)
		var rec Record
		for {
			rec, err = c.Next()
			if err == nil {
				break
			}
			if !errors.Is(err, ErrEmpty) {
				t.Fatalf("record %d: Next: %v", i, err)
			}
			c.ArmWakeup()
			if rec, err = c.Next(); err == nil {
				c.DisarmWakeup()
				break
			}
			sleeps++
			if err := sleep(consumerEvent, "consumer"); err != nil {
				t.Fatal(err)
			}
		}
		if rec.Kind != uint32(i) || len(rec.Data) != n {
			t.Fatalf("record %d: kind %d with %d bytes, want kind %d with %d bytes", i, rec.Kind, len(rec.Data), i, n)
		}
		fill(want[:n], i)
		if !bytes.Equal(rec.Data, want[:n]) {
			t.Fatalf("record %d: payload of %d bytes differs from what the producer wrote", i, n)
		}
		if err := c.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-producerDone; err != nil {
		t.Fatalf("producer: %v", err)
	}
	t.Logf("%d records, the consumer slept %d times", records, sleeps)
}

func TestCopyMatchesBuiltinCopy(t *testing.T) {
	src := make([]byte, 3*copyPiece+17)
	for i := range src {
		src[i] = byte(i*7 + i>>11)
	}
	for _, tc := range []struct{ dst, src int }{
		{0, 0}, {10, 0}, {0, 10}, {100, 100},
		{copyPiece, copyPiece}, {copyPiece + 1, copyPiece + 1},
		{len(src), len(src)}, {len(src) - 5, len(src)}, {len(src), 2*copyPiece + 3},
	} {
		want := make([]byte, tc.dst)
		got := make([]byte, tc.dst)
		wantN := copy(want, src[:tc.src])
		if n := Copy(got, src[:tc.src]); n != wantN {
			t.Errorf("Copy into %d bytes from %d returned %d, expected %d", tc.dst, tc.src, n, wantN)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Copy into %d bytes from %d wrote other bytes than copy", tc.dst, tc.src)
		}
	}
}

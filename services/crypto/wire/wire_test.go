package wire_test

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/wire"
)

// sampleKind is a kind for tests only, far above the crypto library's kinds
// (below 0x0100) and the low numbers that later subsystems allocate first.
const sampleKind wire.Kind = 0x7e01

const (
	sampleVersion = 1
	sampleTagSize = 4
	maxSampleData = 16
	maxSampleName = 16
	maxItems      = 4
)

// sample is a structure that uses every Encoder and Decoder method once.
type sample struct {
	Flag  bool
	Small uint8
	Port  uint16
	Size  uint32
	ID    uint64
	Time  int64
	Tag   []byte // exactly sampleTagSize bytes
	Data  []byte // at most maxSampleData bytes
	Name  string // at most maxSampleName bytes
	Items []uint16
}

func (s sample) encode() []byte {
	e := wire.NewEncoder(sampleKind, sampleVersion)
	e.Bool(s.Flag)
	e.Uint8(s.Small)
	e.Uint16(s.Port)
	e.Uint32(s.Size)
	e.Uint64(s.ID)
	e.Int64(s.Time)
	e.Fixed(s.Tag)
	e.Bytes(s.Data)
	e.String(s.Name)
	e.Uint32(uint32(len(s.Items)))
	for _, item := range s.Items {
		e.Uint16(item)
	}
	return e.Data()
}

func decodeSample(data []byte) (sample, error) {
	d := wire.NewDecoder(data, sampleKind, sampleVersion)
	var s sample
	s.Flag = d.Bool()
	s.Small = d.Uint8()
	s.Port = d.Uint16()
	s.Size = d.Uint32()
	s.ID = d.Uint64()
	s.Time = d.Int64()
	s.Tag = d.Fixed(sampleTagSize)
	s.Data = d.BytesCopy(maxSampleData)
	s.Name = d.String(maxSampleName)
	n := d.Count(maxItems)
	for range n {
		s.Items = append(s.Items, d.Uint16())
	}
	return s, d.Finish()
}

func fullSample() sample {
	return sample{
		Flag:  true,
		Small: 0xa5,
		Port:  0xbeef,
		Size:  0xdeadbeef,
		ID:    0x0102030405060708,
		Time:  -1234567890123,
		Tag:   []byte{0xca, 0xfe, 0xba, 0xbe},
		Data:  []byte("data bytes"),
		Name:  "a name",
		Items: []uint16{1, 2, 0xffff},
	}
}

// assertSampleEqual compares every field, so a failure names the field.
func assertSampleEqual(t *testing.T, got, want sample) {
	t.Helper()
	if got.Flag != want.Flag {
		t.Errorf("Flag = %v, expected %v", got.Flag, want.Flag)
	}
	if got.Small != want.Small {
		t.Errorf("Small = %#x, expected %#x", got.Small, want.Small)
	}
	if got.Port != want.Port {
		t.Errorf("Port = %#x, expected %#x", got.Port, want.Port)
	}
	if got.Size != want.Size {
		t.Errorf("Size = %#x, expected %#x", got.Size, want.Size)
	}
	if got.ID != want.ID {
		t.Errorf("ID = %#x, expected %#x", got.ID, want.ID)
	}
	if got.Time != want.Time {
		t.Errorf("Time = %d, expected %d", got.Time, want.Time)
	}
	if !bytes.Equal(got.Tag, want.Tag) {
		t.Errorf("Tag = %x, expected %x", got.Tag, want.Tag)
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Errorf("Data = %q, expected %q", got.Data, want.Data)
	}
	if got.Name != want.Name {
		t.Errorf("Name = %q, expected %q", got.Name, want.Name)
	}
	if !slices.Equal(got.Items, want.Items) {
		t.Errorf("Items = %v, expected %v", got.Items, want.Items)
	}
}

func TestEncoderHeader(t *testing.T) {
	got := wire.NewEncoder(0x1234, 7).Data()
	want := []byte{0x12, 0x34, 7}

	if len(got) != wire.HeaderSize {
		t.Errorf("header is %d bytes, expected HeaderSize %d", len(got), wire.HeaderSize)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("header = %x, expected big-endian kind then version %x", got, want)
	}
}

func TestEncoderFieldLayout(t *testing.T) {
	tests := []struct {
		name   string
		encode func(e *wire.Encoder)
		want   []byte
	}{
		{"Uint8", func(e *wire.Encoder) { e.Uint8(0xab) }, []byte{0xab}},
		{"BoolTrue", func(e *wire.Encoder) { e.Bool(true) }, []byte{1}},
		{"BoolFalse", func(e *wire.Encoder) { e.Bool(false) }, []byte{0}},
		{"Uint16", func(e *wire.Encoder) { e.Uint16(0x0102) }, []byte{1, 2}},
		{"Uint32", func(e *wire.Encoder) { e.Uint32(0x01020304) }, []byte{1, 2, 3, 4}},
		{"Uint64", func(e *wire.Encoder) { e.Uint64(0x0102030405060708) }, []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{"Int64Negative", func(e *wire.Encoder) { e.Int64(-2) }, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}},
		{"Fixed", func(e *wire.Encoder) { e.Fixed([]byte{9, 8, 7}) }, []byte{9, 8, 7}},
		{"FixedEmpty", func(e *wire.Encoder) { e.Fixed(nil) }, nil},
		{"Bytes", func(e *wire.Encoder) { e.Bytes([]byte{9, 8}) }, []byte{0, 0, 0, 2, 9, 8}},
		{"BytesEmpty", func(e *wire.Encoder) { e.Bytes(nil) }, []byte{0, 0, 0, 0}},
		{"String", func(e *wire.Encoder) { e.String("hi") }, []byte{0, 0, 0, 2, 'h', 'i'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The zero Encoder has no header, so Data is exactly the field.
			var e wire.Encoder
			tt.encode(&e)
			if !bytes.Equal(e.Data(), tt.want) {
				t.Errorf("encoding = %x, expected %x", e.Data(), tt.want)
			}
		})
	}
}

func TestDecoderFieldRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		encode func(e *wire.Encoder)
		check  func(t *testing.T, d *wire.Decoder)
	}{
		{"Uint8Max", func(e *wire.Encoder) { e.Uint8(math.MaxUint8) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Uint8(); got != math.MaxUint8 {
				t.Errorf("Uint8 = %d, expected %d", got, math.MaxUint8)
			}
		}},
		{"BoolTrue", func(e *wire.Encoder) { e.Bool(true) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Bool(); !got {
				t.Errorf("Bool = false, expected true")
			}
		}},
		{"BoolFalse", func(e *wire.Encoder) { e.Bool(false) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Bool(); got {
				t.Errorf("Bool = true, expected false")
			}
		}},
		{"Uint16Max", func(e *wire.Encoder) { e.Uint16(math.MaxUint16) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Uint16(); got != math.MaxUint16 {
				t.Errorf("Uint16 = %d, expected %d", got, math.MaxUint16)
			}
		}},
		{"Uint32Max", func(e *wire.Encoder) { e.Uint32(math.MaxUint32) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Uint32(); got != math.MaxUint32 {
				t.Errorf("Uint32 = %d, expected %d", got, uint32(math.MaxUint32))
			}
		}},
		{"Uint64Max", func(e *wire.Encoder) { e.Uint64(math.MaxUint64) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Uint64(); got != math.MaxUint64 {
				t.Errorf("Uint64 = %d, expected %d", got, uint64(math.MaxUint64))
			}
		}},
		{"Int64Min", func(e *wire.Encoder) { e.Int64(math.MinInt64) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Int64(); got != math.MinInt64 {
				t.Errorf("Int64 = %d, expected %d", got, math.MinInt64)
			}
		}},
		{"Int64Max", func(e *wire.Encoder) { e.Int64(math.MaxInt64) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Int64(); got != math.MaxInt64 {
				t.Errorf("Int64 = %d, expected %d", got, math.MaxInt64)
			}
		}},
		{"Fixed", func(e *wire.Encoder) { e.Fixed([]byte{1, 2, 3}) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Fixed(3); !bytes.Equal(got, []byte{1, 2, 3}) {
				t.Errorf("Fixed(3) = %x, expected 010203", got)
			}
		}},
		{"FixedZero", func(e *wire.Encoder) {}, func(t *testing.T, d *wire.Decoder) {
			if got := d.Fixed(0); len(got) != 0 {
				t.Errorf("Fixed(0) = %x, expected no bytes", got)
			}
		}},
		{"Bytes", func(e *wire.Encoder) { e.Bytes([]byte("abc")) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Bytes(3); string(got) != "abc" {
				t.Errorf("Bytes = %q, expected %q", got, "abc")
			}
		}},
		{"BytesEmpty", func(e *wire.Encoder) { e.Bytes(nil) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Bytes(0); len(got) != 0 {
				t.Errorf("Bytes = %x, expected no bytes", got)
			}
		}},
		{"BytesCopy", func(e *wire.Encoder) { e.Bytes([]byte("abc")) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.BytesCopy(3); string(got) != "abc" {
				t.Errorf("BytesCopy = %q, expected %q", got, "abc")
			}
		}},
		{"String", func(e *wire.Encoder) { e.String("héllo") }, func(t *testing.T, d *wire.Decoder) {
			if got := d.String(16); got != "héllo" {
				t.Errorf("String = %q, expected %q", got, "héllo")
			}
		}},
		{"StringEmpty", func(e *wire.Encoder) { e.String("") }, func(t *testing.T, d *wire.Decoder) {
			if got := d.String(0); got != "" {
				t.Errorf("String = %q, expected empty", got)
			}
		}},
		{"Count", func(e *wire.Encoder) { e.Uint32(5) }, func(t *testing.T, d *wire.Decoder) {
			if got := d.Count(5); got != 5 {
				t.Errorf("Count = %d, expected 5", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := wire.NewEncoder(sampleKind, sampleVersion)
			tt.encode(e)

			d := wire.NewDecoder(e.Data(), sampleKind, sampleVersion)
			tt.check(t, d)
			if err := d.Finish(); err != nil {
				t.Errorf("Finish = %v, expected nil", err)
			}
			if d.Remaining() != 0 {
				t.Errorf("Remaining = %d after Finish, expected 0", d.Remaining())
			}
		})
	}
}

func TestSampleRoundTrip(t *testing.T) {
	tests := map[string]sample{
		"full": fullSample(),
		"zero": {Tag: make([]byte, sampleTagSize)},
		"limits": {
			Tag:   []byte{0, 0, 0, 0},
			Data:  bytes.Repeat([]byte{0xff}, maxSampleData),
			Name:  string(bytes.Repeat([]byte{'n'}, maxSampleName)),
			Items: make([]uint16, maxItems),
		},
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			data := want.encode()

			got, err := decodeSample(data)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			assertSampleEqual(t, got, want)
			if again := got.encode(); !bytes.Equal(again, data) {
				t.Errorf("re-encoding = %x, expected the original %x", again, data)
			}
		})
	}
}

func TestDecoderTruncatedEveryCut(t *testing.T) {
	data := fullSample().encode()

	for cut := range len(data) {
		_, err := decodeSample(data[:cut])
		if !errors.Is(err, wire.ErrTruncated) {
			t.Errorf("decode of the first %d of %d bytes: error %v, expected ErrTruncated", cut, len(data), err)
		}
	}
}

func TestDecoderTrailingBytes(t *testing.T) {
	for _, extra := range [][]byte{{0}, {1, 2, 3}} {
		data := append(fullSample().encode(), extra...)

		_, err := decodeSample(data)
		if !errors.Is(err, wire.ErrTrailing) {
			t.Errorf("decode with %d trailing bytes: error %v, expected ErrTrailing", len(extra), err)
		}
	}
}

func TestDecoderTrailingAfterHeader(t *testing.T) {
	d := wire.NewDecoder([]byte{0x7e, 0x01, sampleVersion, 0}, sampleKind, sampleVersion)

	if d.Remaining() != 1 {
		t.Errorf("Remaining = %d, expected 1", d.Remaining())
	}
	if err := d.Finish(); !errors.Is(err, wire.ErrTrailing) {
		t.Errorf("Finish = %v, expected ErrTrailing", err)
	}
}

func TestDecoderBytesLimit(t *testing.T) {
	for _, limit := range []int{0, 1, 16} {
		e := wire.NewEncoder(sampleKind, sampleVersion)
		e.Bytes(make([]byte, limit))

		d := wire.NewDecoder(e.Data(), sampleKind, sampleVersion)
		if got := d.Bytes(limit); len(got) != limit {
			t.Errorf("Bytes(%d) read %d bytes, expected %d", limit, len(got), limit)
		}
		if err := d.Finish(); err != nil {
			t.Errorf("Bytes(%d) of exactly %d bytes: Finish = %v, expected nil", limit, limit, err)
		}
	}
}

func TestDecoderBytesTooLong(t *testing.T) {
	readers := map[string]func(d *wire.Decoder, limit int) int{
		"Bytes":     func(d *wire.Decoder, limit int) int { return len(d.Bytes(limit)) },
		"BytesCopy": func(d *wire.Decoder, limit int) int { return len(d.BytesCopy(limit)) },
		"String":    func(d *wire.Decoder, limit int) int { return len(d.String(limit)) },
	}
	for name, read := range readers {
		t.Run(name, func(t *testing.T) {
			// One byte over the limit, with the bytes present.
			e := wire.NewEncoder(sampleKind, sampleVersion)
			e.Bytes([]byte("12345"))
			d := wire.NewDecoder(e.Data(), sampleKind, sampleVersion)
			if n := read(d, 4); n != 0 {
				t.Errorf("%s(4) of 5 bytes returned %d bytes, expected none", name, n)
			}
			if err := d.Finish(); !errors.Is(err, wire.ErrTooLong) {
				t.Errorf("%s(4) of 5 bytes: Finish = %v, expected ErrTooLong", name, err)
			}

			// The limit is checked before the length is compared with the
			// input, so a huge length reports ErrTooLong and not ErrTruncated.
			e = wire.NewEncoder(sampleKind, sampleVersion)
			e.Uint32(math.MaxUint32)
			d = wire.NewDecoder(e.Data(), sampleKind, sampleVersion)
			read(d, 1<<20)
			if err := d.Finish(); !errors.Is(err, wire.ErrTooLong) {
				t.Errorf("%s of length %d: Finish = %v, expected ErrTooLong", name, uint32(math.MaxUint32), err)
			}
		})
	}
}

func TestDecoderCountTooLong(t *testing.T) {
	e := wire.NewEncoder(sampleKind, sampleVersion)
	e.Uint32(maxItems + 1)

	d := wire.NewDecoder(e.Data(), sampleKind, sampleVersion)
	if n := d.Count(maxItems); n != 0 {
		t.Errorf("Count(%d) of %d = %d, expected 0", maxItems, maxItems+1, n)
	}
	if err := d.Finish(); !errors.Is(err, wire.ErrTooLong) {
		t.Errorf("Count(%d) of %d: Finish = %v, expected ErrTooLong", maxItems, maxItems+1, err)
	}
}

func TestDecoderCountAtLimit(t *testing.T) {
	e := wire.NewEncoder(sampleKind, sampleVersion)
	e.Uint32(maxItems)

	d := wire.NewDecoder(e.Data(), sampleKind, sampleVersion)
	if n := d.Count(maxItems); n != maxItems {
		t.Errorf("Count(%d) = %d, expected %d", maxItems, n, maxItems)
	}
	if err := d.Finish(); err != nil {
		t.Errorf("Count at the limit: Finish = %v, expected nil", err)
	}
}

func TestDecoderWrongKind(t *testing.T) {
	data := wire.NewEncoder(wire.KindReadcap, 1).Data()

	d := wire.NewDecoder(data, wire.KindWritecap, 1)
	err := d.Finish()
	if !errors.Is(err, wire.ErrWrongKind) {
		t.Errorf("Finish = %v, expected ErrWrongKind", err)
	}
	if errors.Is(err, wire.ErrUnknownVersion) {
		t.Errorf("Finish = %v, expected no ErrUnknownVersion when the kind is wrong", err)
	}
}

func TestDecoderUnknownVersion(t *testing.T) {
	data := wire.NewEncoder(sampleKind, 3).Data()

	d := wire.NewDecoder(data, sampleKind, 1, 2)
	if err := d.Finish(); !errors.Is(err, wire.ErrUnknownVersion) {
		t.Errorf("version 3 with versions 1 and 2 known: Finish = %v, expected ErrUnknownVersion", err)
	}
	if d.Version() != 3 {
		t.Errorf("Version = %d, expected the version found, 3", d.Version())
	}

	d = wire.NewDecoder(data, sampleKind)
	if err := d.Finish(); !errors.Is(err, wire.ErrUnknownVersion) {
		t.Errorf("no versions known: Finish = %v, expected ErrUnknownVersion", err)
	}
}

func TestDecoderKnownVersions(t *testing.T) {
	for _, version := range []uint8{1, 2} {
		data := wire.NewEncoder(sampleKind, version).Data()

		d := wire.NewDecoder(data, sampleKind, 1, 2)
		if err := d.Finish(); err != nil {
			t.Errorf("version %d with versions 1 and 2 known: Finish = %v, expected nil", version, err)
		}
		if d.Version() != version {
			t.Errorf("Version = %d, expected %d", d.Version(), version)
		}
	}
}

func TestDecoderShortHeader(t *testing.T) {
	for n := range wire.HeaderSize {
		d := wire.NewDecoder(make([]byte, n), sampleKind, sampleVersion)

		if err := d.Finish(); !errors.Is(err, wire.ErrTruncated) {
			t.Errorf("header of %d bytes: Finish = %v, expected ErrTruncated", n, err)
		}
		if d.Version() != 0 {
			t.Errorf("header of %d bytes: Version = %d, expected 0", n, d.Version())
		}
	}
}

func TestDecoderBoolRejectsInvalid(t *testing.T) {
	for v := 2; v <= math.MaxUint8; v++ {
		e := wire.NewEncoder(sampleKind, sampleVersion)
		e.Uint8(uint8(v))

		d := wire.NewDecoder(e.Data(), sampleKind, sampleVersion)
		if d.Bool() {
			t.Errorf("Bool of byte %d = true, expected false", v)
		}
		if err := d.Finish(); !errors.Is(err, wire.ErrInvalid) {
			t.Errorf("Bool of byte %d: Finish = %v, expected ErrInvalid", v, err)
		}
	}
}

func TestDecoderStickyError(t *testing.T) {
	// The input is a header, a Uint16 and one more byte, so a Uint32 read fails.
	e := wire.NewEncoder(sampleKind, sampleVersion)
	e.Uint16(0x0102)
	e.Uint8(0xff)
	data := e.Data()

	d := wire.NewDecoder(data, sampleKind, sampleVersion)
	if got := d.Uint16(); got != 0x0102 {
		t.Fatalf("Uint16 before the failure = %#x, expected 0x0102", got)
	}
	if got := d.Uint32(); got != 0 {
		t.Errorf("failed Uint32 = %#x, expected 0", got)
	}
	first := d.Err()
	if !errors.Is(first, wire.ErrTruncated) {
		t.Fatalf("Err after a short Uint32 = %v, expected ErrTruncated", first)
	}

	// The unread byte is still there, but every later read returns a zero value.
	if got := d.Uint8(); got != 0 {
		t.Errorf("Uint8 after the error = %#x, expected 0", got)
	}
	if got := d.Bool(); got {
		t.Errorf("Bool after the error = true, expected false")
	}
	if got := d.Uint16(); got != 0 {
		t.Errorf("Uint16 after the error = %#x, expected 0", got)
	}
	if got := d.Uint64(); got != 0 {
		t.Errorf("Uint64 after the error = %#x, expected 0", got)
	}
	if got := d.Int64(); got != 0 {
		t.Errorf("Int64 after the error = %d, expected 0", got)
	}
	if got := d.Fixed(0); got != nil {
		t.Errorf("Fixed(0) after the error = %x, expected nil", got)
	}
	if got := d.Bytes(10); got != nil {
		t.Errorf("Bytes after the error = %x, expected nil", got)
	}
	if got := d.BytesCopy(10); got != nil {
		t.Errorf("BytesCopy after the error = %x, expected nil", got)
	}
	if got := d.String(10); got != "" {
		t.Errorf("String after the error = %q, expected empty", got)
	}
	if got := d.Count(10); got != 0 {
		t.Errorf("Count after the error = %d, expected 0", got)
	}
	if d.Remaining() != 1 {
		t.Errorf("Remaining after the error = %d, expected the 1 unread byte", d.Remaining())
	}

	// Neither Fail nor the unread byte replaces the first error.
	d.Fail(errors.New("later failure"))
	if d.Err() != first {
		t.Errorf("Err after Fail = %v, expected the first error %v", d.Err(), first)
	}
	if err := d.Finish(); err != first {
		t.Errorf("Finish = %v, expected the first error %v and not ErrTrailing", err, first)
	}
}

func TestDecoderFailSticks(t *testing.T) {
	e := wire.NewEncoder(sampleKind, sampleVersion)
	e.Uint8(7)
	failure := errors.New("semantic check failed")

	d := wire.NewDecoder(e.Data(), sampleKind, sampleVersion)
	if d.Err() != nil {
		t.Fatalf("Err before Fail = %v, expected nil", d.Err())
	}
	d.Fail(failure)
	if got := d.Uint8(); got != 0 {
		t.Errorf("Uint8 after Fail = %d, expected 0 although a byte is left", got)
	}
	if err := d.Finish(); err != failure {
		t.Errorf("Finish = %v, expected the error passed to Fail", err)
	}
}

func TestDecoderFixedNegative(t *testing.T) {
	d := wire.NewDecoder(wire.NewEncoder(sampleKind, sampleVersion).Data(), sampleKind, sampleVersion)

	if got := d.Fixed(-1); got != nil {
		t.Errorf("Fixed(-1) = %x, expected nil", got)
	}
	if err := d.Finish(); !errors.Is(err, wire.ErrTruncated) {
		t.Errorf("Fixed(-1): Finish = %v, expected ErrTruncated", err)
	}
}

func TestDecoderBytesAliasing(t *testing.T) {
	e := wire.NewEncoder(sampleKind, sampleVersion)
	e.Bytes([]byte("ab"))
	e.Bytes([]byte("cd"))
	data := e.Data()

	d := wire.NewDecoder(data, sampleKind, sampleVersion)
	aliased := d.Bytes(2)
	copied := d.BytesCopy(2)
	if err := d.Finish(); err != nil {
		t.Fatalf("Finish = %v, expected nil", err)
	}

	clear(data)
	if string(aliased) != "\x00\x00" {
		t.Errorf("Bytes result = %q after clearing the input, expected it to alias the input", aliased)
	}
	if string(copied) != "cd" {
		t.Errorf("BytesCopy result = %q after clearing the input, expected the copy %q", copied, "cd")
	}
}

func TestDecoderRemaining(t *testing.T) {
	e := wire.NewEncoder(sampleKind, sampleVersion)
	e.Uint32(1)
	e.Uint16(2)

	d := wire.NewDecoder(e.Data(), sampleKind, sampleVersion)
	if d.Remaining() != 6 {
		t.Errorf("Remaining after the header = %d, expected 6", d.Remaining())
	}
	d.Uint32()
	if d.Remaining() != 2 {
		t.Errorf("Remaining after Uint32 = %d, expected 2", d.Remaining())
	}
	d.Uint16()
	if d.Remaining() != 0 {
		t.Errorf("Remaining after Uint16 = %d, expected 0", d.Remaining())
	}
}

func FuzzDecoder(f *testing.F) {
	full := fullSample().encode()
	f.Add(full)
	f.Add(sample{Tag: make([]byte, sampleTagSize)}.encode())
	f.Add(full[:len(full)-1])                   // truncated
	f.Add(append(slices.Clone(full), 0))        // trailing byte
	f.Add([]byte{})                             // empty
	f.Add([]byte{0x7e, 0x01, 2})                // unknown version
	f.Add([]byte{0x00, 0x01, 1})                // wrong kind
	f.Add([]byte{0x7e, 0x01, 1, 2})             // invalid boolean
	f.Add([]byte{0x7e, 0x01, 1, 1, 0xff, 0xff}) // truncated after the boolean

	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeSample(data)
		if err != nil {
			return
		}
		if again := s.encode(); !bytes.Equal(again, data) {
			t.Errorf("accepted input %x re-encodes as %x", data, again)
		}
	})
}

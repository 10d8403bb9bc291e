package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Kind identifies the structure an encoding holds. Values are fixed forever:
// a new structure takes a new number and an old number is never reused.
type Kind uint16

// Kinds of the crypto library. Later subsystems allocate from 0x0100 up.
const (
	KindWritecap       Kind = 0x0001
	KindReadcap        Kind = 0x0002
	KindBlockHeader    Kind = 0x0003
	KindSealedBlob     Kind = 0x0004
	KindPublicIdentity Kind = 0x0005
	KindCredentials    Kind = 0x0006
	KindWrappedSecret  Kind = 0x0007
	KindChain          Kind = 0x0008
	KindBlock          Kind = 0x0009
	KindRootCredential Kind = 0x000a
)

// Sentinel errors, matched with errors.Is. Decoding errors wrap one of them
// together with the field and the offending value.
var (
	ErrTruncated      = errors.New("input is truncated")
	ErrTrailing       = errors.New("trailing bytes after the last field")
	ErrTooLong        = errors.New("length is above the limit")
	ErrUnknownVersion = errors.New("unknown version")
	ErrWrongKind      = errors.New("wrong kind of structure")
	ErrInvalid        = errors.New("invalid field value")
)

// HeaderSize is the number of bytes of the kind and version prefix.
const HeaderSize = 3

// Encoder appends the canonical encoding of fields to a byte slice.
// The zero value is ready to use.
type Encoder struct {
	buf []byte
}

// NewEncoder returns an encoder that starts with a header for kind and version.
func NewEncoder(kind Kind, version uint8) *Encoder {
	return AppendEncoder(make([]byte, 0, 256), kind, version)
}

// AppendEncoder returns an encoder that appends to buf, starting with a
// header for kind and version, so that a caller can reuse a buffer.
func AppendEncoder(buf []byte, kind Kind, version uint8) *Encoder {
	e := &Encoder{buf: buf}
	e.Uint16(uint16(kind))
	e.Uint8(version)
	return e
}

// Data returns the bytes encoded so far. The slice aliases the encoder's buffer.
func (e *Encoder) Data() []byte { return e.buf }

// Grow makes room for at least n more bytes, so that encoding a large field
// of known size copies it once.
func (e *Encoder) Grow(n int) { e.buf = slices.Grow(e.buf, n) }

// Uint8 appends one byte.
func (e *Encoder) Uint8(v uint8) { e.buf = append(e.buf, v) }

// Bool appends 1 for true and 0 for false.
func (e *Encoder) Bool(v bool) {
	if v {
		e.Uint8(1)
	} else {
		e.Uint8(0)
	}
}

// Uint16 appends v as two big-endian bytes.
func (e *Encoder) Uint16(v uint16) { e.buf = binary.BigEndian.AppendUint16(e.buf, v) }

// Uint32 appends v as four big-endian bytes.
func (e *Encoder) Uint32(v uint32) { e.buf = binary.BigEndian.AppendUint32(e.buf, v) }

// Uint64 appends v as eight big-endian bytes.
func (e *Encoder) Uint64(v uint64) { e.buf = binary.BigEndian.AppendUint64(e.buf, v) }

// Int64 appends v in two's complement as eight big-endian bytes.
func (e *Encoder) Int64(v int64) { e.Uint64(uint64(v)) }

// Fixed appends b with no length prefix; the decoder must know its size.
func (e *Encoder) Fixed(b []byte) { e.buf = append(e.buf, b...) }

// Bytes appends a 32-bit length followed by b.
func (e *Encoder) Bytes(b []byte) {
	e.Uint32(uint32(len(b)))
	e.buf = append(e.buf, b...)
}

// String appends a 32-bit length followed by the bytes of s.
func (e *Encoder) String(s string) {
	e.Uint32(uint32(len(s)))
	e.buf = append(e.buf, s...)
}

// Decoder reads fields from a canonical encoding. The first error sticks.
type Decoder struct {
	data []byte
	off  int
	err  error
}

// NewDecoder returns a decoder over data that first checks the header:
// the kind must equal kind and the version must be one of versions.
// Version returns the version that was found.
func NewDecoder(data []byte, kind Kind, versions ...uint8) *Decoder {
	d := &Decoder{data: data}
	got := Kind(d.Uint16())
	version := d.Uint8()
	if d.err != nil {
		return d
	}
	if got != kind {
		d.err = fmt.Errorf("kind %#04x, expected %#04x: %w", uint16(got), uint16(kind), ErrWrongKind)
		return d
	}
	for _, v := range versions {
		if v == version {
			return d
		}
	}
	d.err = fmt.Errorf("kind %#04x version %d: %w", uint16(kind), version, ErrUnknownVersion)
	return d
}

// Version returns the version byte of the header.
func (d *Decoder) Version() uint8 {
	if len(d.data) < HeaderSize {
		return 0
	}
	return d.data[2]
}

// Err returns the first error, if any.
func (d *Decoder) Err() error { return d.err }

// Fail records err as the decoder's error unless an earlier one exists.
// Callers use it for semantic checks on decoded fields.
func (d *Decoder) Fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// Finish returns the first error, or ErrTrailing if bytes remain unread.
func (d *Decoder) Finish() error {
	if d.err != nil {
		return d.err
	}
	if d.off != len(d.data) {
		return fmt.Errorf("%d bytes at offset %d: %w", len(d.data)-d.off, d.off, ErrTrailing)
	}
	return nil
}

// Remaining returns the number of unread bytes.
func (d *Decoder) Remaining() int { return len(d.data) - d.off }

func (d *Decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.data)-d.off {
		d.err = fmt.Errorf("need %d bytes at offset %d, have %d: %w", n, d.off, len(d.data)-d.off, ErrTruncated)
		return nil
	}
	b := d.data[d.off : d.off+n]
	d.off += n
	return b
}

// Uint8 reads one byte.
func (d *Decoder) Uint8() uint8 {
	b := d.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// Bool reads a byte that must be 0 or 1.
func (d *Decoder) Bool() bool {
	v := d.Uint8()
	if v > 1 {
		d.Fail(fmt.Errorf("boolean byte %d: %w", v, ErrInvalid))
		return false
	}
	return v == 1
}

// Uint16 reads two big-endian bytes.
func (d *Decoder) Uint16() uint16 {
	b := d.take(2)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

// Uint32 reads four big-endian bytes.
func (d *Decoder) Uint32() uint32 {
	b := d.take(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// Uint64 reads eight big-endian bytes.
func (d *Decoder) Uint64() uint64 {
	b := d.take(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Int64 reads eight big-endian bytes in two's complement.
func (d *Decoder) Int64() int64 { return int64(d.Uint64()) }

// Fixed reads exactly n bytes. The result aliases the input.
func (d *Decoder) Fixed(n int) []byte { return d.take(n) }

// Bytes reads a 32-bit length and that many bytes, rejecting lengths above max.
// The result aliases the input; callers that keep it past the input's life copy it.
func (d *Decoder) Bytes(max int) []byte {
	n := d.Uint32()
	if d.err != nil {
		return nil
	}
	if max < 0 || uint64(n) > uint64(max) {
		d.err = fmt.Errorf("length %d at offset %d, limit %d: %w", n, d.off-4, max, ErrTooLong)
		return nil
	}
	b := d.take(int(n))
	if b == nil {
		return nil
	}
	return b
}

// BytesCopy is Bytes with the result copied out of the input.
func (d *Decoder) BytesCopy(max int) []byte {
	b := d.Bytes(max)
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// String reads a length-prefixed string of at most max bytes.
func (d *Decoder) String(max int) string { return string(d.Bytes(max)) }

// Count reads a 32-bit element count for a list, rejecting counts above max.
func (d *Decoder) Count(max int) int {
	n := d.Uint32()
	if d.err != nil {
		return 0
	}
	if max < 0 || uint64(n) > uint64(max) {
		d.err = fmt.Errorf("count %d at offset %d, limit %d: %w", n, d.off-4, max, ErrTooLong)
		return 0
	}
	return int(n)
}

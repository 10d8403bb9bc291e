package rpc

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind is the bus message kind of every rpc frame. Messages of other kinds
// on a connection that carries rpc traffic are dropped as malformed.
const Kind uint32 = 0x72706331 // "rpc1"

// Version is the frame format version that this package writes and reads.
const Version = 1

// HeaderSize is the size in bytes of a frame header. The body follows it.
const HeaderSize = 24

// FrameType is the kind of content of a frame: a request, a reply or an
// error reply.
type FrameType uint8

// Frame types.
const (
	TypeRequest FrameType = 1 // a call of Method with Body as its argument
	TypeReply   FrameType = 2 // the handler's result in Body
	TypeError   FrameType = 3 // the handler's error text in Body
)

// ErrMalformed is wrapped by the errors of DecodeFrame.
var ErrMalformed = errors.New("malformed rpc frame")

// Frame is one rpc message. On the wire it is a header of HeaderSize bytes
// in big-endian order, then the body:
//
//	version  u8   1
//	type     u8   TypeRequest, TypeReply or TypeError
//	reserved u16  0
//	id       u64  request id, chosen by the caller and repeated by the reply
//	deadline i64  absolute deadline in Unix nanoseconds, 0 for none
//	method   u32  method of the request, repeated by the reply
//	body          the rest of the payload
type Frame struct {
	Type     FrameType
	ID       uint64
	Deadline int64
	Method   uint32
	Body     []byte
}

// AppendFrame appends the encoding of f to dst and returns the result.
func AppendFrame(dst []byte, f Frame) []byte {
	var header [HeaderSize]byte
	putHeader(header[:], f)
	dst = append(dst, header[:]...)
	return append(dst, f.Body...)
}

// putHeader writes f's header into b, which has at least HeaderSize bytes.
func putHeader(b []byte, f Frame) {
	b[0] = Version
	b[1] = byte(f.Type)
	binary.BigEndian.PutUint16(b[2:4], 0)
	binary.BigEndian.PutUint64(b[4:12], f.ID)
	binary.BigEndian.PutUint64(b[12:20], uint64(f.Deadline))
	binary.BigEndian.PutUint32(b[20:24], f.Method)
}

// DecodeFrame decodes one frame. The returned Body aliases b. DecodeFrame
// reads each header byte once, so a peer that changes a shared-memory
// payload meanwhile cannot make it accept a header that it checked
// differently.
func DecodeFrame(b []byte) (Frame, error) {
	if len(b) < HeaderSize {
		return Frame{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrMalformed, len(b), HeaderSize)
	}
	var header [HeaderSize]byte
	copy(header[:], b)

	if header[0] != Version {
		return Frame{}, fmt.Errorf("%w: version %d, want %d", ErrMalformed, header[0], Version)
	}
	f := Frame{
		Type:     FrameType(header[1]),
		ID:       binary.BigEndian.Uint64(header[4:12]),
		Deadline: int64(binary.BigEndian.Uint64(header[12:20])),
		Method:   binary.BigEndian.Uint32(header[20:24]),
		Body:     b[HeaderSize:],
	}
	if f.Type < TypeRequest || f.Type > TypeError {
		return Frame{}, fmt.Errorf("%w: unknown frame type %d", ErrMalformed, f.Type)
	}
	if reserved := binary.BigEndian.Uint16(header[2:4]); reserved != 0 {
		return Frame{}, fmt.Errorf("%w: reserved field is %#x, want 0", ErrMalformed, reserved)
	}
	if f.Deadline < 0 {
		return Frame{}, fmt.Errorf("%w: negative deadline %d", ErrMalformed, f.Deadline)
	}
	return f, nil
}

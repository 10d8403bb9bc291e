package route

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/blocktree/blocktree/services/bus"
)

// FrameVersion is the version byte of every link frame.
const FrameVersion = 1

// frameHeaderSize is the size of a link frame's header.
const frameHeaderSize = 12

// MaxMessage bounds the payload of one relayed message in bytes: the
// largest payload of a bus connection with the default ring size, which
// is what netd uses toward local endpoints.
const MaxMessage = bus.DefaultRingSize/2 - 8

// DefaultWindow is the default credit window of a circuit in bytes: room
// for two messages of MaxMessage bytes.
const DefaultWindow = 2 * (MaxMessage + msgOverhead)

// msgOverhead is the credit a message costs beyond its payload, so
// that a flood of empty messages is bounded too.
const msgOverhead = 16

// maxBody bounds a frame's body: a message's kind and payload.
const maxBody = 4 + MaxMessage

// FrameType is the type of a link frame.
type FrameType uint8

// Frame types. OPEN goes from the dialer to the listener, OPENED and ERROR
// back; MSG, CREDIT and CLOSE go both ways; PING keeps an idle link alive.
const (
	FrameOpen   FrameType = 1 // body: deadline i64 (Unix ns, 0 for none), destination address
	FrameOpened FrameType = 2 // body: empty
	FrameError  FrameType = 3 // body: endpoint.Code u8, reason text
	FrameMsg    FrameType = 4 // body: bus kind u32, payload
	FrameCredit FrameType = 5 // body: u32 bytes of credit returned to the sender
	FrameClose  FrameType = 6 // body: empty
	FramePing   FrameType = 7 // circuit 0, body empty
)

// ErrMalformed is wrapped by the errors of readFrame for a frame that
// breaks the format. The link that carried it is closed.
var ErrMalformed = errors.New("malformed link frame")

// Frame is one link frame. On the wire, in big-endian order:
//
//	version  u8   FrameVersion
//	type     u8   FrameType
//	reserved u16  0
//	circuit  u32  the circuit, chosen by the dialer; 0 only for PING
//	length   u32  length of the body, at most 4 + MaxMessage
//	body
type Frame struct {
	Type    FrameType
	Circuit uint32
	Body    []byte
}

// appendFrame appends f's encoding to dst.
func appendFrame(dst []byte, f Frame) []byte {
	var h [frameHeaderSize]byte
	h[0] = FrameVersion
	h[1] = byte(f.Type)
	binary.BigEndian.PutUint32(h[4:8], f.Circuit)
	binary.BigEndian.PutUint32(h[8:12], uint32(len(f.Body)))
	dst = append(dst, h[:]...)
	return append(dst, f.Body...)
}

// readFrame reads and checks one frame. A connection closed before the
// first byte gives io.EOF; errors about the content wrap ErrMalformed.
func readFrame(r io.Reader) (Frame, error) {
	var h [frameHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, fmt.Errorf("%w: connection closed inside a frame header", ErrMalformed)
		}
		return Frame{}, err
	}
	f := Frame{Type: FrameType(h[1]), Circuit: binary.BigEndian.Uint32(h[4:8])}
	length := binary.BigEndian.Uint32(h[8:12])
	if err := checkHeader(h[0], f.Type, binary.BigEndian.Uint16(h[2:4]), f.Circuit, length); err != nil {
		return Frame{}, err
	}
	if f.Type == FrameMsg {
		f.Body = getBody(int(length))
	} else {
		f.Body = make([]byte, length)
	}
	if n, err := io.ReadFull(r, f.Body); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, fmt.Errorf("%w: connection closed after %d of %d body bytes", ErrMalformed, n, length)
		}
		return Frame{}, err
	}
	if err := checkBody(f); err != nil {
		return Frame{}, err
	}
	return f, nil
}

func checkHeader(version byte, t FrameType, reserved uint16, circuit, length uint32) error {
	switch {
	case version != FrameVersion:
		return fmt.Errorf("%w: version %d, expected %d", ErrMalformed, version, FrameVersion)
	case t < FrameOpen || t > FramePing:
		return fmt.Errorf("%w: unknown frame type %d", ErrMalformed, t)
	case reserved != 0:
		return fmt.Errorf("%w: reserved field %#x, expected 0", ErrMalformed, reserved)
	case length > maxBody:
		return fmt.Errorf("%w: body of %d bytes, limit %d", ErrMalformed, length, maxBody)
	case (t == FramePing) != (circuit == 0):
		return fmt.Errorf("%w: frame type %d on circuit %d (circuit 0 is for PING only)", ErrMalformed, t, circuit)
	}
	return nil
}

// checkBody checks the body's size for the frame type.
func checkBody(f Frame) error {
	n := len(f.Body)
	var ok bool
	switch f.Type {
	case FrameOpen:
		ok = n > 8
	case FrameOpened, FrameClose, FramePing:
		ok = n == 0
	case FrameError:
		ok = n >= 1
	case FrameMsg:
		ok = n >= 4
	case FrameCredit:
		ok = n == 4
	}
	if !ok {
		return fmt.Errorf("%w: frame type %d with a body of %d bytes", ErrMalformed, f.Type, n)
	}
	return nil
}

// appendMsgHeader appends the header of a MSG frame on circuit with a
// payload of size bytes to dst: the frame header and the bus kind. The
// payload follows it on the wire.
func appendMsgHeader(dst []byte, circuit, kind uint32, size int) []byte {
	var h [frameHeaderSize]byte
	h[0] = FrameVersion
	h[1] = byte(FrameMsg)
	binary.BigEndian.PutUint32(h[4:8], circuit)
	binary.BigEndian.PutUint32(h[8:12], uint32(4+size))
	dst = append(dst, h[:]...)
	return binary.BigEndian.AppendUint32(dst, kind)
}

// creditBody returns the body of a CREDIT frame.
func creditBody(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// openBody returns the body of an OPEN frame.
func openBody(deadline int64, address string) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(deadline))
	return append(b, address...)
}

// Bodies of MSG frames from copyLimit bytes up are recycled, because at
// one allocation per relayed message the garbage collector took a
// noticeable share of netd's CPU time in BenchmarkBetweenNodes. Pool i
// holds buffers of 1<<(minPooledShift+i) bytes.
const (
	minPooledShift = 14 // 16 KiB, copyLimit
	maxPooledShift = 19 // 512 KiB, the power of two that fits maxBody
)

var bodyPools [maxPooledShift - minPooledShift + 1]sync.Pool

// getBody returns a slice of n bytes for a MSG frame's body, from a pool
// when n is at least copyLimit. putBody takes it back.
func getBody(n int) []byte {
	if n < copyLimit {
		return make([]byte, n)
	}
	shift := max(bits.Len(uint(n-1)), minPooledShift)
	if p, ok := bodyPools[shift-minPooledShift].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<shift)
}

// putBody returns a body from getBody to its pool once nothing refers to
// it. It ignores slices that getBody did not take from a pool.
func putBody(b []byte) {
	c := cap(b)
	if c < 1<<minPooledShift || c > 1<<maxPooledShift || c&(c-1) != 0 {
		return
	}
	b = b[:c]
	bodyPools[bits.Len(uint(c-1))-minPooledShift].Put(&b)
}

package proto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// frameHeaderSize is the size of the u32 length that precedes each message.
const frameHeaderSize = 4

// errFrameTooLarge is wrapped by the error for a frame whose length is
// above MaxFrameSize.
var errFrameTooLarge = errors.New("frame length is above the limit")

// Frame buffers come from two pools: small ones for metadata messages and
// large ones, of a full frame, for Write requests and Read responses.
const smallBufferSize = 64 << 10

var (
	smallBuffers = sync.Pool{New: func() any {
		b := make([]byte, 0, smallBufferSize)
		return &b
	}}
	largeBuffers = sync.Pool{New: func() any {
		b := make([]byte, 0, frameHeaderSize+MaxFrameSize)
		return &b
	}}
)

// getBuffer returns an empty pooled buffer with a capacity of at least n.
func getBuffer(n int) *[]byte {
	if n <= smallBufferSize {
		return smallBuffers.Get().(*[]byte)
	}
	if n <= frameHeaderSize+MaxFrameSize {
		return largeBuffers.Get().(*[]byte)
	}
	b := make([]byte, 0, n)
	return &b
}

// putBuffer returns b to the pool of its capacity. Callers must not use b,
// or any slice of it, afterwards.
func putBuffer(b *[]byte) {
	*b = (*b)[:0]
	switch c := cap(*b); {
	case c >= frameHeaderSize+MaxFrameSize:
		largeBuffers.Put(b)
	case c >= smallBufferSize:
		smallBuffers.Put(b)
	}
}

// frameReader reads frames from a stream: each is a big-endian u32 length
// followed by that many bytes of message.
type frameReader struct {
	r      *bufio.Reader
	header [frameHeaderSize]byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, smallBufferSize)}
}

// next reads one frame into a pooled buffer and returns the buffer, which
// the caller returns with putBuffer, and the message in it. At a clean end
// of stream, between frames, it returns io.EOF. A stream that ends inside a
// frame returns io.ErrUnexpectedEOF.
func (fr *frameReader) next() (*[]byte, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.header[:]); err != nil {
		return nil, nil, err
	}
	n := binary.BigEndian.Uint32(fr.header[:])
	if n > MaxFrameSize {
		return nil, nil, fmt.Errorf("frame length %d, limit %d: %w", n, MaxFrameSize, errFrameTooLarge)
	}
	buf := getBuffer(int(n))
	msg := (*buf)[:n]
	if _, err := io.ReadFull(fr.r, msg); err != nil {
		putBuffer(buf)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, fmt.Errorf("read frame of %d bytes: %w", n, err)
	}
	return buf, msg, nil
}

// beginFrame returns b with room for the frame length, to which the caller
// appends one message before calling finishFrame.
func beginFrame(b []byte) []byte {
	return append(b[:0], 0, 0, 0, 0)
}

// finishFrame writes the length of the message that follows the header.
func finishFrame(frame []byte) {
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-frameHeaderSize))
}

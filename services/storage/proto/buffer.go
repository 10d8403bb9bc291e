package proto

import "sync"

// Encoding buffers come from two pools: small ones for metadata messages
// and large ones, of a whole message, for the few large responses that are
// not Read responses (ReadDir, GetXattr, ListXattr).
const smallBufferSize = 64 << 10

var (
	smallBuffers = sync.Pool{New: func() any {
		b := make([]byte, 0, smallBufferSize)
		return &b
	}}
	largeBuffers = sync.Pool{New: func() any {
		b := make([]byte, 0, MaxMessageSize)
		return &b
	}}
)

// getBuffer returns an empty pooled buffer with a capacity of at least n.
func getBuffer(n int) *[]byte {
	if n <= smallBufferSize {
		return smallBuffers.Get().(*[]byte)
	}
	if n <= MaxMessageSize {
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
	case c >= MaxMessageSize:
		largeBuffers.Put(b)
	case c >= smallBufferSize:
		smallBuffers.Put(b)
	}
}

package peer

import (
	"net"
	"sync"
)

// writeBufferSize is the size in bytes of a link's write buffer. It holds
// three full TLS records, so a relayed message of 256 KiB (a small record
// with the frame header, then 16 full ones) goes out in 6 writes instead
// of 17. No write exceeds 64 KiB, the gso_max_size of a veth or loopback
// device on Linux. A buffer for four full records (65880 bytes) cost about
// 20% more CPU per MiB in BenchmarkBetweenNodes, probably because each
// write then left a second, small packet.
const writeBufferSize = 64 << 10

// bufferedConn is the TCP connection below a link's TLS connection. During
// the handshake and the chain exchange it writes through. Once the link is
// set up (startBuffering), it collects the TLS records that Write gets and
// writes them to the socket at Flush, or when the buffer is full.
//
// Go's crypto/tls writes each record, at most 16 KiB of plaintext, with a
// write system call of its own. On a veth pair each such call also runs
// the receiving side's TCP processing, so batching the records cuts the
// cost of a large message by far more than the copy into the buffer adds.
//
// The mutex is needed although crypto/tls serializes its own writes,
// because Flush comes from outside the TLS connection, and the TLS reader
// writes too: its reply to a KeyUpdate request, which then waits in the
// buffer for the next Flush.
type bufferedConn struct {
	net.Conn

	mu        sync.Mutex
	buf       []byte // records not yet written
	buffering bool
	err       error // the first failed write; every later Write and Flush returns it
}

// startBuffering makes later writes collect in the buffer until Flush.
func (c *bufferedConn) startBuffering() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = make([]byte, 0, writeBufferSize)
	c.buffering = true
}

// stopBuffering makes later writes go to the socket at once, after what
// is buffered. It returns false, and changes nothing, while another
// goroutine holds the buffer, which may be a Flush blocked on a peer that
// stopped reading.
func (c *bufferedConn) stopBuffering() bool {
	if !c.mu.TryLock() {
		return false
	}
	defer c.mu.Unlock()
	c.buffering = false
	return true
}

// Write buffers p while buffering, and writes the buffer and p otherwise.
func (c *bufferedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.buffering && len(c.buf)+len(p) <= cap(c.buf) {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	if c.buffering && len(p) <= cap(c.buf) {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	n, err := c.Conn.Write(p)
	if err != nil && c.buffering {
		c.err = err
	}
	return n, err
}

// Flush writes the buffered records to the socket.
func (c *bufferedConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *bufferedConn) flushLocked() error {
	if c.err != nil {
		return c.err
	}
	if len(c.buf) == 0 {
		return nil
	}
	// A failed or partial write leaves the peer inside a TLS record, so
	// the connection cannot go on.
	if _, err := c.Conn.Write(c.buf); err != nil {
		c.err = err
		return err
	}
	c.buf = c.buf[:0]
	return nil
}

// Close closes the socket without flushing and without waiting for the
// buffer, so that it also ends a write blocked on the socket. Records
// still in the buffer are lost.
func (c *bufferedConn) Close() error { return c.Conn.Close() }

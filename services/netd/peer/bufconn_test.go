package peer

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// maxRecordSize is the size in bytes of the largest TLS 1.3 record that
// crypto/tls writes: a 5-byte header, 16 KiB of plaintext, the content type
// byte and a 16-byte AEAD tag (RFC 8446, section 5.2).
const maxRecordSize = 5 + 16<<10 + 1 + 16

// recordingConn is a net.Conn that records each Write, and fails every
// Write once err is set.
type recordingConn struct {
	net.Conn // nil, because the tests call only Write
	writes   [][]byte
	err      error
}

func (c *recordingConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func TestBufferedConnWritesThroughBeforeBuffering(t *testing.T) {
	raw := &recordingConn{}
	c := &bufferedConn{Conn: raw}
	c.Write([]byte("hello"))
	c.Write([]byte("world"))
	if len(raw.writes) != 2 {
		t.Fatalf("%d writes reached the socket, expected 2 during the handshake", len(raw.writes))
	}
}

func TestBufferedConnWritesAtFlush(t *testing.T) {
	raw := &recordingConn{}
	c := &bufferedConn{Conn: raw}
	c.startBuffering()
	for _, s := range []string{"one ", "two ", "three"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if len(raw.writes) != 0 {
		t.Fatalf("%d writes reached the socket before Flush, expected 0", len(raw.writes))
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if len(raw.writes) != 1 || string(raw.writes[0]) != "one two three" {
		t.Fatalf("socket got %q, expected one write of \"one two three\"", raw.writes)
	}
	if err := c.Flush(); err != nil || len(raw.writes) != 1 {
		t.Errorf("Flush of an empty buffer: %v, %d writes; expected nil and no write", err, len(raw.writes))
	}
}

func TestBufferedConnWritesFullBuffer(t *testing.T) {
	raw := &recordingConn{}
	c := &bufferedConn{Conn: raw}
	c.startBuffering()

	// Records of the largest TLS 1.3 size, then one larger than the
	// buffer, which goes to the socket after the buffered ones.
	var sent []byte
	for i := range 9 {
		record := bytes.Repeat([]byte{byte(i)}, maxRecordSize)
		c.Write(record)
		sent = append(sent, record...)
	}
	huge := bytes.Repeat([]byte{0xee}, writeBufferSize+1)
	c.Write(huge)
	sent = append(sent, huge...)
	if err := c.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	if got := bytes.Join(raw.writes, nil); !bytes.Equal(got, sent) {
		t.Fatalf("socket got %d bytes that differ from the %d written", len(got), len(sent))
	}
	// Three records fill the buffer, so 9 of them take 3 writes, and the
	// huge write takes one of its own.
	if len(raw.writes) != 4 {
		t.Errorf("%d writes reached the socket, expected 4", len(raw.writes))
	}
	for i, w := range raw.writes[:3] {
		if len(w) > writeBufferSize {
			t.Errorf("write %d has %d bytes, more than the %d-byte buffer", i, len(w), writeBufferSize)
		}
	}
}

func TestBufferedConnSendsMessageInSixWrites(t *testing.T) {
	raw := &recordingConn{}
	c := &bufferedConn{Conn: raw}
	c.startBuffering()

	// A MSG frame's header and kind in one record, then the payload in
	// 16 full ones.
	c.Write(make([]byte, 5+16+1+16))
	for range 16 {
		c.Write(make([]byte, maxRecordSize))
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if len(raw.writes) != 6 {
		t.Errorf("%d writes reached the socket, expected 6", len(raw.writes))
	}
	for i, w := range raw.writes {
		if len(w) > 64<<10 {
			t.Errorf("write %d has %d bytes, more than 64 KiB", i, len(w))
		}
	}
}

func TestBufferedConnKeepsFirstError(t *testing.T) {
	raw := &recordingConn{}
	c := &bufferedConn{Conn: raw}
	c.startBuffering()
	c.Write([]byte("lost"))
	raw.err = syscall.EPIPE
	if err := c.Flush(); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Flush on a broken socket: %v, expected EPIPE", err)
	}

	raw.err = nil
	if _, err := c.Write([]byte("more")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Write after a failed Flush: %v, expected EPIPE again", err)
	}
	if err := c.Flush(); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Flush after a failed Flush: %v, expected EPIPE again", err)
	}
	if len(raw.writes) != 0 {
		t.Errorf("%d writes reached the socket after the failure, expected 0", len(raw.writes))
	}
}

func TestBufferedConnStopBufferingSendsBuffer(t *testing.T) {
	raw := &recordingConn{}
	c := &bufferedConn{Conn: raw}
	c.startBuffering()
	c.Write([]byte("data "))
	if !c.stopBuffering() {
		t.Fatal("stopBuffering = false with no other goroutine on the buffer")
	}
	c.Write([]byte("alert"))
	if got := bytes.Join(raw.writes, nil); string(got) != "data alert" {
		t.Errorf("socket got %q, expected \"data alert\"", got)
	}
}

// linkPair returns the two ends of a link between two new nodes of one
// tree.
func linkPair(t *testing.T) (dialed, served *Link) {
	t.Helper()
	tree := newTestTree(t)
	credA, chainA := tree.node()
	credB, chainB := tree.node()
	ln := listen(t, tree.config(credB, chainB, nil))
	accepted := acceptInBackground(t, ln)

	dialed, err := Dial(testContext(t), tree.config(credA, chainA, nil), "tcp", ln.Addr().String(), credB.Principal())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { dialed.Close() })
	served = nextAccepted(t, accepted)
	t.Cleanup(func() { served.Close() })
	return dialed, served
}

func TestLinkCloseSendsBufferedData(t *testing.T) {
	dialed, served := linkPair(t)
	if _, err := dialed.Write([]byte("last words")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := dialed.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	served.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(served)
	if err != nil {
		t.Fatalf("read until close_notify: %v", err)
	}
	if string(got) != "last words" {
		t.Errorf("peer read %q, expected \"last words\"", got)
	}
}

func TestLinkCloseEndsBlockedFlush(t *testing.T) {
	dialed, _ := linkPair(t)

	// The peer reads nothing, so the socket buffers fill and a Flush
	// blocks.
	written := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<20)
		for {
			if _, err := dialed.Write(chunk); err != nil {
				written <- err
				return
			}
			if err := dialed.Flush(); err != nil {
				written <- err
				return
			}
		}
	}()
	// Close ends the writer whether it has blocked yet or not.
	time.Sleep(100 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- dialed.Close() }()

	select {
	case err := <-written:
		if err == nil {
			t.Error("the writer stopped without an error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Write or Flush still blocked 30 s after Close")
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close still blocked 30 s after the writer stopped")
	}
}

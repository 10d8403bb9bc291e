package bus

import (
	"encoding/binary"
	"fmt"

	"github.com/blocktree/blocktree/services/bus/ring"
)

// Version is the version of the setup messages and of the shared memory
// layout that this package speaks.
const Version = 1

// setupMagic starts the setup message and its reply ("btbs", Blocktree bus
// setup).
const setupMagic = 0x62746273

const (
	setupSize = 12
	replySize = 8
)

// The fds that travel with the setup message, in this order.
const (
	fdMemory     = iota // the sealed memfd with both rings
	fdDialerData        // eventfd: the dialer committed to ring A, the listener reads it
	fdDialerRoom        // eventfd: the listener released in ring A, the dialer may write
	fdListenData        // eventfd: the listener committed to ring B, the dialer reads it
	fdListenRoom        // eventfd: the dialer released in ring B, the listener may write
	setupFds
)

// Reply status codes.
const (
	statusAccepted           = 0
	statusVersionUnsupported = 1
	statusInvalidSetup       = 2
)

// setup is the message that the dialer sends with the fds.
type setup struct {
	version  uint16
	ringSize uint32 // data area of each of the two rings, in bytes
}

// reply is the listener's response to a setup message.
type reply struct {
	version uint16 // the listener's version
	status  uint16
}

func encodeSetup(s setup) []byte {
	b := make([]byte, setupSize)
	binary.BigEndian.PutUint32(b[0:], setupMagic)
	binary.BigEndian.PutUint16(b[4:], s.version)
	binary.BigEndian.PutUint16(b[6:], 0)
	binary.BigEndian.PutUint32(b[8:], s.ringSize)
	return b
}

// decodeSetup parses a setup message. It checks the framing (size, magic,
// reserved field) but not the version or the ring size, which the listener
// checks against its own limits.
func decodeSetup(b []byte) (setup, error) {
	if len(b) != setupSize {
		return setup{}, fmt.Errorf("setup message has %d bytes, want %d", len(b), setupSize)
	}
	if magic := binary.BigEndian.Uint32(b[0:]); magic != setupMagic {
		return setup{}, fmt.Errorf("setup message starts with %#08x, want %#08x (is the peer a bus client?)", magic, setupMagic)
	}
	if flags := binary.BigEndian.Uint16(b[6:]); flags != 0 {
		return setup{}, fmt.Errorf("setup message has reserved field %#04x, want 0", flags)
	}
	return setup{
		version:  binary.BigEndian.Uint16(b[4:]),
		ringSize: binary.BigEndian.Uint32(b[8:]),
	}, nil
}

func encodeReply(r reply) []byte {
	b := make([]byte, replySize)
	binary.BigEndian.PutUint32(b[0:], setupMagic)
	binary.BigEndian.PutUint16(b[4:], r.version)
	binary.BigEndian.PutUint16(b[6:], r.status)
	return b
}

func decodeReply(b []byte) (reply, error) {
	if len(b) != replySize {
		return reply{}, fmt.Errorf("setup reply has %d bytes, want %d", len(b), replySize)
	}
	if magic := binary.BigEndian.Uint32(b[0:]); magic != setupMagic {
		return reply{}, fmt.Errorf("setup reply starts with %#08x, want %#08x (is the listener a bus server?)", magic, setupMagic)
	}
	return reply{
		version: binary.BigEndian.Uint16(b[4:]),
		status:  binary.BigEndian.Uint16(b[6:]),
	}, nil
}

// checkRingSize checks a ring size from a setup message or an option.
func checkRingSize(size uint64, max int) error {
	if size < ring.MinCapacity || size > uint64(max) || size&(size-1) != 0 {
		return fmt.Errorf("ring size %d bytes: want a power of two from %d to %d", size, ring.MinCapacity, max)
	}
	return nil
}

// memorySize returns the size of the memfd for two rings of ringSize bytes.
func memorySize(ringSize int) int { return 2 * ring.Size(ringSize) }

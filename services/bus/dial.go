package bus

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/blocktree/blocktree/services/bus/ring"
	"github.com/blocktree/blocktree/services/bus/shm"
	"golang.org/x/sys/unix"
)

// DefaultSetupTimeout bounds the setup exchange on a new connection.
const DefaultSetupTimeout = 5 * time.Second

// Dialer holds the options for connecting to a listener. The zero value
// uses the defaults.
type Dialer struct {
	// RingSize is the data area of each direction's ring in bytes, a power
	// of two; the largest message is half of it minus 8 bytes. 0 means
	// DefaultRingSize. The listener rejects sizes above its MaxRingSize.
	RingSize int
	// CopyThreshold is the payload size from which Recv returns views into
	// the shared memory instead of copies. 0 means DefaultCopyThreshold.
	CopyThreshold int
	// SetupTimeout bounds the setup exchange. 0 means DefaultSetupTimeout.
	SetupTimeout time.Duration
}

// Dial connects to the listener on the Unix socket at path with the
// default options.
func Dial(path string) (*Conn, error) {
	var d Dialer
	return d.Dial(path)
}

// Dial connects to the listener on the Unix socket at path: it creates the
// shared memory and the eventfds, sends them with the setup message, and
// waits for the listener to accept.
func (d *Dialer) Dial(path string) (*Conn, error) {
	ringSize := withDefault(d.RingSize, DefaultRingSize)
	if err := checkRingSize(uint64(ringSize), ring.MaxCapacity); err != nil {
		return nil, fmt.Errorf("bus dial %s: %w", path, err)
	}

	sock, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("bus dial: %w", err)
	}
	c, err := d.setup(sock, ringSize)
	if err != nil {
		return nil, fmt.Errorf("bus dial %s: %w", path, err)
	}
	return c, nil
}

// setup runs the dialer's side of the setup on sock, which it owns.
func (d *Dialer) setup(sock *net.UnixConn, ringSize int) (c *Conn, err error) {
	var (
		region   *shm.Region
		eventFds = [4]int{-1, -1, -1, -1}
	)
	defer func() {
		if err == nil {
			return
		}
		if sock != nil {
			sock.Close()
		}
		if region != nil {
			region.Close()
		}
		for _, fd := range eventFds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()

	if err := sock.SetDeadline(time.Now().Add(withDefault(d.SetupTimeout, DefaultSetupTimeout))); err != nil {
		return nil, err
	}
	region, err = shm.Create("blocktree-bus", memorySize(ringSize))
	if err != nil {
		return nil, err
	}
	for i := range eventFds {
		if eventFds[i], err = newEventfd(); err != nil {
			return nil, err
		}
	}

	// SO_PEERCRED of a connected socket names the listener from the
	// start, so the dialer can tell before the setup whether the listener
	// is this process.
	peer, err := peerCred(sock)
	if err != nil {
		return nil, err
	}
	offered, err := offerLocalLink(region.Fd(), peer)
	if err != nil {
		return nil, err
	}
	// Removing the link from the registry again is harmless, so the
	// deferred call only matters on the error paths.
	defer takeLocalLink(offered)

	msg := encodeSetup(setup{version: Version, ringSize: uint32(ringSize)})
	rights := unix.UnixRights(region.Fd(), eventFds[0], eventFds[1], eventFds[2], eventFds[3])
	if _, _, err := sock.WriteMsgUnix(msg, rights, nil); err != nil {
		return nil, fmt.Errorf("send setup message: %w", err)
	}

	buf := make([]byte, replySize)
	if _, err := io.ReadFull(sock, buf); err != nil {
		return nil, fmt.Errorf("read setup reply (did the listener reject the setup?): %w", err)
	}
	r, err := decodeReply(buf)
	if err != nil {
		return nil, err
	}
	switch r.status {
	case statusAccepted:
	case statusVersionUnsupported:
		return nil, fmt.Errorf("listener speaks version %d, not version %d", r.version, Version)
	case statusInvalidSetup:
		return nil, fmt.Errorf("listener rejected the setup (ring size %d bytes above its maximum?)", ringSize)
	default:
		return nil, fmt.Errorf("listener rejected the setup with unknown status %d", r.status)
	}

	if err := sock.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	local := takeLocalLink(offered)

	parts := connParts{
		sock:          sock,
		region:        region,
		eventFds:      eventFds,
		ringSize:      ringSize,
		peer:          peer,
		copyThreshold: withDefault(d.CopyThreshold, DefaultCopyThreshold),
		local:         local,
	}
	region, eventFds = nil, [4]int{-1, -1, -1, -1} // owned by newConn now
	c, err = newConn(dialer, parts)
	if err != nil {
		sock = nil // closed by newConn
		return nil, err
	}
	return c, nil
}

// peerCred reads SO_PEERCRED of sock.
func peerCred(sock *net.UnixConn) (Cred, error) {
	raw, err := sock.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("read peer credentials: %w", err)
	}
	var ucred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		ucred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("read peer credentials: %w", err)
	}
	if credErr != nil {
		return Cred{}, fmt.Errorf("read peer credentials: SO_PEERCRED: %w", credErr)
	}
	return Cred{PID: int(ucred.Pid), UID: ucred.Uid, GID: ucred.Gid}, nil
}

func withDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

package bus

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/blocktree/blocktree/services/bus/shm"
	"golang.org/x/sys/unix"
)

// DefaultMaxRingSize is the largest ring a listener accepts by default. A
// dialer makes the listener map twice this much memory per connection.
const DefaultMaxRingSize = 64 << 20

// ErrSetup is wrapped by the errors of Accept for a connection whose setup
// failed. Only that connection is affected; the caller should log the
// error and call Accept again.
var ErrSetup = errors.New("bus connection setup failed")

// ListenConfig holds the options of a listener. The zero value uses the
// defaults.
type ListenConfig struct {
	// MaxRingSize is the largest ring size, in bytes, that a dialer may
	// ask for. 0 means DefaultMaxRingSize.
	MaxRingSize int
	// CopyThreshold is the payload size from which Recv returns views into
	// the shared memory instead of copies. 0 means DefaultCopyThreshold.
	CopyThreshold int
	// SetupTimeout bounds the setup exchange of each accepted connection.
	// Accept serves one setup at a time, so a dialer that sends nothing
	// holds up the others for this long. 0 means DefaultSetupTimeout.
	SetupTimeout time.Duration
}

// Listener accepts bus connections on a Unix socket.
type Listener struct {
	config ListenConfig
	ln     *net.UnixListener
}

// Listen listens on the Unix socket at path with the default options.
func Listen(path string) (*Listener, error) {
	var lc ListenConfig
	return lc.Listen(path)
}

// Listen listens on the Unix socket at path. The socket file is removed
// when the Listener is closed.
func (lc *ListenConfig) Listen(path string) (*Listener, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("bus listen: %w", err)
	}
	return &Listener{config: *lc, ln: ln}, nil
}

// Addr returns the listener's socket address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops listening. Accepted connections stay open.
func (l *Listener) Close() error { return l.ln.Close() }

// Accept waits for a dialer and runs the setup. It receives the shared
// memory and the eventfds, and checks the version, the ring size, the
// seals and size of the memory and the type of each eventfd. Then it maps
// the memory and replies. An error wrapping ErrSetup concerns only that
// dialer, and any other error is the listener's.
func (l *Listener) Accept() (*Conn, error) {
	sock, err := l.ln.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("bus accept: %w", err)
	}
	c, err := l.setup(sock)
	if err != nil {
		return nil, fmt.Errorf("bus accept: %w: %w", ErrSetup, err)
	}
	return c, nil
}

// setup runs the listener's side of the setup on sock, which it owns.
func (l *Listener) setup(sock *net.UnixConn) (*Conn, error) {
	if err := sock.SetDeadline(time.Now().Add(withDefault(l.config.SetupTimeout, DefaultSetupTimeout))); err != nil {
		sock.Close()
		return nil, err
	}
	peer, err := peerCred(sock)
	if err != nil {
		sock.Close()
		return nil, err
	}

	s, fds, err := readSetup(sock)
	if err != nil {
		sock.Close()
		return nil, fmt.Errorf("from pid %d: %w", peer.PID, err)
	}
	c, status, err := l.connect(sock, s, fds, peer)
	if err != nil {
		// Best effort: tell the dialer why before the socket closes.
		_, _ = sock.Write(encodeReply(reply{version: Version, status: status}))
		sock.Close()
		return nil, fmt.Errorf("from pid %d: %w", peer.PID, err)
	}

	if _, err := sock.Write(encodeReply(reply{version: Version, status: statusAccepted})); err != nil {
		c.Close()
		return nil, fmt.Errorf("send setup reply to pid %d: %w", peer.PID, err)
	}
	if err := sock.SetDeadline(time.Time{}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// readSetup reads the setup message and the fds that come with it. On
// error it closes every fd it received.
func readSetup(sock *net.UnixConn) (setup, []int, error) {
	buf := make([]byte, setupSize)
	// Room for one more fd than expected, so that extra fds are seen and
	// rejected instead of being cut off silently.
	oob := make([]byte, unix.CmsgSpace((setupFds+1)*4))
	n, oobn, flags, _, err := sock.ReadMsgUnix(buf, oob)
	if err != nil {
		return setup{}, nil, fmt.Errorf("read setup message: %w", err)
	}

	fds, fdErr := parseRights(oob[:oobn])
	fail := func(err error) (setup, []int, error) {
		closeFds(fds)
		return setup{}, nil, err
	}
	if fdErr != nil {
		return fail(fdErr)
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return fail(fmt.Errorf("setup message carried more than %d fds or other control data", setupFds+1))
	}
	if len(fds) != setupFds {
		return fail(fmt.Errorf("setup message carried %d fds, want %d (memfd and 4 eventfds)", len(fds), setupFds))
	}
	// A stream socket may split the message; the fds come with its first
	// byte.
	if n < setupSize {
		if _, err := io.ReadFull(sock, buf[n:]); err != nil {
			return fail(fmt.Errorf("read setup message: %w", err))
		}
	}

	s, err := decodeSetup(buf)
	if err != nil {
		return fail(err)
	}
	return s, fds, nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control data of the setup message: %w", err)
	}
	var fds []int
	var parseErr error
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			parseErr = fmt.Errorf("setup message carried control message level %d type %d, want SCM_RIGHTS", m.Header.Level, m.Header.Type)
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			parseErr = fmt.Errorf("parse fds of the setup message: %w", err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, parseErr
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// connect checks the setup and the fds and builds the Conn. It takes
// ownership of fds. On error it returns the status for the reply.
func (l *Listener) connect(sock *net.UnixConn, s setup, fds []int, peer Cred) (*Conn, uint16, error) {
	if s.version != Version {
		closeFds(fds)
		return nil, statusVersionUnsupported, fmt.Errorf("setup version %d is not supported; this listener speaks version %d", s.version, Version)
	}
	maxRing := withDefault(l.config.MaxRingSize, DefaultMaxRingSize)
	if err := checkRingSize(uint64(s.ringSize), maxRing); err != nil {
		closeFds(fds)
		return nil, statusInvalidSetup, fmt.Errorf("setup message: %w", err)
	}
	ringSize := int(s.ringSize)

	var eventFds [4]int
	copy(eventFds[:], fds[fdMemory+1:])
	for _, fd := range eventFds {
		if err := checkEventfd(fd); err != nil {
			closeFds(fds)
			return nil, statusInvalidSetup, err
		}
	}
	region, err := shm.Open(fds[fdMemory], memorySize(ringSize))
	if err != nil {
		closeFds(eventFds[:])
		return nil, statusInvalidSetup, err
	}
	local := claimLocalLink(region.Fd(), peer)

	c, err := newConn(listener, connParts{
		sock:          sock,
		region:        region,
		eventFds:      eventFds,
		ringSize:      ringSize,
		peer:          peer,
		copyThreshold: withDefault(l.config.CopyThreshold, DefaultCopyThreshold),
		local:         local,
	})
	if err != nil {
		return nil, statusInvalidSetup, err
	}
	return c, statusAccepted, nil
}

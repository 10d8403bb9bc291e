package endpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// DefaultRunDir is the run directory of the appliance's node.
const DefaultRunDir = "/run/bt/bus"

// NetdName is the service name of the network daemon on every node.
const NetdName = "netd"

// maxSocketPath is the longest socket path that fits sockaddr_un's
// 108-byte sun_path with its terminating NUL.
const maxSocketPath = 107

// HelloTimeout bounds the wait for a dialer's hello in Accept, and for
// netd's open reply in Dial when the context has no deadline.
const HelloTimeout = 5 * time.Second

// ErrHello is wrapped by the errors of Accept for a connection whose hello
// was rejected. Only that connection is affected.
var ErrHello = errors.New("bus hello rejected")

// SocketPath returns the Unix socket of a's endpoint under runDir. It
// fails when the path does not fit a Unix socket address.
func SocketPath(runDir string, a Address) (string, error) {
	path := filepath.Join(runDir, a.Kind, a.Name)
	if len(path) > maxSocketPath {
		return "", fmt.Errorf("socket path %s is %d bytes, longer than the %d a Unix socket allows: choose a shorter run directory", path, len(path), maxSocketPath)
	}
	return path, nil
}

// Listener accepts connections to one local endpoint.
type Listener struct {
	ln       *bus.Listener
	addr     Address
	uid      uint32
	rejected atomic.Uint64
}

// Register listens at a's socket under runDir, creating the directories it
// needs. A socket file left by an endpoint that is gone is replaced; a live
// one makes Register fail.
func Register(runDir string, a Address) (*Listener, error) {
	path, err := SocketPath(runDir, a)
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", a, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("register %s: %w", a, err)
	}
	if err := removeStale(path); err != nil {
		return nil, fmt.Errorf("register %s: %w", a, err)
	}
	ln, err := bus.Listen(path)
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", a, err)
	}
	return &Listener{ln: ln, addr: a, uid: uint32(os.Getuid())}, nil
}

// removeStale removes path if it is a socket on which no process listens.
func removeStale(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket: remove it or choose another run directory", path)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
	if err == nil {
		return fmt.Errorf("%s: another process serves this endpoint already: stop it first", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("check %s for a live endpoint: %w", path, err)
	}
	return os.Remove(path)
}

// Address returns the endpoint's address.
func (l *Listener) Address() Address { return l.addr }

// Rejected returns the number of connections whose hello was rejected.
func (l *Listener) Rejected() uint64 { return l.rejected.Load() }

// Close stops listening and removes the socket file. Accepted connections
// stay open.
func (l *Listener) Close() error { return l.ln.Close() }

// Accept waits for a connection, reads its hello and returns it with its
// origin. An error wrapping ErrHello or bus.ErrSetup concerns only that
// connection, so the caller logs it and calls Accept again; any other
// error is the listener's.
//
// NOTE: Accept reads one hello at a time, so a dialer that sends none
// holds up the next connections for up to HelloTimeout.
func (l *Listener) Accept() (*bus.Conn, Origin, error) {
	conn, err := l.ln.Accept()
	if err != nil {
		return nil, Origin{}, err
	}
	origin, err := l.readHello(conn)
	if err != nil {
		l.rejected.Add(1)
		conn.Close()
		return nil, Origin{}, fmt.Errorf("endpoint %s: %w from pid %d uid %d: %w", l.addr, ErrHello, conn.Peer().PID, conn.Peer().UID, err)
	}
	return conn, origin, nil
}

// readHello reads the first message of conn and decides whom the
// connection speaks for.
func (l *Listener) readHello(conn *bus.Conn) (Origin, error) {
	ctx, cancel := context.WithTimeout(context.Background(), HelloTimeout)
	defer cancel()
	msg, err := conn.Recv(ctx)
	if err != nil {
		return Origin{}, fmt.Errorf("read hello: %w", err)
	}
	defer msg.Release()
	if msg.Kind != KindHello {
		return Origin{}, fmt.Errorf("%w: first message has kind %#x, expected the hello %#x", ErrMalformed, msg.Kind, KindHello)
	}
	claim, err := decodeHello(msg.Data)
	if err != nil {
		return Origin{}, err
	}
	if claim == nil {
		return Origin{Principal: l.addr.Node}, nil
	}

	if uid := conn.Peer().UID; !mayClaim(uid, l.uid) {
		return Origin{}, fmt.Errorf("process of uid %d claims remote principal %s, but only netd (uid 0 or %d) may", uid, claim.Principal, l.uid)
	}
	if err := claim.Chain.Verify(l.addr.Root, claim.Principal, l.addr.String(), time.Now()); err != nil {
		return Origin{}, fmt.Errorf("claimed principal %s may not reach %s: %w", claim.Principal, l.addr, err)
	}
	return *claim, nil
}

// Dial connects to the endpoint at address on behalf of this node, whose
// principal is self. An address on this node is reached directly through
// its socket under runDir. Any other is reached through the local netd,
// which must open a circuit to it before ctx ends. Errors wrap ErrNoEndpoint,
// ErrUnreachable, ErrUnauthorized, ErrTimedOut or ErrPeerGone where one
// applies.
func Dial(ctx context.Context, runDir string, self principal.Principal, address string) (*bus.Conn, error) {
	a, err := Parse(address)
	if err != nil {
		return nil, err
	}
	if a.Node == self {
		return DialOrigin(ctx, runDir, a, nil)
	}

	// Only the kind and name of an address choose its socket.
	netd := Service(a.Root, self, NetdName)
	conn, err := DialOrigin(ctx, runDir, netd, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s through netd: %w", a, err)
	}
	if err := open(ctx, conn, a); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dial %s through netd: %w", a, err)
	}
	return conn, nil
}

// open sends the open request on a connection to netd and waits for the
// reply.
func open(ctx context.Context, conn *bus.Conn, a Address) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, HelloTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	if err := conn.Send(ctx, KindOpen, encodeOpen(openRequest{deadline: deadline.UnixNano(), address: a.String()})); err != nil {
		return sendError(ctx, err)
	}
	msg, err := conn.Recv(ctx)
	if err != nil {
		return sendError(ctx, err)
	}
	defer msg.Release()
	switch msg.Kind {
	case KindOpened:
		return nil
	case KindOpenFailed:
		remote, err := decodeOpenFailed(msg.Data)
		if err != nil {
			return err
		}
		return remote
	default:
		return fmt.Errorf("%w: netd replied with kind %#x to an open request", ErrMalformed, msg.Kind)
	}
}

// sendError maps a failed Send or Recv to the errors of docs/msg.md.
func sendError(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w: %w", ErrTimedOut, err)
	}
	return err
}

// DialOrigin connects to the endpoint a on this node through its socket
// under runDir and sends the hello. A nil origin speaks for this node;
// netd passes the remote principal and chain it verified. The error wraps
// ErrNoEndpoint when nothing listens at a.
func DialOrigin(ctx context.Context, runDir string, a Address, origin *Origin) (*bus.Conn, error) {
	path, err := SocketPath(runDir, a)
	if err != nil {
		return nil, err
	}
	conn, err := dialSocket(ctx, path, origin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a, err)
	}
	return conn, nil
}

// DialSocket connects to the endpoint whose socket is path and sends a
// hello that speaks for this node. Tools use it to reach a local service
// by its socket, without the node's principals. The error wraps
// ErrNoEndpoint when nothing listens at path.
func DialSocket(ctx context.Context, path string) (*bus.Conn, error) {
	conn, err := dialSocket(ctx, path, nil)
	if err != nil {
		return nil, fmt.Errorf("endpoint socket %s: %w", path, err)
	}
	return conn, nil
}

func dialSocket(ctx context.Context, path string, origin *Origin) (*bus.Conn, error) {
	hello, err := encodeHello(origin)
	if err != nil {
		return nil, err
	}
	d := bus.Dialer{SetupTimeout: HelloTimeout}
	if deadline, ok := ctx.Deadline(); ok {
		d.SetupTimeout = max(time.Until(deadline), time.Millisecond)
	}
	conn, err := d.Dial(path)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%w: nothing listens on %s", ErrNoEndpoint, path)
	}
	if err != nil {
		return nil, err
	}
	if err := conn.Send(ctx, KindHello, hello); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send hello: %w", sendError(ctx, err))
	}
	return conn, nil
}

// mayClaim reports whether a process of peerUID may claim a remote origin
// at an endpoint run by ownUID: root, or the endpoint's own user, which is
// the user netd runs as.
func mayClaim(peerUID, ownUID uint32) bool { return peerUID == 0 || peerUID == ownUID }

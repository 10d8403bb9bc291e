package proto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// DefaultMaxInflight is the number of requests that one connection may have
// running at once when ServerOptions.MaxInflight is 0.
const DefaultMaxInflight = 256

// ServerOptions configures Serve. The zero value serves every peer as the
// uid, gid and pid that the kernel reports for it, with the zero principal.
type ServerOptions struct {
	// TrustCallers reports whether the peer with the given credentials may
	// name the Caller of each request itself, as the FUSE server does when
	// it relays the kernel's per-request uid, gid and pid. A peer that is
	// not trusted acts as itself. Nil trusts no peer.
	TrustCallers func(cred *unix.Ucred) bool

	// Principal returns the principal on whose behalf the peer acts; the
	// server calls it once per connection. For a trusted peer it fills in
	// only requests whose Caller has the zero principal. Nil means the zero
	// principal.
	Principal func(cred *unix.Ucred) principal.Principal

	// MaxInflight is the number of requests that one connection may have
	// running at once. 0 means DefaultMaxInflight.
	//
	// NOTE: at the limit the server reads nothing more from the
	// connection, interrupts included, until a request finishes. A
	// connection whose running requests all wait for locks stalls until
	// one of them is granted.
	MaxInflight int

	// Notifier sends change notifications to the connections that
	// subscribe. With nil, every subscribe gets EOPNOTSUPP.
	Notifier *Notifier

	// Activity, if set, is called for every request the server decodes,
	// so that the owner can tell when the file system is idle. It must
	// return quickly.
	Activity func()

	// Logger receives the server's records. Nil means slog.Default().
	Logger *slog.Logger
}

// server is the state that Serve shares between connections.
type server struct {
	fs     fsapi.FS
	opts   ServerOptions
	log    *slog.Logger
	failed rateLimiter // file-system errors that are not a syscall.Errno

	// malformed counts the requests that were dropped because they did
	// not decode, were not a request, or reused the id of a running
	// request. malformedLog limits their log records.
	malformed    atomic.Uint64
	malformedLog rateLimiter
	// inPlaceWrites counts the Write requests whose data reached the file
	// system as a view into shared memory, without a copy.
	inPlaceWrites atomic.Uint64
	// inline counts the requests that ran in their connection's reading
	// goroutine, for tests.
	inline atomic.Uint64

	mu    sync.Mutex
	conns map[*serverConn]struct{}
}

// Serve accepts bus connections on l and serves fs on each until ctx ends
// or l fails. Each request runs in its own goroutine, so a blocking SetLk
// does not hold up the others, and responses go out in the order they
// finish.
//
// When a connection ends, including when the peer exits, the server
// cancels the connection's running requests, without sending their
// responses, and waits for them. It then unlocks, over the whole file,
// every lock owner that called SetLk on a handle of the connection, and
// calls Release or ReleaseDir on every handle that the connection opened
// and did not release. A flock is tied to its handle, so the file system
// drops it on Release.
//
// The data that a Write request passes to fs is valid only until fs.Write
// returns. For a large Write it is a view into the memory that the server
// shares with the peer. The peer can change it while fs reads it, so fs
// must copy what it checks, as it does when it encrypts the data into
// blocks. The buffer that fs.Read fills is shared memory too. The peer can
// read and write it before the response is sent, so fs must not read back
// from it.
//
// Serve closes l and every connection before it returns. It returns nil
// when ctx ends, and otherwise the error of Accept.
func Serve(ctx context.Context, l *bus.Listener, fs fsapi.FS, opts ServerOptions) error {
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = DefaultMaxInflight
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	socket := l.Addr().String()
	logger = logger.With("path", socket)
	s := &server{fs: fs, opts: opts, log: logger, conns: make(map[*serverConn]struct{})}
	if testHookServe != nil {
		testHookServe(s)
	}

	stopClosing := context.AfterFunc(ctx, func() { l.Close() })
	defer stopClosing()

	var wg sync.WaitGroup
	defer func() {
		l.Close()
		s.closeConns()
		wg.Wait()
		logger.Info("storage protocol server stopped")
	}()

	logger.Info("storage protocol server started")
	var delay time.Duration
	var setupFailed rateLimiter
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, bus.ErrSetup) {
				if ok, suppressed := setupFailed.allow(); ok {
					logger.Warn("rejected a bus connection whose setup failed", "error", err, "suppressed", suppressed)
				}
				continue
			}
			if !isTemporaryAccept(err) {
				logger.Error("accept failed; stopping", "error", err)
				return fmt.Errorf("accept on %s: %w", socket, err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			logger.Warn("accept failed; retrying", "error", err, "delay", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0

		sc := s.newConn(ctx, conn)
		wg.Go(func() {
			sc.serve()
			s.mu.Lock()
			delete(s.conns, sc)
			s.mu.Unlock()
		})
	}
}

// testHookServe, when set by a test, receives each server that Serve
// starts, so that the test can read its counters.
var testHookServe func(*server)

// isTemporaryAccept reports whether Accept failed for want of a resource
// that may free up, or because a client gave up while being accepted.
func isTemporaryAccept(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

func (s *server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sc := range s.conns {
		sc.close()
	}
}

// newConn registers the connection and works out whom it acts for from
// the peer's credentials.
func (s *server) newConn(ctx context.Context, conn *bus.Conn) *serverConn {
	peer := conn.Peer()
	cred := &unix.Ucred{Pid: int32(peer.PID), Uid: peer.UID, Gid: peer.GID}
	logger := s.log.With("peer", cred.Pid)
	groups, err := conn.PeerGroups()
	if err != nil {
		logger.Warn("peer's supplementary groups are unknown; serving it with none", "error", err)
	}

	sc := &serverConn{
		srv:      s,
		conn:     conn,
		mem:      newSharedMemory(conn),
		log:      logger,
		trusted:  s.opts.TrustCallers != nil && s.opts.TrustCallers(cred),
		handles:  make(map[fsapi.HandleID]*openHandle),
		inflight: make(map[uint64]context.CancelFunc),
		slots:    make(chan struct{}, s.opts.MaxInflight),
	}
	if s.opts.Principal != nil {
		sc.principal = s.opts.Principal(cred)
	}
	sc.peerCaller = fsapi.Caller{
		UID:       cred.Uid,
		GID:       cred.Gid,
		Groups:    groups,
		PID:       uint32(cred.Pid),
		Principal: sc.principal,
	}
	// Requests' contexts derive from sc.ctx, so the Notifier can tell
	// which connection made a change.
	sc.ctx, sc.cancel = context.WithCancel(context.WithValue(ctx, originKey{}, sc))
	sc.quietCtx = context.WithValue(sc.ctx, quietKey{}, true)
	if link := conn.LocalLink(); link != nil {
		localServers.Store(link, sc)
	}

	s.mu.Lock()
	s.conns[sc] = struct{}{}
	s.mu.Unlock()
	logger.Debug("connection accepted", "uid", cred.Uid, "gid", cred.Gid, "trusted", sc.trusted, "principal", sc.principal.String())
	return sc
}

// dropMalformed counts a request that the server drops and logs it,
// rate-limited.
func (s *server) dropMalformed(logger *slog.Logger, reason string, err error) {
	total := s.malformed.Add(1)
	if ok, suppressed := s.malformedLog.allow(); ok {
		logger.Warn("dropped a malformed request", "reason", reason, "error", err, "dropped", total, "suppressed", suppressed)
	}
}

// rateLimiter lets through one log record per interval and counts the rest.
type rateLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const logInterval = time.Second

// allow reports whether to log now and how many records it held back since
// the last one.
func (r *rateLimiter) allow() (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.last) < logInterval {
		r.suppressed++
		return false, 0
	}
	r.last = now
	n := r.suppressed
	r.suppressed = 0
	return true, n
}

package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blocktree/blocktree/internal/ratelog"
	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/netd/peer"
)

// Defaults for the zero fields of Options.
const (
	DefaultKeepalive   = 5 * time.Second
	DefaultOpenTimeout = 10 * time.Second
)

// Options configure a Router.
type Options struct {
	// Node is this node's credential.
	Node *principal.Credential
	// Root is the root principal of this node's tree. Links from other
	// nodes must present a chain from it. In host mode it is the node's
	// own principal.
	Root principal.Principal
	// RunDir is the node's run directory of bus endpoints
	// (endpoint.DefaultRunDir on the appliance).
	RunDir string
	// Listener accepts links from other nodes; nil accepts none. The
	// Router owns it.
	Listener net.Listener
	// PeersFile is the peers table (ParsePeers), read again at each dial
	// so that edits apply to the next link. Empty means no peers.
	PeersFile string
	// ChainsDir holds this node's chains for other trees (LoadChains),
	// read again at each dial. Empty means none.
	ChainsDir string
	// Window is the credit window of each circuit and direction in bytes.
	// 0 means DefaultWindow. Values below one message of MaxMessage bytes
	// are raised to that.
	Window int
	// Keepalive is the interval of the PING frames that each side sends
	// on a link. A link on which nothing arrives for three intervals is
	// closed. 0 means DefaultKeepalive.
	Keepalive time.Duration
	// HandshakeTimeout bounds the setup of a link, as peer.Config's.
	HandshakeTimeout time.Duration
	// Logger receives the router's log lines. nil means slog.Default().
	Logger *slog.Logger
}

// Counters are the router's counts since it started.
type Counters struct {
	LinksDialed       uint64 // links this node made
	LinksAccepted     uint64 // links other nodes made to this node
	RejectedLinks     uint64 // links rejected during setup by this node's listener
	MalformedFrames   uint64 // frames that closed their link
	UnauthorizedOpens uint64 // circuits refused because the chain did not cover the address
	RejectedLocal     uint64 // local connections refused: a bad hello or open request, or a remote origin
	Panics            uint64 // goroutines that recovered from a panic on peer input
}

// Router is netd's forwarding core: it serves the local netd endpoint,
// holds one link per peer node, and relays circuits over them.
type Router struct {
	opts  Options
	self  principal.Principal
	local *endpoint.Listener
	peers *peer.Listener // nil without Options.Listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	dialed   map[principal.Principal]*link
	dialing  map[principal.Principal]chan struct{} // closed when the dial ends
	accepted map[*link]struct{}

	linksDialed, linksAccepted, malformed, unauthorized, rejectedLocal, panics atomic.Uint64
	logLimit                                                                   ratelog.Limiter
}

// New starts a router: it registers the netd endpoint under opts.RunDir
// and accepts links on opts.Listener.
func New(opts Options) (*Router, error) {
	if opts.Node == nil || opts.Root.IsZero() || opts.RunDir == "" {
		return nil, errors.New("route: Options.Node, Root and RunDir are required")
	}
	if opts.Window == 0 {
		opts.Window = DefaultWindow
	}
	opts.Window = max(opts.Window, MaxMessage+msgOverhead)
	if opts.Keepalive <= 0 {
		opts.Keepalive = DefaultKeepalive
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	self := opts.Node.Principal()
	opts.Logger = opts.Logger.With("node", self.String())

	local, err := endpoint.Register(opts.RunDir, endpoint.Service(opts.Root, self, endpoint.NetdName))
	if err != nil {
		return nil, fmt.Errorf("netd: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{
		opts: opts, self: self, local: local, ctx: ctx, cancel: cancel,
		dialed:   make(map[principal.Principal]*link),
		dialing:  make(map[principal.Principal]chan struct{}),
		accepted: make(map[*link]struct{}),
	}
	if opts.Listener != nil {
		r.peers, err = peer.Listen(r.peerConfig(opts.Root, nil), opts.Listener)
		if err != nil {
			local.Close()
			cancel()
			return nil, fmt.Errorf("netd: %w", err)
		}
		r.goSafe("accept links", r.acceptLinks)
	}
	r.goSafe("accept local", r.acceptLocal)
	opts.Logger.Info("netd started", "run", opts.RunDir, "peers", opts.PeersFile, "chains", opts.ChainsDir)
	return r, nil
}

func (r *Router) peerConfig(root principal.Principal, chain capability.Chain) peer.Config {
	return peer.Config{Node: r.opts.Node, Root: root, Chain: chain, HandshakeTimeout: r.opts.HandshakeTimeout, Logger: r.opts.Logger}
}

// Counters returns the router's counts.
func (r *Router) Counters() Counters {
	c := Counters{
		LinksDialed:       r.linksDialed.Load(),
		LinksAccepted:     r.linksAccepted.Load(),
		MalformedFrames:   r.malformed.Load(),
		UnauthorizedOpens: r.unauthorized.Load(),
		RejectedLocal:     r.rejectedLocal.Load(),
		Panics:            r.panics.Load(),
	}
	if r.peers != nil {
		c.RejectedLinks = r.peers.Rejected()
	}
	return c
}

// Addr returns the address that links are accepted on, or nil.
func (r *Router) Addr() net.Addr {
	if r.peers == nil {
		return nil
	}
	return r.peers.Addr()
}

// Close stops accepting, closes every link, which ends their circuits
// with ErrPeerGone on both sides, and waits for the router's goroutines.
func (r *Router) Close() error {
	r.cancel()
	err := r.local.Close()
	if r.peers != nil {
		err = errors.Join(err, r.peers.Close())
	}
	r.mu.Lock()
	var links []*link
	for _, l := range r.dialed {
		links = append(links, l)
	}
	for l := range r.accepted {
		links = append(links, l)
	}
	r.mu.Unlock()
	for _, l := range links {
		l.fail(fmt.Errorf("netd stopping: %w", endpoint.ErrPeerGone))
	}
	r.wg.Wait()
	r.opts.Logger.Info("netd stopped", "counters", fmt.Sprintf("%+v", r.Counters()))
	return err
}

// goSafe runs f in a goroutine that Close waits for. A panic in f, which
// handles peer input, is logged and counted instead of ending the process.
func (r *Router) goSafe(what string, f func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.recoverPanic(what)
		f()
	}()
}

func (r *Router) recoverPanic(what string) {
	if v := recover(); v != nil {
		r.panics.Add(1)
		r.opts.Logger.Error("netd goroutine panicked; its link or circuit is closed", "goroutine", what, "panic", fmt.Sprint(v))
	}
}

// logLimited logs a warning unless too many were logged this second.
func (r *Router) logLimited(msg string, attrs ...any) {
	ok, suppressed := r.logLimit.Allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		attrs = append(attrs, "not_logged", suppressed)
	}
	r.opts.Logger.Warn(msg, attrs...)
}

func (r *Router) acceptLinks() {
	for {
		pl, err := r.peers.Accept()
		if err != nil {
			return
		}
		l := newLink(r, pl)
		r.mu.Lock()
		if r.ctx.Err() != nil {
			r.mu.Unlock()
			pl.Close()
			return
		}
		r.accepted[l] = struct{}{}
		r.mu.Unlock()
		r.linksAccepted.Add(1)
		r.opts.Logger.Info("link accepted", "peer", pl.RemoteAddr().String(), "principal", pl.Peer().String(), "scope", pl.Scope())
		l.start()
	}
}

// forget removes a failed link so that the next open dials again.
func (r *Router) forget(l *link) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dialed[l.pl.Peer()] == l {
		delete(r.dialed, l.pl.Peer())
	}
	delete(r.accepted, l)
}

func (r *Router) acceptLocal() {
	for {
		conn, origin, err := r.local.Accept()
		if errors.Is(err, endpoint.ErrHello) || errors.Is(err, bus.ErrSetup) {
			r.rejectedLocal.Add(1)
			r.logLimited("local connection rejected", "error", err)
			continue
		}
		if err != nil {
			if r.ctx.Err() == nil {
				r.opts.Logger.Error("netd endpoint stopped accepting", "error", err)
			}
			return
		}
		r.goSafe("local circuit", func() { r.serveLocal(conn, origin) })
	}
}

// serveLocal reads the open request of a local connection, opens the
// circuit and relays it.
func (r *Router) serveLocal(conn *bus.Conn, origin endpoint.Origin) {
	ctx, cancel := context.WithTimeout(r.ctx, endpoint.HelloTimeout)
	msg, err := conn.Recv(ctx)
	cancel()
	if err != nil {
		r.rejectedLocal.Add(1)
		r.logLimited("local connection sent no open request", "pid", conn.Peer().PID, "error", err)
		conn.Close()
		return
	}
	if msg.Kind != endpoint.KindOpen {
		msg.Release()
		r.rejectedLocal.Add(1)
		r.rejectLocal(conn, endpoint.CodeInternal, fmt.Sprintf("first message after the hello has kind %#x, expected an open request", msg.Kind))
		return
	}
	a, deadline, err := endpoint.DecodeOpen(msg.Data)
	msg.Release()
	if err != nil {
		r.rejectedLocal.Add(1)
		r.rejectLocal(conn, endpoint.CodeInternal, err.Error())
		return
	}
	if origin.Remote {
		r.rejectedLocal.Add(1)
		r.logLimited("local connection rejected: netd relays only for its own node", "principal", origin.Principal.String(), "path", a.String())
		r.rejectLocal(conn, endpoint.CodeUnauthorized, "netd relays only for its own node, not for remote principal "+origin.Principal.String())
		return
	}
	if a.Node == r.self {
		r.rejectLocal(conn, endpoint.CodeNoEndpoint, a.String()+" is on this node: dial it directly")
		return
	}

	ctx, cancel = r.openContext(deadline)
	defer cancel()
	l, err := r.linkTo(ctx, a)
	if err != nil {
		r.rejectLocal(conn, endpoint.CodeOf(err), err.Error())
		return
	}
	c, err := l.open(ctx, a, deadline)
	if err != nil {
		r.rejectLocal(conn, endpoint.CodeOf(err), err.Error())
		return
	}
	if err := conn.Send(ctx, endpoint.KindOpened, nil); err != nil {
		r.opts.Logger.Debug("local process left before its circuit opened", "path", a.String(), "pid", conn.Peer().PID, "error", err)
		c.close(true)
		conn.Close()
		return
	}
	r.opts.Logger.Debug("circuit opened", append(l.logAttrs(), "path", a.String(), "circuit", c.id)...)
	c.attach(conn)
}

// openContext returns a context that ends at an open request's deadline,
// or after DefaultOpenTimeout when it has none.
func (r *Router) openContext(deadline int64) (context.Context, context.CancelFunc) {
	if deadline == 0 {
		return context.WithTimeout(r.ctx, DefaultOpenTimeout)
	}
	return context.WithDeadline(r.ctx, time.Unix(0, deadline))
}

// rejectLocal replies to a local open request with an error and closes
// the connection.
func (r *Router) rejectLocal(conn *bus.Conn, code endpoint.Code, reason string) {
	ctx, cancel := context.WithTimeout(r.ctx, time.Second)
	defer cancel()
	if err := conn.Send(ctx, endpoint.KindOpenFailed, endpoint.EncodeOpenFailed(code, reason)); err != nil {
		r.opts.Logger.Debug("open failure not delivered", "pid", conn.Peer().PID, "error", err)
	}
	// The client reads the reply before it reads the close: bus messages
	// committed before the end stay readable.
	conn.Close()
}

// linkTo returns the link to a's node, dialing it when there is none.
// Concurrent callers for one node share one dial.
func (r *Router) linkTo(ctx context.Context, a endpoint.Address) (*link, error) {
	for {
		r.mu.Lock()
		if l, ok := r.dialed[a.Node]; ok {
			r.mu.Unlock()
			return l, nil
		}
		wait, busy := r.dialing[a.Node]
		if !busy {
			done := make(chan struct{})
			r.dialing[a.Node] = done
			r.mu.Unlock()
			l, err := r.dial(ctx, a)
			r.mu.Lock()
			delete(r.dialing, a.Node)
			close(done)
			if err == nil {
				if r.ctx.Err() != nil {
					r.mu.Unlock()
					l.pl.Close()
					return nil, fmt.Errorf("netd stopping: %w", endpoint.ErrUnreachable)
				}
				r.dialed[a.Node] = l
			}
			r.mu.Unlock()
			if err != nil {
				return nil, err
			}
			l.start()
			return l, nil
		}
		r.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("link to %s: %w: waiting for the dial: %w", a.Node, endpoint.ErrTimedOut, ctx.Err())
		}
	}
}

// dial makes a link to a's node with the address from the peers table and
// this node's chain for a's tree.
func (r *Router) dial(ctx context.Context, a endpoint.Address) (*link, error) {
	peers, err := LoadPeers(r.opts.PeersFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", endpoint.ErrUnreachable, err)
	}
	hostPort, ok := peers[a.Node]
	switch {
	case !ok && r.opts.PeersFile == "":
		return nil, fmt.Errorf("%w: node %s is not a peer because netd has no peers file: start the node with one (bt node --peers FILE)", endpoint.ErrUnreachable, a.Node)
	case !ok:
		return nil, fmt.Errorf("%w: node %s is not in the peers file %s: add a line with its principal and HOST:PORT", endpoint.ErrUnreachable, a.Node, r.opts.PeersFile)
	}
	var chain capability.Chain
	if a.Root != r.self {
		chains, err := LoadChains(r.opts.ChainsDir)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", endpoint.ErrUnauthorized, err)
		}
		if chain, ok = chains[a.Root]; !ok {
			return nil, fmt.Errorf("%w: no chain for tree %s in the chains directory %q: ask its owner for a writecap (bt keys issue) and put it there as %s%s", endpoint.ErrUnauthorized, a.Root, r.opts.ChainsDir, a.Root, ChainSuffix)
		}
	}

	pl, err := peer.Dial(ctx, r.peerConfig(a.Root, chain), "tcp", hostPort, a.Node)
	if err != nil {
		r.opts.Logger.Warn("link dial failed", "peer", hostPort, "principal", a.Node.String(), "error", err)
		return nil, dialError(ctx, err)
	}
	r.linksDialed.Add(1)
	r.opts.Logger.Info("link dialed", "peer", hostPort, "principal", a.Node.String(), "scope", pl.Scope())
	return newLink(r, pl), nil
}

// dialError maps a failed peer.Dial to the errors of docs/msg.md.
func dialError(ctx context.Context, err error) error {
	var chainErr *capability.ChainError
	switch {
	case errors.Is(err, peer.ErrRejected), errors.As(err, &chainErr):
		return fmt.Errorf("%w: %w", endpoint.ErrUnauthorized, err)
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %w", endpoint.ErrTimedOut, err)
	}
	return fmt.Errorf("%w: %w", endpoint.ErrUnreachable, err)
}

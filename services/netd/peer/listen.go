package peer

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blocktree/blocktree/internal/ratelog"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Listener accepts links from peer nodes. It runs the handshakes in the
// background, up to cfg.MaxPendingHandshakes at once, so a slow or hostile
// peer holds up no other. Accept returns only links whose peer passed
// every check. A rejected peer is counted (Rejected) and logged at Warn
// with the keys peer, principal (once known) and error.
type Listener struct {
	cfg   Config
	key   *ecdsa.PrivateKey
	ln    net.Listener
	links chan *Link

	ctx    context.Context // cancelled by Close, which ends the pending handshakes
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and the pending handshakes

	stopOnce sync.Once
	done     chan struct{} // closed when the listener stops
	err      error         // the reason the listener stopped, set before done is closed

	rejected atomic.Uint64
	logLimit ratelog.Limiter
}

// Listen accepts links on ln, which the Listener owns from now on.
func Listen(cfg Config, ln net.Listener) (*Listener, error) {
	cfg, key, err := cfg.prepare(false)
	if err != nil {
		return nil, err
	}
	return newListener(cfg, key, ln), nil
}

// newListener is Listen after the checks of cfg.
func newListener(cfg Config, key *ecdsa.PrivateKey, ln net.Listener) *Listener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listener{
		cfg:    cfg,
		key:    key,
		ln:     ln,
		links:  make(chan *Link),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	l.wg.Add(1)
	go l.serve()
	cfg.Logger.Info("peer listener started", "addr", ln.Addr().String(), "root", cfg.Root)
	return l
}

// Accept waits for the next peer that passed the handshake and the chain
// check. It returns an error only when the listener has stopped.
func (l *Listener) Accept() (*Link, error) {
	select {
	case link := <-l.links:
		return link, nil
	case <-l.done:
		return nil, l.err
	}
}

// Addr returns the listener's network address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Rejected returns the number of peers rejected so far.
func (l *Listener) Rejected() uint64 { return l.rejected.Load() }

// Close stops listening, ends the pending handshakes and waits for them.
// Links already returned by Accept stay open.
func (l *Listener) Close() error {
	l.stop(fmt.Errorf("peer listener %s: %w", l.ln.Addr(), net.ErrClosed))
	err := l.ln.Close()
	l.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		// The accept loop already saw the listener closed by its owner.
		err = nil
	}
	l.cfg.Logger.Info("peer listener stopped", "addr", l.ln.Addr().String(), "rejected", l.Rejected())
	return err
}

// stop records why the listener stops and wakes Accept. Only the first
// call counts.
func (l *Listener) stop(err error) {
	l.stopOnce.Do(func() {
		l.err = err
		close(l.done)
		l.cancel()
	})
}

// serve accepts connections and starts a handshake for each, until the
// listener stops.
func (l *Listener) serve() {
	defer l.wg.Done()
	slots := make(chan struct{}, l.cfg.MaxPendingHandshakes)
	var backoff time.Duration
	for {
		select {
		case slots <- struct{}{}:
		case <-l.done:
			return
		}

		raw, err := l.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			l.stop(fmt.Errorf("peer listener %s: %w", l.ln.Addr(), err))
			return
		}
		if err != nil {
			// An error such as EMFILE (no free file descriptors) can go
			// away once other connections close, so retry.
			<-slots
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.cfg.Logger.Error("peer listener accept failed; retrying", "addr", l.ln.Addr().String(), "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-l.done:
				return
			}
			continue
		}
		backoff = 0

		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-slots }()
			l.handshake(raw)
		}()
	}
}

// handshake makes a link on raw and hands it to Accept, or rejects the
// peer.
func (l *Listener) handshake(raw net.Conn) {
	addr := raw.RemoteAddr().String()
	a := newAttempt(l.cfg, l.key, raw, addr, principal.Principal{})
	link, err := a.run(l.ctx, time.Now())
	if err != nil {
		if l.ctx.Err() != nil {
			l.cfg.Logger.Debug("peer handshake ended because the listener stopped", "peer", addr, "error", err)
			return
		}
		l.reject(addr, a.peer, err)
		return
	}

	select {
	case l.links <- link:
	case <-l.done:
		link.Close()
	}
}

// reject counts a rejected peer and logs it, at most ratelog.Burst lines per
// second.
func (l *Listener) reject(addr string, peer principal.Principal, err error) {
	total := l.rejected.Add(1)
	ok, suppressed := l.logLimit.Allow(time.Now())
	if !ok {
		return
	}
	attrs := []any{"peer", addr}
	if !peer.IsZero() {
		attrs = append(attrs, "principal", peer.String())
	}
	attrs = append(attrs, "error", err, "rejected", total)
	if suppressed > 0 {
		attrs = append(attrs, "not_logged", suppressed)
	}
	l.cfg.Logger.Warn("peer rejected", attrs...)
}

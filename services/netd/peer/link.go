package peer

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Link is an authenticated connection to a peer node. Circuits go one way
// on it: the dialer opens them toward the listener's services, within the
// scope of the chain it presented. Read, Write and Close work as on the
// underlying TLS connection and may be called from different goroutines
// as that connection allows: one reader and one writer at a time.
//
// Write encrypts p into TLS records and buffers them, as a bufio.Writer
// would. Flush sends them, so a writer calls Flush when it has nothing
// more to write at once. Write sends by itself only what does not fit in
// the buffer (64 KiB).
//
// A Link closes itself when the first writecap of the dialer's chain
// expires, because the chain authorized it only until then. Both ends do
// this: the listener with the chain it received, the dialer with its own.
type Link struct {
	conn     *tls.Conn
	out      *bufferedConn // below conn
	peer     principal.Principal
	root     principal.Principal
	chain    capability.Chain // the dialer's chain
	accepted bool             // this end is the listener's
	expiry   *time.Timer      // nil when the chain is empty
}

// newAcceptedLink returns the listener's end of a link from peer, whose
// chain in root's tree verified.
func newAcceptedLink(conn *tls.Conn, out *bufferedConn, peer, root principal.Principal, chain capability.Chain) *Link {
	return newLink(&Link{conn: conn, out: out, peer: peer, root: root, chain: chain, accepted: true})
}

// newDialedLink returns the dialer's end of a link to peer, which accepted
// chain in root's tree.
func newDialedLink(conn *tls.Conn, out *bufferedConn, peer, root principal.Principal, chain capability.Chain) *Link {
	return newLink(&Link{conn: conn, out: out, peer: peer, root: root, chain: chain})
}

func newLink(l *Link) *Link {
	l.out.startBuffering()
	if expires, ok := chainExpires(l.chain); ok {
		l.expiry = time.AfterFunc(time.Until(expires), func() { l.closeConn() })
	}
	return l
}

// chainExpires returns the earliest expiry time of chain's writecaps, or
// false for an empty chain, which never expires.
func chainExpires(chain capability.Chain) (time.Time, bool) {
	var first time.Time
	for i, w := range chain {
		if i == 0 || w.Expires.Before(first) {
			first = w.Expires
		}
	}
	return first, len(chain) > 0
}

// Peer returns the peer's principal: the hash of the key it proved it
// holds in the TLS handshake.
func (l *Link) Peer() principal.Principal { return l.peer }

// Accepted reports whether this end is the listener's, which serves the
// circuits that the dialer opens.
func (l *Link) Accepted() bool { return l.accepted }

// Root returns the root principal of the tree whose services the link
// reaches: the listener's tree.
func (l *Link) Root() principal.Principal { return l.root }

// Chain returns the dialer's writecap chain in Root's tree, verified by
// the listener when the link was made. The slice is a copy, but the
// writecaps are shared and must not be changed.
func (l *Link) Chain() capability.Chain { return append(capability.Chain(nil), l.chain...) }

// Scope returns the prefix that the dialer may reach: the last prefix of
// its chain, or the whole tree when the dialer is the tree's root.
func (l *Link) Scope() string { return Scope(l.root, l.chain) }

// Covers reports whether the dialer's chain lets it reach path, a valid
// tree path.
func (l *Link) Covers(path string) bool { return capability.Covers(l.Scope(), path) }

// Expires returns the time at which the link closes itself because the
// dialer's chain expires, or false when the dialer is the tree's root and
// has no chain.
func (l *Link) Expires() (time.Time, bool) { return chainExpires(l.chain) }

// Read reads bytes that the peer sent.
func (l *Link) Read(p []byte) (int, error) { return l.conn.Read(p) }

// Write encrypts p and buffers the records; Flush sends them. Errors of
// the connection may show only at a later Write or Flush.
func (l *Link) Write(p []byte) (int, error) { return l.conn.Write(p) }

// Flush sends what Write has buffered. It is bounded by the write
// deadline, and after a failed Flush the link cannot be used.
func (l *Link) Flush() error { return l.out.Flush() }

// Close sends what Write has buffered and a TLS close_notify alert, and
// closes the connection. While another goroutine's Write or Flush is
// under way, which may be blocked on a peer that stopped reading, Close
// only closes the socket, which ends that call. crypto/tls does the same
// for a Write under way.
func (l *Link) Close() error {
	if l.expiry != nil {
		l.expiry.Stop()
	}
	return l.closeConn()
}

func (l *Link) closeConn() error {
	if !l.out.stopBuffering() {
		return l.out.Close()
	}
	return l.conn.Close()
}

// SetDeadline sets the read and write deadlines, as net.Conn.SetDeadline
// does.
func (l *Link) SetDeadline(t time.Time) error { return l.conn.SetDeadline(t) }

// SetReadDeadline sets the read deadline, as net.Conn.SetReadDeadline
// does.
func (l *Link) SetReadDeadline(t time.Time) error { return l.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline, as net.Conn.SetWriteDeadline
// does.
func (l *Link) SetWriteDeadline(t time.Time) error { return l.conn.SetWriteDeadline(t) }

// LocalAddr returns this node's network address of the link.
func (l *Link) LocalAddr() net.Addr { return l.conn.LocalAddr() }

// RemoteAddr returns the peer's network address.
func (l *Link) RemoteAddr() net.Addr { return l.conn.RemoteAddr() }

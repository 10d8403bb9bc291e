package peer

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Link is an authenticated connection to a peer node. Read, Write and
// Close work as on the underlying TLS connection and may be called from
// different goroutines as that connection allows: one reader and one
// writer at a time.
//
// A Link closes itself when the first writecap of the peer's chain
// expires, because the chain authorized it only until then. The peer does
// the same with this node's chain.
type Link struct {
	conn   *tls.Conn
	peer   principal.Principal
	chain  capability.Chain
	expiry *time.Timer // nil when the peer's chain is empty
}

func newLink(conn *tls.Conn, peer principal.Principal, chain capability.Chain) *Link {
	l := &Link{conn: conn, peer: peer, chain: chain}
	if expires, ok := chainExpires(chain); ok {
		l.expiry = time.AfterFunc(time.Until(expires), func() { conn.Close() })
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

// PeerChain returns the peer's writecap chain, verified when the link was
// made. The slice is a copy, but the writecaps are shared and must not be
// changed.
func (l *Link) PeerChain() capability.Chain { return append(capability.Chain(nil), l.chain...) }

// Expires returns the time at which the link closes itself because the
// peer's chain expires, or false when the peer is the tree's root and has
// no chain.
func (l *Link) Expires() (time.Time, bool) { return chainExpires(l.chain) }

// Read reads bytes that the peer sent.
func (l *Link) Read(p []byte) (int, error) { return l.conn.Read(p) }

// Write sends p to the peer.
func (l *Link) Write(p []byte) (int, error) { return l.conn.Write(p) }

// Close sends a TLS close_notify alert and closes the connection.
func (l *Link) Close() error {
	if l.expiry != nil {
		l.expiry.Stop()
	}
	return l.conn.Close()
}

// SetDeadline sets the read and write deadlines, as net.Conn.SetDeadline
// does.
func (l *Link) SetDeadline(t time.Time) error { return l.conn.SetDeadline(t) }

// LocalAddr returns this node's network address of the link.
func (l *Link) LocalAddr() net.Addr { return l.conn.LocalAddr() }

// RemoteAddr returns the peer's network address.
func (l *Link) RemoteAddr() net.Addr { return l.conn.RemoteAddr() }

package peer

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// attempt is one side of one link setup on a connection.
type attempt struct {
	cfg    Config
	key    *ecdsa.PrivateKey
	raw    net.Conn
	addr   string
	dialer bool

	// expect is the principal the dialer expects at the address. It is
	// zero on the listener.
	expect principal.Principal

	// peer is the principal of the peer's certificate, set by
	// verifyConnection. It is proven only once the handshake completes,
	// because crypto/tls calls verifyConnection before it checks the
	// peer's CertificateVerify signature.
	peer principal.Principal

	// limit is the time the setup may take, for error messages.
	limit time.Duration

	// rejection is the error that verifyConnection returned, formatted for
	// the caller. run returns it in place of the error of crypto/tls, which
	// may reword it.
	rejection error
}

// newAttempt returns the dialer's side when expect is set and the
// listener's otherwise. addr names the peer in errors.
func newAttempt(cfg Config, key *ecdsa.PrivateKey, raw net.Conn, addr string, expect principal.Principal) *attempt {
	return &attempt{cfg: cfg, key: key, raw: raw, addr: addr, dialer: !expect.IsZero(), expect: expect}
}

// tlsConfig returns the TLS 1.3 configuration of this attempt. No
// certificate authority counts: the dialer skips the standard chain
// verification, the listener requests any client certificate, and
// verifyConnection makes the only check on both sides.
func (a *attempt) tlsConfig() *tls.Config {
	certificate := func() (*tls.Certificate, error) {
		return newCertificate(a.key, a.cfg.Node.Principal())
	}
	c := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		NextProtos:       []string{ProtocolName},
		VerifyConnection: a.verifyConnection,
		// A resumed session would skip the certificates, and with them the
		// check of the peer's key.
		SessionTicketsDisabled: true,
		// Small first records lower the latency of a connection's first
		// bytes when each record is written on its own. A link writes
		// its records in batches (bufferedConn), so they would only add
		// records to encrypt.
		DynamicRecordSizingDisabled: true,
	}
	if a.dialer {
		c.InsecureSkipVerify = true
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return certificate() }
	} else {
		c.ClientAuth = tls.RequireAnyClientCert
		c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return certificate() }
	}
	return c
}

// verifyConnection checks the protocol and the peer's certificate, and on
// the dialer that the certificate's key is the expected principal.
func (a *attempt) verifyConnection(cs tls.ConnectionState) error {
	if cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != ProtocolName {
		a.rejection = fmt.Errorf("peer %s: %w: TLS version %#04x, ALPN protocol %q, expected TLS 1.3 and %q: check that it runs a blocktree node",
			a.addr, ErrProtocol, cs.Version, cs.NegotiatedProtocol, ProtocolName)
		return a.rejection
	}
	p, err := certificatePrincipal(cs.PeerCertificates)
	if err != nil {
		a.rejection = fmt.Errorf("peer %s: %w: check that it runs a blocktree node", a.addr, err)
		return a.rejection
	}
	a.peer = p
	if a.dialer && p != a.expect {
		a.rejection = fmt.Errorf("peer %s is %s, expected %s: check the address in the tree: %w", a.addr, p, a.expect, ErrWrongPeer)
		return a.rejection
	}
	return nil
}

// run makes the link: the TLS handshake, then the chain exchange. It
// closes the connection on failure. ctx and cfg.HandshakeTimeout bound both
// steps, counted from start: when the setup began, before a dialer's
// connect.
func (a *attempt) run(ctx context.Context, start time.Time) (*Link, error) {
	deadline := start.Add(a.cfg.HandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	a.limit = deadline.Sub(start)
	if err := a.raw.SetDeadline(deadline); err != nil {
		a.raw.Close()
		return nil, fmt.Errorf("peer %s: set handshake deadline: %w", a.addr, err)
	}
	// A deadline in the past wakes any read or write blocked on the
	// connection when ctx is cancelled.
	stop := context.AfterFunc(ctx, func() { a.raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	out := &bufferedConn{Conn: a.raw}
	var conn *tls.Conn
	if a.dialer {
		conn = tls.Client(out, a.tlsConfig())
	} else {
		conn = tls.Server(out, a.tlsConfig())
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, a.handshakeError(ctx, err)
	}
	if a.peer.IsZero() {
		// verifyConnection sets peer whenever it accepts, so this is a bug.
		conn.Close()
		return nil, fmt.Errorf("peer %s: handshake completed without a certificate check", a.addr)
	}

	chain, err := a.exchangeChains(conn)
	if err != nil {
		conn.Close()
		return nil, a.ioError(ctx, err)
	}

	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("peer %s (%s): link setup cancelled: %w", a.addr, a.peer, context.Cause(ctx))
	}
	if err := a.raw.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("peer %s (%s): clear handshake deadline: %w", a.addr, a.peer, err)
	}
	if a.dialer {
		return newDialedLink(conn, out, a.peer, a.cfg.Root, a.cfg.Chain), nil
	}
	return newAcceptedLink(conn, out, a.peer, a.cfg.Root, chain), nil
}

// exchangeChains runs the authorization step after the handshake. The
// dialer sends its chain and waits for the listener's acceptance frame.
// The listener reads and verifies the chain and sends the acceptance only
// if it passed, so a dialer without a valid chain learns nothing about the
// tree beyond the listener's principal. It returns the dialer's chain on
// the listener and nil on the dialer.
func (a *attempt) exchangeChains(conn *tls.Conn) (capability.Chain, error) {
	if a.dialer {
		if err := a.sendChain(conn); err != nil {
			return nil, err
		}
		return nil, a.receiveAcceptance(conn)
	}
	chain, err := a.receiveChain(conn)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(acceptFrame[:]); err != nil {
		return nil, fmt.Errorf("peer %s (%s): send acceptance: %w", a.addr, a.peer, err)
	}
	return chain, nil
}

func (a *attempt) sendChain(conn *tls.Conn) error {
	frame, err := encodeChainFrame(a.cfg.Chain)
	if err != nil {
		return fmt.Errorf("peer %s (%s): %w", a.addr, a.peer, err)
	}
	if _, err := conn.Write(frame); err != nil {
		return fmt.Errorf("peer %s (%s): send writecap chain: %w", a.addr, a.peer, err)
	}
	return nil
}

// receiveAcceptance waits for the listener to accept this node's chain.
func (a *attempt) receiveAcceptance(conn *tls.Conn) error {
	err := readAcceptFrame(conn)
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("peer %s (%s) closed the link before accepting this node's writecap chain: %w: check that the chain for tree %s lets %s write there, and the peer's log",
			a.addr, a.peer, ErrRejected, a.cfg.Root, a.cfg.Node.Principal())
	case err != nil:
		return fmt.Errorf("peer %s (%s): read acceptance: %w", a.addr, a.peer, err)
	}
	return nil
}

// receiveChain reads the dialer's chain and verifies that it lets the
// dialer write under the chain's last prefix in this tree now.
func (a *attempt) receiveChain(conn *tls.Conn) (capability.Chain, error) {
	chain, err := readChainFrame(conn)
	switch {
	case errors.Is(err, io.EOF):
		return nil, fmt.Errorf("peer %s (%s) closed the link before sending its writecap chain", a.addr, a.peer)
	case err != nil:
		return nil, fmt.Errorf("peer %s (%s): read writecap chain: %w", a.addr, a.peer, err)
	}

	scope, err := verifyChain(a.cfg.Root, a.peer, chain)
	if err != nil {
		return nil, fmt.Errorf("peer %s (%s) may not reach %s: %w: %w: %s", a.addr, a.peer, scope, ErrUnauthorized, err, chainHint(err, a.cfg.Root))
	}
	return chain, nil
}

// handshakeError explains a failed TLS handshake.
func (a *attempt) handshakeError(ctx context.Context, err error) error {
	if a.rejection != nil {
		return a.rejection
	}
	if reason := a.interruption(ctx, err); reason != nil {
		return fmt.Errorf("peer %s: TLS handshake %w", a.addr, reason)
	}
	if a.dialer {
		return fmt.Errorf("peer %s: TLS 1.3 handshake failed: %w: check that the address is a blocktree node's netd", a.addr, err)
	}
	return fmt.Errorf("peer %s: TLS 1.3 handshake failed: %w", a.addr, err)
}

// ioError explains a failed chain exchange.
func (a *attempt) ioError(ctx context.Context, err error) error {
	if reason := a.interruption(ctx, err); reason != nil {
		return fmt.Errorf("%w: chain exchange %w", err, reason)
	}
	return err
}

// interruption returns the reason when cancellation or the deadline
// caused err, and nil otherwise.
func (a *attempt) interruption(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, context.Canceled) {
		return fmt.Errorf("cancelled: %w", cause)
	}
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("timed out after %s: %w", a.limit.Round(time.Millisecond), err)
	}
	return nil
}

package peer

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Dial connects to the node expect at addr and makes a link on which this
// node opens circuits to expect's services. In the TLS 1.3 handshake the
// key behind addr must be expect's, and then expect must accept this
// node's chain from cfg.Root. network is as for net.Dial, usually "tcp".
// Connecting, the handshake and the exchange together end at
// cfg.HandshakeTimeout or at ctx's deadline, whichever comes first.
//
// Errors name the address and, once known, the peer's principal, and wrap
// ErrWrongPeer, ErrCertificate, ErrProtocol, ErrFrame or ErrRejected
// where one applies.
func Dial(ctx context.Context, cfg Config, network, addr string, expect principal.Principal) (*Link, error) {
	if expect.IsZero() {
		return nil, errors.New("peer dial: expected principal is zero: pass the principal the tree lists for the address")
	}
	cfg, key, err := cfg.prepare(true)
	if err != nil {
		return nil, err
	}
	return dial(ctx, cfg, key, network, addr, expect)
}

// dial is Dial after the checks of cfg.
func dial(ctx context.Context, cfg Config, key *ecdsa.PrivateKey, network, addr string, expect principal.Principal) (*Link, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("peer %s (expected %s): connect: %w: check that the node is up and that the address in the tree is right", addr, expect, err)
	}
	return newAttempt(cfg, key, raw, addr, expect).run(ctx, start)
}

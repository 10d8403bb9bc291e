package peer

import (
	"errors"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Sentinel errors of Dial and of the listener's rejections, matched with
// errors.Is. Each error that wraps one also names the peer's address and,
// once the TLS handshake has shown it, the peer's principal.
var (
	// ErrWrongPeer means that the key behind the address is not the
	// principal the caller expected.
	ErrWrongPeer = errors.New("peer is not the expected principal")

	// ErrCertificate means that the peer's TLS certificate is not one
	// self-signed P-256 certificate.
	ErrCertificate = errors.New("invalid peer certificate")

	// ErrProtocol means that the peer did not negotiate this protocol
	// (ALPN ProtocolName) in TLS 1.3.
	ErrProtocol = errors.New("peer does not speak the blocktree peer protocol")

	// ErrFrame means that the peer's chain frame is too large or does not
	// decode.
	ErrFrame = errors.New("invalid chain frame")

	// ErrUnauthorized means that the dialer's writecap chain does not
	// verify in the listener's tree. The error also wraps the
	// *capability.ChainError with the reason.
	ErrUnauthorized = errors.New("peer is not authorized in this tree")

	// ErrRejected means that the listener closed the link instead of
	// accepting this node's chain. A listener does so for every chain that
	// does not verify, and logs the reason only in its own log.
	ErrRejected = errors.New("peer rejected this node")
)

// chainHint returns what an operator should do about a chain that failed
// verification in root's tree.
func chainHint(err error, root principal.Principal) string {
	switch {
	case errors.Is(err, capability.ErrExpired), errors.Is(err, capability.ErrNotYetValid):
		return "renew the node's writecaps, or check that both clocks are right"
	case errors.Is(err, capability.ErrWrongRoot):
		return "the chain starts at another tree's root; check that the node belongs to tree " + root.String()
	case errors.Is(err, capability.ErrWrongWriter):
		return "the chain was issued to another principal; give the node a chain that ends at its own principal"
	case errors.Is(err, capability.ErrOutOfScope):
		return "each prefix of the chain must lie inside the one before it, in tree " + root.String()
	}
	return "issue the node a new chain from " + root.String()
}

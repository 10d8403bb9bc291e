// Package peer makes the authenticated links between the network daemons
// (netd) of two nodes. A link is a TLS 1.3 connection whose two ends have
// each proven which principal they are, and it is directional: the dialer
// opens circuits toward the listener's services only. The dialer shows a
// writecap chain from the root of the listener's tree, and that chain's
// last prefix bounds what the dialer may reach there. Package peer only
// makes links; netd forwards messages over them.
//
// # Identity: the TLS handshake
//
// A principal is the hash of a signing key, so a node proves who it is by
// proving that it holds its signing key. Each side presents a self-signed
// X.509 certificate whose key is the node's signing key, made afresh for
// each handshake. The certificate carries nothing else that counts: no
// certificate authority is trusted, and names and dates in it are ignored.
// The TLS 1.3 handshake makes each side sign the handshake transcript with
// that key (CertificateVerify), which proves possession of it.
//
// Both sides then run the same check on the peer's certificates: exactly
// one certificate, with an ECDSA P-256 key, signed by that same key. The
// principal is the hash of the key, computed by package principal. The
// dialer also requires that principal to be the one it expected for the
// address, which it takes from the tree. Both sides require TLS 1.3 and
// the ALPN protocol ProtocolName, and neither resumes sessions, because a
// resumed session skips the certificates.
//
// The node's key also signs for TLS, and those signatures cannot pass as
// Blocktree signatures. ECDSA signs a SHA-256 digest. Package principal
// hashes a context name, a zero byte and the message, and every context
// name in Blocktree today starts with "blocktree". TLS 1.3 hashes 64 spaces,
// its own context string and the transcript hash (RFC 8446, section
// 4.4.3). X.509 hashes the DER of the to-be-signed certificate, which
// starts with byte 0x30. The hashed inputs thus differ in their first byte.
//
// # Authority: the dialer's chain
//
// Right after the handshake, inside the TLS connection, the dialer sends
// its writecap chain in one frame:
//
//	length  u32, big-endian, at most 64 KiB
//	chain   the canonical encoding of capability.Chain (wire kind 0x0008)
//
// The chain is issued from the root of the listener's tree
// (Config.Root). In host mode every node is the root of its own tree, so
// a node B that reaches node A's services holds a chain from A. The
// listener verifies it with capability.Chain.Verify for the principal
// that the TLS handshake proved, the listener's root, and the chain's own
// last prefix, its scope (Scope). Verify checks the depth first. Then,
// link by link, it checks that link 0 was issued by the tree's root, the
// linkage, loops, the signature, the validity period and that each prefix
// lies inside the previous one. Last, it checks that the last subject is
// the dialer. A chain stolen from another node fails that check, because
// the thief cannot make the TLS handshake with the key that the chain
// names. The tree's root itself sends an empty chain, whose scope is the
// whole tree.
//
// A listener that accepts the chain replies with a frame of length 0. One
// that rejects it closes the connection without saying why, so a dialer
// without a valid chain learns nothing beyond the listener's principal,
// and the reason goes to the listener's log. The dialer reports that
// closing as ErrRejected. The listener keeps the chain, and Link.Covers
// checks for netd whether the dialer may open a circuit to an address. The
// listener sends no chain of its own, because nothing is opened toward
// the dialer on this link. A node that serves circuits both ways makes
// two links.
//
// The handshake and the exchange together are bounded by
// Config.HandshakeTimeout and by the caller's context. Both ends of a Link
// close it when the first writecap in the dialer's chain expires.
//
// # Listener
//
// A Listener runs handshakes in their own goroutines, at most
// Config.MaxPendingHandshakes at once, and Accept returns only the links
// that passed. A peer that fails any check is closed, counted and logged.
// It never reaches Accept and does not stop the listener.
package peer

// Package peer makes the authenticated links between the network daemons
// (netd) of two nodes of one tree. A link is a TLS 1.3 connection whose
// two ends have each proven which principal they are and shown a writecap
// chain from the tree's root that lets them reach the tree's node services.
// Package peer only makes links; netd forwards messages over them.
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
// # Authority: the chain exchange
//
// Right after the handshake, inside the TLS connection, each side sends
// its writecap chain in one frame:
//
//	length  u32, big-endian, at most 64 KiB
//	chain   the canonical encoding of capability.Chain (wire kind 0x0008)
//
// The dialer sends first. The listener reads and verifies the dialer's
// chain before it sends its own, so a peer that has no valid chain learns
// nothing from the listener beyond its principal. A side that rejects the
// other's chain closes the connection without saying why. The reason goes
// to its own log.
//
// A chain is verified with capability.Chain.Verify, for the principal that
// the TLS handshake proved as the writer and for the path /ROOT/dev, the
// address space of node services. Verify checks the depth first. Then, link
// by link, it checks that link 0 was issued by the tree's root, the
// linkage, loops, the signature, the validity period and that each prefix
// lies inside the previous one. Last, it checks that the last subject is
// the peer's principal and that the last prefix covers /ROOT/dev. A chain
// stolen from another node fails the last-subject check, because the thief
// cannot make the TLS handshake with the key that the chain names. The
// tree's root itself sends an empty chain.
//
// The handshake and the exchange together are bounded by
// Config.HandshakeTimeout and by the caller's context. A Link closes itself
// when the first writecap in the peer's chain expires.
//
// # Listener
//
// A Listener runs handshakes in their own goroutines, at most
// Config.MaxPendingHandshakes at once, and Accept returns only the links
// that passed. A peer that fails any check is closed, counted and logged.
// It never reaches Accept and does not stop the listener.
package peer

// Package capability defines who may write and who may read a block.
//
// A write capability (Writecap) is a grant signed by an issuer: "the subject
// principal may write under this path prefix between these two times". A
// Chain of writecaps starts with a grant signed by the root principal of the
// tree and ends with a grant to the writer; each link's issuer is the previous
// link's subject and each link's prefix lies inside the previous one, so
// authority only narrows as it is delegated. The root principal itself needs
// no chain: an empty chain is valid for the root writing in its own tree.
//
// A tree path is "/" followed by the root principal's printable form and then
// zero or more names, for example "/btabc.../etc/netd". A prefix covers a path
// when the path equals it or continues it after a "/", so "/R/a" covers
// "/R/a/b" and not "/R/ab".
//
// Verify reports the first problem it finds as a *ChainError that names the
// link and wraps one sentinel (ErrExpired, ErrOutOfScope, ErrBadSignature,
// ErrLoop, ErrTooDeep, ...), so callers tell cases apart with errors.Is.
//
// A read capability (Readcap) is a block key wrapped for one reader: an
// ephemeral ECDH P-256 key agrees a secret with the reader's encryption key,
// HKDF-SHA256 derives a wrapping key bound to both public keys and the block
// id, and XChaCha20-Poly1305 seals the block key with it. Only the holder of
// the reader's private encryption key can unwrap it.
package capability

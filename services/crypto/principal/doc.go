// Package principal defines who acts in Blocktree: principals and their keys.
//
// A principal is the SHA-256 hash of the canonical encoding of a public
// signing key (ECDSA P-256). Nothing else names a principal: a user, a device
// and a service are all principals, and the root principal of a tree is the
// first component of every path in that tree.
//
// Every principal has two key pairs: a signing key (ECDSA P-256), whose hash
// is the principal, and an encryption key (ECDH P-256), which readers use to
// receive block keys. An Identity is the public half of both, as published to
// others; a Credential holds the private halves.
//
// Signatures are domain-separated: Sign hashes a context string, a zero byte
// and the message, so a signature made for one structure can never be
// replayed as a signature over another. They are encoded as fixed-size r||s
// (64 bytes) so that signed structures have one canonical size.
package principal

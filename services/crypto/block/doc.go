// Package block seals and opens blocks, the unit of storage of the Blocktree
// file system: every file, directory and symlink is one block.
//
// # Model
//
// A block has an id (32 bytes, chosen by the caller), a version, a path, opaque
// metadata and data. The writer seals it under a fresh 32-byte block key,
// wraps that key for each reader in a readcap, and signs the header. Anyone
// who holds the encoded block can check its integrity and who wrote it; only
// the readers can see its path, metadata and data.
//
// Data is split into sectors of SectorSize plaintext bytes, of which the last
// may be short. Each sector is sealed on its own, so a read of a few bytes
// decrypts and checks one sector, not the whole block. The header names the
// sectors' cipher (Cipher):
//
//   - AES256GCM: the sector key is derived from the block key and a random
//     32-byte salt that the writer draws for every sealing and stores in the
//     header, and the nonce is the sector index. A sealed sector is the
//     ciphertext and a 16-byte tag.
//   - XChaCha20Poly1305: one sector key per block key, and a random 24-byte
//     nonce per sector. A sealed sector is the nonce, the ciphertext and a
//     16-byte tag.
//
// The associated data binds a context string, the block id, the sector index
// and the block version, so a sector cannot be moved to another position,
// block or version under the same key.
//
// A sector whose plaintext is all zeros is a hole, as in a sparse file: it is
// neither sealed nor stored, and reads return zeros. Seal finds the holes in
// the data it is given. SealSparse takes only the present sectors from an
// iterator, so a file of 1 GiB with 8 KiB written at its end is sealed
// without 1 GiB of plaintext in memory. Its encoding contains the header,
// one range, two leaf hashes and two sealed sectors. The encoding lists the
// present sectors as ranges, and the signed root covers the holes, so which
// sectors are holes is as protected as the data.
//
// Seal picks AES-256-GCM on CPUs with AES and carry-less multiplication
// instructions, where Go runs it 2.1 to 2.7 times as fast as
// XChaCha20-Poly1305. Elsewhere it picks XChaCha20-Poly1305, because
// ChaCha20 is fast in software on small devices, where AES is slow or leaks
// timing. Readers open both. A GCM nonce must never repeat under one key, because a repeat
// reveals the XOR of two plaintexts and the authentication key. A nonce
// built from the version could repeat if a crash made the writer reuse a
// version number, and random 96-bit nonces would limit a key to about 2^32
// sectors, 2^24 sealings of a 1 MiB chunk. The fresh salt instead gives
// every sealing its own key, under which each index is sealed once. The
// 96-bit nonce is 8 zero bytes and the index as a big-endian uint32, and the
// HKDF info of the key is "blocktree block sector key aes-256-gcm v1"
// followed by the salt. XChaCha20-Poly1305's 192-bit nonces can be drawn at
// random without such a limit.
//
// The sectors are the leaves of a Merkle tree. The leaf of a present sector
// is SHA-256(0x00 || uint32 index || sealed sector), an interior node is
// SHA-256(0x01 || left || right), and an odd last node moves up a level
// unchanged instead of being paired with a copy of itself. Pairing with a
// copy would give a list of leaves and the same list with its last leaf
// repeated the same root. The root of the empty block is SHA-256(0x02). The
// root is in the signed header, so integrity can be checked without the
// block key, for example by fsck on a storage node that has no readcap.
//
// A node whose sectors are all holes is SHA-256(0x03 || uint32 first index ||
// uint32 count) instead of the hash of its children, and a hole's leaf is the
// case count = 1. The node binds its position, and its prefix differs from
// that of a leaf or an interior node, so turning data into a hole or a hole
// into data changes the root unless SHA-256 collides. A run of holes folds
// into one hash per node, so the root of a block of n sectors with p present
// sectors in r ranges costs O(r · log n + p) hashes, not O(n). A block
// without holes has the root it would have without this rule.
//
// The signed root, not the AEAD tag, is what stops forgery by a reader:
// every reader holds the block key and could seal sectors that decrypt
// cleanly, but only the writer can sign a root that matches them.
//
// # Keys
//
// The block key is never used directly. HKDF-SHA256, with the block id as
// salt, derives one key for the sectors, one for the sealed path and
// metadata, and a 32-byte key commitment that the header carries. For
// AES-256-GCM the info of the sector key includes the header's sector salt.
// A reader checks the commitment after it unwraps its readcap. Neither
// Poly1305 nor GCM binds a ciphertext to one key, so without the commitment
// a writer could wrap different keys for different readers and show each of
// them different data behind the same signed root.
//
// The writer may seal the next version under the same key (Params.Key from
// Reader.Key). Everyone who knew the key can then decrypt the new version,
// whether it has a readcap for it or not. That is why RemoveReader always
// draws a new key: the removed reader knew the old one. AddReader keeps the
// key, so the new reader can also decrypt older versions sealed under it if
// it obtains copies of them.
//
// # What a storage node can read
//
// The header is cleartext apart from the path and the metadata: the id,
// version, plaintext size, recipients (principal and public keys of every
// reader), the writer, the writer's writecap chain and the lengths of the
// sealed path and metadata. The prefixes in the chain are paths too, so a
// storage node learns which subtree the writer may write to, though not the
// block's own path. The key commitment reveals nothing about the key, but it
// shows which versions of a block share one. The sector cipher and salt are
// cleartext too, and the cipher shows whether the writer's CPU has AES
// instructions.
//
// A storage node also learns which sectors are holes, as it would on any
// sparse file system: the ranges of present sectors are cleartext. Since
// every sector of zeros becomes a hole, this includes sectors of zeros that
// the writer wrote explicitly.
//
// # Checks on open
//
// Open returns a Reader only after it has verified, in this order: the
// canonical layout, the writer's signature over the header, the block id,
// the version against the caller's minimum (rollback), the sector ranges and
// stored leaf hashes against the signed root, the reader's readcap and the
// key commitment, the sealed path and metadata, and the writer's chain of
// writecaps from the tree's root principal to the writer for that path at
// the caller's time. Reader.ReadAt then hashes each present sector it
// touches and compares the hash with the checked leaf before it decrypts, so
// no byte of a sector is returned before both the leaf and the AEAD tag
// match. The Reader keeps the caller's slice and repeats these per-sector
// checks on every read, so a later change to the slice gives ErrIntegrity
// rather than wrong bytes. A change during a read does too, unless the
// caller opened with Expect.Private, promising that the slice does not
// change. It keeps its own copy of the ranges and leaves
// that Open checked, so a read of a hole returns zeros without touching the
// slice, and each present sector's position in the slice is found from the
// ranges by a binary search.
//
// The leaf hashes of present sectors are stored in the block although they
// can be derived from the sectors: Open checks them against the signed root
// once (small hashes only), and each later read costs one sector hash and a
// comparison instead of rehashing the whole block or carrying a log(n)
// proof. Hole leaves are not stored, because the ranges and the index
// determine them.
//
// Verify is the check without a key, for fsck. It checks the signature, the
// chain from the root principal to the writer and the ranges against the
// root, and it recomputes every present leaf. It cannot check that the chain
// covers the block's path, because the path is sealed. It checks only that
// each grant stays inside the one before it.
//
// # Encoding
//
// Both structures use the canonical wire encoding, so there is exactly one
// encoding of each header and block. An encoded block (wire.KindBlock,
// version 2) is:
//
//	header   uint32 length || header encoding
//	ranges   uint32 count, then per range of present sectors:
//	         uint32 first index || uint32 count
//	leaves   p × 32-byte leaf hashes, one per present sector in index order
//	sectors  p sealed present sectors in index order, each ciphertext ||
//	         16-byte tag, with a 24-byte nonce in front for
//	         XChaCha20Poly1305; all but the last sector of the block hold
//	         SectorSize plaintext bytes
//
// The block has n = ceil(size / SectorSize) sectors, and p is the sum of the
// range counts. The ranges are in increasing order, each has a count of at
// least 1, and the last ends at or before sector n. At least one hole
// separates two ranges, because two touching ranges and their union would
// be two encodings of the same block.
//
// The ranges take 8 bytes per run of present sectors, so at most 8 bytes
// for each present sector, which itself takes up to 4168 bytes (sealed
// sector and leaf, 4144 with AES-256-GCM). A bitmap would take n/8 bytes
// whatever is stored: 32 KiB for a 1 GiB file of holes, 512 MiB at MaxSize.
//
// The header (wire.KindBlockHeader, version 3) has these fields in order:
//
//	id               32 bytes
//	version          uint64
//	size             uint64, plaintext bytes
//	sector size      uint32, SectorSize
//	sector cipher    uint8, 1 XChaCha20-Poly1305 or 2 AES-256-GCM
//	sector salt      32 bytes, random for AES-256-GCM, zero for the other
//	Merkle root      32 bytes
//	key commitment   32 bytes
//	sealed path      uint32 length || 24-byte nonce || ciphertext || 16-byte tag
//	sealed metadata  uint32 length || 24-byte nonce || ciphertext || 16-byte tag
//	recipients       uint32 count, then per reader in increasing principal order:
//	                 uint32 length || identity encoding (wire.KindPublicIdentity)
//	                 uint32 length || readcap encoding (wire.KindReadcap)
//	writer           65 bytes, uncompressed P-256 point
//	chain            uint32 length || chain encoding (wire.KindChain)
//	signature        64 bytes r||s over every preceding header byte
//
// Version 2 of both encodings added holes: the Merkle root covers them.
// Version 3 of the header added the sector cipher and salt, and its
// signature context names version 3. No release stored a block of an older
// version, so the decoders accept block version 2 with header version 3
// only.
//
// The recipients carry each reader's public identity so that a later
// version, which may need a new key, can be wrapped for the same readers
// without a directory lookup.
//
// Errors from Open, Verify, Reader, AddReader and RemoveReader never contain
// the path or the metadata, since these are sealed and errors end up in logs.
// Errors from Seal and SealSparse may quote the path that the caller passed.
package block

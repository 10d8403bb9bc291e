// Package journal is the block event log of a Blocktree node: every mutation
// of the file system is one record, appended and made durable before the
// storage daemon acknowledges an fsync. Raft later replicates exactly these
// records. The journal treats payloads as opaque bytes.
//
// # Model
//
// A journal is a directory of segment files. Records carry sequence numbers
// (seqs) that start at 1 and grow by one per record, in the order of the
// Append calls. Append encodes, signs and encrypts a record in memory. Sync
// writes every record appended before the call and calls fdatasync(2) once
// for all concurrent callers (group commit). Only then does Sync return, and
// only then is a record durable. Replay passes only durable records, and a
// crash may lose any record that no Sync (or Close) has acknowledged.
//
// Records go to the last segment until it reaches Options.SegmentSize bytes.
// The next record then starts a new segment. TruncateBefore removes old
// segments once a checkpoint has made their records redundant.
//
// Every record has a list of tags next to its payload: small integers (the
// inode numbers an entry touches) that are authenticated but not encrypted,
// and protected by a checksum of their own. When the payload of a record is
// damaged, the reader still learns its tags, so the daemon can mark exactly
// those files as damaged instead of the whole tree.
//
// # Protection
//
// The payload is sealed with XChaCha20-Poly1305 under a key derived from
// Options.Key. Names and file data are inside it, so a reader of the disk
// learns only the seqs, the tags, the payload lengths and the timing.
// Each payload is also signed by the node (ECDSA P-256, context
// "blocktree journal record v1"). The signature is what stops forgery by
// holders of the journal key, such as the other servers of a Raft group,
// who could otherwise seal records that decrypt cleanly. The signature is
// inside the ciphertext because anyone with the node's public key could test a
// guessed payload against a signature stored in clear.
//
// The associated data of the AEAD and the signed message both contain the
// journal id (32 random bytes chosen when the journal is created) and the
// record header (seq, tags, payload length). A record therefore cannot be
// moved to another position or another journal, nor can its tags be changed.
//
// CRC32C checksums serve crash recovery and fsck, not security. They tell a
// torn or rotten record from one that fails authentication, and they can be
// checked without the key. They also make it cheap to search a damaged
// segment for the next record.
//
// # On-disk format
//
// The directory (mode 0700) holds segments named after their first seq as 20
// decimal digits, such as 00000000000000000001.seg. A new segment is written
// as NAME.tmp, fdatasynced, renamed to NAME and then the directory is
// fsynced, so a segment under its final name always has a complete header.
// Open removes leftover .tmp files. All integers are big-endian.
//
// A segment starts with a 47-byte header:
//
//	kind        uint16   0x0100 (KindJournalSegment)
//	version     uint8    1
//	journal id  32 bytes, the same in every segment of one journal
//	first seq   uint64   seq of the segment's first record
//	header CRC  uint32   CRC32C (Castagnoli) of the 43 bytes above
//
// Records follow back to back, with no padding:
//
//	length      uint32   bytes of the whole record, this field included
//	header CRC  uint32   CRC32C of the length field and the header
//	header      kind uint16 0x0101 (KindJournalRecord), version uint8 1,
//	            seq uint64, tag count uint32, tags (count × uint64),
//	            payload length uint32
//	body CRC    uint32   CRC32C of the body
//	body        24-byte random nonce ||
//	            XChaCha20-Poly1305(payload || 64-byte signature r||s)
//
// The header is a canonical wire encoding, 19 + 8 × tag count bytes long. The
// AEAD key is HKDF-SHA256 of Options.Key with the journal id as salt and
// "blocktree journal payload key v1" as info, so every journal has its own
// key. The AEAD's associated data is journal id || header. The signed message
// is journal id || header || payload. A record is at most MaxTags tags and
// MaxPayloadSize payload bytes.
//
// # Invariants
//
//   - The record at position i of a segment has seq first seq + i, and each
//     segment starts at the seq after the last record of the one before it.
//     Replay reports a record whose seq breaks this rule as damaged, so
//     records that were reordered, dropped or copied are detected.
//   - Only the last segment is written to. A segment is fdatasynced before
//     the next one is created, so only the last segment can hold bytes of a
//     write that no Sync acknowledged.
//   - Sync returns nil only after fdatasync has returned for every byte of
//     every record appended before the call. After a failed write or
//     fdatasync the Log refuses further work: the kernel may have dropped the
//     dirty pages, so a retry could report success for data that is gone.
//
// # Torn tails and damage
//
// A crash during a write can leave the end of the last segment incomplete,
// with bad checksums, or followed by zeros or garbage. Open cuts the last
// segment (ftruncate and fdatasync) right after its last record whose
// checksums are good and logs a warning with the seq and offset of the cut.
// Damage followed by a record with good checksums is not a torn tail: Open
// keeps it, and Replay reports it.
//
// Open never cuts a record whose checksums are good. A crash cannot produce
// one that then fails authentication, so if the newest record fails the AEAD
// or the signature, Open returns an error instead: the Key or Verifier is
// wrong, or the journal was tampered with.
//
// Replay reports a record whose body is damaged, or whose seq is out of
// order, as a Record with Damaged set, its tags (the header checksum passed)
// and no payload, and continues with the next record. A damaged record header
// stops Replay with a *CorruptError, because the length of the record and so
// the position of the next one are unknown. Check reads the whole journal
// without changing it and lists every problem, searching past a damaged
// header for the next good record.
//
// NOTE: the kernel may write the pages of one write(2) to disk in any order.
// A crash during a Sync can therefore leave a good record after a damaged
// one. Neither of them was acknowledged, but Open keeps both, because it
// cannot tell this from damage to acknowledged records, and Replay reports the
// damaged one.
//
// NOTE: the journal alone cannot detect that its newest records or its newest
// segment were removed, because what remains is still consistent. The caller
// compares NextSeq with a trusted counter, such as the seq in a checkpoint
// bound to the TPM's NV counter.
package journal

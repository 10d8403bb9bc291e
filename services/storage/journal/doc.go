// Package journal is the block event log of a Blocktree node: every mutation
// of the file system is one record, appended and made durable before the
// storage daemon acknowledges an fsync. Raft later replicates exactly these
// records. The journal treats payloads as opaque bytes.
//
// # Model
//
// A journal is a directory of segment files. Records carry sequence numbers
// (seqs) that start at 1 and grow by one per record, in the order of the
// Append calls. Append encodes and encrypts a record in memory, and hashes
// it unless it is 64 KiB or larger. Sync hashes the large records and
// writes every record appended before the call, ends each group of them
// with a seal signed by the node, and calls fdatasync(2) once for all
// concurrent callers (group commit). Only then does Sync return, and only
// then is a record durable. Replay passes only durable records, and a crash
// may lose any record that no Sync (or Close) has acknowledged.
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
// The payload is sealed under a key derived from Options.Key. Names and file
// data are inside it, so a reader of the disk learns only the seqs, the tags,
// the payload lengths, the cipher and the timing. For AES-256-GCM it also
// learns which records one Open wrote and in which order it encoded them. On CPUs that run AES-GCM
// in hardware the journal seals with AES-256-GCM, elsewhere with
// XChaCha20-Poly1305, for the reasons that the block package gives for its
// sectors. Each record names its cipher, and readers open both. For
// AES-256-GCM every codec draws a random 12-byte epoch, which selects the
// key, and numbers the GCM nonces of the records it writes from 1. Each Open
// has its own codec, and only an Open appends. A crash can
// make the next Open write other records under seqs that were used before.
// So neither the seq nor a stored counter could serve as nonce, and a
// repeated GCM nonce would reveal the XOR of two payloads and the
// authentication key. NOTE: the epoch and the counter live only in memory.
// Two copies of one running process, such as a virtual machine restored
// from a snapshot taken while it ran, would append under the same epoch and
// counters, and so repeat nonces. Do not resume such snapshots of a node.
//
// The node signs seals, not records (ECDSA P-256, context "blocktree
// journal seal v3"). The leader of a group commit ends every group of
// records it writes with a seal: the node's signature over the journal id, the seq
// range of the group and the SHA-256 hash of each record in it. A record
// counts only if the seal after it lists its hash. The seal is what stops
// forgery by holders of the journal key, such as the other servers of a Raft
// group, who could otherwise write records that decrypt cleanly. Signing
// once per group instead of once per record takes the signature off the path
// of every mutation: the leader of a group commit signs once for all the
// records it writes. It also hashes the large records, so that a stream of
// large writes, whose Syncs Append starts in the background, does not wait
// for their hashes.
//
// A seal lists the hash of every record it covers, not only a hash over all
// of them, so one changed record does not make its neighbours unverifiable.
// The hash covers the record as written: the length field, the header CRC,
// the header, the body CRC, the cipher byte, the nonce and the ciphertext
// with its tag.
// Checking it needs neither the key nor a decryption, so Open can verify the
// newest group cheaply. It covers every byte of the record, so any change to
// a record with good checksums fails the seal before the AEAD is tried. The
// seal is stored in clear: the hashes are of ciphertexts under nonces that
// never repeat, so they reveal nothing about the payloads.
//
// A group holds at most 1024 records and 8 MiB of records (one larger record
// is a group of its own), and it never spans two segments, so Replay and
// Check hold one group in memory while they verify it. Past a damaged header
// in a group, Replay also holds the headers of the records up to the next
// seal.
//
// The associated data of the AEAD contains the journal id (32 random bytes
// chosen when the journal is created), the record header (seq, tags,
// payload length) and the cipher byte. The seal covers the same header through the record's hash
// and the journal id through its signed message. A record therefore cannot be
// moved to another position or another journal, nor can its tags be changed.
//
// CRC32C checksums serve crash recovery and fsck, not security. They tell a
// torn or rotten record from one that fails authentication, and they can be
// checked without the key. They also make it cheap to search a damaged
// segment for the next record or seal.
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
//	version     uint8    3
//	journal id  32 bytes, the same in every segment of one journal
//	first seq   uint64   seq of the segment's first record
//	header CRC  uint32   CRC32C (Castagnoli) of the 43 bytes above
//
// Records and seals follow back to back, with no padding. A record is:
//
//	length      uint32   bytes of the whole record, this field included
//	header CRC  uint32   CRC32C of the length field and the header
//	header      kind uint16 0x0101 (KindJournalRecord), version uint8 3,
//	            seq uint64, tag count uint32, tags (count × uint64),
//	            payload length uint32
//	body CRC    uint32   CRC32C of the body
//	body        cipher uint8 || 24-byte nonce field || AEAD(payload)
//	            cipher 1: XChaCha20-Poly1305, a random 24-byte nonce
//	            cipher 2: AES-256-GCM, a 12-byte epoch || 4 zero bytes ||
//	            uint64 counter, of which the last 12 bytes are the nonce
//
// A seal has the same frame, so a reader walks both alike:
//
//	length      uint32   bytes of the whole seal, this field included
//	header CRC  uint32   CRC32C of the length field and the header
//	header      kind uint16 0x0102 (KindJournalSeal), version uint8 3,
//	            first seq uint64, record count uint32 (1 to 1024)
//	body CRC    uint32   CRC32C of the body
//	body        record count × 32-byte SHA-256 of a record, in seq order ||
//	            64-byte signature r||s
//
// A record header is a canonical wire encoding, 19 + 8 × tag count bytes
// long, and a seal header 15 bytes long. The XChaCha20-Poly1305 key is
// HKDF-SHA256 of Options.Key with the journal id as salt and "blocktree
// journal payload key v1" as info, so every journal has its own key. The
// AES-256-GCM key of an epoch is HKDF-Expand, with the epoch as info, of
// HKDF-SHA256 of Options.Key with the journal id as salt and "blocktree
// journal payload key aes-256-gcm v1" as info. The AEAD's associated data is
// journal id || record header || cipher byte. The signed message of a seal is journal id
// || seal header || hashes. A record is at most MaxTags tags and
// MaxPayloadSize payload bytes.
//
// Open and Check reject a journal whose segment headers have another format
// version with an error that names both versions, before they change
// anything. Version 1 signed every record, version 2 had no cipher byte, and
// neither is migrated: no release wrote them.
//
// # Invariants
//
//   - The record at position i of a segment has seq first seq + i, and each
//     segment starts at the seq after the last record of the one before it.
//     Replay reports a record whose seq breaks this rule as damaged, so
//     records that were reordered, dropped or copied are detected.
//   - Every record is followed, in the same segment, by the seal of its
//     group. Only the leader of a group commit writes records, and it writes
//     each group's seal in the same write as the group, before fdatasync.
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
// with bad checksums, followed by zeros or garbage, or with whole records
// whose seal is missing. Sync reports only sealed groups as durable. Open
// therefore cuts the last segment (ftruncate and fdatasync) right after its
// last seal whose checksums are good, even if records with good checksums
// follow it, and logs a warning with the seq and offset of the cut.
// Damage followed by a seal with good checksums is not a torn tail: Open
// keeps it, and Replay reports it.
//
// Open never cuts a seal whose checksums are good. A crash cannot produce
// one whose signature or seq range then fails, nor a record with good
// checksums whose hash or AEAD fails. Open therefore verifies the newest
// seal and the newest record with good checksums before it. If either
// fails, the Key or Verifier is wrong or the journal was tampered with, and
// Open returns an error.
//
// Replay and Check read one group at a time and verify every record against
// the seal after it before they use it. Replay reports a record as a Record
// with Damaged set, its tags (the header checksum passed) and no payload, and
// continues with the next record, when its body is damaged, when its hash
// differs from the one its seal lists (ErrSealMismatch), when no valid seal
// covers it (ErrUnsealed: the seal is damaged, signed by another key or for
// another journal, covers other seqs, or is missing), when the AEAD fails, or
// when its seq is out of order. A damaged seal so damages exactly the records
// of its group. A damaged record or seal header stops Replay with a
// *CorruptError, because the length of the record and so the position of the
// next one are unknown. Replay first searches past it for the next seal, to
// verify the records before the damaged header. Check reads the whole journal
// without changing it and lists every problem, searching past a damaged
// header for the next good record or seal.
//
// NOTE: the kernel may write the pages of one write(2) to disk in any order.
// A crash during a Sync can therefore leave a seal with good checksums after
// a damaged record of its group. Neither of them was acknowledged, but Open
// keeps both, because it cannot tell this from damage to acknowledged
// records, and Replay reports the damaged record.
//
// NOTE: the journal alone cannot detect that its newest records or its newest
// segment were removed, because what remains is still consistent. The caller
// compares NextSeq with a trusted counter, such as the seq in a checkpoint
// bound to the TPM's NV counter.
package journal

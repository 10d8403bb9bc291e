package journal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/blocktree/blocktree/services/crypto/block"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// Kinds of the journal's canonical encodings.
const (
	KindJournalSegment wire.Kind = 0x0100
	KindJournalRecord  wire.Kind = 0x0101
	KindJournalSeal    wire.Kind = 0x0102
)

// Limits of one record. MaxPayloadSize fits a 1 MiB FUSE write with room for
// the entry around it. Both limits stop a damaged journal from making a
// reader allocate gigabytes.
const (
	MaxTags        = 1024
	MaxPayloadSize = 16 << 20
)

// IDSize is the size of a journal id.
const IDSize = 32

// KeySize is the size of Options.Key.
const KeySize = chacha20poly1305.KeySize

// Bounds of one sealed group. The writer starts a new group before a record
// that would exceed either bound, so a group holds more than maxSealBytes
// only when it is a single record. Readers hold one group in memory.
const (
	maxSealRecords = 1024
	maxSealBytes   = 8 << 20
)

const (
	formatVersion = 3
	signContext   = "blocktree journal seal v3"
	keyInfo       = "blocktree journal payload key v1"
	aesKeyInfo    = "blocktree journal payload key aes-256-gcm v1"

	crcSize    = 4
	cipherSize = 1 // the cipher byte in front of a record's nonce
	nonceSize  = chacha20poly1305.NonceSizeX
	tagSize    = chacha20poly1305.Overhead

	// epochSize is the part of an AES-256-GCM record's nonce field that
	// names its key: random for each codec that appends.
	epochSize    = nonceSize - gcmNonceSize
	gcmNonceSize = 12

	// segmentHeaderSize is kind, version, journal id, first seq and CRC.
	segmentHeaderSize = wire.HeaderSize + IDSize + 8 + crcSize

	// recordPrefixSize is the length field and the header CRC.
	recordPrefixSize = 4 + crcSize

	// headerFixedSize is a record header without its tags: kind, version,
	// seq, tag count and payload length.
	headerFixedSize = wire.HeaderSize + 8 + 4 + 4

	// headerPeekSize is how much of a record or seal a reader needs to learn
	// its kind and its tag or record count, and so the size of its header.
	headerPeekSize = recordPrefixSize + wire.HeaderSize + 8 + 4

	bodyOverhead  = cipherSize + nonceSize + tagSize
	minRecordSize = recordPrefixSize + headerFixedSize + crcSize + bodyOverhead

	// sealHeaderSize is a seal header: kind, version, first seq and record
	// count. It has the layout of a record header up to the tag count.
	sealHeaderSize = wire.HeaderSize + 8 + 4
	hashSize       = sha256.Size
	minSealSize    = recordPrefixSize + sealHeaderSize + crcSize + hashSize + principal.SignatureSize

	// minItemSize is the smallest record or seal.
	minItemSize = min(minRecordSize, minSealSize)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalID names a journal. It is random, so it is no secret, and it appears
// in logs in hex.
type journalID [IDSize]byte

func (id journalID) String() string { return hex.EncodeToString(id[:]) }

// segmentHeader is the start of every segment file.
type segmentHeader struct {
	id       journalID
	firstSeq uint64
}

func (h segmentHeader) encode() []byte {
	e := wire.NewEncoder(KindJournalSegment, formatVersion)
	e.Fixed(h.id[:])
	e.Uint64(h.firstSeq)
	e.Uint32(crc32.Checksum(e.Data(), castagnoli))
	return e.Data()
}

// parseSegmentHeader decodes the first segmentHeaderSize bytes of b. A
// header with a good checksum but another format version fails with
// ErrFormatVersion, which names both versions.
func parseSegmentHeader(b []byte) (segmentHeader, error) {
	if len(b) < segmentHeaderSize {
		return segmentHeader{}, fmt.Errorf("segment header of %d bytes, expected %d: %w", len(b), segmentHeaderSize, ErrIncomplete)
	}
	b = b[:segmentHeaderSize]
	want := binary.BigEndian.Uint32(b[segmentHeaderSize-crcSize:])
	if got := crc32.Checksum(b[:segmentHeaderSize-crcSize], castagnoli); got != want {
		return segmentHeader{}, fmt.Errorf("segment header CRC %08x, stored %08x: %w", got, want, ErrChecksum)
	}
	if wire.Kind(binary.BigEndian.Uint16(b)) == KindJournalSegment && b[2] != formatVersion {
		return segmentHeader{}, fmt.Errorf("segment header: format version %d, expected %d: %w", b[2], formatVersion, ErrFormatVersion)
	}

	var h segmentHeader
	d := wire.NewDecoder(b, KindJournalSegment, formatVersion)
	copy(h.id[:], d.Fixed(IDSize))
	h.firstSeq = d.Uint64()
	d.Uint32()
	if err := d.Finish(); err != nil {
		return segmentHeader{}, fmt.Errorf("segment header: %w: %w", ErrInvalidHeader, err)
	}
	if h.firstSeq == 0 {
		return segmentHeader{}, fmt.Errorf("segment header: first seq 0: %w", ErrInvalidHeader)
	}
	return h, nil
}

// recordHeader is the cleartext part of a record or a seal, checked by the
// header CRC. For a seal, seq is the first seq it covers, count the number
// of records it covers, and tags and payloadLen are empty.
type recordHeader struct {
	length     int64 // bytes of the whole record or seal
	seal       bool
	seq        uint64
	count      int
	tags       []uint64
	payloadLen int
	encoded    []byte // the wire encoding, part of the AEAD data or the signed message
}

// itemName returns "seal" or "record", for messages.
func (h recordHeader) itemName() string {
	if h.seal {
		return "seal"
	}
	return "record"
}

func headerSize(tagCount int) int { return headerFixedSize + 8*tagCount }

func recordSize(tagCount, payloadLen int) int {
	return recordPrefixSize + headerSize(tagCount) + crcSize + bodyOverhead + payloadLen
}

func sealSize(count int) int {
	return recordPrefixSize + sealHeaderSize + crcSize + hashSize*count + principal.SignatureSize
}

func encodeRecordHeader(seq uint64, tags []uint64, payloadLen int) []byte {
	e := wire.NewEncoder(KindJournalRecord, formatVersion)
	e.Uint64(seq)
	e.Uint32(uint32(len(tags)))
	for _, tag := range tags {
		e.Uint64(tag)
	}
	e.Uint32(uint32(payloadLen))
	return e.Data()
}

func encodeSealHeader(firstSeq uint64, count int) []byte {
	e := wire.NewEncoder(KindJournalSeal, formatVersion)
	e.Uint64(firstSeq)
	e.Uint32(uint32(count))
	return e.Data()
}

// peekIsSeal reports whether the first headerPeekSize bytes of a record or
// seal name a seal, before any checksum is known to be good.
func peekIsSeal(peek []byte) bool {
	return wire.Kind(binary.BigEndian.Uint16(peek[recordPrefixSize:])) == KindJournalSeal
}

// peekTagCount returns the tag count of a record, or the record count of a
// seal, from the first headerPeekSize bytes, before any checksum is known to
// be good.
func peekTagCount(peek []byte) uint32 {
	return binary.BigEndian.Uint32(peek[headerPeekSize-4:])
}

// peekHeaderSize returns the size of the header that peek starts, or false
// if its count is above any that a writer produces.
func peekHeaderSize(peek []byte) (int, bool) {
	count := peekTagCount(peek)
	if peekIsSeal(peek) {
		return sealHeaderSize, count <= maxSealRecords
	}
	return headerSize(int(count)), count <= MaxTags
}

// parseRecordHeader checks the header CRC and decodes a record header or a
// seal header. prefixed holds the length field, the header CRC and the
// header, exactly.
func parseRecordHeader(prefixed []byte) (recordHeader, error) {
	length := binary.BigEndian.Uint32(prefixed[0:4])
	want := binary.BigEndian.Uint32(prefixed[4:8])
	encoded := prefixed[recordPrefixSize:]
	got := crc32.Update(crc32.Checksum(prefixed[0:4], castagnoli), castagnoli, encoded)
	if got != want {
		return recordHeader{}, fmt.Errorf("record header CRC %08x, stored %08x: %w", got, want, ErrChecksum)
	}

	h := recordHeader{length: int64(length), encoded: append([]byte(nil), encoded...)}
	if wire.Kind(binary.BigEndian.Uint16(encoded)) == KindJournalSeal {
		return parseSealHeader(h)
	}
	d := wire.NewDecoder(h.encoded, KindJournalRecord, formatVersion)
	h.seq = d.Uint64()
	count := d.Count(MaxTags)
	h.tags = make([]uint64, count)
	for i := range h.tags {
		h.tags[i] = d.Uint64()
	}
	h.payloadLen = int(d.Uint32())
	if err := d.Finish(); err != nil {
		return recordHeader{}, fmt.Errorf("record header: %w: %w", ErrInvalidHeader, err)
	}
	if h.seq == 0 || h.payloadLen > MaxPayloadSize {
		return recordHeader{}, fmt.Errorf("record header: seq %d, payload length %d: %w", h.seq, h.payloadLen, ErrInvalidHeader)
	}
	if want := recordSize(len(h.tags), h.payloadLen); h.length != int64(want) {
		return recordHeader{}, fmt.Errorf("record header: length %d, expected %d for %d tags and %d payload bytes: %w",
			h.length, want, len(h.tags), h.payloadLen, ErrInvalidHeader)
	}
	return h, nil
}

// parseSealHeader decodes the header of a seal whose header CRC passed.
func parseSealHeader(h recordHeader) (recordHeader, error) {
	h.seal = true
	d := wire.NewDecoder(h.encoded, KindJournalSeal, formatVersion)
	h.seq = d.Uint64()
	h.count = int(d.Uint32())
	if err := d.Finish(); err != nil {
		return recordHeader{}, fmt.Errorf("seal header: %w: %w", ErrInvalidHeader, err)
	}
	if h.seq == 0 || h.count == 0 || h.count > maxSealRecords || h.seq+uint64(h.count) < h.seq {
		return recordHeader{}, fmt.Errorf("seal header: first seq %d, %d records: %w", h.seq, h.count, ErrInvalidHeader)
	}
	if want := sealSize(h.count); h.length != int64(want) {
		return recordHeader{}, fmt.Errorf("seal header: length %d, expected %d for %d records: %w", h.length, want, h.count, ErrInvalidHeader)
	}
	return h, nil
}

// Ciphers of record payloads. A record names its cipher in the byte in
// front of its nonce, so one journal may hold both, such as after its
// state directory moved to a machine with other CPU features.
const (
	// cipherXChaCha is XChaCha20-Poly1305 under the journal's payload key
	// with a random 24-byte nonce.
	cipherXChaCha byte = 1

	// cipherAESGCM is AES-256-GCM under a key for the epoch in the first
	// 12 bytes of the nonce field, with the last 12 bytes as GCM nonce:
	// 4 zero bytes and a counter. Each codec that appends draws a random
	// epoch and counts from 1, so no key and nonce repeat, even when a
	// crash makes the next Open reuse seqs.
	cipherAESGCM byte = 2
)

// maxEpochKeys bounds the AES-256-GCM keys that a codec keeps for reading.
// A journal has one epoch per Open that appended to it.
const maxEpochKeys = 64

// codec seals and opens the bodies of one journal's records, and signs and
// verifies its seals.
type codec struct {
	id       journalID
	cipher   byte // the cipher of the records it encodes
	xchacha  cipher.AEAD
	signer   *principal.Credential // nil for read-only use
	verifier principal.PublicKey

	aesKey  []byte // derived from the journal key, from which epoch keys derive
	epoch   [epochSize]byte
	sealer  cipher.AEAD // the AES-256-GCM AEAD of epoch
	counter atomic.Uint64

	mu     sync.Mutex
	epochs map[[epochSize]byte]cipher.AEAD // AES-256-GCM AEADs for reading
}

// newCodec returns the codec of journal id. It encodes with AES-256-GCM on
// CPUs that run it in hardware and with XChaCha20-Poly1305 on others, and
// decodes both.
func newCodec(key []byte, id journalID, signer *principal.Credential, verifier principal.PublicKey) (*codec, error) {
	choice := cipherXChaCha
	if block.HardwareAES() {
		choice = cipherAESGCM
	}
	return newCodecWith(key, id, signer, verifier, choice)
}

func newCodecWith(key []byte, id journalID, signer *principal.Credential, verifier principal.PublicKey, choice byte) (*codec, error) {
	if choice != cipherXChaCha && choice != cipherAESGCM {
		return nil, fmt.Errorf("unknown journal cipher %d", choice)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("journal key of %d bytes, expected %d", len(key), KeySize)
	}
	// Deriving keys per journal keeps the caller's key out of direct use
	// and ties every ciphertext to this journal in one more way.
	derived, err := hkdf.Key(sha256.New, key, id[:], keyInfo, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive journal key: %w", err)
	}
	defer principal.Wipe(derived)
	xchacha, err := chacha20poly1305.NewX(derived)
	if err != nil {
		return nil, fmt.Errorf("journal cipher: %w", err)
	}
	aesKey, err := hkdf.Key(sha256.New, key, id[:], aesKeyInfo, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive journal key: %w", err)
	}
	c := &codec{id: id, cipher: choice, xchacha: xchacha, signer: signer, verifier: verifier,
		aesKey: aesKey, epochs: make(map[[epochSize]byte]cipher.AEAD)}
	if choice == cipherAESGCM {
		// Since Go 1.24 crypto/rand.Read ends the program instead of
		// returning an error.
		rand.Read(c.epoch[:])
		if c.sealer, err = c.epochAEAD(c.epoch); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// epochAEAD returns the AES-256-GCM AEAD of epoch, derived once and kept.
func (c *codec) epochAEAD(epoch [epochSize]byte) (cipher.AEAD, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if aead := c.epochs[epoch]; aead != nil {
		return aead, nil
	}
	key, err := hkdf.Expand(sha256.New, c.aesKey, string(epoch[:]), KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive journal epoch key: %w", err)
	}
	defer principal.Wipe(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("journal cipher: %w", err)
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("journal cipher: %w", err)
	}
	if len(c.epochs) >= maxEpochKeys {
		clear(c.epochs)
	}
	c.epochs[epoch] = aead
	return aead, nil
}

// associatedData returns the AEAD's associated data of a record: the
// journal id, the record header and the cipher byte.
func (c *codec) associatedData(header []byte, choice byte) []byte {
	ad := make([]byte, 0, IDSize+len(header)+cipherSize)
	ad = append(ad, c.id[:]...)
	ad = append(ad, header...)
	return append(ad, choice)
}

// encode returns the complete record (prefix, header, body CRC and body).
// Its seal lists the SHA-256 hash of those bytes (encodedRecord.sum).
func (c *codec) encode(seq uint64, tags []uint64, payload []byte) ([]byte, error) {
	header := encodeRecordHeader(seq, tags, len(payload))
	associated := c.associatedData(header, c.cipher)

	length := recordSize(len(tags), len(payload))
	record := recordBuffer(length)[:recordPrefixSize]
	record = append(record, header...)
	bodyStart := len(record) + crcSize
	record = append(record, make([]byte, crcSize)...)
	record = append(record, c.cipher)
	nonce := record[len(record) : len(record)+nonceSize]
	aead := c.xchacha
	if c.cipher == cipherAESGCM {
		copy(nonce, c.epoch[:])
		clear(nonce[epochSize : nonceSize-8])
		binary.BigEndian.PutUint64(nonce[nonceSize-8:], c.counter.Add(1))
		aead = c.sealer
	} else {
		rand.Read(nonce)
	}
	record = record[:len(record)+nonceSize]

	// The plaintext is laid out where its ciphertext goes and sealed in
	// place, so the payload is copied once, into the record.
	sealed := len(record)
	record = append(record, payload...)
	record = aead.Seal(record[:sealed], nonce[nonceSize-aead.NonceSize():], record[sealed:], associated)
	if len(record) != length {
		panic(fmt.Sprintf("journal: encoded record of %d bytes, expected %d", len(record), length))
	}

	binary.BigEndian.PutUint32(record[0:4], uint32(length))
	headerCRC := crc32.Update(crc32.Checksum(record[0:4], castagnoli), castagnoli, header)
	binary.BigEndian.PutUint32(record[4:8], headerCRC)
	binary.BigEndian.PutUint32(record[bodyStart-crcSize:], crc32.Checksum(record[bodyStart:], castagnoli))
	return record, nil
}

// checkBodyCRC checks the body CRC. body is the body CRC field followed by
// the body.
func checkBodyCRC(body []byte) error {
	want := binary.BigEndian.Uint32(body[:crcSize])
	if got := crc32.Checksum(body[crcSize:], castagnoli); got != want {
		return fmt.Errorf("record body CRC %08x, stored %08x: %w", got, want, ErrChecksum)
	}
	return nil
}

// open decrypts the body of a record. body is the body CRC field followed by
// the body, already checked by checkBodyCRC.
func (c *codec) open(h recordHeader, body []byte) ([]byte, error) {
	choice, nonce, sealed := body[crcSize], body[crcSize+cipherSize:crcSize+cipherSize+nonceSize], body[crcSize+cipherSize+nonceSize:]
	var aead cipher.AEAD
	switch choice {
	case cipherXChaCha:
		aead = c.xchacha
	case cipherAESGCM:
		var err error
		if aead, err = c.epochAEAD([epochSize]byte(nonce[:epochSize])); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown payload cipher %d: %w", choice, ErrDecrypt)
	}
	plaintext, err := aead.Open(nil, nonce[nonceSize-aead.NonceSize():], sealed, c.associatedData(h.encoded, choice))
	if err != nil {
		return nil, ErrDecrypt
	}
	if len(plaintext) != h.payloadLen {
		return nil, fmt.Errorf("plaintext of %d bytes, expected %d: %w", len(plaintext), h.payloadLen, ErrInvalidHeader)
	}
	return plaintext, nil
}

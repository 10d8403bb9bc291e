package journal

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// Kinds of the journal's canonical encodings.
const (
	KindJournalSegment wire.Kind = 0x0100
	KindJournalRecord  wire.Kind = 0x0101
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

const (
	formatVersion = 1
	signContext   = "blocktree journal record v1"
	keyInfo       = "blocktree journal payload key v1"

	crcSize   = 4
	nonceSize = chacha20poly1305.NonceSizeX
	tagSize   = chacha20poly1305.Overhead

	// segmentHeaderSize is kind, version, journal id, first seq and CRC.
	segmentHeaderSize = wire.HeaderSize + IDSize + 8 + crcSize

	// recordPrefixSize is the length field and the header CRC.
	recordPrefixSize = 4 + crcSize

	// headerFixedSize is a record header without its tags: kind, version,
	// seq, tag count and payload length.
	headerFixedSize = wire.HeaderSize + 8 + 4 + 4

	// headerPeekSize is how much of a record a reader needs to learn the tag
	// count and so the size of the header.
	headerPeekSize = recordPrefixSize + wire.HeaderSize + 8 + 4

	bodyOverhead  = nonceSize + principal.SignatureSize + tagSize
	minRecordSize = recordPrefixSize + headerFixedSize + crcSize + bodyOverhead
	maxRecordSize = minRecordSize + 8*MaxTags + MaxPayloadSize
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

// parseSegmentHeader decodes the first segmentHeaderSize bytes of b.
func parseSegmentHeader(b []byte) (segmentHeader, error) {
	if len(b) < segmentHeaderSize {
		return segmentHeader{}, fmt.Errorf("segment header of %d bytes, expected %d: %w", len(b), segmentHeaderSize, ErrIncomplete)
	}
	b = b[:segmentHeaderSize]
	want := binary.BigEndian.Uint32(b[segmentHeaderSize-crcSize:])
	if got := crc32.Checksum(b[:segmentHeaderSize-crcSize], castagnoli); got != want {
		return segmentHeader{}, fmt.Errorf("segment header CRC %08x, stored %08x: %w", got, want, ErrChecksum)
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

// recordHeader is the cleartext part of a record, checked by the header CRC.
type recordHeader struct {
	length     int64 // bytes of the whole record
	seq        uint64
	tags       []uint64
	payloadLen int
	encoded    []byte // the wire encoding, part of the AEAD data and the signed message
}

func headerSize(tagCount int) int { return headerFixedSize + 8*tagCount }

func recordSize(tagCount, payloadLen int) int {
	return recordPrefixSize + headerSize(tagCount) + crcSize + bodyOverhead + payloadLen
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

// peekTagCount returns the tag count from the first headerPeekSize bytes of a
// record, before any checksum is known to be good.
func peekTagCount(peek []byte) uint32 {
	return binary.BigEndian.Uint32(peek[headerPeekSize-4:])
}

// parseRecordHeader checks the header CRC and decodes the header. prefixed
// holds the length field, the header CRC and the header, exactly.
func parseRecordHeader(prefixed []byte) (recordHeader, error) {
	length := binary.BigEndian.Uint32(prefixed[0:4])
	want := binary.BigEndian.Uint32(prefixed[4:8])
	encoded := prefixed[recordPrefixSize:]
	got := crc32.Update(crc32.Checksum(prefixed[0:4], castagnoli), castagnoli, encoded)
	if got != want {
		return recordHeader{}, fmt.Errorf("record header CRC %08x, stored %08x: %w", got, want, ErrChecksum)
	}

	h := recordHeader{length: int64(length), encoded: append([]byte(nil), encoded...)}
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

// codec seals and opens the bodies of one journal's records.
type codec struct {
	id       journalID
	aead     cipher.AEAD
	signer   *principal.Credential // nil for read-only use
	verifier principal.PublicKey
}

func newCodec(key []byte, id journalID, signer *principal.Credential, verifier principal.PublicKey) (*codec, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("journal key of %d bytes, expected %d", len(key), KeySize)
	}
	// Deriving a key per journal keeps the caller's key out of direct use
	// and ties every ciphertext to this journal in one more way.
	derived, err := hkdf.Key(sha256.New, key, id[:], keyInfo, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive journal key: %w", err)
	}
	defer principal.Wipe(derived)
	aead, err := chacha20poly1305.NewX(derived)
	if err != nil {
		return nil, fmt.Errorf("journal cipher: %w", err)
	}
	return &codec{id: id, aead: aead, signer: signer, verifier: verifier}, nil
}

// encode returns the complete record: prefix, header, body CRC and body.
func (c *codec) encode(seq uint64, tags []uint64, payload []byte) ([]byte, error) {
	header := encodeRecordHeader(seq, tags, len(payload))
	associated := make([]byte, 0, IDSize+len(header))
	associated = append(associated, c.id[:]...)
	associated = append(associated, header...)

	// The signed message is associated || payload; signing it in parts
	// saves a copy of the payload, which can be 1 MiB of file data.
	signature, err := c.signer.Signing.SignParts(signContext, associated, payload)
	if err != nil {
		return nil, fmt.Errorf("sign record seq %d: %w", seq, err)
	}

	length := recordSize(len(tags), len(payload))
	record := make([]byte, recordPrefixSize, length)
	record = append(record, header...)
	bodyStart := len(record) + crcSize
	record = append(record, make([]byte, crcSize)...)
	nonce := record[len(record) : len(record)+nonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce for record seq %d: %w", seq, err)
	}
	record = record[:len(record)+nonceSize]

	// The plaintext is laid out where its ciphertext goes and sealed in
	// place, so the payload is copied once, into the record.
	sealed := len(record)
	record = append(record, payload...)
	record = append(record, signature...)
	record = c.aead.Seal(record[:sealed], nonce, record[sealed:], associated)
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

// open decrypts the body and verifies the signature. body is the body CRC
// field followed by the body, already checked by checkBodyCRC.
func (c *codec) open(h recordHeader, body []byte) ([]byte, error) {
	body = body[crcSize:]
	associated := make([]byte, 0, IDSize+len(h.encoded))
	associated = append(associated, c.id[:]...)
	associated = append(associated, h.encoded...)

	plaintext, err := c.aead.Open(nil, body[:nonceSize], body[nonceSize:], associated)
	if err != nil {
		return nil, ErrDecrypt
	}
	if len(plaintext) != h.payloadLen+principal.SignatureSize {
		return nil, fmt.Errorf("plaintext of %d bytes, expected %d: %w", len(plaintext), h.payloadLen+principal.SignatureSize, ErrInvalidHeader)
	}
	payload := plaintext[:h.payloadLen:h.payloadLen]
	signature := plaintext[h.payloadLen:]

	if err := c.verifier.VerifyParts(signContext, signature, associated, payload); err != nil {
		return nil, fmt.Errorf("record signature: %w", err)
	}
	return payload, nil
}

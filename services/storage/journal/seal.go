package journal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// sealBody is the decoded body of a seal: the SHA-256 hash of each record
// it covers, in seq order, and the node's signature.
type sealBody struct {
	hashes    []byte // count × hashSize bytes
	signature []byte
}

// hash returns the hash that the seal lists for seq, or false if seq is
// outside the seqs it covers.
func (s sealBody) hash(h recordHeader, seq uint64) ([]byte, bool) {
	if seq < h.seq || seq-h.seq >= uint64(h.count) {
		return nil, false
	}
	i := int(seq-h.seq) * hashSize
	return s.hashes[i : i+hashSize], true
}

// seal returns the seal of the records with seqs firstSeq on, whose hashes
// are given in seq order. The signed message is journal id || seal header ||
// hashes, so a seal cannot cover records of another journal or other seqs.
func (c *codec) seal(firstSeq uint64, hashes [][hashSize]byte) ([]byte, error) {
	header := encodeSealHeader(firstSeq, len(hashes))
	list := make([]byte, 0, hashSize*len(hashes))
	for _, h := range hashes {
		list = append(list, h[:]...)
	}
	signature, err := c.signer.Signing.SignParts(signContext, c.id[:], header, list)
	if err != nil {
		return nil, fmt.Errorf("sign seal of seqs %d to %d: %w", firstSeq, firstSeq+uint64(len(hashes))-1, err)
	}
	return assembleSeal(header, list, signature), nil
}

// assembleSeal lays out a seal: prefix, header, body CRC, hashes and
// signature.
func assembleSeal(header, hashes, signature []byte) []byte {
	length := recordPrefixSize + len(header) + crcSize + len(hashes) + len(signature)
	b := make([]byte, recordPrefixSize, length)
	b = append(b, header...)
	bodyStart := len(b) + crcSize
	b = append(b, make([]byte, crcSize)...)
	b = append(b, hashes...)
	b = append(b, signature...)

	binary.BigEndian.PutUint32(b[0:4], uint32(length))
	headerCRC := crc32.Update(crc32.Checksum(b[0:4], castagnoli), castagnoli, header)
	binary.BigEndian.PutUint32(b[4:8], headerCRC)
	binary.BigEndian.PutUint32(b[bodyStart-crcSize:], crc32.Checksum(b[bodyStart:], castagnoli))
	return b
}

// parseSealBody splits the body of a seal whose header h parsed. body is
// the body CRC field followed by the body, already checked by checkBodyCRC.
// The result aliases body.
func parseSealBody(h recordHeader, body []byte) (sealBody, error) {
	body = body[crcSize:]
	if want := hashSize*h.count + principal.SignatureSize; len(body) != want {
		return sealBody{}, fmt.Errorf("seal body of %d bytes, expected %d for %d records: %w", len(body), want, h.count, ErrInvalidHeader)
	}
	split := hashSize * h.count
	return sealBody{hashes: body[:split], signature: body[split:]}, nil
}

// verifySeal checks the node's signature over a seal.
func (c *codec) verifySeal(h recordHeader, s sealBody) error {
	if err := c.verifier.VerifyParts(signContext, s.signature, c.id[:], h.encoded, s.hashes); err != nil {
		return fmt.Errorf("seal signature: %w", err)
	}
	return nil
}

// decodeSeal decodes one complete seal, exactly len(b) bytes, and checks its
// checksums but not its signature. Readers of segments parse the header and
// the body separately, with the same functions.
func decodeSeal(b []byte) (recordHeader, sealBody, error) {
	if len(b) < recordPrefixSize+sealHeaderSize {
		return recordHeader{}, sealBody{}, fmt.Errorf("seal of %d bytes, the header needs %d: %w", len(b), recordPrefixSize+sealHeaderSize, ErrIncomplete)
	}
	h, err := parseRecordHeader(b[:recordPrefixSize+sealHeaderSize])
	if err != nil {
		return recordHeader{}, sealBody{}, err
	}
	if !h.seal {
		return recordHeader{}, sealBody{}, fmt.Errorf("record header where a seal was expected: %w", ErrInvalidHeader)
	}
	if h.length != int64(len(b)) {
		return recordHeader{}, sealBody{}, fmt.Errorf("seal of %d bytes, but its header gives a length of %d: %w", len(b), h.length, ErrInvalidHeader)
	}
	body := b[recordPrefixSize+sealHeaderSize:]
	if err := checkBodyCRC(body); err != nil {
		return recordHeader{}, sealBody{}, err
	}
	s, err := parseSealBody(h, body)
	if err != nil {
		return recordHeader{}, sealBody{}, err
	}
	return h, s, nil
}

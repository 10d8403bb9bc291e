package journal

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/blocktree/blocktree/services/crypto/wire"
)

// windowSize is how many bytes a segmentReader reads at a time. The search
// for the next record after a damaged header looks at every offset, and the
// window makes that cost one system call per window instead of per byte.
const windowSize = 256 << 10

// readError is a failed read(2), as opposed to damaged contents. Scans stop
// on it instead of reporting damage.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// segmentReader reads the first limit bytes of a segment file.
type segmentReader struct {
	file   io.ReaderAt
	limit  int64
	window []byte
	start  int64 // file offset of window[0]
}

func newSegmentReader(file io.ReaderAt, limit int64) *segmentReader {
	return &segmentReader{file: file, limit: limit}
}

// bytes returns n bytes at offset off. The result may alias the window, so
// it is valid only until the next call. Reading past limit gives
// ErrIncomplete, and a failed read gives a *readError.
func (r *segmentReader) bytes(off int64, n int) ([]byte, error) {
	if off < 0 || n < 0 || off > r.limit || int64(n) > r.limit-off {
		return nil, fmt.Errorf("%d bytes at offset %d, segment has %d: %w", n, off, r.limit, ErrIncomplete)
	}
	if off >= r.start && off+int64(n) <= r.start+int64(len(r.window)) {
		return r.window[off-r.start : off-r.start+int64(n)], nil
	}
	if n > windowSize {
		b := make([]byte, n)
		if err := r.readFull(b, off); err != nil {
			return nil, err
		}
		return b, nil
	}

	size := int(min(int64(windowSize), r.limit-off))
	if r.window == nil {
		r.window = make([]byte, 0, windowSize)
	}
	r.window = r.window[:size]
	if err := r.readFull(r.window, off); err != nil {
		r.window = r.window[:0]
		return nil, err
	}
	r.start = off
	return r.window[:n], nil
}

func (r *segmentReader) readFull(b []byte, off int64) error {
	n, err := r.file.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &readError{fmt.Errorf("read %d bytes at offset %d: %w", len(b), off, err)}
}

func readSegmentHeader(r *segmentReader) (segmentHeader, error) {
	if r.limit < segmentHeaderSize {
		return segmentHeader{}, fmt.Errorf("segment of %d bytes, header needs %d: %w", r.limit, segmentHeaderSize, ErrIncomplete)
	}
	b, err := r.bytes(0, segmentHeaderSize)
	if err != nil {
		return segmentHeader{}, err
	}
	return parseSegmentHeader(b)
}

// bodyCheck selects how much of a record body a scan checks.
type bodyCheck int

const (
	skipBody  bodyCheck = iota // only the header: records before Replay's start
	checkCRC                   // the body CRC: Open's search for the torn tail
	checkAuth                  // CRC, hash and AEAD: Check
	checkAll                   // CRC, hash and AEAD, with the payload kept: Replay
)

// step is one record, one seal, or one stretch of bytes without a readable
// header, found by a scanner.
type step struct {
	offset   int64
	end      int64         // offset after the record, seal or stretch
	expected uint64        // seq that a record at offset must have
	header   *recordHeader // nil when no header could be read at offset
	crcOK    bool          // the record or seal is complete and both its CRCs match
	hashed   bool          // hash is set
	hash     [hashSize]byte
	seal     *sealBody // the body of a seal whose CRCs match, unless skipBody
	payload  []byte    // set by checkAll for a record that decrypted
	openErr  error     // the AEAD failed; the group decides whether it is the reason
	err      error     // damage to the header or the body, or no valid seal
	seqErr   error     // the record is authentic but at the wrong seq
}

// isSeal reports whether the step is a seal with a readable header.
func (s *step) isSeal() bool { return s.header != nil && s.header.seal }

// damaged reports whether the step must not be replayed as a good record.
func (s *step) damaged() bool { return s.header == nil || s.err != nil || s.seqErr != nil }

// recordErr returns the reason the step is damaged.
func (s *step) recordErr() error {
	if s.err != nil && s.seqErr != nil {
		return errors.Join(s.err, s.seqErr)
	}
	if s.err != nil {
		return s.err
	}
	return s.seqErr
}

// scanner walks the records and seals of one segment.
type scanner struct {
	r        *segmentReader
	codec    *codec
	off      int64
	expected uint64
	// resync makes the scanner search past a damaged header for the next
	// record or seal with good checksums. Without it, the stretch ends at
	// limit.
	resync bool
}

func newScanner(r *segmentReader, c *codec, firstSeq uint64, resync bool) *scanner {
	return &scanner{r: r, codec: c, off: segmentHeaderSize, expected: firstSeq, resync: resync}
}

// next returns the next step, or false at the end of the segment. An error
// is a failed read, never damage.
func (s *scanner) next(check bodyCheck) (step, bool, error) {
	if s.off >= s.r.limit {
		return step{}, false, nil
	}
	st := step{offset: s.off, expected: s.expected}

	header, err := s.readHeader(s.off)
	if err != nil {
		if isReadError(err) {
			return step{}, false, err
		}
		st.err = err
		st.end = s.r.limit
		if s.resync {
			at, found, err := s.findRecord(s.off + 1)
			if err != nil {
				return step{}, false, err
			}
			if found != nil {
				// The number of records lost in the stretch is unknown, so
				// the next record's own authenticated seq takes over. A seal
				// found there claims the seqs before the next record.
				st.end = at
				s.expected = found.seq
				if found.seal {
					s.expected = found.seq + uint64(found.count)
				}
			}
		}
		s.off = st.end
		return st, true, nil
	}

	st.header = &header
	if !header.seal {
		if header.seq != s.expected {
			st.seqErr = fmt.Errorf("seq %d at offset %d, expected %d: %w", header.seq, s.off, s.expected, ErrSequence)
		}
		s.expected++
	}
	if header.length > s.r.limit-s.off {
		st.err = fmt.Errorf("%s of %d bytes at offset %d, segment ends %d bytes later: %w",
			header.itemName(), header.length, s.off, s.r.limit-s.off, ErrIncomplete)
		st.end = s.r.limit
		s.off = st.end
		return st, true, nil
	}
	st.end = s.off + header.length
	s.off = st.end
	// Seals are always read whole: a group's records are verified against
	// the seal after them, also when Replay skips the bodies of some.
	if check == skipBody && !header.seal {
		return st, true, nil
	}

	whole, err := s.r.bytes(st.offset, int(header.length))
	if err != nil {
		return step{}, false, err
	}
	body := whole[recordPrefixSize+len(header.encoded):]
	if err := checkBodyCRC(body); err != nil {
		st.err = err
		return st, true, nil
	}
	st.crcOK = true
	if header.seal {
		// The body is copied because whole may alias the reader's window,
		// and the seal is used after the records that follow are read.
		sb, err := parseSealBody(header, append([]byte(nil), body...))
		if err != nil {
			st.err = err
			return st, true, nil
		}
		st.seal = &sb
		return st, true, nil
	}
	if check == checkCRC {
		return st, true, nil
	}
	st.hash = sha256.Sum256(whole)
	st.hashed = true
	payload, err := s.codec.open(header, body)
	st.openErr = err
	if check == checkAll && err == nil {
		st.payload = payload
	}
	return st, true, nil
}

// readHeader reads and checks the record or seal header at off. A failed
// read is a *readError, and every other error means damage.
func (s *scanner) readHeader(off int64) (recordHeader, error) {
	peek, err := s.r.bytes(off, headerPeekSize)
	if err != nil {
		return recordHeader{}, err
	}
	size, ok := peekHeaderSize(peek)
	if !ok {
		// The header CRC cannot be checked without the header size, and a
		// count this large is damage in any case.
		return recordHeader{}, fmt.Errorf("record header at offset %d: tag or record count %d above the limit: %w", off, peekTagCount(peek), ErrInvalidHeader)
	}
	prefixed, err := s.r.bytes(off, recordPrefixSize+size)
	if err != nil {
		return recordHeader{}, err
	}
	h, err := parseRecordHeader(prefixed)
	if err != nil {
		return recordHeader{}, fmt.Errorf("record header at offset %d: %w", off, err)
	}
	return h, nil
}

// findRecord returns the first offset at or after from where a complete
// record or seal with good checksums starts, or nil if there is none before
// limit.
func (s *scanner) findRecord(from int64) (int64, *recordHeader, error) {
	for off := from; s.r.limit-off >= minItemSize; off++ {
		peek, err := s.r.bytes(off, headerPeekSize)
		if err != nil {
			return 0, nil, err
		}
		// Cheap tests first: the kind and version at their fixed place, a
		// possible length and count. Nearly every offset fails one of them
		// before any CRC is computed.
		kind := wire.Kind(binary.BigEndian.Uint16(peek[recordPrefixSize:]))
		if (kind != KindJournalRecord && kind != KindJournalSeal) || peek[recordPrefixSize+2] != formatVersion {
			continue
		}
		length := int64(binary.BigEndian.Uint32(peek[0:4]))
		if _, ok := peekHeaderSize(peek); !ok || length < minItemSize || length > s.r.limit-off {
			continue
		}
		h, err := s.readHeader(off)
		if err != nil {
			if isReadError(err) {
				return 0, nil, err
			}
			continue
		}
		body, err := s.r.bytes(off+recordPrefixSize+int64(len(h.encoded)), int(h.length)-recordPrefixSize-len(h.encoded))
		if err != nil {
			return 0, nil, err
		}
		if checkBodyCRC(body) == nil {
			return off, &h, nil
		}
	}
	return 0, nil, nil
}

func isReadError(err error) bool {
	var re *readError
	return errors.As(err, &re)
}

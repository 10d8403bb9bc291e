package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	skipBody bodyCheck = iota // only the header: records before Replay's start
	checkCRC                  // the body CRC: Open's search for the torn tail
	checkAll                  // CRC, AEAD and signature, with the payload returned
)

// step is one record, or one stretch of bytes without a readable record
// header, found by a scanner.
type step struct {
	offset   int64
	end      int64         // offset after the record or stretch
	expected uint64        // seq that a record at offset must have
	header   *recordHeader // nil when no record header could be read at offset
	crcOK    bool          // the record is complete and both its CRCs match
	payload  []byte        // set by checkAll for a record without damage
	err      error         // damage to the header or the body
	seqErr   error         // the record is authentic but at the wrong seq
}

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

// scanner walks the records of one segment.
type scanner struct {
	r        *segmentReader
	codec    *codec
	off      int64
	expected uint64
	// resync makes the scanner search past a damaged header for the next
	// record with good checksums. Without it, the stretch ends at limit.
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
				// the next record's own authenticated seq takes over.
				st.end = at
				s.expected = found.seq
			}
		}
		s.off = st.end
		return st, true, nil
	}

	st.header = &header
	if header.seq != s.expected {
		st.seqErr = fmt.Errorf("seq %d at offset %d, expected %d: %w", header.seq, s.off, s.expected, ErrSequence)
	}
	s.expected++
	if header.length > s.r.limit-s.off {
		st.err = fmt.Errorf("record of %d bytes at offset %d, segment ends %d bytes later: %w",
			header.length, s.off, s.r.limit-s.off, ErrIncomplete)
		st.end = s.r.limit
		s.off = st.end
		return st, true, nil
	}
	st.end = s.off + header.length
	s.off = st.end
	if check == skipBody {
		return st, true, nil
	}

	body, err := s.readBody(st.offset, header)
	if err != nil {
		return step{}, false, err
	}
	if err := checkBodyCRC(body); err != nil {
		st.err = err
		return st, true, nil
	}
	st.crcOK = true
	if check == checkAll {
		st.payload, st.err = s.codec.open(header, body)
	}
	return st, true, nil
}

// authenticate opens the body of a step that passed checkCRC.
func (s *scanner) authenticate(st *step) error {
	body, err := s.readBody(st.offset, *st.header)
	if err != nil {
		return err
	}
	if err := checkBodyCRC(body); err != nil {
		return err
	}
	_, err = s.codec.open(*st.header, body)
	return err
}

func (s *scanner) readBody(offset int64, h recordHeader) ([]byte, error) {
	start := offset + recordPrefixSize + int64(len(h.encoded))
	return s.r.bytes(start, int(h.length-(start-offset)))
}

// readHeader reads and checks the record header at off. A failed read is a
// *readError, and every other error means damage.
func (s *scanner) readHeader(off int64) (recordHeader, error) {
	peek, err := s.r.bytes(off, headerPeekSize)
	if err != nil {
		return recordHeader{}, err
	}
	count := peekTagCount(peek)
	if count > MaxTags {
		// The header CRC cannot be checked without the header size, and a
		// count this large is damage in any case.
		return recordHeader{}, fmt.Errorf("record header at offset %d: tag count %d above %d: %w", off, count, MaxTags, ErrInvalidHeader)
	}
	prefixed, err := s.r.bytes(off, recordPrefixSize+headerSize(int(count)))
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
// record with good checksums starts, or nil if there is none before limit.
func (s *scanner) findRecord(from int64) (int64, *recordHeader, error) {
	for off := from; s.r.limit-off >= minRecordSize; off++ {
		peek, err := s.r.bytes(off, headerPeekSize)
		if err != nil {
			return 0, nil, err
		}
		// Cheap tests first: the record kind and version at their fixed
		// place, a possible length and tag count. Nearly every offset fails
		// one of them before any CRC is computed.
		if peek[8] != byte(KindJournalRecord>>8) || peek[9] != byte(KindJournalRecord&0xff) || peek[10] != formatVersion {
			continue
		}
		length := int64(binary.BigEndian.Uint32(peek[0:4]))
		count := peekTagCount(peek)
		if length < minRecordSize || length > s.r.limit-off || count > MaxTags {
			continue
		}
		h, err := s.readHeader(off)
		if err != nil {
			if isReadError(err) {
				return 0, nil, err
			}
			continue
		}
		body, err := s.readBody(off, h)
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

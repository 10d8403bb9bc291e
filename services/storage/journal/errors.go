package journal

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is. Errors about one record or segment
// wrap one of them together with the segment, offset and seq.
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("journal is closed")

	// ErrCorrupt means the journal cannot be read past some point. It is
	// wrapped by *CorruptError.
	ErrCorrupt = errors.New("journal is corrupt")

	// ErrChecksum means a CRC32C of a record or segment header does not match.
	ErrChecksum = errors.New("checksum mismatch")

	// ErrIncomplete means a record or header ends after the end of its file.
	ErrIncomplete = errors.New("incomplete record or header")

	// ErrInvalidHeader means a record or segment header has a good checksum
	// but fields that no writer produces.
	ErrInvalidHeader = errors.New("invalid header")

	// ErrDecrypt means the AEAD rejected a payload, or the record names a
	// cipher that this version does not know. A record changed on disk
	// fails its seal first, so this means the Key is wrong.
	ErrDecrypt = errors.New("payload authentication failed")

	// ErrUnsealed means no valid seal covers a record: the seal after its
	// group is missing, damaged, signed by another key or for another
	// journal, or covers other seqs.
	ErrUnsealed = errors.New("record has no valid seal")

	// ErrSealMismatch means a record's hash differs from the one its valid
	// seal lists: the record was changed after it was sealed.
	ErrSealMismatch = errors.New("record does not match its seal")

	// ErrFormatVersion means a segment has a format version that this
	// package does not read. No older version is migrated.
	ErrFormatVersion = errors.New("unsupported journal format version")

	// ErrSequence means a record or segment is not at the seq its position
	// calls for: records were reordered, lost or copied.
	ErrSequence = errors.New("record out of sequence")

	// ErrWrongJournal means a segment header names another journal id.
	ErrWrongJournal = errors.New("segment belongs to another journal")

	// ErrTruncated means the requested records were removed by TruncateBefore.
	ErrTruncated = errors.New("records were removed by TruncateBefore")

	// ErrTooLarge means Append was given more than MaxTags tags or more than
	// MaxPayloadSize payload bytes.
	ErrTooLarge = errors.New("record is too large")

	// ErrLocked means another Log has the directory open.
	ErrLocked = errors.New("journal is in use by another process")
)

// CorruptError reports where a journal cannot be read any further: a record
// header or a segment header is damaged, or a segment is missing or out of
// place. Offset 0 means the segment header.
type CorruptError struct {
	Segment string // file name of the segment, without the directory
	Offset  int64  // byte offset in the segment
	Seq     uint64 // seq expected at that offset, 0 if unknown
	Err     error  // the cause, such as ErrChecksum
}

func (e *CorruptError) Error() string {
	msg := fmt.Sprintf("journal segment %s offset %d", e.Segment, e.Offset)
	if e.Seq != 0 {
		msg += fmt.Sprintf(" (seq %d)", e.Seq)
	}
	return msg + ": " + e.Err.Error() + ": " + ErrCorrupt.Error()
}

// Unwrap returns ErrCorrupt and the cause, so errors.Is matches both.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

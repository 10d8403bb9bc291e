package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Replay calls fn for every durable record with seq >= from, in seq order.
// It reads the records of one sealed group and verifies them against their
// seal before it passes any of them. A damaged record, or one that its seal
// does not vouch for, is passed with Damaged set, its tags and no payload,
// and Replay continues after it. A damaged record, seal or segment header
// ends Replay with a *CorruptError, because nothing after it can be found.
//
// Replay holds no lock while fn runs, so fn may call Append and Sync. It
// returns an error wrapping ErrTruncated if records from from on were removed
// by TruncateBefore, also while Replay runs, and fn's own error, wrapped.
// Records appended after Replay started may or may not be passed to fn.
func (l *Log) Replay(from uint64, fn func(r Record) error) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return fmt.Errorf("replay: %w", ErrClosed)
	}
	segments := slices.Clone(l.segments)
	durableSize := l.durableSize
	l.mu.Unlock()

	from = max(from, 1)
	if from < segments[0].firstSeq {
		return fmt.Errorf("replay from seq %d: oldest segment starts at seq %d: %w", from, segments[0].firstSeq, ErrTruncated)
	}
	start := 0
	for i, seg := range segments {
		if seg.firstSeq <= from {
			start = i
		}
	}

	expected := segments[start].firstSeq
	for i := start; i < len(segments); i++ {
		seg := segments[i]
		if seg.firstSeq != expected {
			return &CorruptError{Segment: seg.name, Seq: expected,
				Err: fmt.Errorf("segment starts at seq %d, expected %d: %w", seg.firstSeq, expected, ErrSequence)}
		}
		// The last segment is read only as far as it is durable: bytes
		// after that belong to a write that a leader has not yet synced.
		limit := int64(-1)
		if i == len(segments)-1 {
			limit = durableSize
		}
		next, err := l.replaySegment(seg, limit, from, fn)
		if err != nil {
			return err
		}
		expected = next
	}
	return nil
}

// replaySegment replays one segment up to limit bytes, or all of it if limit
// is negative, and returns the seq expected after its last record.
func (l *Log) replaySegment(seg segmentInfo, limit int64, from uint64, fn func(Record) error) (uint64, error) {
	f, err := os.Open(filepath.Join(l.dir.Name(), seg.name))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("replay segment %s: %w", seg.name, ErrTruncated)
	}
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	if limit < 0 {
		info, err := f.Stat()
		if err != nil {
			return 0, fmt.Errorf("replay: %w", err)
		}
		limit = info.Size()
	}

	reader := newSegmentReader(f, limit)
	header, err := readSegmentHeader(reader)
	if isReadError(err) {
		return 0, fmt.Errorf("replay segment %s: %w", seg.name, err)
	}
	if err != nil {
		return 0, &CorruptError{Segment: seg.name, Seq: seg.firstSeq, Err: err}
	}
	if header.id != l.codec.id {
		return 0, &CorruptError{Segment: seg.name, Seq: seg.firstSeq,
			Err: fmt.Errorf("journal id %s, expected %s: %w", header.id, l.codec.id, ErrWrongJournal)}
	}
	if header.firstSeq != seg.firstSeq {
		return 0, &CorruptError{Segment: seg.name, Seq: seg.firstSeq,
			Err: fmt.Errorf("header first seq %d does not match seq %d in the file name: %w", header.firstSeq, seg.firstSeq, ErrInvalidHeader)}
	}

	// The scanner searches past a damaged header only to find the seal
	// that verifies the records before it. Replay still stops there.
	gs := newGroupScanner(newScanner(reader, l.codec, seg.firstSeq, true), true)
	for {
		g, ok, err := gs.next(from, checkAll)
		if err != nil {
			return 0, fmt.Errorf("replay segment %s: %w", seg.name, err)
		}
		if !ok {
			return gs.sc.expected, nil
		}
		if g.end <= from && !g.stretch {
			continue
		}
		g.resolve(l.codec)
		for _, st := range g.steps {
			if st.header == nil {
				return 0, &CorruptError{Segment: seg.name, Offset: st.offset, Seq: st.expected, Err: st.err}
			}
			if st.expected < from {
				continue
			}
			record := Record{Seq: st.header.seq, Tags: st.header.tags}
			if st.damaged() {
				record.Damaged = true
				record.Err = fmt.Errorf("segment %s offset %d: %w", seg.name, st.offset, st.recordErr())
			} else {
				record.Payload = st.payload
			}
			if err := fn(record); err != nil {
				return 0, fmt.Errorf("replay seq %d: %w", record.Seq, err)
			}
		}
	}
}

// TruncateBefore removes every segment whose records all have seqs below
// seq, once a checkpoint has made them redundant, and fsyncs the directory.
// The last segment always stays, so NextSeq never goes back. Segments go
// oldest first, so a crash in between leaves no gap.
func (l *Log) TruncateBefore(seq uint64) error {
	l.truncateMu.Lock()
	defer l.truncateMu.Unlock()

	l.mu.Lock()
	if l.closing || l.closed {
		l.mu.Unlock()
		return fmt.Errorf("truncate: %w", ErrClosed)
	}
	// Segment i holds seqs below the first seq of segment i+1. Segments are
	// only added at the end, and only TruncateBefore removes them.
	n := 0
	for n+1 < len(l.segments) && l.segments[n+1].firstSeq <= seq {
		n++
	}
	removed := slices.Clone(l.segments[:n])
	l.segments = slices.Clone(l.segments[n:])
	l.mu.Unlock()
	if n == 0 {
		return nil
	}

	for _, seg := range removed {
		if err := os.Remove(filepath.Join(l.dir.Name(), seg.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("truncate before seq %d: %w", seq, err)
		}
	}
	if err := l.hooks.fsyncDir(l.dir); err != nil {
		return fmt.Errorf("truncate before seq %d: fsync directory: %w", seq, err)
	}
	l.logger.Info("journal: removed segments", "seq", seq, "segment", removed[len(removed)-1].name, "count", n)
	return nil
}

package journal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestTruncateBefore(t *testing.T) {
	e := newEnv(t)
	l := e.open(smallSegments)
	appendSynced(t, l, 30)
	segments, _, err := listSegments(e.dir)
	if err != nil {
		t.Fatalf("listSegments: %v", err)
	}
	if len(segments) < 5 {
		t.Fatalf("30 records made %d segments, expected at least 5", len(segments))
	}

	// A seq inside segment 2 removes segments 0 and 1 only: segment 2
	// still holds records below the seq.
	keep := segments[2]
	seq := keep.firstSeq + 1
	if err := l.TruncateBefore(seq); err != nil {
		t.Fatalf("TruncateBefore(%d): %v", seq, err)
	}
	for i, seg := range segments {
		_, err := os.Stat(filepath.Join(e.dir, seg.name))
		if removed := errors.Is(err, os.ErrNotExist); removed != (i < 2) {
			t.Errorf("segment %d (%s) removed: %v, expected %v", i, seg.name, removed, i < 2)
		}
	}

	records, err := replay(l, seq)
	if err != nil {
		t.Fatalf("Replay from %d: %v", seq, err)
	}
	checkRecords(t, records, seq, 30)
	records, err = replay(l, keep.firstSeq)
	if err != nil {
		t.Fatalf("Replay from the first kept seq %d: %v", keep.firstSeq, err)
	}
	checkRecords(t, records, keep.firstSeq, 30)
	if _, err := replay(l, keep.firstSeq-1); !errors.Is(err, ErrTruncated) {
		t.Errorf("Replay from removed seq %d returned %v, expected ErrTruncated", keep.firstSeq-1, err)
	}

	// The same seq again removes nothing more.
	if err := l.TruncateBefore(seq); err != nil {
		t.Fatalf("second TruncateBefore(%d): %v", seq, err)
	}
	if got := len(segmentPaths(t, e.dir)); got != len(segments)-2 {
		t.Errorf("%d segments after the second TruncateBefore, expected %d", got, len(segments)-2)
	}

	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	l = e.open(smallSegments)
	if got := l.NextSeq(); got != 31 {
		t.Fatalf("NextSeq after reopen = %d, expected 31", got)
	}
	appendSynced(t, l, 3)
	records, err = replay(l, keep.firstSeq)
	if err != nil {
		t.Fatalf("Replay after reopen: %v", err)
	}
	checkRecords(t, records, keep.firstSeq, 33)
	if _, err := replay(l, 1); !errors.Is(err, ErrTruncated) {
		t.Errorf("Replay from 1 after reopen returned %v, expected ErrTruncated", err)
	}
}

func TestTruncateKeepsLastSegment(t *testing.T) {
	e := newEnv(t)
	l := e.open(smallSegments)
	appendSynced(t, l, 30)
	if err := l.TruncateBefore(1000); err != nil {
		t.Fatalf("TruncateBefore: %v", err)
	}
	paths := segmentPaths(t, e.dir)
	if len(paths) != 1 {
		t.Fatalf("%d segments left, expected only the last one", len(paths))
	}
	segments, _, err := listSegments(e.dir)
	if err != nil {
		t.Fatalf("listSegments: %v", err)
	}
	first := segments[0].firstSeq
	records, err := replay(l, first)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	checkRecords(t, records, first, 30)

	appendSynced(t, l, 20)
	records, err = replay(l, first)
	if err != nil {
		t.Fatalf("Replay after more Appends: %v", err)
	}
	checkRecords(t, records, first, 50)
}

func TestTruncateBeforeFirstSeqRemovesNothing(t *testing.T) {
	e := newEnv(t)
	l := e.open(smallSegments)
	appendSynced(t, l, 30)
	before := len(segmentPaths(t, e.dir))
	for _, seq := range []uint64{0, 1, 2} {
		if err := l.TruncateBefore(seq); err != nil {
			t.Fatalf("TruncateBefore(%d): %v", seq, err)
		}
	}
	if got := len(segmentPaths(t, e.dir)); got != before {
		t.Fatalf("%d segments after TruncateBefore of the first seqs, expected %d", got, before)
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	checkRecords(t, records, 1, 30)
}

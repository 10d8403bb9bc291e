package fsys

import (
	"bytes"
	"errors"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// startJournal is a memJournal that assigns seqs first (StartAppender),
// as journal.Log does, and fails finish when finishErr is set.
type startJournal struct {
	*memJournal
	finishErr error
}

func (j *startJournal) StartAppend(tags []uint64, payload []byte) (uint64, func() error, error) {
	j.mu.Lock()
	seq := uint64(len(j.entries)) + 1
	j.entries = append(j.entries, journalEntry{seq: seq})
	j.mu.Unlock()
	return seq, func() error {
		if j.finishErr != nil {
			return j.finishErr
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		j.entries[seq-1] = journalEntry{seq: seq, tags: append([]uint64(nil), tags...), payload: bytes.Clone(payload)}
		return nil
	}, nil
}

func newParallelEngine(t *testing.T, j *startJournal) *Engine {
	t.Helper()
	opts := testOptions(t, j.memJournal)
	opts.Journal = j
	e, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// TestLargeWriteJournaledWhileApplied checks the parallel commit of a
// large write: the data is in the file and the journal has the entry.
func TestLargeWriteJournaledWhileApplied(t *testing.T) {
	j := &startJournal{memJournal: &memJournal{}}
	e := newParallelEngine(t, j)
	data := bytes.Repeat([]byte("large write "), fsapi.MaxWrite/12)
	ino := createFile(t, e, rootCaller, fsapi.RootIno, "large", 0o644, data)

	got := make([]byte, len(data))
	h, err := e.Open(ctx, rootCaller, ino, syscall.O_RDONLY)
	mustOK(t, err)
	n, err := e.Read(ctx, rootCaller, ino, h, 0, got)
	mustOK(t, err)
	mustOK(t, e.Release(ctx, ino, h))
	if !bytes.Equal(got[:n], data) {
		t.Errorf("read back %d bytes that differ from the %d written", n, len(data))
	}

	var write *Entry
	for _, je := range j.entries {
		if je.payload == nil {
			t.Fatalf("journal entry %d was never encoded", je.seq)
		}
		ent, err := DecodeEntry(je.payload)
		if err != nil {
			t.Fatalf("decode journal entry %d: %v", je.seq, err)
		}
		if ent.Op == OpWrite {
			write = ent
		}
	}
	if write == nil || !bytes.Equal(write.Data, data) {
		t.Error("the journal has no write entry with the written data")
	}
}

// TestFailedParallelAppendStopsEngine checks that an engine whose journal
// failed to encode an entry that it had already applied refuses every
// later request.
func TestFailedParallelAppendStopsEngine(t *testing.T) {
	j := &startJournal{memJournal: &memJournal{}}
	e := newParallelEngine(t, j)
	ino, h := create(t, e, rootCaller, fsapi.RootIno, "file", 0o644)
	j.finishErr = errors.New("disk gone")
	_, err := e.Write(ctx, rootCaller, ino, h, 0, make([]byte, parallelEntrySize))
	wantErrno(t, err, syscall.EIO)
	_, err = e.Mkdir(ctx, rootCaller, fsapi.RootIno, "later", 0o755)
	wantErrno(t, err, syscall.EIO)
	// The daemon checks this before it writes a checkpoint.
	if err := e.Stopped(); err == nil {
		t.Error("Stopped returned nil for an engine that refuses requests")
	}
}

package journal

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/blocktree/blocktree/internal/logbuf"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// testPayloadSize keeps records small, so that the tests that visit every
// byte of a journal stay fast.
const testPayloadSize = 100

// env is a journal directory with its key and signer.
type env struct {
	t      testing.TB
	dir    string
	key    []byte
	signer *principal.Credential
	logs   *logBuffer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatalf("rand.Read: %v", err)
	}
	return &env{
		t:      t,
		dir:    filepath.Join(t.TempDir(), "journal"),
		key:    key,
		signer: newCredential(t),
		logs:   &logBuffer{},
	}
}

func newCredential(t testing.TB) *principal.Credential {
	t.Helper()
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatalf("GenerateCredential: %v", err)
	}
	return cred
}

func (e *env) options(segmentSize int64) Options {
	return Options{
		Dir:         e.dir,
		Key:         e.key,
		Signer:      e.signer,
		SegmentSize: segmentSize,
		Logger:      slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// open opens the journal and closes it when the test ends, unless the test
// closed it already.
func (e *env) open(segmentSize int64) *Log {
	e.t.Helper()
	return e.openWith(e.options(segmentSize))
}

func (e *env) openWith(opts Options) *Log {
	e.t.Helper()
	l, err := Open(opts)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.t.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, ErrClosed) {
			e.t.Errorf("Close at cleanup: %v", err)
		}
	})
	return l
}

// logBuffer collects log output for tests that check what was logged.
type logBuffer = logbuf.Buffer

func payloadFor(seq uint64) []byte {
	p := fmt.Appendf(nil, "payload of record %d;", seq)
	for len(p) < testPayloadSize {
		p = append(p, byte('a'+seq%26))
	}
	return p[:testPayloadSize]
}

func tagsFor(seq uint64) []uint64 { return []uint64{seq * 10, seq*10 + 1} }

// appendSynced appends the records with seqs NextSeq to NextSeq+n-1, with
// payloadFor and tagsFor as contents, and syncs.
func appendSynced(t testing.TB, l *Log, n int) {
	t.Helper()
	for range n {
		want := l.NextSeq()
		seq, err := l.Append(tagsFor(want), payloadFor(want))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if seq != want {
			t.Fatalf("Append returned seq %d, expected %d", seq, want)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// replay returns the records that Replay passes to fn and the error it
// returns.
func replay(l *Log, from uint64) ([]Record, error) {
	var records []Record
	err := l.Replay(from, func(r Record) error {
		records = append(records, r)
		return nil
	})
	return records, err
}

// checkRecords fails unless records are exactly the good records first to
// last, with the contents that appendSynced gives them.
func checkRecords(t testing.TB, records []Record, first, last uint64) {
	t.Helper()
	if want := int(last - first + 1); len(records) != want {
		t.Fatalf("replayed %d records, expected %d (seqs %d to %d)", len(records), want, first, last)
	}
	for i, r := range records {
		seq := first + uint64(i)
		checkGood(t, r, seq)
	}
}

// checkGood fails unless r is the undamaged record seq.
func checkGood(t testing.TB, r Record, seq uint64) {
	t.Helper()
	if r.Seq != seq {
		t.Fatalf("record seq %d, expected %d", r.Seq, seq)
	}
	if r.Damaged {
		t.Fatalf("record seq %d is damaged: %v", seq, r.Err)
	}
	if !bytes.Equal(r.Payload, payloadFor(seq)) {
		t.Fatalf("record seq %d payload %q, expected %q", seq, r.Payload, payloadFor(seq))
	}
	if !slices.Equal(r.Tags, tagsFor(seq)) {
		t.Fatalf("record seq %d tags %v, expected %v", seq, r.Tags, tagsFor(seq))
	}
}

// segmentPaths returns the segment files of dir, oldest first.
func segmentPaths(t testing.TB, dir string) []string {
	t.Helper()
	segments, _, err := listSegments(dir)
	if err != nil {
		t.Fatalf("listSegments: %v", err)
	}
	var paths []string
	for _, seg := range segments {
		paths = append(paths, filepath.Join(dir, seg.name))
	}
	return paths
}

// recordOffsets returns the offset of each complete record in a segment file,
// without the seals, and the offset after the last record or seal. It
// follows the length fields and checks nothing else.
func recordOffsets(t testing.TB, path string) ([]int64, int64) {
	t.Helper()
	records, _, end := itemOffsets(t, path)
	return records, end
}

// sealOffsets returns the offset of each complete seal in a segment file.
func sealOffsets(t testing.TB, path string) []int64 {
	t.Helper()
	_, seals, _ := itemOffsets(t, path)
	return seals
}

func itemOffsets(t testing.TB, path string) (records, seals []int64, end int64) {
	t.Helper()
	data := readFile(t, path)
	off := int64(segmentHeaderSize)
	for off+recordPrefixSize+2 <= int64(len(data)) {
		length := int64(binary.BigEndian.Uint32(data[off:]))
		if length == 0 || off+length > int64(len(data)) {
			break
		}
		if wire.Kind(binary.BigEndian.Uint16(data[off+recordPrefixSize:])) == KindJournalSeal {
			seals = append(seals, off)
		} else {
			records = append(records, off)
		}
		off += length
	}
	return records, seals, off
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	return data
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	return info.Size()
}

// copyJournal copies the journal of e into a new env with the same key and
// signer, so that a test can damage the copy and keep the original.
func (e *env) copyJournal() *env {
	e.t.Helper()
	c := &env{t: e.t, dir: filepath.Join(e.t.TempDir(), "journal"), key: e.key, signer: e.signer, logs: &logBuffer{}}
	if err := os.Mkdir(c.dir, 0o700); err != nil {
		e.t.Fatalf("Mkdir: %v", err)
	}
	entries, err := os.ReadDir(e.dir)
	if err != nil {
		e.t.Fatalf("ReadDir: %v", err)
	}
	for _, entry := range entries {
		writeFile(e.t, filepath.Join(c.dir, entry.Name()), readFile(e.t, filepath.Join(e.dir, entry.Name())))
	}
	return c
}

// noSyncHooks skips fdatasync and fsync, for tests that open a journal
// hundreds of times and check parsing, not durability.
func noSyncHooks() *syncHooks {
	return &syncHooks{
		fdatasync: func(*os.File) error { return nil },
		fsyncDir:  func(*os.File) error { return nil },
	}
}

package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// smallSegments makes a segment hold a few test records, so that tests
// cross segment boundaries with little data.
const smallSegments = 1024

func TestRoundTripAcrossSegments(t *testing.T) {
	e := newEnv(t)
	l := e.open(smallSegments)
	if got := l.NextSeq(); got != 1 {
		t.Fatalf("NextSeq of a new journal = %d, expected 1", got)
	}

	appendSynced(t, l, 30)
	if got := l.NextSeq(); got != 31 {
		t.Fatalf("NextSeq after 30 records = %d, expected 31", got)
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	checkRecords(t, records, 1, 30)
	segments := segmentPaths(t, e.dir)
	if len(segments) < 4 {
		t.Fatalf("30 records of about 250 bytes made %d segments of %d bytes, expected at least 4", len(segments), smallSegments)
	}
	for _, path := range segments[:len(segments)-1] {
		// A segment is full once it reaches SegmentSize, so it exceeds it
		// by less than one record and the seal of its records.
		limit := int64(smallSegments + 300 + sealSize(10))
		if size := fileSize(t, path); size < smallSegments || size >= limit {
			t.Errorf("full segment %s has %d bytes, expected %d to %d", filepath.Base(path), size, smallSegments, limit)
		}
	}

	id := l.ID()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	l = e.open(smallSegments)
	if l.ID() != id {
		t.Fatalf("journal id changed on reopen")
	}
	if got := l.NextSeq(); got != 31 {
		t.Fatalf("NextSeq after reopen = %d, expected 31", got)
	}
	appendSynced(t, l, 5)
	records, err = replay(l, 1)
	if err != nil {
		t.Fatalf("Replay after reopen: %v", err)
	}
	checkRecords(t, records, 1, 35)
}

// TestSyncOfManyRecords syncs more records at once than one pwritev(2)
// takes, so the batch is written in several calls, and checks that each
// record lands where the next starts.
func TestSyncOfManyRecords(t *testing.T) {
	e := newEnv(t)
	l := e.open(64 << 20)
	const n = 3*maxIovecs + 17
	appendSynced(t, l, n)
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	checkRecords(t, records, 1, n)
	if segments := segmentPaths(t, e.dir); len(segments) != 1 {
		t.Fatalf("%d records in a 64 MiB segment made %d segments, expected 1", n, len(segments))
	}
}

func TestEmptyPayloadAndNoTags(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	if _, err := l.Append(nil, nil); err != nil {
		t.Fatalf("Append of an empty record: %v", err)
	}
	if _, err := l.Append([]uint64{7}, []byte{}); err != nil {
		t.Fatalf("Append of an empty payload: %v", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if len(records) != 2 {
		t.Fatalf("replayed %d records, expected 2", len(records))
	}
	if records[0].Damaged || len(records[0].Payload) != 0 || len(records[0].Tags) != 0 {
		t.Errorf("empty record replayed as %+v", records[0])
	}
	if records[1].Damaged || !slices.Equal(records[1].Tags, []uint64{7}) {
		t.Errorf("record with one tag replayed as %+v", records[1])
	}
}

func TestReplayFromMiddle(t *testing.T) {
	e := newEnv(t)
	l := e.open(smallSegments)
	appendSynced(t, l, 30)

	segments, _, err := listSegments(e.dir)
	if err != nil {
		t.Fatalf("listSegments: %v", err)
	}
	boundary := segments[2].firstSeq
	for _, from := range []uint64{0, 1, 2, 17, boundary - 1, boundary, boundary + 1, 30} {
		records, err := replay(l, from)
		if err != nil {
			t.Fatalf("Replay from %d: %v", from, err)
		}
		checkRecords(t, records, max(from, 1), 30)
	}
	for _, from := range []uint64{31, 1000} {
		records, err := replay(l, from)
		if err != nil {
			t.Fatalf("Replay from %d: %v", from, err)
		}
		if len(records) != 0 {
			t.Errorf("Replay from %d after the last record returned %d records", from, len(records))
		}
	}
}

func TestReplayStopsOnCallbackError(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	appendSynced(t, l, 5)
	stop := errors.New("stop here")
	calls := 0
	err := l.Replay(1, func(r Record) error {
		calls++
		if r.Seq == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Replay returned %v, expected the callback's error", err)
	}
	if calls != 3 {
		t.Errorf("callback ran %d times, expected 3", calls)
	}
}

func TestReplaySkipsUnsyncedRecords(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	appendSynced(t, l, 3)
	if _, err := l.Append(tagsFor(4), payloadFor(4)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	checkRecords(t, records, 1, 3)

	if err := l.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	records, err = replay(l, 1)
	if err != nil {
		t.Fatalf("Replay after Sync: %v", err)
	}
	checkRecords(t, records, 1, 4)
}

func TestConcurrentAppendSyncReplay(t *testing.T) {
	const (
		writers          = 8
		recordsPerWriter = 40
	)
	e := newEnv(t)
	l := e.open(4096)

	var (
		mu       sync.Mutex
		payloads = map[uint64][]byte{}
		synced   atomic.Uint64 // highest seq whose Sync returned
	)
	var writersDone sync.WaitGroup
	for w := range writers {
		writersDone.Go(func() {
			var last uint64
			for i := range recordsPerWriter {
				payload := fmt.Appendf(nil, "writer %d record %d", w, i)
				seq, err := l.Append([]uint64{uint64(w), uint64(i)}, payload)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				if seq <= last {
					t.Errorf("writer %d got seq %d after %d", w, seq, last)
				}
				last = seq
				mu.Lock()
				payloads[seq] = payload
				mu.Unlock()
				// Writers sync at different rates, so batches of several
				// records and lone records both occur.
				if i%(w+1) == 0 {
					if err := l.Sync(); err != nil {
						t.Errorf("Sync: %v", err)
						return
					}
					for {
						old := synced.Load()
						if seq <= old || synced.CompareAndSwap(old, seq) {
							break
						}
					}
				}
			}
		})
	}

	// A reader replays while the writers run: every replay must be a clean
	// prefix that includes every record whose Sync has returned.
	stop := make(chan struct{})
	var readerDone sync.WaitGroup
	readerDone.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			minimum := synced.Load()
			var next uint64 = 1
			err := l.Replay(1, func(r Record) error {
				if r.Damaged || r.Seq != next {
					return fmt.Errorf("record seq %d (damaged %v: %v), expected seq %d", r.Seq, r.Damaged, r.Err, next)
				}
				next++
				return nil
			})
			if err != nil {
				t.Errorf("Replay during appends: %v", err)
				return
			}
			if next-1 < minimum {
				t.Errorf("Replay during appends ended at seq %d, but seq %d was synced before it started", next-1, minimum)
				return
			}
		}
	})

	writersDone.Wait()
	close(stop)
	readerDone.Wait()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	l = e.open(4096)
	total := uint64(writers * recordsPerWriter)
	if got := l.NextSeq(); got != total+1 {
		t.Fatalf("NextSeq after reopen = %d, expected %d", got, total+1)
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if uint64(len(records)) != total {
		t.Fatalf("replayed %d records, expected %d", len(records), total)
	}
	for i, r := range records {
		if r.Seq != uint64(i+1) || r.Damaged {
			t.Fatalf("record %d: seq %d, damaged %v: %v", i, r.Seq, r.Damaged, r.Err)
		}
		if !bytes.Equal(r.Payload, payloads[r.Seq]) {
			t.Fatalf("record seq %d payload %q, Append stored %q", r.Seq, r.Payload, payloads[r.Seq])
		}
	}
}

func TestAppendRejectsLargeRecord(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	if _, err := l.Append(make([]uint64, MaxTags+1), nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Append with %d tags returned %v, expected ErrTooLarge", MaxTags+1, err)
	}
	if _, err := l.Append(nil, make([]byte, MaxPayloadSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Append of %d bytes returned %v, expected ErrTooLarge", MaxPayloadSize+1, err)
	}
	if got := l.NextSeq(); got != 1 {
		t.Errorf("NextSeq after rejected Appends = %d, expected 1", got)
	}
}

func TestLargestRecordRoundTrip(t *testing.T) {
	e := newEnv(t)
	l := e.open(smallSegments)
	tags := make([]uint64, MaxTags)
	for i := range tags {
		tags[i] = uint64(i)
	}
	payload := bytes.Repeat([]byte{0x5a}, MaxPayloadSize)
	if _, err := l.Append(tags, payload); err != nil {
		t.Fatalf("Append of the largest record: %v", err)
	}
	appendSynced(t, l, 1)
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if len(records) != 2 || records[0].Damaged || !bytes.Equal(records[0].Payload, payload) || !slices.Equal(records[0].Tags, tags) {
		t.Fatalf("largest record did not replay intact")
	}
	if records[1].Seq != 2 || records[1].Damaged {
		t.Fatalf("record after the largest one: seq %d, damaged %v", records[1].Seq, records[1].Damaged)
	}
}

func TestClosedLogRejectsCalls(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	appendSynced(t, l, 1)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := l.Append(nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close returned %v, expected ErrClosed", err)
	}
	if err := l.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close returned %v, expected ErrClosed", err)
	}
	if _, err := replay(l, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Replay after Close returned %v, expected ErrClosed", err)
	}
	if err := l.TruncateBefore(1); !errors.Is(err, ErrClosed) {
		t.Errorf("TruncateBefore after Close returned %v, expected ErrClosed", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close returned %v, expected ErrClosed", err)
	}
}

func TestCloseSyncsAppendedRecords(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	for seq := uint64(1); seq <= 3; seq++ {
		if _, err := l.Append(tagsFor(seq), payloadFor(seq)); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	l = e.open(0)
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	checkRecords(t, records, 1, 3)
}

func TestOpenLocksDirectory(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	if _, err := Open(e.options(0)); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open returned %v, expected ErrLocked", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	e.open(0)
}

func TestOpenValidatesOptions(t *testing.T) {
	e := newEnv(t)
	other := newCredential(t)
	cases := map[string]func(*Options){
		"no dir":           func(o *Options) { o.Dir = "" },
		"short key":        func(o *Options) { o.Key = o.Key[:16] },
		"no signer":        func(o *Options) { o.Signer = nil },
		"foreign verifier": func(o *Options) { o.Verifier = other.Signing.Public() },
		"negative size":    func(o *Options) { o.SegmentSize = -1 },
	}
	for name, change := range cases {
		opts := e.options(0)
		change(&opts)
		if l, err := Open(opts); err == nil {
			l.Close()
			t.Errorf("Open with %s succeeded", name)
		}
	}
}

func TestDirectoryAndFileModes(t *testing.T) {
	e := newEnv(t)
	l := e.open(smallSegments)
	appendSynced(t, l, 10)
	info, err := os.Stat(e.dir)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if mode := info.Mode().Perm(); mode != 0o700 {
		t.Errorf("journal directory mode %o, expected 700", mode)
	}
	for _, path := range segmentPaths(t, e.dir) {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("segment %s mode %o, expected 600", filepath.Base(path), mode)
		}
	}
}

func TestPayloadNotInSegmentFiles(t *testing.T) {
	e := newEnv(t)
	l := e.open(smallSegments)
	secret := []byte("/home/alice/secret-plans.txt")
	for i := range 20 {
		payload := append([]byte(nil), secret...)
		if i%2 == 0 {
			payload = bytes.Repeat(secret, 4)
		}
		if _, err := l.Append([]uint64{uint64(i)}, payload); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Any 8-byte piece would also give the name away.
	for _, path := range segmentPaths(t, e.dir) {
		data := readFile(t, path)
		for i := 0; i+8 <= len(secret); i++ {
			if bytes.Contains(data, secret[i:i+8]) {
				t.Fatalf("segment %s contains %q from the payload", filepath.Base(path), secret[i:i+8])
			}
		}
	}
}

func TestOpenRemovesUnfinishedSegment(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	appendSynced(t, l, 2)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	temp := filepath.Join(e.dir, segmentName(3)+tempSuffix)
	writeFile(t, temp, []byte("half a header"))

	l = e.open(0)
	if _, err := os.Stat(temp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary segment still exists after Open: %v", err)
	}
	if !strings.Contains(e.logs.String(), "removed unfinished segment") {
		t.Errorf("Open logged no warning about the temporary segment")
	}
	appendSynced(t, l, 1)
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	checkRecords(t, records, 1, 3)
}

func TestLogsNoPayload(t *testing.T) {
	e := newEnv(t)
	l := e.open(smallSegments)
	secret := "confidential-file-name.txt"
	for range 10 {
		if _, err := l.Append(nil, []byte(secret)); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	last := segmentPaths(t, e.dir)
	path := last[len(last)-1]
	data := readFile(t, path)
	writeFile(t, path, append(data, make([]byte, 100)...))
	e.open(smallSegments)
	if strings.Contains(e.logs.String(), secret) {
		t.Errorf("log contains the payload")
	}
	if !strings.Contains(e.logs.String(), "cut torn tail") {
		t.Errorf("log has no line about the cut, so this test checked too little:\n%s", e.logs)
	}
}

func TestOpenWarnsAboutOpenDirectory(t *testing.T) {
	e := newEnv(t)
	if err := os.Mkdir(e.dir, 0o755); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	if err := os.Chmod(e.dir, 0o755); err != nil {
		t.Fatalf("Chmod: %v", err)
	}
	e.open(0)
	if !strings.Contains(e.logs.String(), "accessible to other users") {
		t.Errorf("Open of a directory with mode 755 logged no warning:\n%s", e.logs)
	}
}

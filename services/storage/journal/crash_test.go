package journal

import (
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
)

// checkCutAt copies the journal of e, truncates its last segment at cut,
// and checks that Open keeps exactly records 1 to kept, cuts the file at
// keptEnd and appends the next record with seq kept+1.
func checkCutAt(t *testing.T, e *env, cut int64, kept uint64, keptEnd int64) {
	t.Helper()
	c := e.copyJournal()
	paths := segmentPaths(t, c.dir)
	last := paths[len(paths)-1]
	if err := os.Truncate(last, cut); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	opts := c.options(0)
	opts.hooks = noSyncHooks()
	l := c.openWith(opts)

	if got := l.NextSeq(); got != kept+1 {
		t.Fatalf("cut at %d: NextSeq = %d, expected %d", cut, got, kept+1)
	}
	if size := fileSize(t, last); size != keptEnd {
		t.Fatalf("cut at %d: segment has %d bytes after Open, expected %d", cut, size, keptEnd)
	}
	if cut > keptEnd {
		logs := c.logs.String()
		want := fmt.Sprintf("offset=%d seq=%d", keptEnd, kept+1)
		if !strings.Contains(logs, "cut torn tail") || !strings.Contains(logs, want) {
			t.Fatalf("cut at %d: no warning with %q in the log:\n%s", cut, want, logs)
		}
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("cut at %d: Replay: %v", cut, err)
	}
	checkRecords(t, records, 1, kept)

	appendSynced(t, l, 1)
	records, err = replay(l, 1)
	if err != nil {
		t.Fatalf("cut at %d: Replay after Append: %v", cut, err)
	}
	checkRecords(t, records, 1, kept+1)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestTornTailEveryOffset(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	appendSynced(t, l, 5)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	path := segmentPaths(t, e.dir)[0]
	offsets, end := recordOffsets(t, path)
	if len(offsets) != 5 {
		t.Fatalf("found %d records, expected 5", len(offsets))
	}

	lastStart := offsets[4]
	for cut := lastStart; cut < end; cut++ {
		checkCutAt(t, e, cut, 4, lastStart)
	}
	// A cut exactly at the end keeps everything.
	checkCutAt(t, e, end, 5, end)
}

func TestTornTailInEarlierRecord(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	appendSynced(t, l, 5)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	offsets, _ := recordOffsets(t, segmentPaths(t, e.dir)[0])

	// Cuts inside record 2 (index 1) keep only record 1.
	start, next := offsets[1], offsets[2]
	for _, cut := range []int64{start + 1, start + 7, start + 8, (start + next) / 2, next - 1} {
		checkCutAt(t, e, cut, 1, start)
	}
	// A cut inside the segment header of the only segment fails Open.
	c := e.copyJournal()
	if err := os.Truncate(segmentPaths(t, c.dir)[0], segmentHeaderSize-1); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	if l, err := Open(c.options(0)); err == nil {
		l.Close()
		t.Fatalf("Open with a truncated segment header succeeded")
	}
}

func TestTornTailInLastOfSeveralSegments(t *testing.T) {
	e := newEnv(t)
	l := e.open(smallSegments)
	appendSynced(t, l, 12)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	paths := segmentPaths(t, e.dir)
	if len(paths) < 2 {
		t.Fatalf("12 records made %d segments, expected several", len(paths))
	}
	offsets, end := recordOffsets(t, paths[len(paths)-1])
	if len(offsets) < 2 {
		t.Fatalf("last segment holds %d records, the test needs 2", len(offsets))
	}
	lastStart := offsets[len(offsets)-1]
	for cut := lastStart; cut < end; cut += 7 {
		checkCutAt(t, e, cut, 11, lastStart)
	}
}

func TestTrailingZerosAndGarbageCut(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	appendSynced(t, l, 3)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	path := segmentPaths(t, e.dir)[0]
	offsets, end := recordOffsets(t, path)
	original := readFile(t, path)

	garbage := make([]byte, 5000)
	if _, err := rand.Read(garbage); err != nil {
		t.Fatalf("rand.Read: %v", err)
	}
	// The third record cut in half and the space after it zero-filled, as
	// a preallocating file system leaves it.
	torn := append(original[:offsets[2]+40:offsets[2]+40], make([]byte, 4096)...)

	cases := []struct {
		name     string
		contents []byte
		kept     uint64
		keptEnd  int64
	}{
		{"zeros after the last record", append(original[:end:end], make([]byte, 4096)...), 3, end},
		{"garbage after the last record", append(original[:end:end], garbage...), 3, end},
		{"one zero byte after the last record", append(original[:end:end], 0), 3, end},
		{"torn record followed by zeros", torn, 2, offsets[2]},
		{"torn record followed by garbage", append(original[:offsets[2]+40:offsets[2]+40], garbage...), 2, offsets[2]},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			c := e.copyJournal()
			writeFile(t, onlySegment(c), tc.contents)

			problems, err := Check(c.options(0))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if len(problems) == 0 {
				t.Fatalf("Check found no problem")
			}
			for _, p := range problems {
				if !p.TornTail {
					t.Errorf("Check reported %v, expected only a torn tail", p)
				}
			}

			l := c.open(0)
			if got := l.NextSeq(); got != tc.kept+1 {
				t.Fatalf("NextSeq = %d, expected %d", got, tc.kept+1)
			}
			if size := fileSize(t, onlySegment(c)); size != tc.keptEnd {
				t.Fatalf("segment has %d bytes after Open, expected %d", size, tc.keptEnd)
			}
			records, err := replay(l, 1)
			if err != nil {
				t.Fatalf("Replay: %v", err)
			}
			checkRecords(t, records, 1, tc.kept)
		})
	}
}

// onlySegment returns the only segment of a copied journal.
func onlySegment(c *env) string { return segmentPaths(c.t, c.dir)[0] }

func TestCheckLeavesTornTail(t *testing.T) {
	e := newEnv(t)
	l := e.open(0)
	appendSynced(t, l, 3)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	path := segmentPaths(t, e.dir)[0]
	offsets, end := recordOffsets(t, path)
	if err := os.Truncate(path, end-10); err != nil {
		t.Fatalf("Truncate: %v", err)
	}

	problems, err := Check(e.options(0))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != 1 {
		t.Fatalf("Check found %d problems, expected 1: %v", len(problems), problems)
	}
	p := problems[0]
	if !p.TornTail || p.Offset != offsets[2] || p.Seq != 3 || !p.HeaderValid {
		t.Errorf("Check reported %v, expected a torn tail at offset %d with seq 3", p, offsets[2])
	}
	if size := fileSize(t, path); size != end-10 {
		t.Errorf("Check changed the segment to %d bytes", size)
	}
}

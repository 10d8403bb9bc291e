package journal

import (
	"crypto/rand"
	"errors"
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

// writeGroups creates a closed journal with one Sync, and so one sealed
// group, per entry of sizes, and returns it with its only segment.
func writeGroups(t *testing.T, sizes ...int) (*env, string) {
	t.Helper()
	e := newEnv(t)
	l := e.open(0)
	for _, n := range sizes {
		appendSynced(t, l, n)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return e, segmentPaths(t, e.dir)[0]
}

func TestTornTailEveryOffset(t *testing.T) {
	e, path := writeGroups(t, 3, 2)
	offsets, end := recordOffsets(t, path)
	if len(offsets) != 5 || len(sealOffsets(t, path)) != 2 {
		t.Fatalf("found %d records and %d seals, expected 5 and 2", len(offsets), len(sealOffsets(t, path)))
	}

	// Any cut inside the second group, even one that keeps both of its
	// records whole, loses its seal and so the whole group.
	groupStart := offsets[3]
	for cut := groupStart; cut < end; cut++ {
		checkCutAt(t, e, cut, 3, groupStart)
	}
	// A cut exactly at the end keeps everything.
	checkCutAt(t, e, end, 5, end)
}

func TestTornTailInEarlierRecord(t *testing.T) {
	e, path := writeGroups(t, 1, 2, 2)
	offsets, _ := recordOffsets(t, path)
	seals := sealOffsets(t, path)

	// Cuts inside record 2 or inside the seal of records 2 and 3 keep only
	// record 1.
	start, sealStart, next := offsets[1], seals[1], offsets[3]
	for _, cut := range []int64{start + 1, start + 7, start + 8, (start + offsets[2]) / 2, offsets[2], sealStart, sealStart + 30, next - 1} {
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
	for range 12 {
		appendSynced(t, l, 1)
	}
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

// TestUnsealedTailCut leaves the records of the last group whole but
// without their seal, as a crash between the two would if a write were
// split, and checks that Open cuts them.
func TestUnsealedTailCut(t *testing.T) {
	e, path := writeGroups(t, 2, 3)
	offsets, _ := recordOffsets(t, path)
	seals := sealOffsets(t, path)
	c := e.copyJournal()
	if err := os.Truncate(onlySegment(c), seals[1]); err != nil {
		t.Fatalf("Truncate: %v", err)
	}

	problems, err := Check(c.options(0))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != 3 {
		t.Fatalf("Check found %d problems, expected the 3 unsealed records: %v", len(problems), problems)
	}
	for i, p := range problems {
		if !p.TornTail || p.Seq != uint64(3+i) || !p.HeaderValid || !errors.Is(p.Err, ErrUnsealed) {
			t.Errorf("Check reported %v, expected seq %d without a seal in the torn tail", p, 3+i)
		}
	}

	l := c.open(0)
	if got := l.NextSeq(); got != 3 {
		t.Fatalf("NextSeq = %d, expected 3", got)
	}
	if size := fileSize(t, onlySegment(c)); size != offsets[2] {
		t.Fatalf("segment has %d bytes after Open, expected %d", size, offsets[2])
	}
	want := fmt.Sprintf("offset=%d seq=3", offsets[2])
	if logs := c.logs.String(); !strings.Contains(logs, "cut torn tail") || !strings.Contains(logs, want) || !strings.Contains(logs, ErrUnsealed.Error()) {
		t.Errorf("Open logged no warning with %q and %q:\n%s", want, ErrUnsealed, logs)
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	checkRecords(t, records, 1, 2)
}

func TestTrailingZerosAndGarbageCut(t *testing.T) {
	e, path := writeGroups(t, 2, 1)
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
		{"zeros after the last seal", append(original[:end:end], make([]byte, 4096)...), 3, end},
		{"garbage after the last seal", append(original[:end:end], garbage...), 3, end},
		{"one zero byte after the last seal", append(original[:end:end], 0), 3, end},
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
	e, path := writeGroups(t, 2, 1)
	offsets, end := recordOffsets(t, path)
	seals := sealOffsets(t, path)
	if err := os.Truncate(path, end-10); err != nil {
		t.Fatalf("Truncate: %v", err)
	}

	problems, err := Check(e.options(0))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != 2 {
		t.Fatalf("Check found %d problems, expected 2: %v", len(problems), problems)
	}
	record, seal := problems[0], problems[1]
	if !record.TornTail || record.Offset != offsets[2] || record.Seq != 3 || !record.HeaderValid || !errors.Is(record.Err, ErrUnsealed) {
		t.Errorf("Check reported %v, expected unsealed seq 3 at offset %d in the torn tail", record, offsets[2])
	}
	if !seal.TornTail || !seal.Seal || seal.Offset != seals[1] || seal.Seq != 3 || !errors.Is(seal.Err, ErrIncomplete) {
		t.Errorf("Check reported %v, expected the incomplete seal at offset %d in the torn tail", seal, seals[1])
	}
	if size := fileSize(t, path); size != end-10 {
		t.Errorf("Check changed the segment to %d bytes", size)
	}
}

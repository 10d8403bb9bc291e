package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/internal/testenv"
)

// countingHooks wraps the real system calls and counts them.
type countingHooks struct {
	fdatasyncs atomic.Int64
	dirSyncs   atomic.Int64

	// recordSizes makes each fdatasync record the size of its file first,
	// so tests can check that the data was written before it.
	recordSizes bool
	mu          sync.Mutex
	sizes       []int64

	// block, if set, is called inside fdatasync before the real call.
	block func()
}

func (c *countingHooks) hooks() *syncHooks {
	return &syncHooks{
		fdatasync: func(f *os.File) error {
			if c.recordSizes {
				info, err := f.Stat()
				if err != nil {
					return err
				}
				c.mu.Lock()
				c.sizes = append(c.sizes, info.Size())
				c.mu.Unlock()
			}
			if c.block != nil {
				c.block()
			}
			c.fdatasyncs.Add(1)
			return unix.Fdatasync(int(f.Fd()))
		},
		fsyncDir: func(f *os.File) error {
			c.dirSyncs.Add(1)
			return f.Sync()
		},
	}
}

func (c *countingHooks) lastSize() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sizes[len(c.sizes)-1]
}

func TestSyncCallsFdatasync(t *testing.T) {
	e := newEnv(t)
	counter := &countingHooks{recordSizes: true}
	opts := e.options(0)
	opts.hooks = counter.hooks()
	l := e.openWith(opts)
	segment := segmentPaths(t, e.dir)[0]
	before := counter.fdatasyncs.Load()
	sizeBefore := fileSize(t, segment)

	if _, err := l.Append(tagsFor(1), payloadFor(1)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if got := counter.fdatasyncs.Load(); got != before {
		t.Fatalf("Append called fdatasync %d times, expected none", got-before)
	}
	if size := fileSize(t, segment); size != sizeBefore {
		t.Fatalf("Append wrote to the segment: %d bytes, expected %d", size, sizeBefore)
	}

	if err := l.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := counter.fdatasyncs.Load(); got != before+1 {
		t.Fatalf("Sync called fdatasync %d times, expected 1", got-before)
	}
	if size := counter.lastSize(); size <= sizeBefore {
		t.Fatalf("fdatasync ran on a segment of %d bytes, so the record (after offset %d) was not written first", size, sizeBefore)
	}

	// Nothing new: Sync returns without another fdatasync.
	if err := l.Sync(); err != nil {
		t.Fatalf("second Sync: %v", err)
	}
	if got := counter.fdatasyncs.Load(); got != before+1 {
		t.Fatalf("Sync with nothing appended called fdatasync, %d calls in all", got-before)
	}
}

func TestSyncWaitsForFdatasync(t *testing.T) {
	e := newEnv(t)
	counter := &countingHooks{}
	entered := make(chan struct{})
	release := make(chan struct{})
	var armed atomic.Bool
	counter.block = func() {
		if armed.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
	}
	opts := e.options(0)
	opts.hooks = counter.hooks()
	l := e.openWith(opts)
	armed.Store(true)

	if _, err := l.Append(tagsFor(1), payloadFor(1)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Sync() }()
	<-entered
	select {
	case err := <-done:
		t.Fatalf("Sync returned (%v) while fdatasync was still running", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func TestConcurrentSyncsShareFdatasync(t *testing.T) {
	const followers = 10
	e := newEnv(t)
	counter := &countingHooks{}
	entered := make(chan struct{})
	release := make(chan struct{})
	var blockFirst atomic.Bool
	counter.block = func() {
		if blockFirst.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
	}
	opts := e.options(0)
	opts.hooks = counter.hooks()
	l := e.openWith(opts)
	before := counter.fdatasyncs.Load()
	blockFirst.Store(true)

	// The first Sync becomes the leader and stops inside fdatasync.
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := l.Append(tagsFor(1), payloadFor(1)); err != nil {
			t.Errorf("Append: %v", err)
		}
		if err := l.Sync(); err != nil {
			t.Errorf("Sync: %v", err)
		}
	})
	<-entered

	// Followers append and sync while the leader is busy. They all wait.
	for range followers {
		wg.Go(func() {
			if _, err := l.Append(nil, []byte("follower")); err != nil {
				t.Errorf("Append: %v", err)
			}
			if err := l.Sync(); err != nil {
				t.Errorf("Sync: %v", err)
			}
		})
	}
	for {
		l.mu.Lock()
		waiting := l.syncWaiters
		l.mu.Unlock()
		if waiting == followers {
			break
		}
		runtime.Gosched()
	}

	close(release)
	wg.Wait()
	if got := counter.fdatasyncs.Load() - before; got != 2 {
		t.Fatalf("1 leader and %d waiting Syncs made %d fdatasync calls, expected 2", followers, got)
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if len(records) != followers+1 {
		t.Fatalf("replayed %d records, expected %d", len(records), followers+1)
	}
}

func TestSyncFailureIsSticky(t *testing.T) {
	e := newEnv(t)
	var fail atomic.Bool
	hooks := &syncHooks{
		fdatasync: func(f *os.File) error {
			if fail.Load() {
				return syscall.EIO
			}
			return unix.Fdatasync(int(f.Fd()))
		},
		fsyncDir: func(f *os.File) error { return f.Sync() },
	}
	opts := e.options(0)
	opts.hooks = hooks
	l, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	appendSynced(t, l, 2)

	fail.Store(true)
	if _, err := l.Append(tagsFor(3), payloadFor(3)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := l.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync with a failing fdatasync returned %v, expected EIO", err)
	}

	// The next fdatasync would succeed, but the Log must not trust it.
	fail.Store(false)
	if err := l.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("Sync after the failure returned %v, expected EIO again", err)
	}
	if _, err := l.Append(nil, nil); !errors.Is(err, syscall.EIO) {
		t.Errorf("Append after the failure returned %v, expected EIO", err)
	}
	if err := l.Close(); !errors.Is(err, syscall.EIO) {
		t.Errorf("Close after the failure returned %v, expected EIO", err)
	}

	// Reopening recovers. Record 3 was written but never acknowledged, so
	// it may or may not be there; records 1 and 2 must be.
	l = e.open(0)
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay after reopen: %v", err)
	}
	if len(records) < 2 {
		t.Fatalf("replayed %d records after reopen, expected at least the 2 acknowledged ones", len(records))
	}
	checkRecords(t, records, 1, uint64(len(records)))
}

func TestNewSegmentFsyncsDirectory(t *testing.T) {
	e := newEnv(t)
	counter := &countingHooks{}
	opts := e.options(smallSegments)
	opts.hooks = counter.hooks()
	l := e.openWith(opts)
	// Creating the journal fsyncs the parent of the new directory and the
	// directory itself.
	if got := counter.dirSyncs.Load(); got != 2 {
		t.Errorf("creating the journal fsynced directories %d times, expected 2", got)
	}
	before := counter.dirSyncs.Load()
	appendSynced(t, l, 30)
	created := int64(len(segmentPaths(t, e.dir)) - 1)
	if created == 0 {
		t.Fatalf("30 records fit in one segment; the test needs more")
	}
	if got := counter.dirSyncs.Load() - before; got != created {
		t.Errorf("%d new segments fsynced the directory %d times, expected once each", created, got)
	}
}

func TestLargePendingRecordsSyncEarly(t *testing.T) {
	e := newEnv(t)
	counter := &countingHooks{}
	opts := e.options(0)
	opts.hooks = counter.hooks()
	l := e.openWith(opts)
	before := counter.fdatasyncs.Load()

	payload := make([]byte, 1<<20)
	count := earlySyncBytes/len(payload) + 1
	for i := range count {
		if _, err := l.Append(tagsFor(uint64(i)), payload); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	testenv.Poll(t, 10*time.Second, "records written without a Sync call", func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.durableSeq == 0 || counter.fdatasyncs.Load() == before {
			return fmt.Errorf("durable seq %d after %d appends of 1 MiB", l.durableSeq, count)
		}
		return nil
	})
}

func TestSyncDropsWrittenPages(t *testing.T) {
	e := newEnv(t)
	l := e.open(64 << 20)
	payload := make([]byte, 1<<20)
	for range 4 {
		if _, err := l.Append(nil, payload); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	info, err := l.active.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pages := (int(info.Size()) + os.Getpagesize() - 1) / os.Getpagesize()
	// The segment header and the partial pages at both ends of the synced
	// range may stay.
	if cached := testenv.CachedPages(t, filepath.Join(e.dir, l.activeName)); cached > 3 {
		t.Errorf("%d of the segment's %d pages are in the page cache after Sync, expected at most 3", cached, pages)
	}
}

// TestStartAppendFinishedLater checks the two steps of StartAppend on a
// real Log: a Sync started before finish waits for it, the record is then
// durable under its seq, and a second finish fails.
func TestStartAppendFinishedLater(t *testing.T) {
	e := newEnv(t)
	l, err := Open(e.options(0))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	seq, finish, err := l.StartAppend(tagsFor(1), payloadFor(1))
	if err != nil {
		t.Fatalf("StartAppend: %v", err)
	}
	if seq != 1 {
		t.Fatalf("StartAppend assigned seq %d, expected 1", seq)
	}

	synced := make(chan error, 1)
	go func() { synced <- l.Sync() }()
	select {
	case err := <-synced:
		t.Fatalf("Sync returned %v before finish ran", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := finish(); err != nil {
		t.Fatalf("finish: %v", err)
	}
	if err := <-synced; err != nil {
		t.Fatalf("Sync: %v", err)
	}

	if err := finish(); err == nil {
		t.Error("a second finish returned no error")
	}

	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if len(records) != 1 || records[0].Seq != 1 {
		t.Errorf("replayed %+v, expected the one record of seq 1", records)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

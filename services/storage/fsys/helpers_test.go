package fsys

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// memJournal is a Journal in memory that records every payload.
type memJournal struct {
	mu      sync.Mutex
	entries []journalEntry
	syncs   int
	fail    error // returned by Append when set
}

type journalEntry struct {
	seq     uint64
	tags    []uint64
	payload []byte
}

func (j *memJournal) Append(tags []uint64, payload []byte) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fail != nil {
		return 0, j.fail
	}
	seq := uint64(len(j.entries)) + 1
	j.entries = append(j.entries, journalEntry{seq: seq, tags: slices.Clone(tags), payload: slices.Clone(payload)})
	return seq, nil
}

func (j *memJournal) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.syncs++
	return nil
}

func (j *memJournal) snapshot() []journalEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries)
}

// lastEntry decodes the most recent journal entry.
func (j *memJournal) lastEntry(t *testing.T) *Entry {
	t.Helper()
	entries := j.snapshot()
	if len(entries) == 0 {
		t.Fatal("journal is empty")
	}
	ent, err := DecodeEntry(entries[len(entries)-1].payload)
	if err != nil {
		t.Fatalf("decode last entry: %v", err)
	}
	return ent
}

// testClock returns a Now function that starts at a fixed time and moves
// one millisecond per call, so entries made in a row get distinct times.
func testClock() func() time.Time {
	var ticks atomic.Int64
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		return start.Add(time.Duration(ticks.Add(1)) * time.Millisecond)
	}
}

// testLogger sends the engine's logs to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func testOptions(t testing.TB, j *memJournal) Options {
	return Options{Journal: j, Now: testClock(), Logger: testLogger(t)}
}

// newTestEngine returns a fresh tree whose root is world-writable, so that
// unprivileged callers can create entries in it, and its journal.
func newTestEngine(t *testing.T) (*Engine, *memJournal) {
	t.Helper()
	return newTestEngineWith(t, func(*Options) {})
}

func newTestEngineWith(t *testing.T, adjust func(*Options)) (*Engine, *memJournal) {
	t.Helper()
	j := &memJournal{}
	opts := testOptions(t, j)
	adjust(&opts)
	e, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_, err = e.SetAttr(ctx, rootCaller, fsapi.RootIno, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o777})
	if err != nil {
		t.Fatalf("chmod root: %v", err)
	}
	return e, j
}

var ctx = context.Background()

var (
	rootCaller  = &fsapi.Caller{UID: 0, GID: 0, PID: 1}
	userCaller  = &fsapi.Caller{UID: 1000, GID: 1000, Groups: []uint32{100}, PID: 1000}
	otherCaller = &fsapi.Caller{UID: 1001, GID: 1001, PID: 1001}
)

func wantErrno(t *testing.T, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("error = %v, expected %v (%d)", err, want, want)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func mkdir(t *testing.T, e *Engine, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) fsapi.Ino {
	t.Helper()
	attr, err := e.Mkdir(ctx, c, parent, name, mode)
	if err != nil {
		t.Fatalf("Mkdir %q: %v", name, err)
	}
	return attr.Ino
}

func create(t *testing.T, e *Engine, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) (fsapi.Ino, fsapi.HandleID) {
	t.Helper()
	attr, h, err := e.Create(ctx, c, parent, name, mode, syscall.O_RDWR)
	if err != nil {
		t.Fatalf("Create %q: %v", name, err)
	}
	return attr.Ino, h
}

// createFile creates a file holding data and closes it.
func createFile(t *testing.T, e *Engine, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, data []byte) fsapi.Ino {
	t.Helper()
	ino, h := create(t, e, c, parent, name, mode)
	for off := 0; off < len(data); off += fsapi.MaxWrite {
		if _, err := e.Write(ctx, c, ino, h, int64(off), data[off:min(off+fsapi.MaxWrite, len(data))]); err != nil {
			t.Fatalf("Write %q: %v", name, err)
		}
	}
	mustOK(t, e.Release(ctx, ino, h))
	return ino
}

func getattr(t *testing.T, e *Engine, ino fsapi.Ino) fsapi.Attr {
	t.Helper()
	attr, err := e.GetAttr(ctx, rootCaller, ino)
	if err != nil {
		t.Fatalf("GetAttr %d: %v", ino, err)
	}
	return attr
}

func lookup(t *testing.T, e *Engine, parent fsapi.Ino, name string) fsapi.Attr {
	t.Helper()
	attr, err := e.Lookup(ctx, rootCaller, parent, name)
	if err != nil {
		t.Fatalf("Lookup %q: %v", name, err)
	}
	return attr
}

// readAll reads the whole file through a new handle.
func readAll(t *testing.T, e *Engine, ino fsapi.Ino) []byte {
	t.Helper()
	h, err := e.Open(ctx, rootCaller, ino, syscall.O_RDONLY)
	mustOK(t, err)
	defer e.Release(ctx, ino, h)
	size := getattr(t, e, ino).Size
	out := make([]byte, 0, size)
	buf := make([]byte, fsapi.MaxWrite)
	for off := uint64(0); off < size; {
		n, err := e.Read(ctx, rootCaller, ino, h, int64(off), buf)
		mustOK(t, err)
		if n == 0 {
			break
		}
		out = append(out, buf[:n]...)
		off += uint64(n)
	}
	return out
}

// replay builds a fresh engine from the journal's entries.
func replay(t *testing.T, entries []journalEntry) *Engine {
	t.Helper()
	e := NewEmpty(Options{Logger: testLogger(t)})
	for _, ent := range entries {
		if err := e.Apply(ent.seq, ent.payload); err != nil {
			t.Fatalf("Apply %d: %v", ent.seq, err)
		}
	}
	return e
}

// allStates exports every inode of e, keyed by number.
func allStates(t *testing.T, e *Engine) map[fsapi.Ino]*InodeState {
	t.Helper()
	e.mu.Lock()
	inos := slices.Sorted(maps.Keys(e.inodes))
	e.mu.Unlock()
	states := make(map[fsapi.Ino]*InodeState, len(inos))
	for _, ino := range inos {
		st, err := e.Export(ino)
		mustOK(t, err)
		states[ino] = st
	}
	return states
}

// compareEngines checks that two engines hold the same tree: the same
// inodes with equal attributes, data, entries, cookies and xattrs, and the
// same header.
func compareEngines(t *testing.T, label string, want, got *Engine) {
	t.Helper()
	if hw, hg := want.Header(), got.Header(); hw != hg {
		t.Errorf("%s: header = %+v, expected %+v", label, hg, hw)
	}
	if want.usedBytes != got.usedBytes {
		t.Errorf("%s: used bytes = %d, expected %d", label, got.usedBytes, want.usedBytes)
	}
	ws, gs := allStates(t, want), allStates(t, got)
	for ino, w := range ws {
		g, ok := gs[ino]
		if !ok {
			t.Errorf("%s: node %d is missing", label, ino)
			continue
		}
		compareStates(t, label, w, g)
	}
	for ino := range gs {
		if _, ok := ws[ino]; !ok {
			t.Errorf("%s: node %d should not exist", label, ino)
		}
	}
}

func compareStates(t testing.TB, label string, want, got *InodeState) {
	t.Helper()
	if want.Attr != got.Attr {
		t.Errorf("%s: node %d attributes = %+v, expected %+v", label, want.Ino, got.Attr, want.Attr)
	}
	if want.BlockID != got.BlockID {
		t.Errorf("%s: node %d block id differs", label, want.Ino)
	}
	if want.Target != got.Target {
		t.Errorf("%s: node %d target = %q, expected %q", label, want.Ino, got.Target, want.Target)
	}
	if want.NextCookie != got.NextCookie {
		t.Errorf("%s: node %d next cookie = %d, expected %d", label, want.Ino, got.NextCookie, want.NextCookie)
	}
	if !reflect.DeepEqual(want.Entries, got.Entries) {
		t.Errorf("%s: node %d entries = %+v, expected %+v", label, want.Ino, got.Entries, want.Entries)
	}
	if !reflect.DeepEqual(want.Xattrs, got.Xattrs) {
		t.Errorf("%s: node %d xattrs = %v, expected %v", label, want.Ino, got.Xattrs, want.Xattrs)
	}
	if !reflect.DeepEqual(want.Extents, got.Extents) {
		t.Errorf("%s: node %d extents = %+v, expected %+v", label, want.Ino, got.Extents, want.Extents)
	}
	if !slices.EqualFunc(want.Chunks, got.Chunks, func(w, g Chunk) bool {
		return w.Index == g.Index && bytes.Equal(w.Bytes(), g.Bytes())
	}) {
		t.Errorf("%s: node %d has %d chunks, expected %d, or their bytes differ", label, want.Ino, len(got.Chunks), len(want.Chunks))
	}
}

// discardLogger drops logs, for workloads that would flood the test log.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
